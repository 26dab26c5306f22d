//! Data sources: what turns a list of sample indices into a training [`Batch`]. The training
//! loop and the objectives see only the batch, so a labelled split (segmentation) and a
//! folder of unlabelled images (self-supervised pre-training) plug into the same loop.

use std::path::{Path, PathBuf};

use anyhow::Context;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use indicatif::ProgressBar;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use medseg_runtime::InputSpec;
use medseg_runtime::dataset::IMAGE_EXTS;
use medseg_runtime::image_io::load_image;
use medseg_runtime::preprocess::to_model_input;

use crate::augment::Pipeline;
use crate::data::LoadedSplit;
use crate::objective::{Batch, Target};

/// Something the training loop draws batches from.
pub trait DataSource<B: Backend>: Sync {
    /// Number of samples (an epoch visits each once).
    fn len(&self) -> usize;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The host-side batch of samples `indices` (any thread; see [`crate::prefetch`]).
    /// Randomness (crops, augmentation) comes from `rng` only, so a batch is the same
    /// whatever the thread count.
    fn prepare(&self, indices: &[usize], rng: &mut ChaCha8Rng) -> HostBatch;

    /// The batch of samples `indices` as tensors on `device`.
    fn batch(&self, indices: &[usize], rng: &mut ChaCha8Rng, device: &B::Device) -> Batch<B> {
        self.prepare(indices, rng).upload(device)
    }
}

/// A prepared batch in host memory: what a prefetch thread hands the training thread, which
/// turns it into tensors ([`HostBatch::upload`]).
#[derive(Debug, Clone, PartialEq)]
pub struct HostBatch {
    /// `[n, channels, side, side]`.
    pub shape: [usize; 4],
    pub images: Vec<f32>,
    /// One-hot targets `[n, classes, side, side]` and the masks `[n, side, side]`.
    pub target: Option<(usize, Vec<f32>, Vec<u8>)>,
    /// Further views, each shaped like `images`.
    pub views: Vec<Vec<f32>>,
}

impl HostBatch {
    pub fn upload<B: Backend>(self, device: &B::Device) -> Batch<B> {
        let [n, c, h, w] = self.shape;
        let tensor =
            |xs: Vec<f32>, c: usize| Tensor::from_data(TensorData::new(xs, [n, c, h, w]), device);
        Batch {
            images: tensor(self.images, c),
            target: self.target.map(|(classes, one_hot, masks)| Target {
                one_hot: tensor(one_hot, classes),
                masks,
            }),
            views: self.views.into_iter().map(|v| tensor(v, c)).collect(),
        }
    }
}

/// A labelled split: augmented `crop`-sized patches and their one-hot targets, the masks
/// kept on the host for shape-aware losses.
pub struct Labelled<'a> {
    pub split: &'a LoadedSplit,
    pub spec: &'a InputSpec,
    pub crop: usize,
    pub classes: usize,
    pub augment: &'a Pipeline,
}

/// Runs `prepare` for every index with its own generator seeded from `rng`, in parallel
/// (on a GPU the serial warps and blurs would hold up every step).
fn prepare_in_parallel<T: Send>(
    indices: &[usize],
    rng: &mut ChaCha8Rng,
    prepare: impl Fn(usize, &mut ChaCha8Rng) -> T + Sync,
) -> Vec<T> {
    let seeds: Vec<u64> = indices.iter().map(|_| rng.random()).collect();
    indices
        .par_iter()
        .zip(seeds)
        .map(|(&i, seed)| prepare(i, &mut ChaCha8Rng::seed_from_u64(seed)))
        .collect()
}

