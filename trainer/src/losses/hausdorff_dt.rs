//! Distance-transform Hausdorff loss, HD_DT (Karimi and Salcudean, "Reducing the Hausdorff
//! Distance in Medical Image Segmentation with Convolutional Neural Networks", IEEE TMI 2020,
//! the distance-transform variant):
//!
//! L = (1 / (N |Ω|)) Σ_images Σ_{q ∈ Ω} Σ_{c = 1}^{C-1} (p_c(q) - g_c(q))² (d_{g,c}(q)^α + d_{p,c}(q)^α)
//!
//! with p = softmax(logits), g the one-hot truth, d_g the distance to the truth's boundary
//! ([`super::boundary_distance_maps`], computed once per batch on the host) and d_p the
//! distance to the boundary of the prediction {p_c > 0.5}, recomputed at every call from the
//! detached probabilities. Both maps are constants for the gradient, as in the paper: the
//! gradient is 2 (p - g) (d_g^α + d_p^α) ∂p/∂logits. α = 2 (the paper's choice) by default.
//! A perfect prediction (p = g) gives 0, the minimum.
//!
//! Where this departs from the paper or the code it points to:
//!
//! * The paper is binary. Several foreground classes are **summed** (each thresholded at 0.5
//!   on its own softmax probability); the background class is left out, like the paper's
//!   single foreground channel. The boundary-loss repository's multi-class `HausdorffLoss`
//!   instead takes the mean over the selected classes (divides by C - 1) and thresholds by
//!   argmax; with two classes both are the same as ours (p_1 > 0.5 is argmax = 1, ties
//!   going to the background either way).
//! * Boundaries, distances on both sides of them, and the empty-class case (d = 0) are as
//!   documented on [`super::boundary_distance_maps`]; the public reference code measures d
//!   inside the object only, the paper on the whole image, which we follow.
//! * The paper combines it with a Dice loss (L_HD + λ L_DSC, λ set so that both are of the
//!   same size); that weighting belongs to the training objective.

use burn::tensor::activation::softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

use super::distance_maps::prediction_distance_maps;

/// The HD_DT loss; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HausdorffDtLoss {
    /// Exponent of the distances (the paper: 2).
    pub alpha: f64,
    /// Pixel spacing `(row mm, col mm)` for the prediction's distance map; must be the one the
    /// truth's maps were computed with.
    pub spacing: (f64, f64),
}

impl Default for HausdorffDtLoss {
    fn default() -> Self {
        Self {
            alpha: 2.0,
            spacing: (1.0, 1.0),
        }
    }
}

impl HausdorffDtLoss {
    /// `logits`, `one_hot` and `truth_maps` are `[N, C, H, W]` (C >= 2); `truth_maps` holds
    /// d_g from [`super::boundary_distance_maps`] for the masks that gave `one_hot`. Computes
    /// d_p from the current prediction (probabilities read back to the host, thresholded at
    /// 0.5, exact EDT, uploaded to the logits' device) and returns the scalar loss, `[1]`.
    ///
    /// # Panics
    /// If the shapes differ or C < 2.
    pub fn forward<B: Backend>(
        &self,
        logits: Tensor<B, 4>,
        one_hot: Tensor<B, 4>,
        truth_maps: Tensor<B, 4>,
    ) -> Tensor<B, 1> {
        let probs = softmax(logits, 1);
        let pred_maps = self.prediction_maps(probs.clone());
        self.loss_from_probabilities(probs, one_hot, truth_maps, pred_maps)
    }

    /// The loss with both distance maps given (`pred_maps`: d_p, `[N, C, H, W]`), e.g. to
    /// hold them fixed; [`Self::forward`] is this with [`Self::prediction_maps`] of its own
    /// softmax.
    pub fn forward_with_maps<B: Backend>(
        &self,
        logits: Tensor<B, 4>,
        one_hot: Tensor<B, 4>,
        truth_maps: Tensor<B, 4>,
        pred_maps: Tensor<B, 4>,
    ) -> Tensor<B, 1> {
        self.loss_from_probabilities(softmax(logits, 1), one_hot, truth_maps, pred_maps)
    }

