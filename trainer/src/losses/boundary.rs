//! Boundary loss (Kervadec, Bouchtiba, Desrosiers, Granger, Dolz and Ben Ayed, "Boundary loss
//! for highly unbalanced segmentation", MIDL 2019 / Medical Image Analysis 2021):
//!
//! L_B = (1 / (N |Ω|)) Σ_images Σ_{q ∈ Ω} Σ_{c = 1}^{C-1} φ_c(q) s_c(q)
//!
//! where s = softmax(logits) over the class axis and φ_c is the signed distance map of the
//! ground-truth region of class c (negative inside, positive outside), computed on the host by
//! [`super::signed_distance_maps`] (conventions there: the reference implementation's
//! `one_hot2dist`, φ = 0 for a class absent from the image).
//!
//! The loss is the paper's integral ∫_Ω φ_G(q) s_θ(q) dq, a linear function of the softmax
//! output: it is smallest (and negative, Σ of φ over the truth's inside) when s is 1 exactly
//! where φ < 0 and 0 where φ > 0, i.e. on the ground truth; pixels of the inner contour
//! (φ = 0) are free.
//!
//! Where this departs from the paper or its code (github.com/LIVIAETS/boundary-loss):
//!
//! * Several foreground classes are **summed** (the formula above). The reference
//!   `SurfaceLoss` takes `.mean()` over the selected classes too, i.e. divides by C - 1; the
//!   two agree for one foreground class, the paper's setting. Summing keeps each class's
//!   weight independent of how many others there are, like the paper's per-structure
//!   integral; divide the weight by C - 1 to get the reference's scale.
//! * The background class (0) is left out, as in the paper's experiments (`idc=[1]`); its map
//!   is computed anyway and is there for a caller who wants it.
//! * The paper trains with a regional loss beside it, L = L_GDL + α L_B, α starting at 0.01 and
//!   growing by 0.01 per epoch (or rebalanced); the boundary loss alone has a trivial
//!   near-empty minimiser early in training. That schedule belongs to the training objective,
//!   not to this struct.

use burn::tensor::Tensor;
use burn::tensor::activation::softmax;
use burn::tensor::backend::Backend;

/// The boundary loss; see the module docs. No parameters: the unit (pixels or mm) is the one
/// the maps were computed in.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct BoundaryLoss;