impl<B: Backend> DataSource<B> for Labelled<'_> {
    fn len(&self) -> usize {
        self.split.len()
    }

    fn prepare(&self, indices: &[usize], rng: &mut ChaCha8Rng) -> HostBatch {
        let crop = self.crop.min(self.spec.width);
        let samples = prepare_in_parallel(indices, rng, |i, rng| {
            let split = self.split;
            self.augment
                .patch(&split.inputs[i], &split.targets[i], self.spec, crop, rng)
        });
        let plane = crop * crop;
        let n = indices.len();
        let mut xs = Vec::with_capacity(n * self.spec.channels * plane);
        let mut ys = vec![0f32; n * self.classes * plane];
        let mut masks = Vec::with_capacity(n * plane);
        for (b, (input, mask)) in samples.iter().enumerate() {
            xs.extend_from_slice(input);
            masks.extend_from_slice(mask);
            let base = b * self.classes * plane;
            for (p, &c) in mask.iter().enumerate() {
                ys[base + c as usize * plane + p] = 1.0;
            }
        }
        HostBatch {
            shape: [n, self.spec.channels, crop, crop],
            images: xs,
            target: Some((self.classes, ys, masks)),
            views: Vec::new(),
        }
    }
}

/// Images without masks (any folder of PNG/JPEG files, searched recursively; a data set's
/// `masks/` and `labels/` folders are skipped), prepared at the model's input size exactly
/// as the runtime prepares them. Each batch holds `views` independently augmented views of
/// every image: `images` is the first, [`Batch::views`] the others (two views for
/// contrastive pre-training).
pub struct Unlabelled {
    pub files: Vec<PathBuf>,
    inputs: Vec<Vec<f32>>,
    spec: InputSpec,
    pub crop: usize,
    pub augment: Pipeline,
    pub views: usize,
}

