//! The tract engine: loads an exported model, checks it against its card, runs it.

use std::path::Path;
use std::time::Instant;

use image::DynamicImage;
use tract_linalg::multithread::Executor;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::knobs::KnobScope;
use tract_onnx::tract_core::runtime::RunOptions;

use crate::card::ModelCard;
use crate::cleanup::Cleanup;
use crate::device::{self, Device, Plan};
use crate::error::RuntimeError;
use crate::onnx;
use crate::package::{Form, Package, package_of};
use crate::postprocess::{Prediction, logits_to_prediction};
use crate::preprocess::{mirror_rows, to_model_input};
use crate::quality::{self, Signals, Verdict};

/// How a model is loaded: tract's threads and knobs.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Threads for tract's matrix products [default: every core].
    pub threads: usize,
    /// tract knobs (`TRACT_DISABLE_DIRECT_SPATIAL` = `true`, ...) applied while the graph is
    /// optimized; a name tract does not know, or one it does not read then, is an error.
    pub tract_knobs: Vec<(String, String)>,
    /// Where the plan runs.
    pub device: Device,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            threads: std::thread::available_parallelism().map_or(1, usize::from),
            tract_knobs: Vec::new(),
            device: Device::Cpu,
        }
    }
}

/// Time spent in one node of tract's optimized plan during one run.
#[derive(Debug, Clone)]
pub struct NodeTime {
    pub node: String,
    /// The operator as tract names it after optimization (what actually ran).
    pub op: String,
    pub seconds: f64,
}

fn run_options(threads: usize) -> RunOptions {
    let executor = if threads > 1 {
        Executor::multithread(threads)
    } else {
        Executor::SingleThread
    };
    RunOptions {
        executor: Some(executor),
        ..Default::default()
    }
}

/// A loaded model, ready to segment images of any size.
pub struct Segmenter {
    pub card: ModelCard,
    plan: Plan,
    source: String,
    flip_tta: bool,
    quality_gate: bool,
    cleanup: Cleanup,
}

/// One segmentation with its timing.
pub struct Segmentation {
    pub prediction: Prediction,
    pub inference_ms: f64,
    /// The card's quality gate on this image (None: no gate, or turned off).
    pub quality: Option<Verdict>,
}

impl Segmenter {
    /// Loads an ONNX file, a package folder or a package's NNEF file ([`Self::from_path`]).
    pub fn from_file(path: &Path) -> Result<Self, RuntimeError> {
        Self::from_path(path, &LoadOptions::default())
    }

    /// Loads ONNX bytes; `source` names the model in errors. Refuses models whose weights do
    /// not hash to the card's `weights_sha256` (corrupted or tampered files).
    pub fn from_bytes(bytes: &[u8], source: &str) -> Result<Self, RuntimeError> {
        Self::from_bytes_with_options(bytes, source, &LoadOptions::default())
    }

    /// As [`Self::from_bytes`], with tract's matrix products on `threads` threads.
    pub fn from_bytes_with_threads(
        bytes: &[u8],
        source: &str,
        threads: usize,
    ) -> Result<Self, RuntimeError> {
        Self::from_bytes_with_options(
            bytes,
            source,
            &LoadOptions {
                threads,
                ..LoadOptions::default()
            },
        )
    }

    /// As [`Self::from_bytes`], with the thread count and tract's knobs of `options`.
    pub fn from_bytes_with_options(
        bytes: &[u8],
        source: &str,
        options: &LoadOptions,
    ) -> Result<Self, RuntimeError> {
        let proto = onnx::decode(bytes, source)?;
        let card = onnx::read_card(&proto, source)?;
        let actual = onnx::weights_sha256(&proto);
        if actual != card.weights_sha256 {
            return Err(RuntimeError::BadModel {
                path: source.to_string(),
                reason: format!(
                    "weights do not match the model card (sha256 {actual}, card says {}); \
                     the file is corrupted or was modified after export",
                    card.weights_sha256
                ),
            });
        }
        let input = card.input.clone();
        Self::prepare(card, source, options, || onnx::typed_model(&proto, &input))
    }

