use std::path::PathBuf;

use anyhow::Context;

use medseg_runtime::dataset::Dataset;
use medseg_trainer::import::volume_slices::VolumeArgs;
use medseg_trainer::import::{
    LayoutWriter, PatientPattern, SplitRule, dicom, jmedseg, msd, nifti, slices,
};

/// Bring a data set in another format into the folder layout (images/, masks/, splits.json by
/// patient, slices.csv with pixel spacing) that `train` and `medseg eval` read.
///
/// Example (2D slices with a manifest):
///   medseg-train import --from slices --images DIR/images --masks DIR/masks
///     --manifest DIR/slices.csv --split train=myo01-myo38 --split val=myo39-myo46
///     --split test=myo47-myo54 --classes background,vertebral_body --out data/vb
///
/// Example (NIfTI CT volumes with label volumes, soft-tissue window):
///   medseg-train import --from nifti --volumes ct/ --labels seg/ --window 40,400
///     --classes background,liver --split-fractions train=0.7,val=0.1,test=0.2 --out data/liver
///
/// More formats (msd, jmedseg, dicom) and the orientation convention: docs/IMPORTING.md.
#[derive(clap::Args)]
pub struct Args {
    /// Source format.
    #[arg(long, value_enum)]
    from: Format,
    /// New (or empty) folder to write the data set into.
    #[arg(long)]
    out: PathBuf,
    /// Class names, background first, comma-separated; mask value i is class i (default
    /// background,foreground; msd and jmedseg take theirs from the source, and names given
    /// here rename them).
    #[arg(long, value_delimiter = ',')]
    classes: Option<Vec<String>>,
    /// Patients of a split: SPLIT=FIRST-LAST (same prefix, numbered) or SPLIT=P1,P2; repeat
    /// per split.
    #[arg(long = "split", conflicts_with = "split_fractions")]
    splits: Vec<String>,
    /// Random split by patient when the source gives none, e.g. train=0.7,val=0.1,test=0.2.
    #[arg(long)]
    split_fractions: Option<String>,
    /// Seed for --split-fractions.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Domain name in splits.json (scanner, site, acquisition).
    #[arg(long, default_value = "default")]
    domain: String,
    /// Data set name (default: the output folder's name).
    #[arg(long)]
    name: Option<String>,
    /// Leave out slices whose pixels equal an earlier slice of another patient (one subject
    /// under two ids); without it they are reported, and refused across splits.
    #[arg(long)]
    drop_duplicates: bool,
    /// Write each slice as RGB: the previous slice, the slice and the next slice (2.5D input
    /// for `train --channels 3`); masks stay the slice's. Volumes give their own adjacent
    /// slices, 2D slices the adjacent imported ones of the patient by slice index.
    #[arg(long)]
    stack_neighbours: bool,
    /// Regular expression whose first group is the patient in an image's file name (slices,
    /// when there is no manifest) or an image volume's stem (nifti; default: the whole stem),
    /// e.g. '^(myo\d+)_' [slices, nifti].
    #[arg(long, alias = "patient-regex", value_parser = PatientPattern::parse)]
    patient_pattern: Option<PatientPattern>,
    #[command(flatten)]
    slices: slices::SlicesArgs,
    #[command(flatten)]
    nifti: nifti::NiftiArgs,
    #[command(flatten)]
    msd: msd::MsdArgs,
    #[command(flatten)]
    jmedseg: jmedseg::JmedsegArgs,
    #[command(flatten)]
    dicom: dicom::DicomArgs,
    #[command(flatten)]
    volume: VolumeArgs,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum Format {
    /// 2D images + masks folders, patients from a manifest CSV or a file-name pattern.
    Slices,
    /// NIfTI image volumes + label volumes (.nii, .nii.gz) paired by file name.
    Nifti,
    /// Medical Segmentation Decathlon task folder (imagesTr, labelsTr, dataset.json).
    Msd,
    /// JMedSeg layout (train/val/test_label.json); keeps its split.
    Jmedseg,
    /// DICOM series, a folder per patient, with NIfTI or DICOM SEG labels.
    Dicom,
}

/// Class names given by the source, renamed by --classes when given (same count only).
fn source_classes(
    found: Vec<String>,
    given: Option<&[String]>,
    source: &str,
) -> anyhow::Result<Vec<String>> {
    match given {
        None => Ok(found),
        Some(g) if g.len() == found.len() => Ok(g.to_vec()),
        Some(g) => anyhow::bail!(
            "--classes names {} classes but {source} has {}: {}",
            g.len(),
            found.len(),
            found.join(", ")
        ),
    }
}

/// A source opened before anything is written: MSD and JMedSeg bring their own classes, and
/// JMedSeg its own split.
enum Source {
    Slices,
    Nifti,
    Msd(msd::MsdTask),
    Jmedseg(Dataset),
    Dicom,
}

fn split_rule(args: &Args) -> anyhow::Result<SplitRule> {
    match (&args.split_fractions, args.splits.is_empty()) {
        (Some(f), _) => SplitRule::fractions(f, args.seed),
        (None, false) => SplitRule::named(&args.splits),
        (None, true) => anyhow::bail!(
            "say how patients are split: --split train=P01-P38 ... or --split-fractions train=0.7,val=0.1,test=0.2"
        ),
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let source = match args.from {
        Format::Slices => Source::Slices,
        Format::Nifti => Source::Nifti,
        Format::Msd => Source::Msd(msd::MsdTask::open(&args.msd)?),
        Format::Jmedseg => Source::Jmedseg(jmedseg::open(&args.jmedseg)?),
        Format::Dicom => Source::Dicom,
    };
    let given = args.classes.as_deref();
    let classes = match &source {
        Source::Msd(t) => source_classes(t.classes.clone(), given, "dataset.json")?,
        Source::Jmedseg(d) => source_classes(d.classes.clone(), given, "the JMedSeg layout")?,
        Source::Slices | Source::Nifti | Source::Dicom => given
            .map(<[String]>::to_vec)
            .unwrap_or_else(|| vec!["background".into(), "foreground".into()]),
    };
    let rule = match &source {
        Source::Jmedseg(_) => {
            anyhow::ensure!(
                args.splits.is_empty() && args.split_fractions.is_none(),
                "the JMedSeg layout carries its own split (train/val/test_label.json); drop --split / --split-fractions"
            );
            None
        }
        _ => Some(split_rule(&args)?),
    };
    let name = match &args.name {
        Some(n) => n.clone(),
        None => args
            .out
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .context("--out has no folder name; give --name")?,
    };
    let mut writer = LayoutWriter::create(&args.out, &name, classes, &args.domain)?
        .drop_duplicates(args.drop_duplicates)
        .stack_neighbours(args.stack_neighbours);
    // The folder was new or empty (create checks): a failed import removes what it wrote, so
    // the same command can simply be run again.
    let result = import_into(&args, &source, rule.as_ref(), &mut writer)
        .and_then(|left_out| Ok((left_out, writer.finish()?)));
    let (left_out, summary) = match result {
        Ok(r) => r,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&args.out);
            return Err(e);
        }
    };
    if !left_out.is_empty() {
        eprintln!(
            "left out {} patients that no --split names: {}",
            left_out.len(),
            left_out.join(", ")
        );
    }
    println!("{summary}");
    Ok(())
}

fn import_into(
    args: &Args,
    source: &Source,
    rule: Option<&SplitRule>,
    writer: &mut LayoutWriter,
) -> anyhow::Result<Vec<String>> {
    Ok(match (source, rule) {
        (Source::Jmedseg(d), _) => {
            jmedseg::import(d, writer)?;
            Vec::new()
        }
        (Source::Slices, Some(rule)) => {
            slices::import(&args.slices, args.patient_pattern.as_ref(), rule, writer)?
        }
        (Source::Nifti, Some(rule)) => nifti::import(
            &args.nifti,
            args.patient_pattern.as_ref(),
            &args.volume,
            rule,
            writer,
        )?,
        (Source::Msd(task), Some(rule)) => msd::import(task, &args.volume, rule, writer)?,
        (Source::Dicom, Some(rule)) => dicom::import(&args.dicom, &args.volume, rule, writer)?,
        (_, None) => anyhow::bail!("internal error: no split rule for --from {:?}", args.from),
    })
}
