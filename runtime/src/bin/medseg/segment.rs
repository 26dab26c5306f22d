//! `medseg segment`: masks, overlays and reports for image files or folders.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};

use image::DynamicImage;
use medseg_runtime::Segmenter;
use medseg_runtime::card::InputSpec;
use medseg_runtime::dataset::IMAGE_EXTS;
use medseg_runtime::image_io::{Mask, load_image};
use medseg_runtime::medical::dicom_seg_output::write_seg;
use medseg_runtime::medical::intensity::parse_pair;
use medseg_runtime::medical::scan::{Scan, ScanOptions, is_scan, scan_stem};
use medseg_runtime::medical::volume::Plane;
use medseg_runtime::outputs::{ImageReport, Source, write_outputs, write_probability_maps};

use crate::cleanup_args::{CleanupArgs, describe};
use crate::model_arg::ModelArg;
use crate::summary::Summary;

/// Segment images and scans: PNG, JPEG, BMP, TIFF (any size, gray or RGB, 8 or 16 bit; EXIF
/// orientation applied), DICOM files (one image or multi-frame), folders holding one DICOM
/// series, NIfTI volumes (.nii, .nii.gz; every slice, or --slice).
///
/// Example: medseg segment --model unet.onnx slice.png photos/ ct.dcm --out results/
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArg,
    /// Image files, scans, or folders of images.
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// Output folder (created if missing).
    #[arg(long, default_value = "medseg-out")]
    out: PathBuf,
    /// Test-time augmentation: average with the left-right mirrored image (2x inference time).
    #[arg(long)]
    flip_tta: bool,
    #[command(flatten)]
    cleanup: CleanupArgs,
    #[command(flatten)]
    scan: ScanArgs,
    /// Also write `<stem>_prob_<class>.png`: the model's probability of each class at every
    /// pixel (8-bit gray, 255 = 1), before any clean-up.
    #[arg(long)]
    probabilities: bool,
    /// Also write `<stem>_seg.dcm` for each DICOM file: a DICOM Segmentation object (binary,
    /// a segment per class) that refers to the file, for the hospital's archive and viewer.
    #[arg(long)]
    dicom_seg: bool,
}

/// How DICOM and NIfTI inputs become 8-bit slices: by default as `medseg-train import` made
/// the training slices (the file's own window, else percentiles 0.5,99.5; axial plane).
#[derive(clap::Args)]
struct ScanArgs {
    /// CT window LEVEL,WIDTH in HU (after the file's rescale slope/intercept), e.g. 40,400
    /// [DICOM, NIfTI].
    #[arg(long, value_parser = parse_pair, allow_hyphen_values = true, conflicts_with = "percentiles")]
    window: Option<(f64, f64)>,
    /// Map these percentiles of the scan to black and white, e.g. 0.5,99.5 [DICOM, NIfTI].
    #[arg(long, value_parser = parse_pair)]
    percentiles: Option<(f64, f64)>,
    /// Slicing plane of a volume or series [NIfTI, DICOM series].
    #[arg(long, value_enum, default_value_t = Plane::Axial)]
    plane: Plane,
    /// Only this slice (index in the plane, or frame from 0) [DICOM, NIfTI].
    #[arg(long)]
    slice: Option<usize>,
}

impl ScanArgs {
    fn options(&self) -> ScanOptions {
        ScanOptions {
            window: self.window,
            percentiles: self.percentiles,
            plane: self.plane,
            slice: self.slice,
            max_side_px: None,
        }
    }
}

/// An input: a picture, or a scan whose slices are segmented one by one.
enum Input {
    Picture(PathBuf),
    Scan(PathBuf),
}

