//! NIfTI and MSD import on tiny volumes written here: orientation from sform and qform,
//! intensity (window after scl_slope/scl_inter, percentiles), resampling, slice selection, and
//! errors that name the files.

use std::path::{Path, PathBuf};

use ndarray::{Array3, ShapeBuilder};
use nifti::NiftiHeader;
use nifti::writer::WriterOptions;

use medseg_runtime::dataset::Dataset;
use medseg_trainer::import::msd::{self, MsdArgs};
use medseg_trainer::import::nifti::{self as nifti_import, NiftiArgs};
use medseg_trainer::import::volume::Plane;
use medseg_trainer::import::volume_slices::{SliceSelection, VolumeArgs};
use medseg_trainer::import::{LayoutWriter, PatientPattern, SplitRule};

const DIMS: [usize; 3] = [6, 5, 4];
/// RAS storage, 0.8 x 0.7 x 2.5 mm voxels.
const RAS: [[f64; 4]; 3] = [
    [0.8, 0.0, 0.0, -10.0],
    [0.0, 0.7, 0.0, 5.0],
    [0.0, 0.0, 2.5, 40.0],
];

fn idx(i: usize, j: usize, k: usize) -> usize {
    i + DIMS[0] * (j + DIMS[1] * k)
}

/// Values that differ at every voxel, so any wrong flip or permutation shows.
fn image_data() -> Vec<f32> {
    (0..DIMS.iter().product::<usize>())
        .map(|n| (n * 7 % 97) as f32)
        .collect()
}

/// Label 1 in an off-centre block on slices k = 1 and 2.
fn label_data() -> Vec<f32> {
    let mut l = vec![0.0; DIMS.iter().product()];
    for k in 1..3 {
        for j in 0..2 {
            for i in 3..6 {
                l[idx(i, j, k)] = 1.0;
            }
        }
    }
    l
}

fn header(affine: [[f64; 4]; 3]) -> NiftiHeader {
    let f = |r: [f64; 4]| r.map(|v| v as f32);
    let spacing = [0, 1, 2].map(|c| (0..3).map(|r| affine[r][c].powi(2)).sum::<f64>().sqrt());
    NiftiHeader {
        sform_code: 1,
        qform_code: 0,
        srow_x: f(affine[0]),
        srow_y: f(affine[1]),
        srow_z: f(affine[2]),
        pixdim: [
            1.0,
            spacing[0] as f32,
            spacing[1] as f32,
            spacing[2] as f32,
            1.0,
            1.0,
            1.0,
            1.0,
        ],
        ..NiftiHeader::default()
    }
}

/// Writes `data` (i fastest) of shape `dims`.
fn write(path: &Path, dims: [usize; 3], data: Vec<f32>, hdr: &NiftiHeader) {
    let arr = Array3::from_shape_vec((dims[0], dims[1], dims[2]).f(), data).unwrap();
    WriterOptions::new(path)
        .reference_header(hdr)
        .write_nifti(&arr)
        .unwrap();
}

/// The same voxels stored with axes (a, b, c) = (k, nx-1-i, j): "SLA" instead of "RAS".
fn permuted(data: &[f32]) -> ([usize; 3], Vec<f32>, [[f64; 4]; 3]) {
    let [nx, ny, nz] = DIMS;
    let dims = [nz, nx, ny];
    let mut out = vec![0.0; data.len()];
    for c in 0..ny {
        for b in 0..nx {
            for a in 0..nz {
                out[a + nz * (b + nx * c)] = data[idx(nx - 1 - b, c, a)];
            }
        }
    }
    let affine = [
        [
            0.0,
            -RAS[0][0],
            0.0,
            RAS[0][3] + RAS[0][0] * (nx - 1) as f64,
        ],
        [0.0, 0.0, RAS[1][1], RAS[1][3]],
        [RAS[2][2], 0.0, 0.0, RAS[2][3]],
    ];
    (dims, out, affine)
}

struct Src {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl Src {
    /// The test image and label volumes under img/NAME and lab/NAME with one header.
    fn write_pair(&self, name: &str, hdr: &NiftiHeader) {
        self.write_image(name, hdr);
        write(&self.root.join("lab").join(name), DIMS, label_data(), hdr);
    }

    /// The test image volume under img/NAME.
    fn write_image(&self, name: &str, hdr: &NiftiHeader) {
        write(&self.root.join("img").join(name), DIMS, image_data(), hdr);
    }

