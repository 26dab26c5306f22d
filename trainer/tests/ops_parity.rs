//! Every operator of the export graph, through Burn and through tract: one description (a
//! small function over `Ops`), run by `BurnOps` on the flex backend and recorded by
//! `GraphOps`, written as ONNX and run in tract, on seeded random inputs with odd sizes.
//! Where the writer expresses an op by others (GroupNorm, LayerNorm, GELU, uneven adaptive
//! pooling, max-unpooling, the affine grid), this is the proof of the equivalence. Every case
//! also runs as `export --target cuda` rewrites it (pooling, transposed convolutions and
//! resizes in operators tract-cuda runs on the GPU): the `*_cuda_form` cases exercise each
//! rewrite and check what stays on the CPU.

use burn::backend::Flex;
use burn::module::Param;
use burn::nn::conv::{Conv2dConfig, ConvTranspose2dConfig};
use burn::nn::{
    BatchNormConfig, GroupNormConfig, InstanceNormConfig, LinearConfig, PReluConfig,
    PaddingConfig2d,
};
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Tensor, TensorData};
use medseg_models::blocks::LayerNorm;
use medseg_models::burn_ops::BurnOps;
use medseg_models::graph::Weights;
use medseg_models::graph_ops::GraphOps;
use medseg_models::ops::{Ops, Pool, ResizeMode};
use medseg_trainer::export::cuda_form;
use medseg_trainer::export::onnx::{WeightFormat, graph_to_onnx};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tract_onnx::prelude::*;

type B = Flex;

/// One operator test: `run` is written once and executed by both implementations.
trait Case {
    fn run<O: Ops<B>>(&self, o: &mut O, x: O::T) -> O::T;
}

/// The backend's seed is global and tests run in parallel: one at a time, or another test's
/// draws fall between a seed and the modules it should make.
static SEEDED: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs `case` in Burn, in tract, and in tract as `export --target cuda` rewrites it; returns
/// the operator kinds that rewrite leaves for tract-cuda's CPU fallback.
fn check<C: Case>(name: &str, shape: [usize; 4], case: &C) -> Vec<&'static str> {
    let _one_at_a_time = SEEDED.lock().unwrap_or_else(|e| e.into_inner());
    let dev = Default::default();
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let n: usize = shape.iter().product();
    let values: Vec<f32> = (0..n).map(|_| rng.random_range(-2.0f32..2.0)).collect();

    // Both runs build their modules from the same seed, so they hold the same weights.
    B::seed(&dev, 7);
    let x = Tensor::<B, 4>::from_data(TensorData::new(values.clone(), shape), &dev);
    let burn = case.run(&mut BurnOps::<B>::new(&dev), x);
    let burn_shape = burn.dims();
    let burn: Vec<f32> = burn.into_data().to_vec().unwrap();

    B::seed(&dev, 7);
    let mut g = GraphOps::new(shape);
    let input = g.input();
    let out = Ops::<B>::scoped(&mut g, "case", |g| case.run::<GraphOps>(g, input));
    let graph = g.finish(out);
    assert_eq!(graph.shape(out), burn_shape, "{name}: graph shape");
    let tract = run_in_tract(name, &graph, shape, &values);
    assert_close(name, &burn, &tract, &burn_shape);
    // The same graph in the operators tract-cuda runs on the GPU (`export --target cuda`),
    // still on the CPU here: it must compute the same thing.
    let form = cuda_form::rewrite(&graph);
    let name = format!("{name} (cuda form)");
    let rewritten = run_in_tract(&name, &form.graph, shape, &values);
    assert_close(&name, &burn, &rewritten, &burn_shape);
    let mut left: Vec<&str> = form.left_on_cpu.iter().map(|l| l.kind).collect();
    left.sort_unstable();
    left.dedup();
    left
}

