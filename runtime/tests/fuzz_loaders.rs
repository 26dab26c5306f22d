//! Mutation fuzzing of everything a user hands the runtime: picture files (PNG 8 and 16 bit,
//! JPEG, BMP, TIFF), DICOM files (uncompressed, and the importer's JPEG lossless, RLE, JPEG
//! 2000 and deflate fixtures) and model files. Each is a small valid seed, generated here or
//! committed (`trainer/tests/fixtures/dicom`, 100 KB), mutated by flips, overwrites,
//! truncations, insertions and repeated chunks; the loader must answer with a value or an
//! error naming the input, never a panic. The cases come from a fixed seed (the same on every
//! run); `MEDSEG_FUZZ_SEED=N PROPTEST_CASES=M` explores further (docs/RUNTIME.md says what
//! such runs found).

mod common;

use std::path::Path;

use image::{DynamicImage, GrayImage, ImageFormat, Luma, Rgb, RgbImage};
use proptest::prelude::*;

use common::ct_dicom;
use medseg_runtime::Segmenter;
use medseg_runtime::demo::MODEL;
use medseg_runtime::image_io::load_image_bytes;
use medseg_runtime::medical::scan::{Scan, ScanOptions};
use medseg_runtime::onnx;

/// One change to a file.
#[derive(Debug, Clone)]
enum Mutation {
    /// XOR the byte at (position modulo the length) with a non-zero mask.
    Flip(usize, u8),
    /// Overwrite a run of bytes with one value (0x00 and 0xFF make lengths huge or zero).
    Fill(usize, usize, u8),
    Truncate(usize),
    Insert(usize, Vec<u8>),
    /// Repeat a chunk in place (a doubled marker or segment).
    Repeat(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<usize>(), 1u8..=255).prop_map(|(p, m)| Mutation::Flip(p, m)),
        2 => (any::<usize>(), 1usize..16, prop_oneof![Just(0u8), Just(0xFF), any::<u8>()])
            .prop_map(|(p, n, v)| Mutation::Fill(p, n, v)),
        1 => any::<usize>().prop_map(Mutation::Truncate),
        1 => (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..32))
            .prop_map(|(p, b)| Mutation::Insert(p, b)),
        1 => (any::<usize>(), 1usize..64).prop_map(|(p, n)| Mutation::Repeat(p, n)),
    ]
}

fn mutate(seed: &[u8], mutations: &[Mutation]) -> Vec<u8> {
    let mut b = seed.to_vec();
    for m in mutations {
        if b.is_empty() {
            break;
        }
        let at = |p: usize, b: &Vec<u8>| p % b.len();
        match m {
            Mutation::Flip(p, mask) => {
                let i = at(*p, &b);
                b[i] ^= mask;
            }
            Mutation::Fill(p, n, v) => {
                let i = at(*p, &b);
                let end = (i + n).min(b.len());
                b[i..end].fill(*v);
            }
            Mutation::Truncate(p) => {
                let i = at(*p, &b);
                b.truncate(i);
            }
            Mutation::Insert(p, bytes) => {
                let i = at(*p, &b);
                b.splice(i..i, bytes.iter().copied());
            }
            Mutation::Repeat(p, n) => {
                let i = at(*p, &b);
                let end = (i + n).min(b.len());
                let chunk = b[i..end].to_vec();
                b.splice(i..i, chunk);
            }
        }
    }
    b
}

fn encoded(img: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, format).unwrap();
    out.into_inner()
}

/// Small valid pictures of every format the runtime reads.
fn picture_seeds() -> Vec<Vec<u8>> {
    let gray = DynamicImage::ImageLuma8(GrayImage::from_fn(23, 17, |x, y| {
        Luma([(x * 11 + y * 7) as u8])
    }));
    let rgb = DynamicImage::ImageRgb8(RgbImage::from_fn(19, 13, |x, y| {
        Rgb([(x * 13) as u8, (y * 19) as u8, ((x + y) * 5) as u8])
    }));
    let deep = DynamicImage::ImageLuma16(image::ImageBuffer::from_fn(16, 12, |x, y| {
        Luma([(x * 4000 + y * 300) as u16])
    }));
    vec![
        encoded(&gray, ImageFormat::Png),
        encoded(&deep, ImageFormat::Png),
        encoded(&rgb, ImageFormat::Jpeg),
        encoded(&gray, ImageFormat::Bmp),
        encoded(&rgb, ImageFormat::Tiff),
        encoded(&deep, ImageFormat::Tiff),
    ]
}