    /// Patients `ras` (RAS storage) and `sla` (the same voxels stored "SLA", [`permuted`]),
    /// images and labels.
    fn ras_and_sla() -> Self {
        let src = Self::new();
        src.write_pair("ras.nii", &header(RAS));
        let (d, img, aff) = permuted(&image_data());
        write(&src.root.join("img/sla.nii.gz"), d, img, &header(aff));
        let (d, lab, aff) = permuted(&label_data());
        write(&src.root.join("lab/sla.nii.gz"), d, lab, &header(aff));
        src
    }

    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        std::fs::create_dir_all(root.join("img")).unwrap();
        std::fs::create_dir_all(root.join("lab")).unwrap();
        Self { _dir: dir, root }
    }

    fn nifti_args(&self) -> NiftiArgs {
        NiftiArgs {
            volumes: Some(self.root.join("img")),
            labels: Some(self.root.join("lab")),
            ..Default::default()
        }
    }

    /// Imports every patient into train; returns the output folder or the error text.
    fn import(&self, out: &str, vol: &VolumeArgs) -> Result<PathBuf, String> {
        self.import_with(out, vol, false, None)
    }

    /// As `import`, with each slice written between its neighbours (`--stack-neighbours`) and
    /// patients named by `pattern` on the volume stems.
    fn import_with(
        &self,
        out: &str,
        vol: &VolumeArgs,
        stack: bool,
        pattern: Option<&PatientPattern>,
    ) -> Result<PathBuf, String> {
        let out = self.root.join(out);
        let classes = vec!["background".to_string(), "organ".to_string()];
        let mut w = LayoutWriter::create(&out, "t", classes, "default")
            .unwrap()
            .stack_neighbours(stack);
        let rule = SplitRule::fractions("train=1", 0).unwrap();
        nifti_import::import(&self.nifti_args(), pattern, vol, &rule, &mut w)
            .map_err(|e| format!("{e:#}"))?;
        w.finish().map_err(|e| format!("{e:#}"))?;
        Ok(out)
    }
}

fn window() -> VolumeArgs {
    VolumeArgs {
        window: Some((48.0, 96.0)),
        ..Default::default()
    }
}

fn png(path: &Path) -> image::GrayImage {
    image::open(path).unwrap().into_luma8()
}

#[test]
fn permuted_flipped_affine_gives_the_same_slices_in_every_plane() {
    let src = Src::ras_and_sla();
    for plane in [Plane::Axial, Plane::Coronal, Plane::Sagittal] {
        let args = VolumeArgs { plane, ..window() };
        let out = src.import(&format!("out_{plane:?}"), &args).unwrap();
        let ds = Dataset::open(&out).unwrap();
        let train = ds.split(None, "train").unwrap();
        let ras: Vec<_> = train.iter().filter(|s| s.patient == "ras").collect();
        let sla: Vec<_> = train.iter().filter(|s| s.patient == "sla").collect();
        assert!(!ras.is_empty() && ras.len() == sla.len(), "{plane:?}");
        for (a, b) in ras.iter().zip(&sla) {
            assert_eq!(a.name.replace("ras", "sla"), b.name);
            assert_eq!(png(&a.image), png(&b.image), "{plane:?} {}", a.name);
            assert_eq!(png(&a.mask), png(&b.mask), "{plane:?} {}", a.name);
            assert_eq!(a.spacing, b.spacing);
        }
        let expect = match plane {
            Plane::Axial => (0.7, 0.8),
            Plane::Coronal => (2.5, 0.8),
            Plane::Sagittal => (2.5, 0.7),
        };
        let (r, c) = ras[0].spacing.unwrap();
        assert!(
            (r - expect.0).abs() < 1e-6 && (c - expect.1).abs() < 1e-6,
            "{plane:?}"
        );
    }
}

#[test]
fn axial_slice_shows_anterior_at_top_and_patient_right_on_the_left() {
    let src = Src::new();
    src.write_pair("p.nii", &header(RAS));
    let out = src.import("out", &window()).unwrap();
    let ds = Dataset::open(&out).unwrap();
    let names: Vec<&str> = ds
        .split(None, "train")
        .unwrap()
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    // Labelled slices only: k = 1 and 2, index along inferior -> superior.
    assert_eq!(names, vec!["p_ax001", "p_ax002"]);
    let mask = png(&out.join("masks/p_ax001.png"));
    assert_eq!(mask.dimensions(), (6, 5));
    // The block is at the patient's right (i = 3..6, columns 0..3) and posterior (j = 0..2,
    // the bottom rows 3..5).
    for r in 0..5 {
        for c in 0..6 {
            let inside = r >= 3 && c < 3;
            assert_eq!(mask.get_pixel(c, r).0[0], inside as u8, "row {r} col {c}");
        }
    }
}