impl BoundaryLoss {
    /// `logits`, `one_hot` and `maps` are `[N, C, H, W]` (C >= 2); `maps` holds φ from
    /// [`super::signed_distance_maps`] for the same masks that gave `one_hot`. Returns the
    /// scalar loss, `[1]`.
    ///
    /// `one_hot` does not enter the value (φ carries the truth); it is taken so that this loss
    /// has the same inputs as the others plus its maps, and its shape is checked.
    ///
    /// # Panics
    /// If the shapes differ or C < 2.
    pub fn forward<B: Backend>(
        &self,
        logits: Tensor<B, 4>,
        one_hot: Tensor<B, 4>,
        maps: Tensor<B, 4>,
    ) -> Tensor<B, 1> {
        let dims = logits.dims();
        assert_eq!(
            one_hot.dims(),
            dims,
            "boundary loss: one-hot vs logits shape"
        );
        assert_eq!(
            maps.dims(),
            dims,
            "boundary loss: distance maps vs logits shape"
        );
        let classes = dims[1];
        assert!(
            classes >= 2,
            "boundary loss needs a background and a foreground class"
        );
        let fg = |t: Tensor<B, 4>| t.narrow(1, 1, classes - 1);
        fg(softmax(logits, 1)).mul(fg(maps)).sum_dim(1).mean()
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::Flex;
    use burn::tensor::TensorData;

    use super::super::distance_maps::tests::{corner_block, corner_block_phi};
    use super::super::signed_distance_maps;
    use super::*;

    type B = Flex;

    fn tensor(v: Vec<f32>, shape: [usize; 4]) -> Tensor<B, 4> {
        Tensor::from_data(TensorData::new(v, shape), &Default::default())
    }

    fn one_hot(mask: &[u8], classes: usize) -> Vec<f32> {
        (0..classes)
            .flat_map(|c| mask.iter().map(move |&l| f32::from(usize::from(l) == c)))
            .collect()
    }

    /// Logits that put class 1 on `mask`'s foreground with margin `m`.
    fn confident(mask: &[u8], m: f32) -> Vec<f32> {
        one_hot(mask, 2)
            .iter()
            .map(|&g| if g == 1.0 { m } else { -m })
            .collect()
    }

    fn loss(mask: &[u8], logits: Vec<f32>) -> f32 {
        let maps = signed_distance_maps(mask, 1, 5, 5, 2).unwrap();
        BoundaryLoss
            .forward(
                tensor(logits, [1, 2, 5, 5]),
                tensor(one_hot(mask, 2), [1, 2, 5, 5]),
                tensor(maps, [1, 2, 5, 5]),
            )
            .into_scalar()
    }

    /// The corner block shifted `k` columns right.
    fn shifted(k: usize) -> Vec<u8> {
        (0..25)
            .map(|i| u8::from(i / 5 < 3 && (k..k + 3).contains(&(i % 5))))
            .collect()
    }

    #[test]
    fn value_matches_hand_computation() {
        let mask = corner_block();
        let phi = corner_block_phi();
        let logits: Vec<f32> = (0..50).map(|i| ((i * 7 % 11) as f32 - 5.0) * 0.4).collect();
        // s_1 = sigmoid(l_1 - l_0) per pixel; L = mean over the 25 pixels of φ_1 s_1.
        let want: f32 = (0..25)
            .map(|q| phi[q] / (1.0 + (logits[q] - logits[25 + q]).exp()))
            .sum::<f32>()
            / 25.0;
        let got = loss(&mask, logits);
        assert!((got - want).abs() < 1e-6, "{got} vs {want}");
    }

    #[test]
    fn the_truth_gives_the_minimum_and_shifted_predictions_score_worse() {
        let mask = corner_block();
        // Minimum: Σ of φ inside the block / 25 = (-2 - 1 - 1 - 1) / 25.
        let min = -5.0 / 25.0;
        let perfect = loss(&mask, confident(&mask, 20.0));
        assert!((perfect - min).abs() < 1e-6, "{perfect}");
        // No probability map does better: s = 1 where φ < 0, 0 elsewhere is the minimiser.
        let worse = [
            loss(&mask, confident(&shifted(1), 20.0)),
            loss(&mask, confident(&shifted(2), 20.0)),
            loss(&mask, vec![0.0; 50]),
            loss(&mask, confident(&[0; 25], 20.0)),
        ];
        assert!(worse.iter().all(|&v| v > perfect + 1e-3), "{worse:?}");
        // Each column further right costs more; the empty prediction costs 0.
        assert!(worse[0] < worse[1], "{worse:?}");
        assert!(worse[3].abs() < 1e-6, "{worse:?}");
        // By hand: shifted one column, s_1 = 1 on rows 0..=2, cols 1..=3 of φ_1.
        let phi = corner_block_phi();
        let by_hand: f32 = (0..25)
            .filter(|&q| shifted(1)[q] == 1)
            .map(|q| phi[q])
            .sum::<f32>()
            / 25.0;
        assert!(
            (worse[0] - by_hand).abs() < 1e-6,
            "{} vs {by_hand}",
            worse[0]
        );
    }

    #[test]
    fn an_empty_truth_gives_zero_whatever_the_prediction() {
        let empty = [0u8; 25];
        for logits in [
            confident(&corner_block(), 3.0),
            vec![0.0; 50],
            confident(&[1; 25], 5.0),
        ] {
            let v = loss(&empty, logits);
            assert!(v.abs() < 1e-7, "{v}");
        }
    }

    #[test]
    fn classes_are_summed_over_the_foreground_and_images_averaged() {
        // Two images, three classes: image 0 has the corner block as class 2 (class 1 empty);
        // image 1 has it as class 1 and class 2 absent.
        let block = corner_block();
        let masks: Vec<u8> = block
            .iter()
            .map(|&l| l * 2)
            .chain(block.iter().copied())
            .collect();
        let maps = signed_distance_maps(&masks, 2, 5, 5, 3).unwrap();
        let g: Vec<f32> = (0..2)
            .flat_map(|b| one_hot(&masks[b * 25..(b + 1) * 25], 3))
            .collect();
        let logits: Vec<f32> = (0..150)
            .map(|i| ((i * 5 % 13) as f32 - 6.0) * 0.3)
            .collect();
        let got: f32 = BoundaryLoss
            .forward(
                tensor(logits.clone(), [2, 3, 5, 5]),
                tensor(g, [2, 3, 5, 5]),
                tensor(maps, [2, 3, 5, 5]),
            )
            .into_scalar();
        let phi = corner_block_phi();
        let softmax_at = |b: usize, c: usize, q: usize| {
            let l = |k: usize| logits[(b * 3 + k) * 25 + q];
            let z: f32 = (0..3).map(|k| l(k).exp()).sum();
            l(c).exp() / z
        };
        // Only (image 0, class 2) and (image 1, class 1) have non-zero maps.
        let want: f32 = (0..25)
            .map(|q| phi[q] * (softmax_at(0, 2, q) + softmax_at(1, 1, q)))
            .sum::<f32>()
            / 50.0;
        assert!((got - want).abs() < 1e-6, "{got} vs {want}");
    }
}
