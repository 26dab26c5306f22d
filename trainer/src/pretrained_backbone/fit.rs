//! Fitting a checkpoint's tensors to a backbone: keys renamed with burn-store's
//! `KeyRemapper`, every parameter of the backbone checked against the file first (so a
//! refusal lists all that is wrong and changes nothing), then the tensors applied with
//! burn-store's `PyTorchToBurnAdapter`.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use burn::module::ParamId;
use burn::tensor::backend::Backend;
use burn::tensor::{DType, TensorData};
use burn_store::{
    ApplyResult, KeyRemapper, ModuleAdapter, ModuleSnapshot, PyTorchToBurnAdapter, TensorSnapshot,
};

use medseg_models::backbones::torchvision::{
    BackboneMut, TORCHVISION_BASE_WIDTH, TorchvisionBackbone,
};

use super::{Loaded, PretrainedError, checkpoint, identify};

/// Why a file was not loaded.
pub(super) enum Refusal {
    Unreadable(PretrainedError),
    /// The problems, one per line.
    Mismatch(String),
}

/// Entries of a list shown before "and N more".
const SHOWN: usize = 8;

/// One parameter of the backbone and the file's tensor for it.
struct Match {
    /// The file's key after renaming (what burn-store's applier looks up).
    source: String,
    target: TensorSnapshot,
    sum_rgb: bool,
}

pub(super) fn apply<B: Backend>(
    backbone: BackboneMut<'_, B>,
    kind: &TorchvisionBackbone,
    snapshots: Vec<TensorSnapshot>,
    file: &Path,
) -> Result<Loaded, Refusal> {
    let tensors = FileTensors::new(snapshots, kind);
    let targets = match &backbone {
        BackboneMut::ResNet(m) => m.collect(None, None, false),
        BackboneMut::Vgg(m) => m.collect(None, None, false),
    };
    let matches = tensors.matches(targets, kind).map_err(Refusal::Mismatch)?;

    let mut loaded = Vec::with_capacity(matches.len());
    let mut values = 0;
    for m in &matches {
        let data =
            checkpoint::load(&tensors.candidates[&m.source], file).map_err(Refusal::Unreadable)?;
        let data = data.convert_dtype(DType::F32);
        let data = if m.sum_rgb { sum_rgb(data) } else { data };
        values += data.num_elements();
        let data = data.convert_dtype(m.target.dtype);
        let path = m.source.split('.').map(str::to_string).collect();
        loaded.push(TensorSnapshot::from_data(
            data,
            path,
            Vec::new(),
            ParamId::new(),
        ));
    }
    // Applied to a copy (tensors are shared, not duplicated), kept only if burn-store took
    // every tensor: checked above, so a refusal here would mean it disagrees with a rule.
    let adapter = || Some(Box::new(PyTorchToBurnAdapter) as Box<dyn ModuleAdapter>);
    let result = match backbone {
        BackboneMut::ResNet(m) => apply_all(m, loaded, adapter()),
        BackboneMut::Vgg(m) => apply_all(m, loaded, adapter()),
    };
    result.map_err(|r| Refusal::Mismatch(format!("\n  - burn-store refused: {r}")))?;
    Ok(Loaded {
        backbone: kind.describe(),
        field: String::new(),
        tensors: matches.len(),
        values,
        unused: tensors.total - matches.len(),
        summed_rgb: matches.iter().any(|m| m.sum_rgb),
        prefix: tensors.prefix,
    })
}

/// Applies `snapshots` to a copy of `module` and puts it in place if nothing was refused or
/// left out.
fn apply_all<B: Backend, M: ModuleSnapshot<B> + Clone>(
    module: &mut M,
    snapshots: Vec<TensorSnapshot>,
    adapter: Option<Box<dyn ModuleAdapter>>,
) -> Result<(), ApplyResult> {
    let mut copy = module.clone();
    let result = copy.apply(snapshots, None, adapter, false);
    if !result.errors.is_empty() || !result.missing.is_empty() {
        return Err(result);
    }
    *module = copy;
    Ok(())
}

/// A checkpoint's tensors under the backbone's names.
struct FileTensors {
    /// Tensors in the file.
    total: usize,
    /// The wrapper prefix stripped from every key (`module.`), or empty.
    prefix: String,
    /// The file's keys as torchvision names them (prefix stripped) with their shapes, for
    /// the hints.
    shapes: BTreeMap<String, Vec<usize>>,
    /// Renamed key -> the file's own key.
    original: HashMap<String, String>,
    /// Float tensors the backbone may use, by renamed key.
    candidates: BTreeMap<String, TensorSnapshot>,
}

