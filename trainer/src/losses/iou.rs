//! Soft IoU (Jaccard) loss over the foreground classes: 1 - mean_c (|P∩G| + s) / (|P∪G| + s),
//! with |P∪G| = |P| + |G| - |P∩G| on softmax probabilities.

use burn::tensor::Tensor;
use burn::tensor::activation::softmax;
use burn::tensor::backend::Backend;

use super::{SegLoss, class_sums};

pub struct SoftIou {
    pub smooth: f64,
    /// Also average over the background class (JMedSeg's Dice loss counts it; off by default
    /// because a large background makes the loss insensitive to a small structure).
    pub background: bool,
}

impl Default for SoftIou {
    fn default() -> Self {
        Self {
            smooth: 1.0,
            background: false,
        }
    }
}

impl<B: Backend> SegLoss<B> for SoftIou {
    fn forward(&self, logits: Tensor<B, 4>, one_hot: Tensor<B, 4>) -> Tensor<B, 1> {
        let (inter, pred, truth) = class_sums(softmax(logits, 1), one_hot, self.background);
        let union = pred + truth - inter.clone();
        let iou = inter
            .add_scalar(self.smooth)
            .div(union.add_scalar(self.smooth));
        iou.mean().neg().add_scalar(1.0)
    }
}
