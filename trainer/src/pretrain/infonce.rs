//! The queue of negative keys and the InfoNCE loss (MoCo, He et al. CVPR 2020).

use burn::tensor::activation::log_softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// A first-in first-out queue of `len` keys of `dim` values, kept on the host (1024 x 128
/// floats is half a megabyte: copied to the device each step, far cheaper than a forward).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Queue {
    pub dim: usize,
    pub len: usize,
    /// Row-major `[len, dim]`.
    pub data: Vec<f32>,
    /// The row the next key goes to (the oldest one).
    pub next: usize,
}

impl Queue {
    /// `len` random unit vectors (MoCo and JMedSeg start the queue this way), seeded.
    pub fn random(len: usize, dim: usize, seed: u64) -> Self {
        use rand::Rng;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut data = Vec::with_capacity(len * dim);
        for _ in 0..len {
            // Box-Muller normals, then normalised: a direction uniform on the sphere.
            let row: Vec<f32> = (0..dim)
                .map(|_| {
                    let (u1, u2): (f32, f32) = (rng.random_range(1e-7..1.0), rng.random());
                    (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
                })
                .collect();
            let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
            data.extend(row.iter().map(|v| v / norm));
        }
        Self {
            dim,
            len,
            data,
            next: 0,
        }
    }

    /// Replaces the oldest rows with `keys` (row-major, a multiple of `dim` values).
    pub fn enqueue(&mut self, keys: &[f32]) {
        assert_eq!(keys.len() % self.dim, 0, "keys of dim {}", self.dim);
        for row in keys.chunks(self.dim) {
            let at = self.next * self.dim;
            self.data[at..at + self.dim].copy_from_slice(row);
            self.next = (self.next + 1) % self.len;
        }
    }

    pub fn tensor<B: Backend>(&self, device: &B::Device) -> Tensor<B, 2> {
        Tensor::from_data(
            TensorData::new(self.data.clone(), [self.len, self.dim]),
            device,
        )
    }
}

/// InfoNCE: for each query row `q_i` (unit norm, `[N, D]`), the cross-entropy of picking its
/// positive key `k_i` among `k_i` and the queue's keys (`[K, D]`), logits = similarities /
/// `temperature`. Mean over the batch.
pub fn info_nce<B: Backend>(
    q: Tensor<B, 2>,
    k: Tensor<B, 2>,
    queue: Tensor<B, 2>,
    temperature: f32,
) -> Tensor<B, 1> {
    let positive = q.clone().mul(k).sum_dim(1); // [N, 1]
    let negative = q.matmul(queue.transpose()); // [N, K]
    let logits = Tensor::cat(vec![positive, negative], 1).div_scalar(temperature);
    let log_p = log_softmax(logits, 1);
    log_p.narrow(1, 0, 1).mean().neg()
}

/// Random unit rows (tests).
#[cfg(test)]
pub fn random_unit<B: Backend>(n: usize, d: usize, device: &B::Device) -> Tensor<B, 2> {
    crate::pretrain::head::l2_normalize(Tensor::random(
        [n, d],
        burn::tensor::Distribution::Normal(0.0, 1.0),
        device,
    ))
}

#[cfg(test)]
mod tests {
    use burn::backend::Flex;

    use super::*;

    #[test]
    fn info_nce_matches_a_hand_computation() {
        let dev = Default::default();
        let q = Tensor::<Flex, 2>::from_data(
            TensorData::new(vec![1.0f32, 0.0, 0.0, 1.0], [2, 2]),
            &dev,
        );
        let k = Tensor::<Flex, 2>::from_data(
            TensorData::new(vec![0.6f32, 0.8, 0.0, 1.0], [2, 2]),
            &dev,
        );
        let queue = Tensor::<Flex, 2>::from_data(
            TensorData::new(vec![-1.0f32, 0.0, 0.0, -1.0, 0.8, 0.6], [3, 2]),
            &dev,
        );
        let t = 0.5f32;
        // Row 0: positive 0.6, negatives -1, 0, 0.8. Row 1: positive 1, negatives 0, -1, 0.6.
        let ce = |pos: f32, negs: [f32; 3]| {
            let z: f32 = std::iter::once(pos)
                .chain(negs)
                .map(|s| (s / t).exp())
                .sum();
            -((pos / t).exp() / z).ln()
        };
        let expected = (ce(0.6, [-1.0, 0.0, 0.8]) + ce(1.0, [0.0, -1.0, 0.6])) / 2.0;
        let got: f32 = info_nce(q, k, queue, t).into_scalar();
        assert!((got - expected).abs() < 1e-5, "{got} vs {expected}");
    }

    #[test]
    fn the_queue_is_first_in_first_out() {
        let mut q = Queue::random(3, 2, 1);
        assert_eq!(q.data.len(), 6);
        q.enqueue(&[1.0, 1.0, 2.0, 2.0]);
        assert_eq!(&q.data[..4], &[1.0, 1.0, 2.0, 2.0]);
        q.enqueue(&[3.0, 3.0, 4.0, 4.0]);
        // Row 2 took key 3; key 4 replaced the oldest, key 1.
        assert_eq!(q.data, vec![4.0, 4.0, 2.0, 2.0, 3.0, 3.0]);
        assert_eq!(q.next, 1);
        let t = q.tensor::<Flex>(&Default::default());
        assert_eq!(t.dims(), [3, 2]);
    }

    #[test]
    fn a_random_queue_holds_unit_vectors() {
        let q = Queue::random(4, 8, 5);
        for row in q.data.chunks(8) {
            let n: f32 = row.iter().map(|v| v * v).sum::<f32>().sqrt();
            assert!((n - 1.0).abs() < 1e-5);
        }
        assert_eq!(q, Queue::random(4, 8, 5), "seeded");
        let u = random_unit::<Flex>(2, 3, &Default::default());
        assert_eq!(u.dims(), [2, 3]);
    }
}