impl FileTensors {
    fn new(snapshots: Vec<TensorSnapshot>, kind: &TorchvisionBackbone) -> Self {
        let total = snapshots.len();
        let keys: Vec<String> = snapshots.iter().map(|s| s.full_path()).collect();
        let prefix = checkpoint::wrapper_prefix(
            keys.iter().map(String::as_str),
            kind.first_conv_torchvision(),
        );
        let shapes = snapshots
            .iter()
            .filter_map(|s| {
                let key = s.full_path();
                let key = key.strip_prefix(&prefix)?.to_string();
                Some((key, s.shape.as_slice().to_vec()))
            })
            .collect();
        let mut patterns = Vec::new();
        if !prefix.is_empty() {
            patterns.push((format!("^{}", regex::escape(&prefix)), String::new()));
        }
        patterns.extend(kind.remap_patterns());
        let remapper = KeyRemapper::from_patterns(patterns)
            .expect("escaped prefixes and the models crate's fixed patterns are valid expressions");
        let (renamed, names) = remapper.remap(snapshots);
        let candidates = renamed
            .into_iter()
            .filter(|s| {
                !TorchvisionBackbone::unused_by_design(&s.full_path()) && s.dtype.is_float()
            })
            .map(|s| (s.full_path(), s))
            .collect();
        Self {
            total,
            prefix,
            shapes,
            original: names.into_iter().collect(),
            candidates,
        }
    }

    /// The file's tensor for every parameter of the backbone (`targets`), or every reason why
    /// not, one per line.
    fn matches(
        &self,
        targets: Vec<TensorSnapshot>,
        kind: &TorchvisionBackbone,
    ) -> Result<Vec<Match>, String> {
        let mut matches = Vec::new();
        let mut missing = Vec::new();
        let mut shapes = Vec::new();
        let mut first_conv_channels = None;
        for target in targets {
            let path = target.full_path();
            let Some(source) = source_key(&target, &self.candidates) else {
                missing.push(kind.torchvision_key(&path));
                continue;
            };
            let file_dims = self.candidates[&source].shape.as_slice().to_vec();
            let dims = target.shape.as_slice().to_vec();
            let first_conv = path == kind.first_conv() && file_dims.len() == 4 && dims.len() == 4;
            let rgb_to_gray = first_conv
                && (file_dims[1], dims[1]) == (3, 1)
                && (file_dims[0], file_dims[2], file_dims[3]) == (dims[0], dims[2], dims[3]);
            if file_dims != dims && !rgb_to_gray {
                let key = self.original.get(&source).unwrap_or(&source);
                shapes.push(format!(
                    "{key}: the file has {file_dims:?}, this backbone {dims:?}"
                ));
                if first_conv && file_dims[1] != dims[1] && (file_dims[1], dims[1]) != (3, 1) {
                    first_conv_channels = Some((file_dims[1], dims[1]));
                }
                continue;
            }
            matches.push(Match {
                source,
                target,
                sum_rgb: rgb_to_gray,
            });
        }
        if missing.is_empty() && shapes.is_empty() {
            return Ok(matches);
        }
        Err(Problems {
            kind,
            file_shapes: &self.shapes,
            missing: &missing,
            shapes: &shapes,
            first_conv_channels,
        }
        .describe())
    }
}

/// The file's key (after renaming) for the backbone parameter `target`: its own path, or for
/// a BatchNorm's gamma/beta the PyTorch weight/bias that burn-store's adapter renames.
fn source_key(
    target: &TensorSnapshot,
    candidates: &BTreeMap<String, TensorSnapshot>,
) -> Option<String> {
    let path = target.full_path();
    if candidates.contains_key(&path) {
        return Some(path);
    }
    if target.module_type().as_deref() != Some("Struct:BatchNorm") {
        return None;
    }
    let (stem, last) = path.rsplit_once('.')?;
    let pytorch = match last {
        "gamma" => "weight",
        "beta" => "bias",
        _ => return None,
    };
    let alt = format!("{stem}.{pytorch}");
    candidates.contains_key(&alt).then_some(alt)
}

