//! Every loss: value on hand-computed cases and gradient against central finite differences.

use burn::backend::{Autodiff, Flex};
use burn::tensor::{Tensor, TensorData};

use super::*;

type A = Autodiff<Flex>;

/// 1 batch, 2 classes, 2x2 pixels; truth foreground on the two left pixels.
fn case() -> (Vec<f32>, Vec<f32>) {
    let logits = vec![0.3, -1.2, 0.8, 0.1, -0.4, 0.9, -0.2, 1.5];
    let one_hot = vec![0.0, 1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 0.0];
    (logits, one_hot)
}

fn value(loss: &dyn SegLoss<A>, logits: &[f32], one_hot: &[f32]) -> f32 {
    let dev = Default::default();
    let x = Tensor::<A, 4>::from_data(TensorData::new(logits.to_vec(), [1, 2, 2, 2]), &dev);
    let y = Tensor::<A, 4>::from_data(TensorData::new(one_hot.to_vec(), [1, 2, 2, 2]), &dev);
    loss.forward(x, y).into_scalar()
}

fn check_gradient(name: &str, loss: &dyn SegLoss<A>) {
    let dev = Default::default();
    let (logits, one_hot) = case();
    let x = Tensor::<A, 4>::from_data(TensorData::new(logits.clone(), [1, 2, 2, 2]), &dev)
        .require_grad();
    let y = Tensor::<A, 4>::from_data(TensorData::new(one_hot.clone(), [1, 2, 2, 2]), &dev);
    let grads = loss.forward(x.clone(), y).backward();
    let analytic: Vec<f32> = x.grad(&grads).unwrap().into_data().to_vec().unwrap();
    let h = 1e-2f32;
    for i in 0..logits.len() {
        let (mut up, mut down) = (logits.clone(), logits.clone());
        up[i] += h;
        down[i] -= h;
        let numeric = (value(loss, &up, &one_hot) - value(loss, &down, &one_hot)) / (2.0 * h);
        assert!(
            (numeric - analytic[i]).abs() <= 2e-3 + 1e-2 * numeric.abs(),
            "{name}: d/dx{i} analytic {} vs numeric {numeric}",
            analytic[i]
        );
    }
}

#[test]
fn gradients_match_finite_differences() {
    let dev = Default::default();
    check_gradient("ce", &CrossEntropy::<A>::new(None, &dev));
    check_gradient(
        "weighted ce",
        &CrossEntropy::<A>::new(Some(vec![0.3, 1.7]), &dev),
    );
    check_gradient("dice", &SoftDice::default());
    let with_bg = |smooth| SoftDice {
        smooth,
        background: true,
    };
    check_gradient("dice with background", &with_bg(1.0));
    check_gradient("iou", &SoftIou::default());
    check_gradient(
        "iou with background",
        &SoftIou {
            smooth: 1.0,
            background: true,
        },
    );
    check_gradient("focal", &Focal::default());
    check_gradient(
        "focal alpha",
        &Focal {
            gamma: 2.0,
            alpha: Some(0.25),
        },
    );
    check_gradient("tversky", &Tversky::default());
}

#[test]
fn values_match_hand_computation() {
    let (logits, one_hot) = case();
    // Foreground probabilities p_i = sigmoid(fg - bg) per pixel.
    let p: Vec<f32> = (0..4)
        .map(|i| 1.0 / (1.0 + (logits[i] - logits[4 + i]).exp()))
        .collect();
    let g = [1.0f32, 0.0, 1.0, 0.0];
    let inter: f32 = p.iter().zip(&g).map(|(a, b)| a * b).sum();
    let (sp, sg) = (p.iter().sum::<f32>(), 2.0f32);
    let close = |a: f32, b: f32| (a - b).abs() < 1e-5;

    let iou = 1.0 - (inter + 1.0) / (sp + sg - inter + 1.0);
    assert!(close(value(&SoftIou::default(), &logits, &one_hot), iou));

    let dice = 1.0 - (2.0 * inter + 1.0) / (sp + sg + 1.0);
    assert!(close(value(&SoftDice::default(), &logits, &one_hot), dice));
    // With the background: the mean of the foreground and background Dice.
    let (bg_inter, bg_p) = (
        (0..4).map(|i| (1.0 - p[i]) * (1.0 - g[i])).sum::<f32>(),
        4.0 - sp,
    );
    let bg_dice = (2.0 * bg_inter + 1.0) / (bg_p + 2.0 + 1.0);
    let both = 1.0 - 0.5 * ((1.0 - dice) + bg_dice);
    let with_bg = SoftDice {
        smooth: 1.0,
        background: true,
    };
    assert!(close(value(&with_bg, &logits, &one_hot), both));
    // Tversky with α = β = 0.5 is Dice (its smoothing counts half: (TP+s/2)/((P+G)/2+s/2)).
    let t = Tversky {
        alpha: 0.5,
        beta: 0.5,
        smooth: 0.5,
    };
    assert!(close(value(&t, &logits, &one_hot), dice));

    // Focal: mean over pixels of -(1 - p_t)^2 log p_t.
    let pt: Vec<f32> = (0..4)
        .map(|i| if g[i] == 1.0 { p[i] } else { 1.0 - p[i] })
        .collect();
    let focal: f32 = pt.iter().map(|&q| -(1.0 - q).powi(2) * q.ln()).sum::<f32>() / 4.0;
    assert!(close(value(&Focal::default(), &logits, &one_hot), focal));
    // γ = 0 without α is cross-entropy.
    let ce: f32 = pt.iter().map(|&q| -q.ln()).sum::<f32>() / 4.0;
    let plain = Focal {
        gamma: 0.0,
        alpha: None,
    };
    assert!(close(value(&plain, &logits, &one_hot), ce));
    let dev = Default::default();
    assert!(close(
        value(&CrossEntropy::<A>::new(None, &dev), &logits, &one_hot),
        ce
    ));
}