/// A generated CT file (one and two frames) and the importer's compressed fixtures.
fn dicom_seeds() -> Vec<Vec<u8>> {
    let gray = GrayImage::from_fn(20, 16, |x, y| Luma([(x * 9 + y * 5) as u8]));
    let mut seeds = vec![
        ct_dicom(std::slice::from_ref(&gray)),
        ct_dicom(&[gray.clone(), gray]),
    ];
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../trainer/tests/fixtures/dicom");
    for kind in ["jpeg-lossless", "rle", "j2k", "deflate"] {
        seeds.push(std::fs::read(fixtures.join(kind).join("IM7")).unwrap());
    }
    seeds
}

/// `n` cases from a fixed seed, so that every test run (CI's too) tries the same inputs and a
/// failure reproduces; `MEDSEG_FUZZ_SEED=N` explores others and `PROPTEST_CASES=N` runs longer.
fn cases(n: u32) -> ProptestConfig {
    let env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse().ok());
    let mut config = ProptestConfig::with_cases(env("PROPTEST_CASES").unwrap_or(n));
    let seed = env("MEDSEG_FUZZ_SEED").map_or(2026, u64::from);
    config.rng_seed = proptest::test_runner::RngSeed::Fixed(seed);
    config
}

#[test]
fn the_seeds_are_valid() {
    for (i, seed) in picture_seeds().iter().enumerate() {
        load_image_bytes(seed, "seed", 8192).unwrap_or_else(|e| panic!("picture seed {i}: {e}"));
    }
    for (i, seed) in dicom_seeds().iter().enumerate() {
        Scan::from_dicom_bytes(seed, "seed", &ScanOptions::default())
            .unwrap_or_else(|e| panic!("DICOM seed {i}: {e}"));
    }
}

/// A case the fuzzing found: zero Rows (from a mutated JPEG 2000 file) decoded to an empty
/// image instead of an error.
#[test]
fn a_dicom_file_of_zero_rows_is_refused_by_name() {
    let gray = GrayImage::from_fn(20, 16, |x, y| Luma([(x * 9 + y * 5) as u8]));
    let mut bytes = ct_dicom(&[gray]);
    // Rows (0028,0010) in explicit VR little endian: tag, "US", length 2, value.
    let rows = bytes
        .windows(6)
        .position(|w| w == [0x28, 0x00, 0x10, 0x00, b'U', b'S'])
        .unwrap();
    bytes[rows + 8..rows + 10].copy_from_slice(&[0, 0]);
    let err = Scan::from_dicom_bytes(&bytes, "flat.dcm", &ScanOptions::default())
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("flat.dcm") && err.contains("non-empty"),
        "{err}"
    );
}

/// The case the fuzzing found: tract-onnx 0.23.9 panicked (a map indexed by a missing name).
#[test]
fn a_graph_output_that_no_node_produces_is_named() {
    let mut proto = onnx::decode(MODEL, "demo").unwrap();
    let graph = proto.graph.as_mut().unwrap();
    let output = graph.output[0].name.clone();
    graph.node.retain(|n| !n.output.contains(&output));
    let err = Segmenter::from_bytes(&onnx::encode(&proto), "cut.onnx")
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("cut.onnx") && err.contains(&format!("'{output}' is produced by no node")),
        "{err}"
    );
}

proptest! {
    #![proptest_config(cases(400))]

    #[test]
    fn a_mutated_picture_decodes_or_is_refused_by_name(
        seed in 0usize..6,
        mutations in proptest::collection::vec(mutation(), 1..6),
    ) {
        let bytes = mutate(&picture_seeds()[seed], &mutations);
        if let Err(e) = load_image_bytes(&bytes, "fuzzed-upload", 8192) {
            prop_assert!(e.to_string().contains("fuzzed-upload"), "{e}");
        }
    }

    #[test]
    fn a_mutated_dicom_file_reads_or_is_refused_by_name(
        seed in 0usize..6,
        mutations in proptest::collection::vec(mutation(), 1..6),
    ) {
        let bytes = mutate(&dicom_seeds()[seed], &mutations);
        match Scan::from_dicom_bytes(&bytes, "fuzzed.dcm", &ScanOptions::default()) {
            // Whatever was read must slice: every frame at the size it claims.
            Ok(scan) => {
                for &i in scan.indices() {
                    let slice = scan.slice(i);
                    prop_assert!(slice.gray.width() > 0 && slice.gray.height() > 0);
                }
            }
            Err(e) => prop_assert!(e.to_string().contains("fuzzed.dcm"), "{e}"),
        }
    }
}

