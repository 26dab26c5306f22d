//! Spatial transformer (Jaderberg et al., "Spatial Transformer Networks", NeurIPS 2015) as a
//! wrapper around any architecture of the zoo (`--stn`).
//!
//! The localisation net is JMedSeg's (`advance/stn.py`): four 3x3 conv-BN-ReLU blocks
//! (in -> 8 -> 16 -> 32 -> 64 channels, no down-sampling between them), adaptive average
//! pooling to 2x2, FC 256 -> 32 -> ReLU -> 6, the last layer starting at zero weight and the
//! identity bias (1, 0, 0, 0, 1, 0). The input is resampled on the affine grid (bilinear,
//! zeros outside, `align_corners = false`) and the wrapped network segments the result.
//!
//! Where this departs from JMedSeg, and why:
//!
//! * **The logits are warped back** with the inverse transform (`unwarp`, on by default), so
//!   the output lies on the input's pixels and the loss compares it with the mask as drawn.
//!   JMedSeg compares the prediction in the warped frame with the unwarped mask, which
//!   penalises the transformer for any move it makes. Pixels whose inverse falls outside the
//!   warped frame get zero logits for every class (a uniform softmax; argmax: background).
//!   Side outputs (deep supervision) are warped back the same way at their own resolution:
//!   normalised coordinates do not depend on it.
//! * The transform is an auxiliary output ([`AuxKind::Transform`], `[N, 1, 2, 3]`), so an
//!   objective can keep it near the identity.
//!
//! The inverse of `theta = [A | t]` is `[A^-1 | -A^-1 t]`, written with element-wise ops on
//! the six values so that it exports (ONNX has no 2x2 inverse that tract runs).

use burn::module::{Module, Param};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};

use crate::blocks::{ConvBnRelu, widen_single_channel_input};
use crate::network::{Aux, AuxKind, SegOutput};
use crate::ops::Ops;

/// The transformer's options (stored in the architecture as `"stn": {...}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StnConfig {
    /// Channels of the localisation net's conv-BN-ReLU blocks (JMedSeg: 8, 16, 32, 64).
    pub widths: Vec<usize>,
    /// Width of the hidden fully connected layer (JMedSeg: 32).
    pub hidden: usize,
    /// Warp the logits back onto the input's pixels (JMedSeg: no).
    pub unwarp: bool,
}

impl Default for StnConfig {
    fn default() -> Self {
        Self {
            widths: vec![8, 16, 32, 64],
            hidden: 32,
            unwarp: true,
        }
    }
}