    /// Loads a model package (`export --package`): the NNEF archive by default, or the ONNX
    /// file; either is read only after its sha256 matched card.json.
    pub fn from_package(
        dir: &Path,
        form: Form,
        options: &LoadOptions,
    ) -> Result<Self, RuntimeError> {
        let package = Package::open(dir)?;
        let bytes = package.read(form)?;
        let source = package.path(form).display().to_string();
        match form {
            Form::Onnx => {
                let loaded = Self::from_bytes_with_options(&bytes, &source, options)?;
                if loaded.card != package.manifest.card {
                    return Err(RuntimeError::BadModel {
                        path: source,
                        reason: format!(
                            "its embedded card differs from the package's {}",
                            crate::package::MANIFEST_FILE
                        ),
                    });
                }
                Ok(loaded)
            }
            Form::Nnef => Self::prepare(package.manifest.card, &source, options, || {
                crate::package::nnef().model_for_read(&mut &bytes[..])
            }),
        }
    }

    /// Loads what `path` names: a package folder, a package's NNEF file, or an ONNX file.
    pub fn from_path(path: &Path, options: &LoadOptions) -> Result<Self, RuntimeError> {
        match package_of(path) {
            Some((dir, form)) => Self::from_package(&dir, form, options),
            None => {
                let bytes = std::fs::read(path).map_err(|e| RuntimeError::io(path, e))?;
                Self::from_bytes_with_options(&bytes, &path.display().to_string(), options)
            }
        }
    }

    /// Optimizes the typed graph `build` makes for this machine (under `options`' knobs) and
    /// checks that it outputs what `card` describes.
    fn prepare(
        card: ModelCard,
        source: &str,
        options: &LoadOptions,
        build: impl FnOnce() -> TractResult<TypedModel>,
    ) -> Result<Self, RuntimeError> {
        let fail = |e: TractError| RuntimeError::BadModel {
            path: source.to_string(),
            reason: format!("tract cannot prepare it: {e:#}"),
        };
        let spec = &card.input;
        if options.device == Device::Cuda
            && let Some(why) = device::cuda_unavailable()
        {
            return Err(RuntimeError::BadSetting {
                setting: "--device cuda".into(),
                reason: why,
            });
        }
        // Knobs steer tract's choice of kernels while it optimizes the graph: a scope entered
        // around the optimization applies them to this model only.
        let knobs = KnobScope::new(
            options
                .tract_knobs
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        )
        .map_err(|e| RuntimeError::BadSetting {
            setting: "tract knob".into(),
            reason: format!("{e:#}"),
        })?;
        // A damaged graph can make tract panic rather than err (see `panic_guard`).
        let plan = crate::panic_guard::guarded(|| {
            knobs.enter(|| {
                build()
                    .and_then(|m| device::prepare(m, options.device, &run_options(options.threads)))
            })
        })
        .map_err(fail)?;
        // Post-processing reads the logits as [classes, h, w] of the card: a card that does
        // not describe this graph must fail here, not as a mismatched buffer per image.
        let expected = [1, card.classes.len(), spec.height, spec.width];
        let output = plan.model().output_fact(0).map_err(fail)?;
        if output.shape.as_concrete() != Some(&expected[..]) {
            return Err(RuntimeError::BadModel {
                path: source.to_string(),
                reason: format!(
                    "the graph outputs {:?}, but the card's {} classes and {}x{} input need \
                     {expected:?}",
                    output.shape,
                    card.classes.len(),
                    spec.width,
                    spec.height
                ),
            });
        }
        let input = plan.model().input_fact(0).map_err(fail)?;
        let needed = spec.batch_of_one();
        if input.shape.as_concrete() != Some(&needed[..]) {
            return Err(RuntimeError::BadModel {
                path: source.to_string(),
                reason: format!(
                    "the graph takes {:?}, but the card's input is {needed:?}",
                    input.shape
                ),
            });
        }
        tracing::info!(
            model = source,
            input = ?needed,
            classes = card.classes.len(),
            quantization = %card.quantization,
            "model loaded and optimized by tract"
        );
        Ok(Self {
            plan,
            source: source.to_string(),
            flip_tta: false,
            quality_gate: true,
            cleanup: card.cleanup,
            card,
        })
    }