proptest! {
    // Each case parses and optimizes a 2 MB model in tract: fewer cases.
    #![proptest_config(cases(24))]

    #[test]
    fn a_mutated_model_loads_or_is_refused_by_name(
        mutations in proptest::collection::vec(mutation(), 1..4),
    ) {
        let bytes = mutate(MODEL, &mutations);
        if let Err(e) = Segmenter::from_bytes(&bytes, "fuzzed.onnx") {
            prop_assert!(e.to_string().contains("fuzzed.onnx"), "{e}");
        }
    }

    /// Byte mutations almost never get past the protobuf decoder and the weights' checksum
    /// (the card's sha256 covers the initializers); these change the graph itself and keep the
    /// weights, so tract's model building and analysis see the damage. A model that still
    /// loads must segment an image or refuse it by name.
    #[test]
    fn a_model_with_a_damaged_graph_loads_or_is_refused_by_name(
        edits in proptest::collection::vec(graph_edit(), 1..4),
    ) {
        let mut proto = onnx::decode(MODEL, "demo").unwrap();
        for edit in &edits {
            apply(&mut proto, edit);
        }
        let bytes = onnx::encode(&proto);
        match Segmenter::from_bytes(&bytes, "damaged.onnx") {
            Ok(seg) => {
                let img = DynamicImage::ImageLuma8(GrayImage::new(40, 30));
                if let Err(e) = seg.segment(&img) {
                    prop_assert!(e.to_string().contains("damaged.onnx"), "{e}");
                }
            }
            Err(e) => prop_assert!(e.to_string().contains("damaged.onnx"), "{e}"),
        }
    }
}

/// One change to a model's graph; indices are taken modulo what the graph holds.
#[derive(Debug, Clone)]
enum GraphEdit {
    /// An integer attribute of node N (kernel shape, strides, pads, axis, ...) set to V.
    Attribute(usize, usize, i64),
    OpType(usize, &'static str),
    /// Input I of node N wired to the output of node M (a cycle, a shape clash).
    Rewire(usize, usize, usize),
    /// A dimension of the graph's input set to V.
    InputDim(usize, i64),
    RemoveNode(usize),
}

fn graph_edit() -> impl Strategy<Value = GraphEdit> {
    let value = prop_oneof![
        -2i64..10,
        Just(0),
        Just(i64::from(i32::MAX)),
        Just(i64::MIN)
    ];
    let op = prop_oneof![
        Just("Conv"),
        Just("ConvTranspose"),
        Just("Relu"),
        Just("Add"),
        Just("Concat"),
        Just("MaxPool"),
        Just("Resize"),
        Just("Reshape"),
        Just("Softmax"),
        Just("Gemm"),
        Just("NoSuchOp")
    ];
    prop_oneof![
        3 => (any::<usize>(), any::<usize>(), value.clone()).prop_map(|(n, a, v)| GraphEdit::Attribute(n, a, v)),
        1 => (any::<usize>(), op).prop_map(|(n, o)| GraphEdit::OpType(n, o)),
        2 => (any::<usize>(), any::<usize>(), any::<usize>()).prop_map(|(n, i, m)| GraphEdit::Rewire(n, i, m)),
        1 => (any::<usize>(), value).prop_map(|(d, v)| GraphEdit::InputDim(d, v)),
        1 => any::<usize>().prop_map(GraphEdit::RemoveNode),
    ]
}

fn apply(proto: &mut onnx::pb::ModelProto, edit: &GraphEdit) {
    let graph = proto.graph.as_mut().unwrap();
    let nodes = graph.node.len();
    match *edit {
        GraphEdit::Attribute(n, a, v) => {
            let node = &mut graph.node[n % nodes];
            if node.attribute.is_empty() {
                return;
            }
            let count = node.attribute.len();
            let attr = &mut node.attribute[a % count];
            if attr.ints.is_empty() {
                attr.i = v;
            } else {
                let i = a % attr.ints.len();
                attr.ints[i] = v;
            }
        }
        GraphEdit::OpType(n, op) => graph.node[n % nodes].op_type = op.to_string(),
        GraphEdit::Rewire(n, i, m) => {
            let source = graph.node[m % nodes]
                .output
                .first()
                .cloned()
                .unwrap_or_default();
            let node = &mut graph.node[n % nodes];
            if !node.input.is_empty() {
                let count = node.input.len();
                node.input[i % count] = source;
            }
        }
        GraphEdit::InputDim(d, v) => {
            use onnx::pb::tensor_shape_proto::dimension::Value;
            use onnx::pb::type_proto::Value as Type;
            let Some(Type::TensorType(t)) = graph.input[0]
                .r#type
                .as_mut()
                .and_then(|t| t.value.as_mut())
            else {
                return;
            };
            let dims = &mut t.shape.as_mut().unwrap().dim;
            let count = dims.len();
            dims[d % count].value = Some(Value::DimValue(v));
        }
        GraphEdit::RemoveNode(n) => {
            graph.node.remove(n % nodes);
        }
    }
}
