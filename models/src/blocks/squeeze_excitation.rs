//! Squeeze-and-excitation gates: channel SE (Hu et al., CVPR 2018; "cSE"), spatial SE and
//! their concurrent sum scSE (Roy et al., MICCAI 2018 / IEEE TMI 2019). Shared by scseunet
//! and by any network that recalibrates its features with SE.
//!
//! All gates are sigmoids, so each element is scaled by a value in (0, 1) independently, as
//! in both papers. (JMedSeg's scSE UNet uses a softmax instead, over the channel gates and
//! over the single-channel spatial map: gates that sum to 1 over an axis are on average
//! 1/C or 1/(H*W), far below the paper's, and shrink the features they multiply.)

use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::tensor::backend::Backend;

use crate::blocks::conv2d;
use crate::ops::Ops;

/// Channel squeeze-and-excitation: global average pooling, a bottleneck of two fully
/// connected layers (1x1 convolutions on the pooled `[N, C, 1, 1]`) with ReLU between, a
/// sigmoid per channel multiplied onto the input.
#[derive(Module, Debug)]
pub struct ChannelSqueezeExcitation<B: Backend> {
    pub reduce: Conv2d<B>,
    pub expand: Conv2d<B>,
}

impl<B: Backend> ChannelSqueezeExcitation<B> {
    /// `channels / reduction` hidden units (at least 1).
    pub fn new(channels: usize, reduction: usize, device: &B::Device) -> Self {
        let hidden = (channels / reduction.max(1)).max(1);
        Self {
            reduce: conv2d(channels, hidden, 1, true, device),
            expand: conv2d(hidden, channels, 1, true, device),
        }
    }

    /// The per-channel gates `[N, C, 1, 1]` in (0, 1).
    pub fn gates<O: Ops<B>>(&self, o: &mut O, x: O::T) -> O::T {
        let s = o.adaptive_avg_pool(x, [1, 1]);
        let s = o.conv(s, &self.reduce);
        let s = o.relu(s);
        let s = o.conv(s, &self.expand);
        o.sigmoid(s)
    }

    pub fn run<O: Ops<B>>(&self, o: &mut O, x: O::T) -> O::T {
        let g = self.gates(o, x.clone());
        o.mul(x, g)
    }
}

/// Spatial squeeze-and-excitation: a 1x1 convolution to one channel, a sigmoid per pixel
/// multiplied onto every channel.
#[derive(Module, Debug)]
pub struct SpatialSqueezeExcitation<B: Backend> {
    pub squeeze: Conv2d<B>,
}

impl<B: Backend> SpatialSqueezeExcitation<B> {
    pub fn new(channels: usize, device: &B::Device) -> Self {
        Self {
            squeeze: conv2d(channels, 1, 1, true, device),
        }
    }

    pub fn run<O: Ops<B>>(&self, o: &mut O, x: O::T) -> O::T {
        let q = o.conv(x.clone(), &self.squeeze);
        let g = o.sigmoid(q);
        o.mul(x, g)
    }
}

/// Concurrent spatial and channel SE (scSE): the sum of the two recalibrated copies, the
/// aggregation of the MICCAI paper (and of JMedSeg).
#[derive(Module, Debug)]
pub struct ConcurrentSqueezeExcitation<B: Backend> {
    pub channel: ChannelSqueezeExcitation<B>,
    pub spatial: SpatialSqueezeExcitation<B>,
}

impl<B: Backend> ConcurrentSqueezeExcitation<B> {
    pub fn new(channels: usize, reduction: usize, device: &B::Device) -> Self {
        Self {
            channel: ChannelSqueezeExcitation::new(channels, reduction, device),
            spatial: SpatialSqueezeExcitation::new(channels, device),
        }
    }

    pub fn run<O: Ops<B>>(&self, o: &mut O, x: O::T) -> O::T {
        let c = self.channel.run(o, x.clone());
        let s = self.spatial.run(o, x);
        o.add(c, s)
    }
}
