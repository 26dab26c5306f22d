//! Tversky loss (Salehi et al., 2017): 1 - mean_c (TP + s) / (TP + α·FP + β·FN + s) over the
//! foreground classes; β > α weighs missed structure more than false alarms. α = β = 0.5 is
//! soft Dice, α = β = 1 soft IoU.

use burn::tensor::Tensor;
use burn::tensor::activation::softmax;
use burn::tensor::backend::Backend;

use super::{SegLoss, class_sums};

pub struct Tversky {
    pub alpha: f64,
    pub beta: f64,
    pub smooth: f64,
}

impl Default for Tversky {
    fn default() -> Self {
        Self {
            alpha: 0.3,
            beta: 0.7,
            smooth: 1.0,
        }
    }
}

impl<B: Backend> SegLoss<B> for Tversky {
    fn forward(&self, logits: Tensor<B, 4>, one_hot: Tensor<B, 4>) -> Tensor<B, 1> {
        let (tp, pred, truth) = class_sums(softmax(logits, 1), one_hot, false);
        let fp = pred - tp.clone();
        let fn_ = truth - tp.clone();
        let denom = tp.clone() + fp.mul_scalar(self.alpha) + fn_.mul_scalar(self.beta);
        let index = tp
            .add_scalar(self.smooth)
            .div(denom.add_scalar(self.smooth));
        index.mean().neg().add_scalar(1.0)
    }
}