#[test]
fn stacked_slices_take_their_neighbours_from_the_volume() {
    let src = Src::new();
    src.write_pair("p.nii", &header(RAS));
    let all = VolumeArgs {
        slices: SliceSelection::All,
        ..window()
    };
    let single = src.import("single", &all).unwrap();
    let gray = |k: usize| png(&single.join(format!("images/p_ax{k:03}.png")));
    let check = |out: &Path, k: usize, prev: usize, next: usize| {
        let rgb = image::open(out.join(format!("images/p_ax{k:03}.png"))).unwrap();
        assert!(
            matches!(rgb, image::DynamicImage::ImageRgb8(_)),
            "slice {k}"
        );
        let (p, c, n) = (gray(prev), gray(k), gray(next));
        for (x, y, px) in rgb.to_rgb8().enumerate_pixels() {
            let want = [p[(x, y)].0[0], c[(x, y)].0[0], n[(x, y)].0[0]];
            assert_eq!(px.0, want, "slice {k} at ({x}, {y})");
        }
    };
    // Only the labelled slices (k = 1, 2) are imported; their neighbours k = 0 and 3 are not,
    // yet they are what the red and blue channels hold.
    let labelled = src.import_with("labelled", &window(), true, None).unwrap();
    check(&labelled, 1, 0, 2);
    check(&labelled, 2, 1, 3);
    assert!(!labelled.join("images/p_ax000.png").exists());
    assert!(Dataset::open(&labelled).unwrap().stacked_neighbours);
    // At the volume's ends the slice stands in for its missing neighbour.
    let every = src.import_with("every", &all, true, None).unwrap();
    check(&every, 0, 0, 1);
    check(&every, 3, 2, 3);
}

#[test]
fn qform_only_header_orients_like_the_equivalent_sform() {
    let src = Src::new();
    src.write_pair("ras.nii", &header(RAS));
    // LPS storage: i and j reversed, described by a 180 degree turn about z (quaternion d = 1).
    let [nx, ny, _] = DIMS;
    let flip = |d: Vec<f32>| {
        let mut out = d.clone();
        for k in 0..DIMS[2] {
            for j in 0..ny {
                for i in 0..nx {
                    out[idx(i, j, k)] = d[idx(nx - 1 - i, ny - 1 - j, k)];
                }
            }
        }
        out
    };
    let q = NiftiHeader {
        sform_code: 0,
        qform_code: 1,
        quatern_b: 0.0,
        quatern_c: 0.0,
        quatern_d: 1.0,
        quatern_x: (RAS[0][3] + 0.8 * (nx - 1) as f64) as f32,
        quatern_y: (RAS[1][3] + 0.7 * (ny - 1) as f64) as f32,
        quatern_z: RAS[2][3] as f32,
        pixdim: [1.0, 0.8, 0.7, 2.5, 1.0, 1.0, 1.0, 1.0],
        ..NiftiHeader::default()
    };
    write(&src.root.join("img/lps.nii"), DIMS, flip(image_data()), &q);
    write(&src.root.join("lab/lps.nii"), DIMS, flip(label_data()), &q);
    let out = src.import("out", &window()).unwrap();
    for k in ["001", "002"] {
        let a = png(&out.join(format!("images/ras_ax{k}.png")));
        let b = png(&out.join(format!("images/lps_ax{k}.png")));
        assert_eq!(a, b, "slice {k}");
    }
}