/// The graph's output in tract (CPU), with its shape.
fn run_in_tract(
    name: &str,
    graph: &medseg_models::Graph,
    shape: [usize; 4],
    values: &[f32],
) -> (Vec<usize>, Vec<f32>) {
    let proto = graph_to_onnx(graph, WeightFormat::F32);
    let tract_out = tract_onnx::onnx()
        .model_for_proto_model(&proto)
        .and_then(|m| m.into_optimized())
        .and_then(|m| m.into_runnable())
        .and_then(|plan| {
            let t = tract_ndarray::Array4::from_shape_vec(shape, values.to_vec())
                .expect("input shape")
                .into_tensor();
            plan.run(tvec!(t.into()))
        })
        .unwrap_or_else(|e| panic!("{name}: tract: {e:?}"));
    let view = tract_out[0].to_plain_array_view::<f32>().unwrap();
    (view.shape().to_vec(), view.iter().copied().collect())
}

fn assert_close(name: &str, burn: &[f32], tract: &(Vec<usize>, Vec<f32>), burn_shape: &[usize]) {
    let (shape, tract) = tract;
    assert_eq!(&shape[..], burn_shape, "{name}: tract shape");
    let range = burn
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    let scale = (range.1 - range.0).max(1.0);
    let worst = burn
        .iter()
        .zip(tract)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(
        worst <= 1e-4 * scale,
        "{name}: Burn and tract differ by {worst} (range {range:?})"
    );
}

/// A test per operator: `op!(name, shape, |o, x| body)`.
macro_rules! op {
    ($name:ident, $shape:expr, |$o:ident, $x:ident| $body:expr) => {
        #[test]
        fn $name() {
            struct C;
            impl Case for C {
                fn run<O: Ops<B>>(&self, $o: &mut O, $x: O::T) -> O::T {
                    $body
                }
            }
            check(stringify!($name), $shape, &C);
        }
    };
    // The same, asserting which operator kinds the cuda form leaves on the CPU.
    ($name:ident, $shape:expr, cpu: $cpu:expr, |$o:ident, $x:ident| $body:expr) => {
        #[test]
        fn $name() {
            struct C;
            impl Case for C {
                fn run<O: Ops<B>>(&self, $o: &mut O, $x: O::T) -> O::T {
                    $body
                }
            }
            let left = check(stringify!($name), $shape, &C);
            let expected: &[&str] = &$cpu;
            assert_eq!(left, expected, "operators left on the CPU by the cuda form");
        }
    };
}

fn dev() -> burn::tensor::Device<B> {
    Default::default()
}

op!(
    conv_groups_dilation_asymmetric_padding,
    [2, 4, 9, 7],
    |o, x| {
        let conv = Conv2dConfig::new([4, 6], [3, 2])
            .with_groups(2)
            .with_dilation([2, 1])
            .with_stride([2, 1])
            .with_padding(PaddingConfig2d::Explicit(1, 0, 2, 1))
            .init::<B>(&dev());
        o.conv(x, &conv)
    }
);

op!(
    conv_transpose_groups_output_padding,
    [1, 4, 5, 6],
    |o, x| {
        let conv = ConvTranspose2dConfig::new([4, 6], [3, 3])
            .with_groups(2)
            .with_stride([2, 2])
            .with_padding([1, 1])
            .with_padding_out([1, 0])
            .init::<B>(&dev());
        o.conv_transpose(x, &conv)
    }
);

op!(conv_with_batch_norm_folded, [2, 3, 7, 5], |o, x| {
    let conv = Conv2dConfig::new([3, 4], [3, 3]).init::<B>(&dev());
    let mut bn = BatchNormConfig::new(4).init::<B>(&dev());
    bn.gamma = Param::from_tensor(Tensor::random([4], Distribution::Uniform(0.5, 2.0), &dev()));
    o.conv_bn(x, &conv, &bn)
});

op!(batch_norm_alone, [2, 3, 5, 4], |o, x| {
    let mut bn = BatchNormConfig::new(3).init::<B>(&dev());
    bn.beta = Param::from_tensor(Tensor::random([3], Distribution::Default, &dev()));
    o.batch_norm(x, &bn)
});

