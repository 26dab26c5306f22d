//! Pixel-wise cross-entropy with optional class weights (weighted mean, as PyTorch's
//! `CrossEntropyLoss(weight=...)` computes it).

use burn::tensor::activation::log_softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

use super::SegLoss;

pub struct CrossEntropy<B: Backend> {
    /// `[1, C, 1, 1]` class weights, broadcast over pixels.
    weights: Option<Tensor<B, 4>>,
}

impl<B: Backend> CrossEntropy<B> {
    pub fn new(class_weights: Option<Vec<f32>>, device: &B::Device) -> Self {
        let weights = class_weights.map(|w| {
            let n = w.len();
            Tensor::from_data(TensorData::new(w, [1, n, 1, 1]), device)
        });
        Self { weights }
    }
}

impl<B: Backend> SegLoss<B> for CrossEntropy<B> {
    fn forward(&self, logits: Tensor<B, 4>, one_hot: Tensor<B, 4>) -> Tensor<B, 1> {
        let nll = one_hot.clone().mul(log_softmax(logits, 1)).neg(); // [B, C, H, W]
        match &self.weights {
            None => nll.sum_dim(1).mean(),
            Some(w) => {
                let pixel_weight = one_hot.mul(w.clone()).sum_dim(1);
                let weighted = nll.mul(w.clone()).sum_dim(1);
                weighted.sum().div(pixel_weight.sum())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    type B = Flex;

    #[test]
    fn matches_hand_computed_value() {
        let dev = Default::default();
        // One pixel, two classes, logits (0, ln 3): p = (1/4, 3/4); truth class 1.
        let logits =
            Tensor::<B, 4>::from_data(TensorData::new(vec![0.0f32, 3f32.ln()], [1, 2, 1, 1]), &dev);
        let target =
            Tensor::<B, 4>::from_data(TensorData::new(vec![0.0f32, 1.0], [1, 2, 1, 1]), &dev);
        let v: f32 = CrossEntropy::<B>::new(None, &dev)
            .forward(logits.clone(), target.clone())
            .into_scalar();
        assert!((v - (4.0f32 / 3.0).ln()).abs() < 1e-5, "{v}");
        // Weights change nothing with a single pixel (weighted mean).
        let w: f32 = CrossEntropy::<B>::new(Some(vec![0.2, 1.8]), &dev)
            .forward(logits, target)
            .into_scalar();
        assert!((w - v).abs() < 1e-5);
    }
}