impl Unlabelled {
    /// Loads every image under `dir`; errors name the file at fault, or the folder when it
    /// holds no image.
    pub fn from_folder(dir: &Path, spec: &InputSpec) -> anyhow::Result<Self> {
        let skip = |p: &Path| {
            p.components()
                .any(|c| matches!(c.as_os_str().to_str(), Some("masks" | "labels")))
        };
        let mut files = Vec::new();
        for entry in walkdir::WalkDir::new(dir).sort_by_file_name() {
            let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
            let path = entry.path();
            let rel = path.strip_prefix(dir).unwrap_or(path);
            let is_image = path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| IMAGE_EXTS.contains(&e.to_ascii_lowercase().as_str()));
            if entry.file_type().is_file() && is_image && !skip(rel) {
                files.push(path.to_path_buf());
            }
        }
        anyhow::ensure!(
            !files.is_empty(),
            "{} holds no image ({} files, searched recursively; masks/ and labels/ skipped)",
            dir.display(),
            IMAGE_EXTS.join(", ")
        );
        Self::from_files(files, spec)
    }

    /// Loads the given images (a data set split's, say); errors name the file at fault.
    pub fn from_files(files: Vec<PathBuf>, spec: &InputSpec) -> anyhow::Result<Self> {
        anyhow::ensure!(!files.is_empty(), "no images to learn from");
        let bar = ProgressBar::new(files.len() as u64).with_message("loading images");
        let inputs = files
            .iter()
            .map(|f| {
                bar.inc(1);
                Ok(to_model_input(&load_image(f)?, spec))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        bar.finish_and_clear();
        Ok(Self {
            files,
            inputs,
            spec: spec.clone(),
            crop: spec.width,
            augment: Pipeline::preset("basic").expect("a preset"),
            views: 1,
        })
    }
}

impl<B: Backend> DataSource<B> for Unlabelled {
    fn len(&self) -> usize {
        self.inputs.len()
    }

    fn prepare(&self, indices: &[usize], rng: &mut ChaCha8Rng) -> HostBatch {
        let (side, channels) = (self.spec.width, self.spec.channels);
        let crop = self.crop.min(side);
        let no_mask = vec![0u8; side * side];
        let mut views: Vec<Vec<f32>> = (0..self.views.max(1))
            .map(|_| {
                prepare_in_parallel(indices, rng, |i, rng| {
                    self.augment
                        .patch(&self.inputs[i], &no_mask, &self.spec, crop, rng)
                        .0
                })
                .concat()
            })
            .collect();
        HostBatch {
            shape: [indices.len(), channels, crop, crop],
            images: views.remove(0),
            target: None,
            views,
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::Flex;

    use super::*;

    type B = Flex;

    fn spec(side: usize) -> InputSpec {
        InputSpec {
            channels: 1,
            height: side,
            width: side,
            mean: 0.5,
            std: 0.25,
            stacked_neighbours: false,
        }
    }

    fn write_png(path: &Path, side: u32, shade: u8) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        image::GrayImage::from_fn(side, side, |x, y| {
            image::Luma([shade.wrapping_add((x * 7 + y * 3) as u8)])
        })
        .save(path)
        .unwrap();
    }

    #[test]
    fn an_image_folder_gives_batches_without_masks_and_with_independent_views() {
        let dir = tempfile::tempdir().unwrap();
        write_png(&dir.path().join("a.png"), 20, 10);
        write_png(&dir.path().join("nested/b.png"), 24, 90);
        // A data set's masks are not images to learn from.
        write_png(&dir.path().join("masks/a.png"), 20, 0);
        std::fs::write(dir.path().join("notes.txt"), "not an image").unwrap();
        let mut source = Unlabelled::from_folder(dir.path(), &spec(16)).unwrap();
        assert_eq!(DataSource::<B>::len(&source), 2, "{:?}", source.files);
        source.views = 2;
        source.augment = Pipeline::preset("strong").unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let batch: Batch<B> = source.batch(&[1, 0], &mut rng, &Default::default());
        assert!(batch.target.is_none());
        assert_eq!(batch.images.dims(), [2, 1, 16, 16]);
        assert_eq!(batch.views.len(), 1);
        assert_eq!(batch.views[0].dims(), [2, 1, 16, 16]);
        let (a, b) = (batch.images.into_data(), batch.views[0].clone().into_data());
        assert_ne!(
            a, b,
            "two views of the same images should differ under augmentation"
        );
    }

    #[test]
    fn a_folder_without_images_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("notes.txt"), "x").unwrap();
        let err = Unlabelled::from_folder(dir.path(), &spec(16))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("holds no image"), "{err}");
        let broken = dir.path().join("broken.png");
        std::fs::write(&broken, "not a png").unwrap();
        let err = format!(
            "{:#}",
            Unlabelled::from_folder(dir.path(), &spec(16))
                .err()
                .unwrap()
        );
        assert!(err.contains("broken.png"), "{err}");
    }

    #[test]
    fn a_batch_is_the_same_whatever_the_thread_count() {
        let side = 32;
        let split = LoadedSplit {
            inputs: (0..6)
                .map(|i| {
                    (0..side * side)
                        .map(|p| ((p * (i + 5)) % 23) as f32)
                        .collect()
                })
                .collect(),
            targets: (0..6)
                .map(|i| {
                    (0..side * side)
                        .map(|p| u8::from(p % (7 + i) == 0))
                        .collect()
                })
                .collect(),
            originals: Vec::new(),
            spacings: vec![None; 6],
            patients: vec!["p".into(); 6],
        };
        let spec = spec(side);
        // Every kind of step, each firing about half the time.
        let mut augment: Pipeline = crate::augment::Legacy {
            rotate_degrees: 15.0,
            zoom: 0.1,
            gamma: 0.5,
            blur: 1.0,
            ..Default::default()
        }
        .into();
        for step in Pipeline::preset("strong").unwrap().steps {
            let mut v = serde_json::to_value(&step).unwrap();
            v["p"] = 0.5.into();
            augment.steps.push(serde_json::from_value(v).unwrap());
        }
        let batch = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                let mut rng = ChaCha8Rng::seed_from_u64(9);
                let source = Labelled {
                    split: &split,
                    spec: &spec,
                    crop: 16,
                    classes: 2,
                    augment: &augment,
                };
                let b: Batch<B> = source.batch(&[4, 1, 5, 0], &mut rng, &Default::default());
                let t = b.target.unwrap();
                (b.images.into_data(), t.one_hot.into_data())
            })
        };
        let (x1, y1) = batch(1);
        let (x4, y4) = batch(4);
        assert_eq!(x1.shape.dims::<4>(), [4, 1, 16, 16]);
        assert_eq!(x1, x4);
        assert_eq!(y1, y4);
    }
}