op!(group_norm, [2, 6, 5, 3], |o, x| {
    let gn = GroupNormConfig::new(3, 6).init::<B>(&dev());
    o.group_norm(x, &gn)
});

op!(instance_norm, [2, 3, 5, 7], |o, x| {
    let n = InstanceNormConfig::new(3)
        .with_affine(true)
        .init::<B>(&dev());
    o.instance_norm(x, &n)
});

// A whole 256x256 feature map that barely varies around a large mean (a channel an R2U-Net
// unit feeds to its InstanceNorm): the normalisation divides rounding error by a tiny
// standard deviation, so a less accurate mean on either side shows here.
op!(
    instance_norm_of_a_nearly_constant_large_map,
    [1, 2, 256, 256],
    |o, x| {
        let mut conv = Conv2dConfig::new([2, 2], [1, 1]).init::<B>(&dev());
        conv.weight = Param::from_tensor(Tensor::from_data(
            TensorData::new(vec![0.005f32, 0.0, 0.0, 0.001], [2, 2, 1, 1]),
            &dev(),
        ));
        conv.bias = Some(Param::from_tensor(Tensor::from_data(
            TensorData::new(vec![10.0f32, -3.0], [2]),
            &dev(),
        )));
        let y = o.conv(x, &conv);
        let n = InstanceNormConfig::new(2).init::<B>(&dev());
        o.instance_norm(y, &n)
    }
);

op!(layer_norm_last_axis, [2, 1, 5, 6], |o, x| {
    let mut ln = LayerNorm::<B>::new(6, &dev());
    ln.gamma = Param::from_tensor(Tensor::random([6], Distribution::Default, &dev()));
    ln.beta = Param::from_tensor(Tensor::random([6], Distribution::Default, &dev()));
    o.layer_norm(x, &ln)
});

op!(activations, [1, 3, 5, 4], |o, x| {
    let a = o.relu(x.clone());
    let b = o.leaky_relu(x.clone(), 0.1);
    // ReLU6 with both bounds reached: the input times 8 spans beyond [0, 6].
    let wide = o.mul_scalar(x.clone(), 8.0);
    let b = {
        let r6 = o.clip(wide, 0.0, 6.0);
        o.concat(vec![b, r6], 1)
    };
    let c = o.gelu(x.clone());
    let d = o.sigmoid(x.clone());
    let e = o.tanh(x.clone());
    let f = o.softmax(x.clone(), 1);
    let g = o.softmax(x, 3);
    o.concat(vec![a, b, c, d, e, f, g], 1)
});

op!(prelu_per_channel, [1, 3, 4, 5], |o, x| {
    let mut p = PReluConfig::new().with_num_parameters(3).init::<B>(&dev());
    p.alpha = Param::from_tensor(Tensor::random([3], Distribution::Default, &dev()));
    o.prelu(x, &p)
});

op!(max_pool_padding_ceil, [1, 2, 7, 9], |o, x| {
    let p = Pool {
        kernel: [3, 2],
        stride: [2, 2],
        padding: [1, 1],
        ceil_mode: true,
    };
    o.max_pool(x, p)
});

op!(avg_pool_padding_ceil_both_counts, [1, 2, 7, 9], |o, x| {
    let p = Pool {
        kernel: [3, 3],
        stride: [2, 2],
        padding: [1, 1],
        ceil_mode: true,
    };
    let a = o.avg_pool(x.clone(), p, true);
    let b = o.avg_pool(x, p, false);
    o.concat(vec![a, b], 1)
});

op!(adaptive_avg_pool_pspnet_bins, [1, 2, 13, 11], |o, x| {
    let [n, c, ..] = o.shape(&x);
    let mut parts = Vec::new();
    for bins in [1, 2, 3, 6] {
        let p = o.adaptive_avg_pool(x.clone(), [bins, bins]);
        let p = o.resize(p, [12, 12], ResizeMode::Nearest);
        parts.push(p);
    }
    let even = o.adaptive_avg_pool(x, [13, 1]);
    let even = o.reshape(even, [n, c, 1, 13]);
    let even = o.resize(even, [12, 12], ResizeMode::Nearest);
    parts.push(even);
    o.concat(parts, 1)
});