impl StnConfig {
    /// A localisation net small enough for the table-driven tests.
    pub fn tiny() -> Self {
        Self {
            widths: vec![4, 8],
            hidden: 8,
            unwarp: true,
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.widths.is_empty() || self.widths.contains(&0) || self.hidden == 0 {
            return Err(format!(
                "stn: widths {:?} and hidden {} must be non-empty and positive",
                self.widths, self.hidden
            ));
        }
        Ok(())
    }

    pub fn init<B: Backend>(&self, in_channels: usize, device: &B::Device) -> Stn<B> {
        let mut blocks = Vec::with_capacity(self.widths.len());
        let mut c = in_channels;
        for &w in &self.widths {
            blocks.push(ConvBnRelu::new(c, w, 3, device));
            c = w;
        }
        let fc1 = LinearConfig::new(c * 4, self.hidden).init(device);
        let mut fc2 = LinearConfig::new(self.hidden, 6).init(device);
        fc2.weight = Param::from_tensor(Tensor::zeros([self.hidden, 6], device));
        fc2.bias = Some(Param::from_tensor(Tensor::from_floats(
            [1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
            device,
        )));
        Stn {
            blocks,
            fc1,
            fc2,
            unwarp: self.unwarp,
        }
    }
}

/// The localisation net and how its transform is used.
#[derive(Module, Debug)]
pub struct Stn<B: Backend> {
    pub blocks: Vec<ConvBnRelu<B>>,
    pub fc1: Linear<B>,
    pub fc2: Linear<B>,
    pub unwarp: bool,
}

impl<B: Backend> Stn<B> {
    /// The localisation net reading `channels` stacked slices, computing what it did on the
    /// centre one (see [`widen_single_channel_input`]).
    pub fn widen_input(mut self, channels: usize) -> Result<Self, String> {
        let first = self.blocks.remove(0);
        let conv = widen_single_channel_input(first.conv, channels)?;
        self.blocks.insert(
            0,
            ConvBnRelu {
                conv,
                norm: first.norm,
            },
        );
        Ok(self)
    }

    /// The affine matrix `[N, 1, 2, 3]` for input `x`.
    pub fn theta<O: Ops<B>>(&self, o: &mut O, x: O::T) -> O::T {
        let mut h = x;
        for (i, block) in self.blocks.iter().enumerate() {
            h = o.scoped(&format!("block{i}"), |o| block.run(o, h));
        }
        let pooled = o.adaptive_avg_pool(h, [2, 2]);
        let [n, c, _, _] = o.shape(&pooled);
        let flat = o.reshape(pooled, [n, 1, 1, c * 4]);
        let hidden = o.linear(flat, &self.fc1);
        let hidden = o.relu(hidden);
        let six = o.linear(hidden, &self.fc2);
        o.reshape(six, [n, 1, 2, 3])
    }

    /// Runs `inner` on `x` resampled by the transform, then (with `unwarp`) warps its logits
    /// and side outputs back; the transform is added as an auxiliary output when training.
    pub fn wrap<O: Ops<B>>(
        &self,
        o: &mut O,
        x: O::T,
        inner: impl FnOnce(&mut O, O::T) -> SegOutput<O::T>,
    ) -> SegOutput<O::T> {
        let [_, _, h, w] = o.shape(&x);
        let theta = o.scoped("stn", |o| self.theta(o, x.clone()));
        let warped = o.scoped("stn_warp", |o| {
            o.affine_grid_sample(x, theta.clone(), [h, w], false)
        });
        let mut out = inner(o, warped);
        if self.unwarp {
            let back = o.scoped("stn_inverse", |o| inverse_affine(o, theta.clone()));
            let unwarp = |o: &mut O, v: O::T| {
                let [_, _, vh, vw] = o.shape(&v);
                o.affine_grid_sample(v, back.clone(), [vh, vw], false)
            };
            out.logits = o.scoped("stn_unwarp", |o| unwarp(o, out.logits));
            for aux in out.aux.iter_mut().filter(|a| a.kind == AuxKind::SideLogits) {
                aux.value = unwarp(o, aux.value.clone());
            }
        }
        if o.training() {
            out.aux.push(Aux {
                name: "stn_theta".into(),
                kind: AuxKind::Transform,
                value: theta,
            });
        }
        out
    }
}

/// `[A | t]` -> `[A^-1 | -A^-1 t]` for `theta` `[N, 1, 2, 3]`, element by element.
pub fn inverse_affine<B: Backend, O: Ops<B>>(o: &mut O, theta: O::T) -> O::T {
    let mut at = |r: usize, c: usize| {
        let row = o.slice(theta.clone(), 2, r, r + 1);
        o.slice(row, 3, c, c + 1)
    };
    let (a, b, tx) = (at(0, 0), at(0, 1), at(0, 2));
    let (c, d, ty) = (at(1, 0), at(1, 1), at(1, 2));
    let ad = o.mul(a.clone(), d.clone());
    let bc = o.mul(b.clone(), c.clone());
    let det = o.sub(ad, bc);
    let inv_det = {
        let one = o.constant(crate::graph::Weights::new(vec![1, 1, 1, 1], vec![1.0]));
        o.div(one, det)
    };
    // A^-1 = [[d, -b], [-c, a]] / det.
    let ia = o.mul(d.clone(), inv_det.clone());
    let ib = {
        let v = o.mul(b.clone(), inv_det.clone());
        o.mul_scalar(v, -1.0)
    };
    let ic = {
        let v = o.mul(c.clone(), inv_det.clone());
        o.mul_scalar(v, -1.0)
    };
    let id = o.mul(a, inv_det);
    // -A^-1 t.
    let neg_dot = |o: &mut O, p: O::T, q: O::T| {
        let u = o.mul(p, tx.clone());
        let v = o.mul(q, ty.clone());
        let s = o.add(u, v);
        o.mul_scalar(s, -1.0)
    };
    let itx = neg_dot(o, ia.clone(), ib.clone());
    let ity = neg_dot(o, ic.clone(), id.clone());
    let row0 = o.concat(vec![ia, ib, itx], 3);
    let row1 = o.concat(vec![ic, id, ity], 3);
    o.concat(vec![row0, row1], 2)
}

#[cfg(test)]
mod tests {
    use burn::backend::Flex;
    use burn::tensor::{Distribution, Tolerance};

    use super::*;
    use crate::burn_ops::BurnOps;
    use crate::network::Network;
    use crate::registry::Architecture;

    type B = Flex;

    fn set_theta(stn: &mut Stn<B>, theta: [f32; 6]) {
        stn.fc2.bias = Some(Param::from_tensor(Tensor::from_floats(
            theta,
            &Default::default(),
        )));
    }

    #[test]
    fn at_its_identity_start_the_wrapped_model_computes_the_inner_one() {
        let dev = Default::default();
        let arch = Architecture::tiny("unet", 1, 2)
            .unwrap()
            .with_stn(StnConfig::tiny());
        let model = arch.init::<B>(&dev).unwrap();
        let x = Tensor::<B, 4>::random([2, 1, 32, 32], Distribution::Default, &dev);
        let wrapped = model.forward(x.clone());
        let mut o = BurnOps::new(&dev);
        let inner = model.net.run(&mut o, x).logits;
        wrapped
            .into_data()
            .assert_approx_eq::<f32>(&inner.into_data(), Tolerance::absolute(1e-5));
    }

    /// With a per-pixel inner network, warping the input and warping the logits back must give
    /// the per-pixel result on the input's own pixels: a quarter turn maps pixel centres onto
    /// pixel centres, so the two bilinear resamplings are exact.
    #[test]
    fn a_rotated_input_gives_logits_that_line_up_with_it() {
        let dev = Default::default();
        let mut stn = StnConfig::tiny().init::<B>(1, &dev);
        set_theta(&mut stn, [0.0, -1.0, 0.0, 1.0, 0.0, 0.0]);
        let x = Tensor::<B, 4>::random([1, 1, 12, 12], Distribution::Default, &dev);
        let per_pixel = |o: &mut BurnOps<B>, v: Tensor<B, 4>| {
            let neg = o.mul_scalar(v.clone(), -1.0);
            SegOutput::logits(o.concat(vec![neg, v], 1))
        };
        let mut o = BurnOps::new(&dev);
        let theta = stn.theta(&mut o, x.clone());
        let warped = o.affine_grid_sample(x.clone(), theta, [12, 12], false);
        let moved = (warped - x.clone()).abs().max().into_scalar();
        assert!(moved > 0.1, "the quarter turn should move the image");
        let out = stn.wrap(&mut o, x.clone(), per_pixel).logits;
        let expected = Tensor::cat(vec![x.clone().neg(), x], 1);
        out.into_data()
            .assert_approx_eq::<f32>(&expected.into_data(), Tolerance::absolute(1e-5));
    }

    #[test]
    fn the_inverse_of_a_transform_undoes_it() {
        let dev = Default::default();
        let theta = Tensor::<B, 1>::from_floats([0.9, -0.3, 0.1, 0.2, 1.1, -0.2], &dev)
            .reshape([1, 1, 2, 3]);
        let mut o = BurnOps::new(&dev);
        let inv = inverse_affine(&mut o, theta.clone());
        // [A | t] [A^-1 | -A^-1 t] (as 3x3 with a last row 0 0 1) is the identity.
        let as3 = |t: Tensor<B, 4>| {
            let m = t.reshape([2, 3]);
            Tensor::cat(vec![m, Tensor::from_floats([[0.0, 0.0, 1.0]], &dev)], 0)
        };
        let product = as3(theta).matmul(as3(inv));
        let eye =
            Tensor::<B, 2>::from_floats([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], &dev);
        product
            .into_data()
            .assert_approx_eq::<f32>(&eye.into_data(), Tolerance::absolute(1e-5));
    }
}