    /// d_p for softmax probabilities `[N, C, H, W]`: each class's region {p_c > 0.5}, its
    /// distance-to-boundary map, on the probabilities' device, outside the autodiff graph.
    pub fn prediction_maps<B: Backend>(&self, probs: Tensor<B, 4>) -> Tensor<B, 4> {
        let [n, c, h, w] = probs.dims();
        let device = probs.device();
        let host: Vec<f32> = probs.detach().into_data().iter::<f32>().collect();
        let maps = prediction_distance_maps(&host, n, c, h, w, self.spacing);
        Tensor::from_data(TensorData::new(maps, [n, c, h, w]), &device)
    }

    fn loss_from_probabilities<B: Backend>(
        &self,
        probs: Tensor<B, 4>,
        one_hot: Tensor<B, 4>,
        truth_maps: Tensor<B, 4>,
        pred_maps: Tensor<B, 4>,
    ) -> Tensor<B, 1> {
        let dims = probs.dims();
        assert_eq!(one_hot.dims(), dims, "HD_DT loss: one-hot vs logits shape");
        assert_eq!(
            truth_maps.dims(),
            dims,
            "HD_DT loss: truth maps vs logits shape"
        );
        assert_eq!(
            pred_maps.dims(),
            dims,
            "HD_DT loss: prediction maps vs logits shape"
        );
        let classes = dims[1];
        assert!(
            classes >= 2,
            "HD_DT loss needs a background and a foreground class"
        );
        let fg = |t: Tensor<B, 4>| t.narrow(1, 1, classes - 1);
        let error = fg(probs) - fg(one_hot);
        let weight = fg(truth_maps).powf_scalar(self.alpha) + fg(pred_maps).powf_scalar(self.alpha);
        error.clone().mul(error).mul(weight).sum_dim(1).mean()
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::Flex;

    use super::super::boundary_distance_maps;
    use super::super::distance_maps::tests::{corner_block, corner_block_surface_distance};
    use super::*;

    type B = Flex;

    fn tensor(v: Vec<f32>, shape: [usize; 4]) -> Tensor<B, 4> {
        Tensor::from_data(TensorData::new(v, shape), &Default::default())
    }

    fn one_hot(mask: &[u8]) -> Vec<f32> {
        (0..2)
            .flat_map(|c| mask.iter().map(move |&l| f32::from(usize::from(l) == c)))
            .collect()
    }

    /// The corner block shifted `k` columns right.
    fn shifted(k: usize) -> Vec<u8> {
        (0..25)
            .map(|i| u8::from(i / 5 < 3 && (k..k + 3).contains(&(i % 5))))
            .collect()
    }

    /// Logits `[1, 2, 5, 5]` giving class 1 where `pred` is 1, with the margins in `m` (one
    /// per pixel, cycled).
    fn logits_for(pred: &[u8], m: &[f32]) -> Vec<f32> {
        let fg: Vec<f32> = (0..25)
            .map(|q| {
                let margin = m[q % m.len()];
                if pred[q] == 1 { margin } else { -margin }
            })
            .collect();
        fg.iter().map(|_| 0.0).chain(fg.iter().copied()).collect()
    }

    fn loss(loss: &HausdorffDtLoss, truth: &[u8], logits: Vec<f32>) -> f32 {
        let maps = boundary_distance_maps(truth, 1, 5, 5, 2, loss.spacing).unwrap();
        loss.forward(
            tensor(logits, [1, 2, 5, 5]),
            tensor(one_hot(truth), [1, 2, 5, 5]),
            tensor(maps, [1, 2, 5, 5]),
        )
        .into_scalar()
    }

    #[test]
    fn value_matches_hand_computation() {
        let truth = corner_block();
        let d_g = corner_block_surface_distance();
        // Predicted region: the block shifted one column right (its surface is all of it
        // but its centre (1, 2)); d_p by hand.
        let (s2, s5) = (2f32.sqrt(), 5f32.sqrt());
        #[rustfmt::skip]
        let d_p = [
            1.0, 0.0, 0.0, 0.0, 1.0,
            1.0, 0.0, 1.0, 0.0, 1.0,
            1.0, 0.0, 0.0, 0.0, 1.0,
            s2,  1.0, 1.0, 1.0, s2,
            s5,  2.0, 2.0, 2.0, s5,
        ];
        let logits = logits_for(&shifted(1), &[0.3, 1.1, 2.0, 0.7, 4.0, 1.6]);
        let p: Vec<f32> = (0..25)
            .map(|q| 1.0 / (1.0 + (logits[q] - logits[25 + q]).exp()))
            .collect();
        let g = one_hot(&truth);
        for (alpha, pow) in [(2.0, 2), (1.0, 1), (3.0, 3)] {
            let want: f32 = (0..25)
                .map(|q| (p[q] - g[25 + q]).powi(2) * (d_g[q].powi(pow) + d_p[q].powi(pow)))
                .sum::<f32>()
                / 25.0;
            let hd = HausdorffDtLoss {
                alpha,
                ..Default::default()
            };
            let got = loss(&hd, &truth, logits.clone());
            assert!(
                (got - want).abs() < 1e-5 * want.max(1.0),
                "α={alpha}: {got} vs {want}"
            );
        }
        // forward computed that d_p itself: the same value with the hand map given.
        let hd = HausdorffDtLoss::default();
        let given = hd
            .forward_with_maps(
                tensor(logits.clone(), [1, 2, 5, 5]),
                tensor(g.clone(), [1, 2, 5, 5]),
                tensor([vec![0.0; 25], d_g.clone()].concat(), [1, 2, 5, 5]),
                tensor([vec![0.0; 25], d_p.to_vec()].concat(), [1, 2, 5, 5]),
            )
            .into_scalar();
        let own = loss(&hd, &truth, logits.clone());
        assert!((given - own).abs() < 1e-6, "{given} vs {own}");
        let computed: Vec<f32> = hd
            .prediction_maps(burn::tensor::activation::softmax(
                tensor(logits, [1, 2, 5, 5]),
                1,
            ))
            .into_data()
            .to_vec()
            .unwrap();
        for (q, (a, b)) in computed[25..].iter().zip(&d_p).enumerate() {
            assert!((a - b).abs() < 1e-6, "d_p pixel {q}: {a} vs {b}");
        }
    }

    #[test]
    fn the_truth_gives_zero_and_shifted_predictions_score_worse() {
        let truth = corner_block();
        let hd = HausdorffDtLoss::default();
        let perfect = loss(&hd, &truth, logits_for(&truth, &[40.0]));
        assert!(perfect.abs() < 1e-6, "{perfect}");
        let near = loss(&hd, &truth, logits_for(&shifted(1), &[5.0]));
        let far = loss(&hd, &truth, logits_for(&shifted(2), &[5.0]));
        assert!(perfect < near && near < far, "{perfect} {near} {far}");
        // A right but unsure prediction costs too, most where it is far from the boundary:
        // (1 - sigmoid(0.5))² · 2 Σ d_g² / 25, with Σ d_g² = 5 + 6 + 5 + 10 + 25 (by rows).
        let unsure = loss(&hd, &truth, logits_for(&truth, &[0.5]));
        let q = 1.0 / (1.0 + 0.5f32.exp());
        let want = q * q * 2.0 * 51.0 / 25.0;
        assert!((unsure - want).abs() < 1e-5, "{unsure} vs {want}");
    }

    #[test]
    fn empty_truth_and_prediction_give_zero_and_a_false_blob_costs() {
        let empty = [0u8; 25];
        let hd = HausdorffDtLoss::default();
        // Neither has a boundary: both maps are 0, whatever the (sub-threshold) probabilities.
        let v = loss(&hd, &empty, logits_for(&empty, &[0.2, 3.0]));
        assert!(v.abs() < 1e-7, "{v}");
        // A predicted block on an empty truth: d_g = 0, so Σ p² d_p² / |Ω|.
        let logits = logits_for(&corner_block(), &[2.0]);
        let p: Vec<f32> = (0..25)
            .map(|q| 1.0 / (1.0 + (logits[q] - logits[25 + q]).exp()))
            .collect();
        let d_p = corner_block_surface_distance();
        let want: f32 = (0..25).map(|q| p[q].powi(2) * d_p[q].powi(2)).sum::<f32>() / 25.0;
        let got = loss(&hd, &empty, logits);
        assert!(want > 0.05 && (got - want).abs() < 1e-6, "{got} vs {want}");
    }
}