op!(resize_any_factor_and_target_size, [1, 2, 5, 7], |o, x| {
    let bilinear = ResizeMode::Bilinear {
        align_corners: false,
    };
    let corners = ResizeMode::Bilinear {
        align_corners: true,
    };
    let a = o.resize(x.clone(), [10, 14], bilinear);
    let b = o.resize(x.clone(), [11, 9], bilinear);
    let c = o.resize(x.clone(), [11, 9], corners);
    let d = o.resize(x.clone(), [10, 21], ResizeMode::Nearest);
    let d = o.resize(d, [11, 9], ResizeMode::Nearest);
    let e = o.resize(x, [3, 4], bilinear);
    let e = o.resize(e, [11, 9], ResizeMode::Nearest);
    let a = o.resize(a, [11, 9], bilinear);
    o.concat(vec![a, b, c, d, e], 1)
});

op!(
    broadcasting_arithmetic_and_constants,
    [2, 3, 4, 5],
    |o, x| {
        let per_channel = o.constant(Weights::new(vec![1, 3, 1, 1], vec![0.5, -1.0, 2.0]));
        let per_column = o.constant(Weights::new(
            vec![1, 1, 1, 5],
            vec![1.0, 2.0, 3.0, 4.0, 5.0],
        ));
        let a = o.add(x.clone(), per_channel.clone());
        let b = o.sub(a, per_column.clone());
        let c = o.mul(b, per_channel);
        let d = o.div(c, per_column);
        o.mul_scalar(d, 0.25)
    }
);

op!(matmul_reshape_transpose_slice, [2, 3, 4, 6], |o, x| {
    let t = o.transpose(x.clone(), [0, 1, 3, 2]);
    let m = o.matmul(x, t);
    let r = o.reshape(m, [2, 1, 12, 4]);
    o.slice(r, 2, 3, 10)
});

op!(linear_on_tokens, [2, 1, 7, 6], |o, x| {
    let lin = LinearConfig::new(6, 5).init::<B>(&dev());
    o.linear(x, &lin)
});

op!(pad_and_reductions, [1, 3, 5, 4], |o, x| {
    let p = o.pad(x, [1, 2, 0, 3], -0.5);
    let mean = o.reduce_mean(p.clone(), 1);
    let max = o.reduce_max(p.clone(), 1);
    let rows = o.reduce_mean(p, 3);
    let rows = o.resize(rows, [6, 9], ResizeMode::Nearest);
    o.concat(vec![mean, max, rows], 1)
});

op!(learned_tensor_as_value, [2, 1, 3, 4], |o, x| {
    let p = Param::from_tensor(Tensor::<B, 4>::random(
        [1, 1, 3, 4],
        Distribution::Default,
        &dev(),
    ));
    let v = o.param(&p);
    o.add(x, v)
});

op!(max_pool_indices_and_unpooling, [1, 3, 9, 7], |o, x| {
    // ReLU first: windows of zeros are where tie-breaking (first maximum) matters.
    let r = o.relu(x);
    let (pooled, idx) = o.max_pool_with_indices(r, [2, 2]);
    let y = o.mul_scalar(pooled, -3.0);
    o.max_unpool(y, &idx, [2, 2], [9, 7])
});

op!(affine_grid_sample_both_conventions, [2, 2, 9, 7], |o, x| {
    let theta = o.constant(Weights::new(
        vec![2, 1, 2, 3],
        vec![
            0.9, -0.2, 0.1, 0.15, 1.1, -0.05, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0,
        ],
    ));
    let a = o.affine_grid_sample(x.clone(), theta.clone(), [8, 6], false);
    let b = o.affine_grid_sample(x, theta, [8, 6], true);
    o.concat(vec![a, b], 1)
});

