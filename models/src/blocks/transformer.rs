//! Transformer layers on tokens `[N, 1, L, D]` (ViT, SETR): multi-head self-attention and
//! the pre-norm (ViT) and post-norm (BERT, JMedSeg's SETR) layers around it.

use burn::module::{Module, Param};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

use crate::blocks::LayerNorm;
use crate::ops::{Ops, ResizeMode};

/// A learned position embedding kept as a `[1, D, G, G]` grid, as tokens `[1, 1, gh*gw, D]`
/// for a `gh` x `gw` token grid: resized bilinearly where the grid differs (training crops,
/// whole-image inference), so a position keeps meaning the same place in the image.
pub fn position_tokens<B: Backend, O: Ops<B>>(
    o: &mut O,
    position: &Param<Tensor<B, 4>>,
    gh: usize,
    gw: usize,
) -> O::T {
    let pos = o.param(position);
    let [_, d, g, _] = o.shape(&pos);
    let pos = if (gh, gw) == (g, g) {
        pos
    } else {
        let mode = ResizeMode::Bilinear {
            align_corners: false,
        };
        o.resize(pos, [gh, gw], mode)
    };
    let pos = o.reshape(pos, [1, 1, d, gh * gw]);
    o.transpose(pos, [0, 1, 3, 2])
}

/// Multi-head self-attention on tokens `[N, 1, L, D]`.
#[derive(Module, Debug)]
pub struct SelfAttention<B: Backend> {
    pub qkv: Linear<B>,
    pub proj: Linear<B>,
    pub heads: usize,
}

impl<B: Backend> SelfAttention<B> {
    /// Query, key and value in one `d -> 3d` linear layer, `heads` heads, a `d -> d` output.
    pub fn new(d: usize, heads: usize, device: &B::Device) -> Self {
        Self {
            qkv: LinearConfig::new(d, 3 * d).init(device),
            proj: LinearConfig::new(d, d).init(device),
            heads,
        }
    }

    pub fn run<O: Ops<B>>(&self, o: &mut O, x: O::T) -> O::T {
        let [n, _, l, d] = o.shape(&x);
        let h = self.heads;
        let hd = d / h;
        let qkv = o.linear(x, &self.qkv);
        // [N, 1, L, 3D] -> [N, L, 3h, hd] -> [N, 3h, L, hd]; q, k, v are thirds of axis 1.
        let qkv = o.reshape(qkv, [n, l, 3 * h, hd]);
        let qkv = o.transpose(qkv, [0, 2, 1, 3]);
        let q = o.slice(qkv.clone(), 1, 0, h);
        let k = o.slice(qkv.clone(), 1, h, 2 * h);
        let v = o.slice(qkv, 1, 2 * h, 3 * h);
        let kt = o.transpose(k, [0, 1, 3, 2]);
        let scores = o.matmul(q, kt);
        let scores = o.mul_scalar(scores, 1.0 / (hd as f32).sqrt());
        let attn = o.softmax(scores, 3);
        let y = o.matmul(attn, v);
        let y = o.transpose(y, [0, 2, 1, 3]);
        let y = o.reshape(y, [n, 1, l, d]);
        o.linear(y, &self.proj)
    }
}

/// Pre-norm transformer layer (ViT): `x + attn(LN(x))`, then `x + MLP(LN(x))`.
#[derive(Module, Debug)]
pub struct TransformerLayer<B: Backend> {
    pub norm1: LayerNorm<B>,
    pub attn: SelfAttention<B>,
    pub norm2: LayerNorm<B>,
    pub fc1: Linear<B>,
    pub fc2: Linear<B>,
}

impl<B: Backend> TransformerLayer<B> {
    /// Width `d`, `heads` heads, an MLP of hidden width `mlp`.
    pub fn new(d: usize, heads: usize, mlp: usize, device: &B::Device) -> Self {
        Self {
            norm1: LayerNorm::new(d, device),
            attn: SelfAttention::new(d, heads, device),
            norm2: LayerNorm::new(d, device),
            fc1: LinearConfig::new(d, mlp).init(device),
            fc2: LinearConfig::new(mlp, d).init(device),
        }
    }

    pub fn run<O: Ops<B>>(&self, o: &mut O, x: O::T) -> O::T {
        let a = o.layer_norm(x.clone(), &self.norm1);
        let a = o.scoped("attn", |o| self.attn.run(o, a));
        let x = o.add(x, a);
        let m = o.layer_norm(x.clone(), &self.norm2);
        let m = o.linear(m, &self.fc1);
        let m = o.gelu(m);
        let m = o.linear(m, &self.fc2);
        o.add(x, m)
    }
}

/// Post-norm transformer layer (BERT): `a = LN(x + attn(x))`, then `LN(a + MLP(a))`.
#[derive(Module, Debug)]
pub struct PostNormLayer<B: Backend> {
    pub attn: SelfAttention<B>,
    pub norm1: LayerNorm<B>,
    pub fc1: Linear<B>,
    pub fc2: Linear<B>,
    pub norm2: LayerNorm<B>,
}

impl<B: Backend> PostNormLayer<B> {
    /// Width `d`, `heads` heads, an MLP of hidden width `mlp`, LayerNorms of `epsilon`.
    pub fn new(d: usize, heads: usize, mlp: usize, epsilon: f64, device: &B::Device) -> Self {
        let norm = || LayerNorm::new(d, device).with_epsilon(epsilon);
        Self {
            attn: SelfAttention::new(d, heads, device),
            norm1: norm(),
            fc1: LinearConfig::new(d, mlp).init(device),
            fc2: LinearConfig::new(mlp, d).init(device),
            norm2: norm(),
        }
    }

    pub fn run<O: Ops<B>>(&self, o: &mut O, x: O::T) -> O::T {
        let a = o.scoped("attn", |o| self.attn.run(o, x.clone()));
        let a = o.add(x, a);
        let a = o.layer_norm(a, &self.norm1);
        let m = o.linear(a.clone(), &self.fc1);
        let m = o.gelu(m);
        let m = o.linear(m, &self.fc2);
        let m = o.add(a, m);
        o.layer_norm(m, &self.norm2)
    }
}
