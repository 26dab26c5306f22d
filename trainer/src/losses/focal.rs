//! Focal loss (Lin et al., 2017): mean over pixels of -α_t (1 - p_t)^γ log p_t, where p_t is
//! the probability of the true class. γ = 0 and no α is cross-entropy.

use burn::tensor::Tensor;
use burn::tensor::activation::log_softmax;
use burn::tensor::backend::Backend;

use super::SegLoss;

pub struct Focal {
    pub gamma: f64,
    /// Weight of the foreground classes; background gets 1 - alpha. None weighs all equally.
    pub alpha: Option<f64>,
}

impl Default for Focal {
    fn default() -> Self {
        Self {
            gamma: 2.0,
            alpha: None,
        }
    }
}

impl<B: Backend> SegLoss<B> for Focal {
    fn forward(&self, logits: Tensor<B, 4>, one_hot: Tensor<B, 4>) -> Tensor<B, 1> {
        let [_, classes, _, _] = logits.dims();
        let log_pt = log_softmax(logits, 1).mul(one_hot.clone()).sum_dim(1); // [B,1,H,W]
        let pt = log_pt.clone().exp();
        let modulator = pt
            .neg()
            .add_scalar(1.0)
            .clamp_min(0.0)
            .powf_scalar(self.gamma);
        let mut loss = modulator.mul(log_pt).neg();
        if let Some(alpha) = self.alpha {
            // α_t: 1 - α on background pixels, α on foreground pixels.
            let background = one_hot.narrow(1, 0, 1);
            let alpha_t = background.mul_scalar(1.0 - 2.0 * alpha).add_scalar(alpha);
            loss = loss.mul(alpha_t);
        }
        debug_assert!(classes >= 2);
        loss.mean()
    }
}