// The rewrites of `export --target cuda` (trainer/src/export/cuda_form.rs), each on a case
// that takes it; `cpu:` lists what must remain for tract-cuda's CPU fallback.

op!(pooling_cuda_form, [1, 3, 9, 8], cpu: [], |o, x| {
    let p = Pool {
        kernel: [2, 2],
        stride: [2, 2],
        padding: [0, 0],
        ceil_mode: false,
    };
    // 9 rows: the last is dropped (floor), as the pooling does.
    let a = o.max_pool(x.clone(), p);
    let b = o.avg_pool(x.clone(), p, true);
    let wide = Pool {
        kernel: [3, 4],
        stride: [3, 4],
        ..p
    };
    let c = o.max_pool(x.clone(), wide);
    let c = o.resize(c, [4, 4], ResizeMode::Nearest);
    let d = o.adaptive_avg_pool(x.clone(), [1, 1]);
    let d = o.resize(d, [4, 4], ResizeMode::Nearest);
    let e = o.slice(x, 2, 0, 8);
    let e = o.adaptive_avg_pool(e, [4, 2]);
    let e = o.resize(e, [4, 4], ResizeMode::Nearest);
    o.concat(vec![a, b, c, d, e], 1)
});

op!(overlapping_pooling_stays_on_the_cpu_cuda_form, [1, 2, 8, 8], cpu: ["maxpool"], |o, x| {
    let p = Pool {
        kernel: [3, 3],
        stride: [2, 2],
        padding: [1, 1],
        ceil_mode: false,
    };
    o.max_pool(x, p)
});

op!(transposed_convolutions_cuda_form, [1, 3, 5, 6], cpu: [], |o, x| {
    // The decoders' forms: k2 s2, k4 s2 p1, k3 s2 p1 op1, and k8 s4 p2.
    let k2 = ConvTranspose2dConfig::new([3, 4], [2, 2])
        .with_stride([2, 2])
        .init::<B>(&dev());
    let k4 = ConvTranspose2dConfig::new([3, 2], [4, 4])
        .with_stride([2, 2])
        .with_padding([1, 1])
        .init::<B>(&dev());
    let k3 = ConvTranspose2dConfig::new([3, 2], [3, 3])
        .with_stride([2, 2])
        .with_padding([1, 1])
        .with_padding_out([1, 1])
        .init::<B>(&dev());
    let k8 = ConvTranspose2dConfig::new([3, 2], [8, 8])
        .with_stride([4, 4])
        .with_padding([2, 2])
        .init::<B>(&dev());
    let a = o.conv_transpose(x.clone(), &k2);
    let b = o.conv_transpose(x.clone(), &k4);
    let c = o.conv_transpose(x.clone(), &k3);
    let d = o.conv_transpose(x, &k8);
    let d = o.max_pool(
        d,
        Pool {
            kernel: [2, 2],
            stride: [2, 2],
            padding: [0, 0],
            ceil_mode: false,
        },
    );
    o.concat(vec![a, b, c, d], 1)
});

op!(resizes_cuda_form, [1, 2, 5, 7], cpu: [], |o, x| {
    let half_pixel = ResizeMode::Bilinear {
        align_corners: false,
    };
    let corners = ResizeMode::Bilinear {
        align_corners: true,
    };
    let a = o.resize(x.clone(), [10, 14], half_pixel);
    let b = o.resize(x.clone(), [20, 28], half_pixel);
    let b = o.resize(b, [10, 14], ResizeMode::Nearest);
    let c = o.resize(x.clone(), [10, 14], corners);
    let d = o.resize(x.clone(), [10, 14], ResizeMode::Nearest);
    let e = o.resize(x.clone(), [3, 4], half_pixel);
    let e = o.resize(e, [10, 14], ResizeMode::Nearest);
    let pooled = o.adaptive_avg_pool(x, [1, 1]);
    let f = o.resize(pooled, [10, 14], half_pixel);
    o.concat(vec![a, b, c, d, e, f], 1)
});