impl Input {
    fn path(&self) -> &Path {
        match self {
            Self::Picture(p) | Self::Scan(p) => p,
        }
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let seg = args
        .cleanup
        .configure(args.model.load()?.with_flip_tta(args.flip_tta));
    let inputs = collect_inputs(&args.inputs)?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let bar = ProgressBar::new(inputs.len() as u64).with_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}").expect("valid template"),
    );
    let mut summary = Summary::default();
    let scan_options = args.scan.options();
    for (stem, input) in &inputs {
        bar.set_message(stem.clone());
        // One bad file must not stop the batch: report it and go on.
        let mut report = |name: &str, result: anyhow::Result<ImageReport>| {
            match &result {
                // Not bar.println: indicatif drops those lines when stderr is not a terminal
                // (scripts, CI logs), which lost the per-file errors that the summary points to.
                Ok(r) => bar.suspend(|| println!("{name}: {}", areas(r))),
                Err(e) => bar.suspend(|| eprintln!("error: {e:#}")),
            }
            summary.add(name, result.as_ref());
        };
        match input {
            Input::Picture(path) => {
                let name = path.display().to_string();
                let source = Source {
                    name: &name,
                    spacing_mm: None,
                };
                let result = load_image(path)
                    .map_err(anyhow::Error::from)
                    .map(|img| gray_for_gray_models(img, &seg.card.input))
                    .and_then(|img| segment_one(&seg, &args, stem, &source, &img));
                report(&name, result.map(|(r, _)| r));
            }
            Input::Scan(path) => match Scan::open(path, &scan_options) {
                Err(e) => report(&path.display().to_string(), Err(e.into())),
                Ok(scan) => segment_scan(&seg, &args, stem, &scan, &bar, &mut report),
            },
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let summary_path = summary.write(&args.out, &seg.card.classes)?;
    println!(
        "wrote {} result(s) to {} ({}); summary {}",
        summary.succeeded(),
        args.out.display(),
        describe(seg.cleanup()),
        summary_path.display()
    );
    if summary.failed() > 0 {
        bail!(
            "{} of {} input(s) failed (see above and the summary)",
            summary.failed(),
            summary.len()
        );
    }
    Ok(())
}

/// Segments every slice of `scan` (reporting each), then writes its DICOM SEG if asked.
fn segment_scan(
    seg: &Segmenter,
    args: &Args,
    stem: &str,
    scan: &Scan,
    bar: &ProgressBar,
    report: &mut impl FnMut(&str, anyhow::Result<ImageReport>),
) {
    let path = scan.source.display();
    let stacked = seg.card.input.stacked_neighbours;
    if stacked && scan.slice_count() == 1 {
        bar.suspend(|| {
            eprintln!(
                "warning: {path} holds one slice; the 2.5D model sees it as its own neighbours"
            )
        });
    }
    // Kept only for a SEG, which needs every slice's mask at the end.
    let keep_masks = args.dicom_seg && scan.dicom.is_some();
    let mut masks = Vec::new();
    for &index in scan.indices() {
        let (img, slice) = scan.model_image(index, stacked);
        let (name, out_stem) = if slice.suffix.is_empty() {
            (path.to_string(), stem.to_string())
        } else {
            (
                format!("{path} slice {}", slice.suffix),
                format!("{stem}_{}", slice.suffix),
            )
        };
        let source = Source {
            name: &name,
            spacing_mm: slice.spacing_mm,
        };
        let result = segment_one(seg, args, &out_stem, &source, &img).map(|(r, mask)| {
            if keep_masks {
                masks.push((index, mask));
            }
            r
        });
        report(&name, result);
    }
    if args.dicom_seg {
        match write_dicom_seg(scan, &masks, seg, &args.out, stem) {
            Ok(seg_path) => bar.suspend(|| println!("{path}: DICOM SEG {}", seg_path.display())),
            Err(e) => report(&format!("{path} (DICOM SEG)"), Err(e)),
        }
    }
}

/// Segments one image and writes its outputs; returns the report and the mask.
fn segment_one(
    seg: &Segmenter,
    args: &Args,
    stem: &str,
    source: &Source<'_>,
    img: &DynamicImage,
) -> anyhow::Result<(ImageReport, Mask)> {
    let (s, logits) = seg
        .segment_with_logits(img)
        .with_context(|| format!("image {}", source.name))?;
    if args.probabilities {
        let spec = &seg.card.input;
        write_probability_maps(
            &args.out,
            stem,
            &logits,
            (spec.width, spec.height),
            (img.width() as usize, img.height() as usize),
            &seg.card.classes,
        )?;
    }
    let report = write_outputs(
        &args.out,
        stem,
        source,
        &seg.card.input.displayed(img),
        &s,
        &seg.card.classes,
    )?;
    Ok((report, s.prediction.mask))
}

/// `<stem>_seg.dcm` for a DICOM file's masks; a series or volume (whose slices were
/// reoriented) and a file without geometry are refused by name.
fn write_dicom_seg(
    scan: &Scan,
    masks: &[(usize, Mask)],
    seg: &Segmenter,
    out: &Path,
    stem: &str,
) -> anyhow::Result<PathBuf> {
    let path = out.join(format!("{stem}_seg.dcm"));
    let Some(source) = &scan.dicom else {
        bail!(
            "--dicom-seg: {} is not a single DICOM file; SEG output takes DICOM files (a series \
             or a NIfTI volume is resliced, so its masks do not map back to its files yet)",
            scan.source.display()
        );
    };
    if masks.is_empty() {
        bail!(
            "--dicom-seg: no slice of {} was segmented",
            scan.source.display()
        );
    }
    let masks: Vec<(usize, &Mask)> = masks.iter().map(|(i, m)| (*i, m)).collect();
    let algorithm = seg.card.architecture["name"]
        .as_str()
        .unwrap_or("model")
        .to_string();
    write_seg(source, &masks, &seg.card.classes, &algorithm, &path)
        .with_context(|| format!("--dicom-seg for {}", scan.source.display()))?;
    Ok(path)
}

fn areas(report: &ImageReport) -> String {
    let areas = report
        .classes
        .iter()
        .map(|c| match c.area_mm2 {
            Some(mm2) => format!("{} {} px ({mm2:.1} mm^2)", c.class, c.area_pixels),
            None => format!("{} {} px", c.class, c.area_pixels),
        })
        .collect::<Vec<_>>()
        .join(", ");
    match &report.quality {
        Some(q) if !q.reliable => format!("UNRELIABLE ({}): {areas}", q.reasons.join("; ")),
        _ => areas,
    }
}

/// A one-channel model reads the image's luma and the overlay is drawn in gray, so a colour
/// photo is kept as gray from the start: 24 MB instead of 72 for a 24 MP photo.
pub(crate) fn gray_for_gray_models(img: DynamicImage, spec: &InputSpec) -> DynamicImage {
    if spec.channels == 1 && img.as_luma8().is_none() {
        DynamicImage::ImageLuma8(img.into_luma8())
    } else {
        img
    }
}

/// Expands folders (non-recursively) to their pictures, unless a folder is a DICOM series;
/// output stems must be unique.
fn collect_inputs(inputs: &[PathBuf]) -> anyhow::Result<BTreeMap<String, Input>> {
    let mut files = Vec::new();
    for input in inputs {
        if is_scan(input, IMAGE_EXTS) {
            files.push((scan_stem(input), Input::Scan(input.clone())));
        } else if input.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(input)
                .with_context(|| format!("reading folder {}", input.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| has_image_ext(p) || (p.is_file() && is_scan(p, IMAGE_EXTS)))
                .collect();
            found.sort();
            if found.is_empty() {
                bail!(
                    "folder {} holds no images ({}) and no DICOM or NIfTI files",
                    input.display(),
                    IMAGE_EXTS.join(", ")
                );
            }
            for p in found {
                if has_image_ext(&p) {
                    files.push((stem_of(&p), Input::Picture(p)));
                } else {
                    files.push((scan_stem(&p), Input::Scan(p)));
                }
            }
        } else if input.is_file() {
            files.push((stem_of(input), Input::Picture(input.clone())));
        } else {
            bail!("input {} does not exist", input.display());
        }
    }
    let mut by_stem = BTreeMap::new();
    for (stem, f) in files {
        let path = f.path().to_path_buf();
        if let Some(prev) = by_stem.insert(stem.clone(), f) {
            bail!(
                "inputs {} and {} would write the same outputs '{stem}_*'; rename one",
                prev.path().display(),
                path.display()
            );
        }
    }
    Ok(by_stem)
}

fn stem_of(p: &Path) -> String {
    p.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn has_image_ext(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTS.contains(&e.to_ascii_lowercase().as_str()))
}