#[test]
fn window_applies_after_scl_slope_and_inter() {
    let src = Src::new();
    let path = src.root.join("img/ct.nii");
    let mut raw = vec![0.0; DIMS.iter().product()];
    raw[idx(5, 4, 1)] = 512.0; // anterior right corner of slice 1: pixel (0, 0)
    raw[idx(0, 0, 1)] = 562.0; // posterior left: pixel (row 4, col 5)
    write(&path, DIMS, raw, &header(RAS));
    // HU = 2 * raw - 1024 (scl_slope at byte 112, scl_inter at 116 of the NIfTI-1 header).
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[112..116].copy_from_slice(&2.0f32.to_le_bytes());
    bytes[116..120].copy_from_slice(&(-1024.0f32).to_le_bytes());
    std::fs::write(&path, bytes).unwrap();
    write(
        &src.root.join("lab/ct.nii"),
        DIMS,
        label_data(),
        &header(RAS),
    );
    let args = VolumeArgs {
        window: Some((50.0, 100.0)),
        ..Default::default()
    };
    let out = src.import("out", &args).unwrap();
    let img = png(&out.join("images/ct_ax001.png"));
    // 512 -> 0 HU: the bottom of the 0..100 window; 562 -> 100 HU: the top.
    assert_eq!(img.get_pixel(0, 0).0[0], 0);
    assert_eq!(img.get_pixel(5, 4).0[0], 255);
    let args = VolumeArgs {
        window: Some((0.0, 400.0)),
        ..Default::default()
    };
    let out = src.import("out2", &args).unwrap();
    let img = png(&out.join("images/ct_ax001.png"));
    assert_eq!(img.get_pixel(0, 0).0[0], 128);
    assert_eq!(img.get_pixel(5, 4).0[0], 191);
}

