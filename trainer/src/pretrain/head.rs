//! The projection head (MoCo v2): global average pooling of the tapped encoder features,
//! Linear -> ReLU -> Linear to `dim`, L2 normalisation. Trained with the encoder, unlike
//! JMedSeg's (avg-pool 2x2 -> flatten -> ReLU -> Linear, never given to the optimizer).

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::Tensor;
use burn::tensor::activation::relu;
use burn::tensor::backend::Backend;

#[derive(Module, Debug)]
pub struct ProjectionHead<B: Backend> {
    pub fc1: Linear<B>,
    pub fc2: Linear<B>,
}

impl<B: Backend> ProjectionHead<B> {
    /// A head from `channels` encoder channels to `dim` (hidden width = `channels`, at least
    /// `dim`, as MoCo v2's hidden layer keeps the encoder's width).
    pub fn new(channels: usize, dim: usize, device: &B::Device) -> Self {
        let hidden = channels.max(dim);
        Self {
            fc1: LinearConfig::new(channels, hidden).init(device),
            fc2: LinearConfig::new(hidden, dim).init(device),
        }
    }

    /// `[N, C, h, w]` features to unit-norm embeddings `[N, dim]`.
    pub fn forward(&self, features: Tensor<B, 4>) -> Tensor<B, 2> {
        let pooled = global_pool(features);
        l2_normalize(self.fc2.forward(relu(self.fc1.forward(pooled))))
    }
}

/// Global average pooling `[N, C, h, w]` -> `[N, C]`.
pub fn global_pool<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 2> {
    let [n, c, h, w] = x.dims();
    x.reshape([n, c, h * w]).mean_dim(2).reshape([n, c])
}

/// Each row divided by its Euclidean norm (guarded against zero rows).
pub fn l2_normalize<B: Backend>(x: Tensor<B, 2>) -> Tensor<B, 2> {
    let norm = x.clone().square().sum_dim(1).add_scalar(1e-12).sqrt();
    x.div(norm)
}

#[cfg(test)]
mod tests {
    use burn::backend::Flex;
    use burn::tensor::Distribution;

    use super::*;

    #[test]
    fn embeddings_have_unit_norm() {
        let dev = Default::default();
        let head = ProjectionHead::<Flex>::new(6, 4, &dev);
        let x = Tensor::<Flex, 4>::random([3, 6, 5, 5], Distribution::Normal(0.0, 3.0), &dev);
        let z = head.forward(x);
        assert_eq!(z.dims(), [3, 4]);
        let norms: Vec<f32> = z.square().sum_dim(1).sqrt().into_data().to_vec().unwrap();
        for n in norms {
            assert!((n - 1.0).abs() < 1e-5, "{n}");
        }
    }
}
