//! LinkNet's decoder (Chaurasia & Culurciello, 2017), shared by CE-Net and D-LinkNet: blocks
//! that up-sample by a transposed convolution between two 1x1 convolutions, their outputs
//! added to the encoder's features of the same size, and a final x2 up-sampling head.

use burn::module::Module;
use burn::nn::conv::{Conv2d, ConvTranspose2d, ConvTranspose2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig};
use burn::tensor::backend::Backend;

use crate::blocks::conv2d;
use crate::ops::Ops;

/// 1x1 conv-BN-ReLU to a quarter width, 3x3 transposed conv (stride 2)-BN-ReLU, 1x1
/// conv-BN-ReLU. The quarter width is at least 1 (only reached at tiny widths).
#[derive(Module, Debug)]
pub struct LinkDecoder<B: Backend> {
    pub conv1: Conv2d<B>,
    pub norm1: BatchNorm<B>,
    pub deconv2: ConvTranspose2d<B>,
    pub norm2: BatchNorm<B>,
    pub conv3: Conv2d<B>,
    pub norm3: BatchNorm<B>,
}

impl<B: Backend> LinkDecoder<B> {
    pub fn new(input: usize, out: usize, device: &B::Device) -> Self {
        let mid = (input / 4).max(1);
        Self {
            conv1: conv2d(input, mid, 1, true, device),
            norm1: BatchNormConfig::new(mid).init(device),
            deconv2: ConvTranspose2dConfig::new([mid, mid], [3, 3])
                .with_stride([2, 2])
                .with_padding([1, 1])
                .with_padding_out([1, 1])
                .init(device),
            norm2: BatchNormConfig::new(mid).init(device),
            conv3: conv2d(mid, out, 1, true, device),
            norm3: BatchNormConfig::new(out).init(device),
        }
    }

    pub fn run<O: Ops<B>>(&self, o: &mut O, x: O::T) -> O::T {
        let y = o.conv_bn(x, &self.conv1, &self.norm1);
        let y = o.relu(y);
        let y = o.conv_transpose(y, &self.deconv2);
        let y = o.batch_norm(y, &self.norm2);
        let y = o.relu(y);
        let y = o.conv_bn(y, &self.conv3, &self.norm3);
        o.relu(y)
    }
}

/// Runs the decoder blocks on the centre's output `d`, deepest first, adding each block's
/// output to the encoder feature of its size (`skips`, shallowest first, popped from the end;
/// the last block has none left): `d4 = dec4(c) + e3, .., d1 = dec1(d2)`.
pub fn run_link_decoders<B: Backend, O: Ops<B>>(
    o: &mut O,
    decoders: &[LinkDecoder<B>],
    mut d: O::T,
    mut skips: Vec<O::T>,
) -> O::T {
    let n = decoders.len();
    for (i, dec) in decoders.iter().enumerate() {
        d = o.scoped(&format!("decoder{}", n - i), |o| {
            let y = dec.run(o, d);
            match skips.pop() {
                Some(skip) => o.add(y, skip),
                None => y,
            }
        });
    }
    d
}

/// The final head's layers: a 4x4 transposed convolution (stride 2) from `input` to `width`
/// channels, a 3x3 convolution, and a 3x3 convolution to the classes.
pub fn link_head<B: Backend>(
    input: usize,
    width: usize,
    classes: usize,
    device: &B::Device,
) -> (ConvTranspose2d<B>, Conv2d<B>, Conv2d<B>) {
    (
        ConvTranspose2dConfig::new([input, width], [4, 4])
            .with_stride([2, 2])
            .with_padding([1, 1])
            .init(device),
        conv2d(width, width, 3, true, device),
        conv2d(width, classes, 3, true, device),
    )
}

/// Runs the head made by [`link_head`]: deconv, ReLU, conv, ReLU, conv (logits).
pub fn run_link_head<B: Backend, O: Ops<B>>(
    o: &mut O,
    (deconv, conv2, conv3): (&ConvTranspose2d<B>, &Conv2d<B>, &Conv2d<B>),
    x: O::T,
) -> O::T {
    let y = o.conv_transpose(x, deconv);
    let y = o.relu(y);
    let y = o.conv(y, conv2);
    let y = o.relu(y);
    o.conv(y, conv3)
}