/// Central differences of `f` at `logits` against its autodiff gradient, with the tolerance
/// of [`check_gradient`]. Also insists that the gradient is not trivially zero.
fn check_gradient_of(
    name: &str,
    logits: &[f32],
    shape: [usize; 4],
    f: &dyn Fn(Tensor<A, 4>) -> Tensor<A, 1>,
) {
    let dev = Default::default();
    let tensor = |v: Vec<f32>| Tensor::<A, 4>::from_data(TensorData::new(v, shape), &dev);
    let x = tensor(logits.to_vec()).require_grad();
    let grads = f(x.clone()).backward();
    let analytic: Vec<f32> = x.grad(&grads).unwrap().into_data().to_vec().unwrap();
    assert!(
        analytic.iter().any(|g| g.abs() > 1e-2),
        "{name}: gradient is all but zero: {analytic:?}"
    );
    let h = 1e-2f32;
    for i in 0..logits.len() {
        let (mut up, mut down) = (logits.to_vec(), logits.to_vec());
        up[i] += h;
        down[i] -= h;
        let value = |v: Vec<f32>| -> f32 { f(tensor(v)).into_scalar() };
        let numeric = (value(up) - value(down)) / (2.0 * h);
        assert!(
            (numeric - analytic[i]).abs() <= 2e-3 + 1e-2 * numeric.abs(),
            "{name}: d/dx{i} analytic {} vs numeric {numeric}",
            analytic[i]
        );
    }
}

/// 2 images, 3 classes, 4x4: image 0 has class 1 top left and class 2 bottom right; image 1
/// has class 1 only (an L), class 2 absent. Logits `[2, 3, 4, 4]` not aligned with the truth.
fn shape_case() -> (Vec<u8>, Vec<f32>, Vec<f32>) {
    #[rustfmt::skip]
    let masks = vec![
        1, 1, 0, 0,
        1, 1, 0, 0,
        0, 0, 2, 2,
        0, 0, 2, 2,

        0, 1, 0, 0,
        0, 1, 1, 0,
        0, 0, 0, 0,
        0, 0, 0, 0,
    ];
    let all: &[u8] = &masks;
    let one_hot: Vec<f32> = (0..2)
        .flat_map(move |b| {
            let image = &all[b * 16..(b + 1) * 16];
            (0..3u8).flat_map(move |c| image.iter().map(move |&l| f32::from(l == c)))
        })
        .collect();
    let logits = (0..96)
        .map(|i| ((i * 37 % 17) as f32 - 8.0) * 0.35)
        .collect();
    (masks, one_hot, logits)
}

#[test]
fn boundary_loss_gradient_matches_finite_differences() {
    let (masks, one_hot, logits) = shape_case();
    let maps = signed_distance_maps(&masks, 2, 4, 4, 3).unwrap();
    let dev = Default::default();
    let y = Tensor::<A, 4>::from_data(TensorData::new(one_hot, [2, 3, 4, 4]), &dev);
    let m = Tensor::<A, 4>::from_data(TensorData::new(maps, [2, 3, 4, 4]), &dev);
    check_gradient_of("boundary", &logits, [2, 3, 4, 4], &|x| {
        BoundaryLoss.forward(x, y.clone(), m.clone())
    });
}

#[test]
fn hausdorff_dt_gradient_matches_finite_differences_with_maps_held() {
    let (masks, one_hot, logits) = shape_case();
    // The paper's gradient holds d_p fixed; `forward` recomputes it, so no foreground
    // probability may cross 0.5 under a perturbation. A logit step h moves a softmax
    // probability by at most h/4 = 0.0025: a margin of 0.01 keeps every threshold where it is.
    for b in 0..2 {
        for q in 0..16 {
            let l = |c: usize| logits[(b * 3 + c) * 16 + q];
            let z: f32 = (0..3).map(|c| l(c).exp()).sum();
            for c in 1..3 {
                let p = l(c).exp() / z;
                assert!(
                    (p - 0.5).abs() > 0.01,
                    "image {b} class {c} pixel {q}: p = {p}"
                );
            }
        }
    }
    let truth = boundary_distance_maps(&masks, 2, 4, 4, 3, (1.0, 1.0)).unwrap();
    let dev = Default::default();
    let y = Tensor::<A, 4>::from_data(TensorData::new(one_hot, [2, 3, 4, 4]), &dev);
    let d_g = Tensor::<A, 4>::from_data(TensorData::new(truth, [2, 3, 4, 4]), &dev);
    for alpha in [2.0, 1.0] {
        let hd = HausdorffDtLoss {
            alpha,
            ..Default::default()
        };
        check_gradient_of(&format!("hd_dt α={alpha}"), &logits, [2, 3, 4, 4], &|x| {
            hd.forward(x, y.clone(), d_g.clone())
        });
    }
    // The prediction must have a boundary somewhere for d_p to matter in this test.
    let x = Tensor::<A, 4>::from_data(TensorData::new(logits, [2, 3, 4, 4]), &dev);
    let d_p = HausdorffDtLoss::default().prediction_maps(burn::tensor::activation::softmax(x, 1));
    let d_p: Vec<f32> = d_p.into_data().to_vec().unwrap();
    assert!(d_p.iter().any(|&d| d > 0.0));
}
