//! `--model`, shared by the commands that run a model: an exported file, or the embedded
//! demo model when none is given, so `medseg segment photo.jpg` works at once.

use std::path::PathBuf;

use medseg_runtime::demo::MODEL;
use medseg_runtime::{Device, LoadOptions, Segmenter};

/// What names the embedded model in messages and reports.
pub const EMBEDDED: &str = "the embedded demo model";

#[derive(clap::Args)]
pub struct ModelArg {
    /// Exported model: an .onnx file with a medseg model card, or a package folder
    /// (`export --package`; its NNEF file is run, after its checksum is verified) [default:
    /// the embedded demo model, a UNet trained on the lumbar CT phantom].
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Where the model runs: cpu, or cuda (an NVIDIA GPU through tract-cuda: a build with the
    /// `cuda` feature; export with `--target cuda` so that pooling, transposed convolutions
    /// and resizes run on the GPU too).
    #[arg(long, value_enum, default_value_t = Device::Cpu)]
    pub device: Device,
    /// Skip the model card's quality gate (which runs the mirrored image once more to judge
    /// whether the answer can be trusted, and reports "unreliable" when not).
    #[arg(long)]
    pub no_quality_gate: bool,
}

impl ModelArg {
    pub fn load(&self) -> anyhow::Result<Segmenter> {
        self.load_with(&LoadOptions::default())
    }

    /// Loads the model with `options`, on this argument's `--device`.
    pub fn load_with(&self, options: &LoadOptions) -> anyhow::Result<Segmenter> {
        let options = LoadOptions {
            device: self.device,
            ..options.clone()
        };
        let model = match &self.model {
            Some(path) => Segmenter::from_path(path, &options)?,
            None => Segmenter::from_bytes_with_options(MODEL, EMBEDDED, &options)?,
        };
        Ok(model.with_quality_gate(!self.no_quality_gate))
    }

    /// The model's name for messages: its path, or [`EMBEDDED`].
    pub fn describe(&self) -> String {
        self.model
            .as_ref()
            .map_or_else(|| EMBEDDED.to_string(), |p| p.display().to_string())
    }
}
