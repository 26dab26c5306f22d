//! Soft Dice loss over the foreground classes (background excluded, as usual for a small
//! structure on a large background), with additive smoothing.

use burn::tensor::Tensor;
use burn::tensor::activation::softmax;
use burn::tensor::backend::Backend;

use super::{SegLoss, foreground_sums};

pub struct SoftDice {
    pub smooth: f64,
}

impl Default for SoftDice {
    fn default() -> Self {
        Self { smooth: 1.0 }
    }
}

impl<B: Backend> SegLoss<B> for SoftDice {
    fn forward(&self, logits: Tensor<B, 4>, one_hot: Tensor<B, 4>) -> Tensor<B, 1> {
        let (inter, pred, truth) = foreground_sums(softmax(logits, 1), one_hot);
        let dice = inter
            .mul_scalar(2.0)
            .add_scalar(self.smooth)
            .div((pred + truth).add_scalar(self.smooth));
        dice.mean().neg().add_scalar(1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;
    use burn::tensor::TensorData;

    type B = Flex;

    #[test]
    fn perfect_confident_prediction_has_near_zero_loss_and_wrong_one_near_one() {
        let dev = Default::default();
        // 4 pixels, 2 classes; truth foreground on pixels 0 and 1.
        let truth = Tensor::<B, 4>::from_data(
            TensorData::new(
                vec![0.0f32, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0],
                [1, 2, 2, 2],
            ),
            &dev,
        );
        let good = truth.clone().mul_scalar(40.0);
        let loss = SoftDice { smooth: 1e-6 };
        let v: f32 = SegLoss::<B>::forward(&loss, good, truth.clone()).into_scalar();
        assert!(v.abs() < 1e-4, "{v}");
        let bad = truth.clone().neg().mul_scalar(40.0);
        let v: f32 = SegLoss::<B>::forward(&loss, bad, truth).into_scalar();
        assert!((v - 1.0).abs() < 1e-4, "{v}");
    }
}
