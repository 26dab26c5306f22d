//! Soft IoU (Jaccard) loss over the foreground classes: 1 - mean_c (|P∩G| + s) / (|P∪G| + s),
//! with |P∪G| = |P| + |G| - |P∩G| on softmax probabilities.

use burn::tensor::Tensor;
use burn::tensor::activation::softmax;
use burn::tensor::backend::Backend;

use super::{SegLoss, foreground_sums};

pub struct SoftIou {
    pub smooth: f64,
}

impl Default for SoftIou {
    fn default() -> Self {
        Self { smooth: 1.0 }
    }
}

impl<B: Backend> SegLoss<B> for SoftIou {
    fn forward(&self, logits: Tensor<B, 4>, one_hot: Tensor<B, 4>) -> Tensor<B, 1> {
        let (inter, pred, truth) = foreground_sums(softmax(logits, 1), one_hot);
        let union = pred + truth - inter.clone();
        let iou = inter
            .add_scalar(self.smooth)
            .div(union.add_scalar(self.smooth));
        iou.mean().neg().add_scalar(1.0)
    }
}