    /// Test-time augmentation: also segment the left-right mirrored image and average the two
    /// logit maps (mirrored back), as nnU-Net does with its mirror axes. Twice the inference
    /// time; the result no longer depends on which way round the image was shown.
    pub fn with_flip_tta(mut self, on: bool) -> Self {
        self.flip_tta = on;
        self
    }

    /// Whether to apply the card's quality gate (on by default where the card has one; it
    /// costs one more inference per image, of the mirrored image).
    pub fn with_quality_gate(mut self, on: bool) -> Self {
        self.quality_gate = on;
        self
    }

    /// The quality signals of a prepared input whose logits are `logits` (runs the mirrored
    /// input once more).
    pub fn signals(&self, input: &[f32], logits: &[f32]) -> Result<Signals, RuntimeError> {
        let spec = &self.card.input;
        let mut mirrored = input.to_vec();
        mirror_rows(&mut mirrored, spec.width);
        let mirrored_logits = self.logits(mirrored)?;
        Ok(quality::signals(
            input,
            spec,
            logits,
            &mirrored_logits,
            self.card.classes.len(),
        ))
    }

    /// Replaces the clean-up the model card asks for (`Cleanup::default()`: none).
    pub fn with_cleanup(mut self, cleanup: Cleanup) -> Self {
        self.cleanup = cleanup;
        self
    }

    /// The clean-up applied to every mask.
    pub fn cleanup(&self) -> Cleanup {
        self.cleanup
    }

    /// A failure of tract while running this model.
    fn inference_error(&self, e: TractError) -> RuntimeError {
        RuntimeError::Inference {
            path: self.source.clone(),
            reason: format!("{e:#}"),
        }
    }

    /// A prepared input `[channels, h, w]` as the plan's `[1, channels, h, w]` tensor.
    fn input_tensor(&self, input: Vec<f32>) -> Result<TVec<TValue>, RuntimeError> {
        let spec = &self.card.input;
        let tensor = tract_ndarray::Array4::from_shape_vec(
            (1, spec.channels, spec.height, spec.width),
            input,
        )
        .map_err(|e| RuntimeError::Inference {
            path: self.source.clone(),
            reason: format!("input does not match the card's shape: {e}"),
        })?;
        Ok(tvec!(Tensor::from(tensor).into()))
    }

    /// Raw logits `[classes, h, w]` for a prepared input `[channels, h, w]`.
    pub fn logits(&self, input: Vec<f32>) -> Result<Vec<f32>, RuntimeError> {
        let fail = |e| self.inference_error(e);
        let outputs = self.plan.run(self.input_tensor(input)?).map_err(fail)?;
        let view = outputs[0].to_plain_array_view::<f32>().map_err(fail)?;
        Ok(view.iter().copied().collect())
    }

    /// Runs the plan once on a prepared input, timing every node (what tract runs after its
    /// optimizations, in plan order).
    pub fn profile(&self, input: Vec<f32>) -> Result<Vec<NodeTime>, RuntimeError> {
        let fail = |e| self.inference_error(e);
        let input = self.input_tensor(input)?;
        let mut state = self.plan.spawn().map_err(fail)?;
        let mut times = Vec::new();
        state
            .run_plan_with_eval(input, |ctx, op_state, node, inputs| {
                let start = Instant::now();
                let out = tract_onnx::tract_core::plan::eval(ctx, op_state, node, inputs);
                times.push(NodeTime {
                    node: node.name.clone(),
                    op: node.op.name().to_string(),
                    seconds: start.elapsed().as_secs_f64(),
                });
                out
            })
            .map_err(fail)?;
        Ok(times)
    }

    /// Segments an image of any size; the mask comes back at the image's own size.
    pub fn segment(&self, img: &DynamicImage) -> Result<Segmentation, RuntimeError> {
        self.segment_with_logits(img).map(|(s, _)| s)
    }

