//! Loading a split into memory at the model's input size, using the runtime's decoding and
//! preprocessing so training sees exactly what the device will see.

use indicatif::ProgressBar;

use medseg_runtime::InputSpec;
use medseg_runtime::dataset::Sample;
use medseg_runtime::evaluate::check_same_size;
use medseg_runtime::image_io::{Mask, load_image, load_mask};
use medseg_runtime::preprocess::{resize_mask, to_model_input};

/// A split in memory.
pub struct LoadedSplit {
    /// Normalized model inputs `[C, H, W]`, one per sample.
    pub inputs: Vec<Vec<f32>>,
    /// Class masks at the model's size (training targets).
    pub targets: Vec<Vec<u8>>,
    /// Masks at the image's own size (scoring), kept only when asked for.
    pub originals: Vec<Mask>,
    /// Pixel spacing (row, column) in mm per sample, from the data set's slice table.
    pub spacings: Vec<Option<(f64, f64)>>,
    /// Patient of each sample (validation reports per-patient Dice too).
    pub patients: Vec<String>,
}

impl LoadedSplit {
    pub fn len(&self) -> usize {
        self.inputs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.inputs.is_empty()
    }
}

/// Decodes, checks and resizes every sample; errors name the file at fault.
pub fn load_split(
    samples: &[Sample],
    num_classes: usize,
    spec: &InputSpec,
    keep_originals: bool,
    label: &str,
) -> anyhow::Result<LoadedSplit> {
    let bar = ProgressBar::new(samples.len() as u64).with_message(format!("loading {label}"));
    let mut split = LoadedSplit {
        inputs: Vec::with_capacity(samples.len()),
        targets: Vec::with_capacity(samples.len()),
        originals: Vec::new(),
        spacings: Vec::with_capacity(samples.len()),
        patients: Vec::with_capacity(samples.len()),
    };
    for sample in samples {
        let img = load_image(&sample.image)?;
        let mask = load_mask(&sample.mask, num_classes)?;
        check_same_size(&img, &mask, sample)?;
        split.inputs.push(to_model_input(&img, spec));
        let small = resize_mask(&mask.to_gray(), spec.width as u32, spec.height as u32);
        split.targets.push(small.into_raw());
        split.spacings.push(sample.spacing);
        split.patients.push(sample.patient.clone());
        if keep_originals {
            split.originals.push(mask);
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    anyhow::ensure!(!split.is_empty(), "split {label} is empty");
    Ok(split)
}

/// At most `max` items spread evenly over the slice (all when `max` is 0 or large enough):
/// a subset of a split in which every patient still counts.
pub fn evenly_spaced<T: Clone>(items: &[T], max: usize) -> Vec<T> {
    if max == 0 || items.len() <= max {
        return items.to_vec();
    }
    (0..max)
        .map(|i| items[i * items.len() / max].clone())
        .collect()
}