#[test]
fn percentiles_resampling_and_all_slices() {
    let src = Src::new();
    src.write_pair("mr.nii.gz", &header(RAS));
    let args = VolumeArgs {
        percentiles: Some((0.0, 100.0)),
        resample: Some((0.35, 0.4)),
        slices: SliceSelection::All,
        ..Default::default()
    };
    let out = src.import("out", &args).unwrap();
    let ds = Dataset::open(&out).unwrap();
    let train = ds.split(None, "train").unwrap();
    assert_eq!(train.len(), 4, "all four axial slices");
    for s in train {
        assert_eq!(s.spacing, Some((0.35, 0.4)));
        let mask = png(&s.mask);
        // 5 rows of 0.7 mm -> 10 of 0.35; 6 columns of 0.8 mm -> 12 of 0.4.
        assert_eq!(mask.dimensions(), (12, 10));
        assert!(
            mask.pixels().all(|p| p.0[0] <= 1),
            "nearest keeps labels discrete"
        );
    }
    let max = train
        .iter()
        .map(|s| *png(&s.image).iter().max().unwrap())
        .max();
    let min = train
        .iter()
        .map(|s| *png(&s.image).iter().min().unwrap())
        .min();
    // The 0th and 100th percentiles span the 8-bit range; bilinear resampling (new pixel
    // centres fall between the old ones) blends the extreme voxels with their neighbours, so
    // the brightest output pixel sits a little below 255.
    assert_eq!(min, Some(0));
    assert!(max.is_some_and(|m| m > 200), "{max:?}");
    let labelled = src
        .import(
            "out2",
            &VolumeArgs {
                percentiles: Some((1.0, 99.0)),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(
        Dataset::open(&labelled)
            .unwrap()
            .split(None, "train")
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn mismatched_label_volume_names_both_files() {
    let src = Src::new();
    src.write_image("p.nii", &header(RAS));
    let mut shifted = RAS;
    shifted[2][3] += 2.5;
    write(
        &src.root.join("lab/p.nii"),
        DIMS,
        label_data(),
        &header(shifted),
    );
    let err = src.import("out", &window()).unwrap_err();
    assert!(
        err.contains("img/p.nii") && err.contains("lab/p.nii"),
        "{err}"
    );
    assert!(err.contains("same voxels"), "{err}");
    write(
        &src.root.join("lab/p.nii"),
        [6, 5, 3],
        vec![0.0; 90],
        &header(RAS),
    );
    let err = src.import("out2", &window()).unwrap_err();
    assert!(err.contains("6x5x3") && err.contains("6x5x4"), "{err}");
}

#[test]
fn a_patient_pattern_groups_volumes_and_names_one_it_does_not_match() {
    let src = Src::new();
    src.write_pair("p01_t1.nii", &header(RAS));
    src.write_pair("p01_t2.nii", &header(RAS));
    let pattern = PatientPattern::parse(r"^(p\d+)_").unwrap();
    let out = src
        .import_with("out", &window(), false, Some(&pattern))
        .unwrap();
    let set = Dataset::open(&out).unwrap();
    let train = set.split(None, "train").unwrap();
    let names: Vec<_> = train.iter().map(|s| s.name.as_str()).collect();
    assert!(names.iter().any(|n| n.starts_with("p01_t1")), "{names:?}");
    assert!(names.iter().any(|n| n.starts_with("p01_t2")), "{names:?}");
    assert!(train.iter().all(|s| s.patient == "p01"));
    src.write_pair("q.nii", &header(RAS));
    let err = src
        .import_with("out2", &window(), false, Some(&pattern))
        .unwrap_err();
    assert!(err.contains("does not match volume 'q'"), "{err}");
}

#[test]
fn labels_outside_the_classes_and_missing_labels_name_the_file() {
    let src = Src::new();
    src.write_image("p.nii", &header(RAS));
    let mut lab = label_data();
    lab[idx(1, 1, 1)] = 3.0;
    write(&src.root.join("lab/p.nii"), DIMS, lab, &header(RAS));
    let err = src.import("out", &window()).unwrap_err();
    assert!(
        err.contains("lab/p.nii") && err.contains("label value 3"),
        "{err}"
    );
    src.write_image("q.nii", &header(RAS));
    let err = src.import("out2", &window()).unwrap_err();
    assert!(
        err.contains("no label volume") && err.contains("img/q.nii"),
        "{err}"
    );
}

#[test]
fn msd_task_takes_classes_from_dataset_json_and_a_channel_of_4d_images() {
    let dir = tempfile::tempdir().unwrap();
    let task = dir.path().join("Task99_Tiny");
    std::fs::create_dir_all(task.join("imagesTr")).unwrap();
    std::fs::create_dir_all(task.join("labelsTr")).unwrap();
    let mut training = Vec::new();
    for (k, case) in ["tiny_001", "tiny_002", "tiny_003"].into_iter().enumerate() {
        // Channel 0 is constant 5, channel 1 the coded image, different in each case (the
        // import refuses identical slices in two splits).
        let n: usize = DIMS.iter().product();
        let mut data = vec![5.0f32; n];
        data.extend(
            image_data()
                .into_iter()
                .enumerate()
                .map(|(i, v)| v + (k * (i % 5)) as f32),
        );
        let arr =
            ndarray::Array4::from_shape_vec((DIMS[0], DIMS[1], DIMS[2], 2).f(), data).unwrap();
        let path = task.join(format!("imagesTr/{case}.nii.gz"));
        WriterOptions::new(&path)
            .reference_header(&header(RAS))
            .write_nifti(&arr)
            .unwrap();
        let mut lab = label_data();
        lab[idx(0, 4, 2)] = 2.0;
        write(
            &task.join(format!("labelsTr/{case}.nii.gz")),
            DIMS,
            lab,
            &header(RAS),
        );
        training.push(format!(
            r#"{{"image": "./imagesTr/{case}.nii.gz", "label": "./labelsTr/{case}.nii.gz"}}"#
        ));
    }
    std::fs::write(
        task.join("dataset.json"),
        format!(
            r#"{{"name": "Tiny", "modality": {{"0": "T1", "1": "T2"}},
                "labels": {{"0": "background", "1": "organ", "2": "lesion"}},
                "numTraining": 3, "training": [{}], "test": []}}"#,
            training.join(",")
        ),
    )
    .unwrap();
    let t = msd::MsdTask::open(&MsdArgs {
        msd: Some(task.clone()),
    })
    .unwrap();
    assert_eq!(t.classes, vec!["background", "organ", "lesion"]);
    let out = dir.path().join("out");
    let mut w = LayoutWriter::create(&out, "tiny", t.classes.clone(), "default").unwrap();
    let rule =
        SplitRule::named(&["train=tiny_001-tiny_002".into(), "test=tiny_003".into()]).unwrap();
    let args = VolumeArgs {
        channel: 1,
        percentiles: Some((0.0, 100.0)),
        ..Default::default()
    };
    msd::import(&t, &args, &rule, &mut w).unwrap();
    w.finish().unwrap();
    let ds = Dataset::open(&out).unwrap();
    assert_eq!(ds.classes.len(), 3);
    let test = ds.split(None, "test").unwrap();
    assert!(test.iter().all(|s| s.patient == "tiny_003"));
    assert_eq!(ds.split(None, "train").unwrap().len(), 4);
    // Channel 1 varies; channel 0 would have given a flat black slice.
    let img = png(&test[0].image);
    assert!(img.iter().any(|&v| v > 0), "channel 1 was imported");
    let bad = VolumeArgs {
        channel: 2,
        ..Default::default()
    };
    let mut w = LayoutWriter::create(
        &dir.path().join("out2"),
        "tiny",
        t.classes.clone(),
        "default",
    )
    .unwrap();
    let err = format!("{:#}", msd::import(&t, &bad, &rule, &mut w).unwrap_err());
    assert!(
        err.contains("--channel 2") && err.contains("T1, T2"),
        "{err}"
    );
}

/// Overwrites bytes of a written file at `offset` (NIfTI-1 header fields, little-endian).
fn patch(path: &Path, offset: usize, bytes: &[u8]) {
    let mut b = std::fs::read(path).unwrap();
    b[offset..offset + bytes.len()].copy_from_slice(bytes);
    std::fs::write(path, b).unwrap();
}

#[test]
fn corrupt_volumes_are_refused_naming_the_file_not_a_panic() {
    // datatype (offset 70) and bitpix (72) disagreeing, or a voxel type nifti's decoder does
    // not convert, made the nifti crate panic; a truncated file printed io errors twice.
    type Corrupt = fn(&Path);
    let cases: [(&str, Corrupt, &str); 4] = [
        (
            "bitpix",
            |p| patch(p, 72, &3i16.to_le_bytes()),
            "bitpix is 3, but datatype",
        ),
        (
            "complex",
            |p| patch(p, 70, &32i16.to_le_bytes()),
            "voxel type Complex64 is not supported",
        ),
        (
            "rgb",
            |p| patch(p, 70, &128i16.to_le_bytes()),
            "voxel type Rgb24 is not supported",
        ),
        (
            "truncated",
            |p| {
                let b = std::fs::read(p).unwrap();
                std::fs::write(p, &b[..200]).unwrap(); // inside the 348-byte header
            },
            "the file ends before the data its header describes",
        ),
    ];
    for (name, corrupt, expected) in cases {
        let src = Src::new();
        src.write_pair("p.nii", &header(RAS));
        corrupt(&src.root.join("img/p.nii"));
        let err = src.import("out", &window()).unwrap_err();
        assert!(
            err.contains("img/p.nii") && err.contains(expected),
            "{name}: {err}"
        );
        assert!(!err.contains("Io("), "{name}: {err}");
    }
}

/// The bedside runtime reads a volume as the importer does: `medseg segment p.nii` gets the
/// same 8-bit slices (and stacked neighbours, and spacing) that training saw, in every plane
/// and storage order.
#[test]
fn the_runtime_reads_a_volume_slice_for_slice_as_the_importer_wrote_it() {
    use medseg_runtime::medical::scan::{Scan, ScanOptions};
    let src = Src::ras_and_sla();
    for plane in [Plane::Axial, Plane::Coronal, Plane::Sagittal] {
        let args = VolumeArgs {
            plane,
            slices: SliceSelection::All,
            ..window()
        };
        let single = src.import(&format!("single_{plane:?}"), &args).unwrap();
        let stacked = src
            .import_with(&format!("stacked_{plane:?}"), &args, true, None)
            .unwrap();
        let options = ScanOptions {
            window: args.window,
            plane,
            ..ScanOptions::default()
        };
        for (stem, file) in [("ras", "img/ras.nii"), ("sla", "img/sla.nii.gz")] {
            let scan = Scan::open(&src.root.join(file), &options).unwrap();
            let ds = Dataset::open(&single).unwrap();
            let slices: Vec<_> = ds
                .split(None, "train")
                .unwrap()
                .iter()
                .filter(|s| s.patient == stem)
                .cloned()
                .collect();
            assert_eq!(scan.indices().len(), slices.len(), "{plane:?} {stem}");
            for (&k, s) in scan.indices().iter().zip(&slices) {
                let (gray, slice) = scan.model_image(k, false);
                assert_eq!(format!("{stem}_{}", slice.suffix), s.name);
                assert_eq!(gray.into_luma8(), png(&s.image), "{plane:?} {}", s.name);
                assert_eq!(slice.spacing_mm, s.spacing, "{plane:?} {}", s.name);
                let (rgb, _) = scan.model_image(k, true);
                let written = image::open(stacked.join("images").join(format!("{}.png", s.name)))
                    .unwrap()
                    .into_rgb8();
                assert_eq!(rgb.into_rgb8(), written, "stacked {plane:?} {}", s.name);
            }
        }
    }
}