    /// [`Self::segment`], also handing back the logits `[classes, h, w]` at the model's size
    /// that the mask was made from (for probability maps: [`crate::postprocess::probability_rows`]).
    pub fn segment_with_logits(
        &self,
        img: &DynamicImage,
    ) -> Result<(Segmentation, Vec<f32>), RuntimeError> {
        let spec = &self.card.input;
        let input = self.model_input(img)?;
        let start = Instant::now();
        let logits = self.tta_logits(input.clone())?;
        let inference_ms = start.elapsed().as_secs_f64() * 1e3;
        let quality = match (&self.card.quality_gate, self.quality_gate) {
            (Some(gate), true) => Some(gate.judge(self.signals(&input, &logits)?)),
            _ => None,
        };
        let prediction = logits_to_prediction(
            &logits,
            self.card.classes.len(),
            (spec.width, spec.height),
            (img.width() as usize, img.height() as usize),
            &self.cleanup,
        );
        Ok((
            Segmentation {
                prediction,
                inference_ms,
                quality,
            },
            logits,
        ))
    }

    /// The logits `[classes, h, w]` at the model's size that [`Self::segment`] makes its mask
    /// from (averaged with the mirrored pass under flip TTA).
    pub fn segment_logits(&self, img: &DynamicImage) -> Result<Vec<f32>, RuntimeError> {
        self.tta_logits(self.model_input(img)?)
    }

    /// The image prepared as the card says (`[channels, h, w]`, what [`Self::logits`] takes),
    /// or refused when the model cannot read it.
    pub fn model_input(&self, img: &DynamicImage) -> Result<Vec<f32>, RuntimeError> {
        let spec = &self.card.input;
        // A gray image would be copied into all three channels: the 2.5D model would read it
        // as a slice whose neighbours are identical to it and answer without complaint.
        if spec.stacked_neighbours && !img.color().has_color() {
            return Err(RuntimeError::UnsuitableImage {
                model: self.source.clone(),
                reason: "the model reads each slice between its neighbours (RGB: previous, \
                         this, next slice, as `medseg-train import --stack-neighbours` writes \
                         them), but this is a single gray slice"
                    .into(),
            });
        }
        Ok(to_model_input(img, spec))
    }

    /// [`Self::logits`], averaged with the mirrored pass (mirrored back) under flip TTA.
    fn tta_logits(&self, input: Vec<f32>) -> Result<Vec<f32>, RuntimeError> {
        if !self.flip_tta {
            return self.logits(input);
        }
        let width = self.card.input.width;
        let mut mirrored = input.clone();
        mirror_rows(&mut mirrored, width);
        let mut back = self.logits(mirrored)?;
        mirror_rows(&mut back, width);
        let mut logits = self.logits(input)?;
        for (l, b) in logits.iter_mut().zip(&back) {
            *l = (*l + *b) / 2.0;
        }
        Ok(logits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::MODEL;

    /// The demo model with its card changed by `edit`, as a hand-edited file would be.
    fn with_card(edit: impl Fn(&mut ModelCard)) -> Vec<u8> {
        let mut proto = onnx::decode(MODEL, "demo").unwrap();
        let mut card = onnx::read_card(&proto, "demo").unwrap();
        edit(&mut card);
        onnx::write_card(&mut proto, &card);
        onnx::encode(&proto)
    }

    fn load_error(bytes: &[u8]) -> String {
        match Segmenter::from_bytes_with_threads(bytes, "edited.onnx", 1) {
            Ok(_) => panic!("an inconsistent card was accepted"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_card_that_does_not_describe_the_graph_is_refused_at_load() {
        // One class too many made post-processing panic on the first image.
        let err = load_error(&with_card(|c| c.classes.push("extra".into())));
        assert!(
            err.contains("edited.onnx") && err.contains("the graph outputs"),
            "{err}"
        );
        let err = load_error(&with_card(|c| c.input.std = 0.0));
        assert!(err.contains("std 0"), "{err}");
        let err = load_error(&with_card(|c| c.input.channels = 5));
        assert!(err.contains("input.channels is 5"), "{err}");
    }
}
