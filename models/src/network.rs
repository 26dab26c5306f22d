//! What an architecture is to the rest of medseg: a Burn module whose computation is one
//! [`Network::run`] over [`Ops`], and a configuration ([`ArchConfig`]) that builds it.

use burn::module::Module;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::burn_ops::BurnOps;
use crate::graph::Graph;
use crate::graph_ops::GraphOps;
use crate::ops::Ops;

/// What auxiliary outputs are, so objectives know what to do with them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuxKind {
    /// Class logits at some resolution (deep supervision, side outputs): trained against the
    /// target resized to their size.
    SideLogits,
    /// A spatial transformer's affine matrix `[N, 1, 2, 3]`.
    Transform,
    /// A per-image feature vector `[N, 1, 1, D]` (contrastive pre-training).
    Embedding,
}

/// An auxiliary output of a training forward pass.
#[derive(Debug, Clone)]
pub struct Aux<T> {
    pub name: String,
    pub kind: AuxKind,
    pub value: T,
}

/// A network's outputs: the logits `[N, classes, H, W]` (the only thing exported) and any
/// auxiliary outputs, produced only when [`Ops::training`] is true.
#[derive(Debug, Clone)]
pub struct SegOutput<T> {
    pub logits: T,
    pub aux: Vec<Aux<T>>,
}

impl<T> SegOutput<T> {
    pub fn logits(logits: T) -> Self {
        Self {
            logits,
            aux: Vec::new(),
        }
    }
}

/// An architecture's computation, written once.
pub trait Network<B: Backend> {
    fn run<O: Ops<B>>(&self, o: &mut O, x: O::T) -> SegOutput<O::T>;

    /// The network reading `channels` stacked neighbouring slices instead of one (the slice
    /// itself in the centre channel), starting out computing exactly what it did.
    fn widen_input(self, channels: usize) -> Result<Self, String>
    where
        Self: Sized,
    {
        Err(format!(
            "this architecture cannot be widened to {channels} input channels"
        ))
    }
}

/// The Burn forward pass of any network (autodiff when `B` has it).
pub fn forward<B: Backend, N: Network<B>>(net: &N, x: Tensor<B, 4>) -> SegOutput<Tensor<B, 4>> {
    let mut o = BurnOps::for_input(&x);
    net.run(&mut o, x)
}

/// The name every architecture taps its encoder output under (UNet: the bottleneck).
pub const ENCODER_TAP: &str = "encoder";

/// Values a network offered through [`Ops::tap`]: name and tensor `[N, C, h, w]`, in the
/// order it offered them.
pub type Taps<B> = Vec<(String, Tensor<B, 4>)>;

/// The Burn forward pass and the network's [`Taps`].
pub fn forward_with_taps<B: Backend, N: Network<B>>(
    net: &N,
    x: Tensor<B, 4>,
) -> (SegOutput<Tensor<B, 4>>, Taps<B>) {
    let mut o = BurnOps::for_input(&x);
    let out = net.run(&mut o, x);
    (out, o.into_taps())
}

/// The inference graph of any network for one input shape (auxiliary outputs pruned).
pub fn export_graph<B: Backend, N: Network<B>>(net: &N, input_shape: [usize; 4]) -> Graph {
    let mut o = GraphOps::new(input_shape);
    let x = o.input();
    let out = net.run(&mut o, x);
    o.finish(out.logits)
}

/// The data-given [`ArchConfig`] methods of a configuration whose input channels and classes
/// are its fields `in_channels` and `num_classes` (every member's): write `io_fields!();`
/// inside its `impl ArchConfig` instead of the same three accessors in every file, or
/// `io_fields!(0);` where they are fields of the wrapped spec of a newtype (`u2net`/`u2netp`,
/// `hardnet`/`hardnet-alt`).
macro_rules! io_fields {
    () => {
        fn in_channels(&self) -> usize {
            self.in_channels
        }

        fn num_classes(&self) -> usize {
            self.num_classes
        }

        fn set_io(&mut self, in_channels: usize, num_classes: usize) {
            self.in_channels = in_channels;
            self.num_classes = num_classes;
        }
    };
    ($spec:tt) => {
        fn in_channels(&self) -> usize {
            self.$spec.in_channels
        }

        fn num_classes(&self) -> usize {
            self.$spec.num_classes
        }

        fn set_io(&mut self, in_channels: usize, num_classes: usize) {
            self.$spec.in_channels = in_channels;
            self.$spec.num_classes = num_classes;
        }
    };
}
pub(crate) use io_fields;

/// An architecture's configuration: the paper's defaults, set by `key=value` options.
pub trait ArchConfig:
    Serialize + DeserializeOwned + Clone + core::fmt::Debug + PartialEq + Default
{
    type Model<B: Backend>: Module<B> + Network<B>;
    /// Registry name (lower case), family, paper.
    const NAME: &'static str;
    const FAMILY: &'static str;
    const PAPER: &'static str;

    fn in_channels(&self) -> usize;
    fn num_classes(&self) -> usize;
    fn set_io(&mut self, in_channels: usize, num_classes: usize);
    /// Input sides must be multiples of this.
    fn size_multiple(&self) -> usize;
    /// Checks the options (beyond what their types say); the reason names the option.
    fn validate(&self) -> Result<(), String>;
    /// Scales every channel width by `scale` (see [`scaled_width`]), keeping the structure.
    fn scale_widths(&mut self, scale: f64);
    fn init<B: Backend>(&self, device: &B::Device) -> Self::Model<B>;
    /// A configuration small enough to train a few steps in a test (every architecture's
    /// structure, tiny widths): what the table-driven tests and smoke runs build.
    fn tiny() -> Self;
}

/// A channel width scaled by `scale`, rounded, at least `min` (and at least 1).
pub fn scaled_width(width: usize, scale: f64, min: usize) -> usize {
    ((width as f64 * scale).round() as usize).max(min).max(1)
}
