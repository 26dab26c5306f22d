//! Soft Dice loss, 1 - mean_c (2|P∩G| + s) / (|P| + |G| + s) over the foreground classes
//! (optionally the background too), on softmax probabilities with additive smoothing s.

use burn::tensor::Tensor;
use burn::tensor::activation::softmax;
use burn::tensor::backend::Backend;

use super::{SegLoss, class_sums};

pub struct SoftDice {
    pub smooth: f64,
    /// Also average over the background class (JMedSeg's Dice loss counts it; off by default
    /// because a large background makes the loss insensitive to a small structure).
    pub background: bool,
}

impl Default for SoftDice {
    fn default() -> Self {
        Self {
            smooth: 1.0,
            background: false,
        }
    }
}

impl<B: Backend> SegLoss<B> for SoftDice {
    fn forward(&self, logits: Tensor<B, 4>, one_hot: Tensor<B, 4>) -> Tensor<B, 1> {
        let (inter, pred, truth) = class_sums(softmax(logits, 1), one_hot, self.background);
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
        let loss = SoftDice {
            smooth: 1e-6,
            background: false,
        };
        let v: f32 = SegLoss::<B>::forward(&loss, good, truth.clone()).into_scalar();
        assert!(v.abs() < 1e-4, "{v}");
        let bad = truth.clone().neg().mul_scalar(40.0);
        let v: f32 = SegLoss::<B>::forward(&loss, bad, truth).into_scalar();
        assert!((v - 1.0).abs() < 1e-4, "{v}");
    }
}