/// `[out, 3, kh, kw]` -> `[out, 1, kh, kw]`, each filter summed over its RGB planes (f32).
fn sum_rgb(data: TensorData) -> TensorData {
    let dims = data.shape.as_slice().to_vec();
    let plane = dims[2] * dims[3];
    let values: Vec<f32> = data.to_vec().expect("converted to f32 above");
    let summed: Vec<f32> = values
        .chunks(3 * plane)
        .flat_map(|filter| {
            (0..plane).map(move |i| filter[i] + filter[plane + i] + filter[2 * plane + i])
        })
        .collect();
    TensorData::new(summed, [dims[0], 1, dims[2], dims[3]])
}

/// Everything wrong with a file for a backbone, with what it seems to hold.
struct Problems<'a> {
    kind: &'a TorchvisionBackbone,
    /// torchvision key -> shape.
    file_shapes: &'a BTreeMap<String, Vec<usize>>,
    missing: &'a [String],
    shapes: &'a [String],
    /// (the file's, the backbone's) input channels of the first convolution, when they differ.
    first_conv_channels: Option<(usize, usize)>,
}

impl Problems<'_> {
    fn describe(&self) -> String {
        let mut lines = Vec::new();
        if !self.shapes.is_empty() {
            lines.push(format!(
                "{} another shape: {}",
                count(self.shapes.len(), "tensor has", "tensors have"),
                shown(self.shapes)
            ));
        }
        if !self.missing.is_empty() {
            lines.push(format!(
                "{} not in the file: {}",
                count(self.missing.len(), "parameter is", "parameters are"),
                shown(self.missing)
            ));
        }
        match identify::describe(self.file_shapes) {
            Some(held) => lines.push(format!(
                "the file holds a {held}; this backbone is a {}",
                self.kind.describe()
            )),
            None => {
                let first: Vec<String> = self.file_shapes.keys().take(5).cloned().collect();
                lines.push(format!(
                    "the file holds no torchvision ResNet or VGG keys (its first keys: {})",
                    first.join(", ")
                ));
            }
        }
        let file_width = self
            .file_shapes
            .get(self.kind.first_conv_torchvision())
            .and_then(|s| s.first().copied());
        let width = self.kind.base_width();
        if let Some(w) = file_width
            && w != width
        {
            lines.push(format!(
                "its first convolution has {w} filters and this backbone's {width}: pre-trained \
                 weights need the backbone at the file's widths (torchvision's base width is \
                 {TORCHVISION_BASE_WIDTH}: leave out --width-scale and any base_width option)"
            ));
        }
        if let Some((file, here)) = self.first_conv_channels {
            lines.push(format!(
                "the first convolution reads {file} channels in the file and {here} here; only \
                 3 (RGB) into 1 (gray, filters summed) is converted"
            ));
        }
        let stem_missing = self.missing.iter().any(|k| k == "conv2.weight");
        if self.kind.deep_stem() && stem_missing {
            lines.push(
                "this backbone has JMedSeg's deep stem (three 3x3 convolutions, conv1-conv3) and \
                 torchvision's ResNets one 7x7 convolution: use a deep-base checkpoint (conv2, \
                 bn2, conv3, bn3 at the top level, as the ResNets of PSPNet's semseg code), or \
                 where the member has the option, --model-opt deep_stem=false"
                    .into(),
            );
        }
        if !self.kind.deep_stem() && self.file_shapes.contains_key("conv2.weight") {
            lines.push(
                "the file has a deep stem (conv2, conv3 at the top level) and this backbone \
                 torchvision's 7x7 stem"
                    .into(),
            );
        }
        lines
            .iter()
            .map(|l| format!("\n  - {l}"))
            .collect::<String>()
    }
}

/// `1 tensor has`, `3 tensors have`.
fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The first [`SHOWN`] entries, and how many more there are.
fn shown(list: &[String]) -> String {
    let head = list[..list.len().min(SHOWN)].join(", ");
    if list.len() > SHOWN {
        format!("{head} and {} more", list.len() - SHOWN)
    } else {
        head
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rgb_filters_are_summed_per_position() {
        // Two filters of 1x2: filter 0 has R = [1, 2], G = [10, 20], B = [100, 200].
        let values: Vec<f32> = vec![1., 2., 10., 20., 100., 200., 0., 1., 0., 1., 0., 1.];
        let summed = sum_rgb(TensorData::new(values, [2, 3, 1, 2]));
        assert_eq!(summed.shape.as_slice(), &[2, 1, 1, 2]);
        assert_eq!(summed.to_vec::<f32>().unwrap(), vec![111., 222., 0., 3.]);
    }
}
