//! A checkpoint file as burn-store's tensor snapshots, keyed by the names the file gives them:
//! PyTorch's `.pt`/`.pth` (`torch.save` of a state dict: a zip archive, or the older bare
//! pickle) through `PytorchStore`, and safetensors through `SafetensorsStore`. The format is
//! told from the file's first bytes, not its name.

use std::io::Read;
use std::path::Path;

use burn_store::{ModuleStore, PytorchStore, SafetensorsStore, TensorSnapshot};

use super::PretrainedError;
use medseg_runtime::panic_guard::guarded;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    PyTorch,
    Safetensors,
}

/// The format of `file` from its first bytes: a zip archive (`torch.save` since PyTorch 1.6),
/// a pickle (older `torch.save`), or safetensors (an 8-byte header length, then JSON).
pub fn sniff(file: &Path) -> Result<Format, PretrainedError> {
    let unreadable = |reason: String| PretrainedError::Unreadable {
        file: file.to_path_buf(),
        reason,
    };
    let mut head = [0u8; 9];
    let mut f = std::fs::File::open(file).map_err(|e| unreadable(e.to_string()))?;
    let size = f.metadata().map_err(|e| unreadable(e.to_string()))?.len();
    let n = f.read(&mut head).map_err(|e| unreadable(e.to_string()))?;
    let head = &head[..n];
    if head.starts_with(b"PK\x03\x04") || head.first() == Some(&0x80) {
        return Ok(Format::PyTorch);
    }
    if n == 9 && head[8] == b'{' {
        let header = u64::from_le_bytes(head[..8].try_into().expect("eight bytes"));
        if header.saturating_add(8) <= size {
            return Ok(Format::Safetensors);
        }
        return Err(unreadable(format!(
            "a safetensors header of {header} bytes in a file of {size}: the file is truncated"
        )));
    }
    Err(unreadable(format!(
        "neither a PyTorch checkpoint (torch.save: a zip archive or a pickle) nor a \
         safetensors file (first bytes {head:02x?}); save the state dict with torch.save or \
         safetensors.torch.save_file"
    )))
}

/// Every tensor of `file`, keyed by its name in the file. Corrupt or truncated files are an
/// error naming the file (a panic inside the readers included).
pub fn read(file: &Path) -> Result<Vec<TensorSnapshot>, PretrainedError> {
    let format = sniff(file)?;
    let read = || -> anyhow::Result<Vec<TensorSnapshot>> {
        let all = match format {
            // PyTorch files are read without renumbering Sequential indices: VGG's
            // `features.{i}` positions are what the key mapping expects.
            Format::PyTorch => PytorchStore::from_file(file)
                .map_indices_contiguous(false)
                .get_all_snapshots()
                .map_err(|e| anyhow::anyhow!("{e}"))?
                .values()
                .cloned()
                .collect(),
            Format::Safetensors => SafetensorsStore::from_file(file)
                .get_all_snapshots()
                .map_err(|e| anyhow::anyhow!("{e}"))?
                .values()
                .cloned()
                .collect(),
        };
        Ok(all)
    };
    let snapshots = guarded(read).map_err(|e| PretrainedError::Unreadable {
        file: file.to_path_buf(),
        reason: format!("{e:#}"),
    })?;
    if snapshots.is_empty() {
        return Err(PretrainedError::Unreadable {
            file: file.to_path_buf(),
            reason: "it holds no tensors".into(),
        });
    }
    Ok(snapshots)
}

/// The key prefix a wrapper put before the network's own keys (`module.` from
/// DataParallel, `state_dict.` from a training checkpoint, `encoder.` from another library),
/// found as what precedes the shortest key that ends, component-wise, in `first_conv`
/// (`conv1.weight`, not `layer1.0.conv1.weight`). Empty when the keys start with it.
pub fn wrapper_prefix<'a>(keys: impl IntoIterator<Item = &'a str>, first_conv: &str) -> String {
    keys.into_iter()
        .filter_map(|k| {
            let prefix = k.strip_suffix(first_conv)?;
            (prefix.is_empty() || prefix.ends_with('.')).then_some(prefix)
        })
        .min_by_key(|p| p.len())
        .unwrap_or("")
        .to_string()
}

/// The tensor's values, read from the file now (guarded like [`read`]).
pub fn load(
    snapshot: &TensorSnapshot,
    file: &Path,
) -> Result<burn::tensor::TensorData, PretrainedError> {
    let key = snapshot.full_path();
    guarded(|| snapshot.to_data().map_err(|e| anyhow::anyhow!("{e:?}"))).map_err(|e| {
        PretrainedError::Unreadable {
            file: file.to_path_buf(),
            reason: format!("tensor {key}: {e:#}"),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wrapper_prefix_is_what_precedes_the_first_convolution() {
        let keys = ["layer1.0.conv1.weight", "conv1.weight", "fc.weight"];
        assert_eq!(wrapper_prefix(keys, "conv1.weight"), "");
        let keys = ["module.layer1.0.conv1.weight", "module.conv1.weight"];
        assert_eq!(wrapper_prefix(keys, "conv1.weight"), "module.");
        let keys = [
            "state_dict.features.0.weight",
            "state_dict.features.10.weight",
        ];
        assert_eq!(wrapper_prefix(keys, "features.0.weight"), "state_dict.");
        assert_eq!(wrapper_prefix(["xconv1.weight"], "conv1.weight"), "");
    }

    #[test]
    fn formats_are_told_by_their_first_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let cases: [(&str, &[u8], Result<Format, &str>); 5] = [
            ("a.pt", b"PK\x03\x04rest", Ok(Format::PyTorch)),
            ("b.bin", b"\x80\x02}q\x00", Ok(Format::PyTorch)),
            (
                "c.st",
                b"\x02\x00\x00\x00\x00\x00\x00\x00{}",
                Ok(Format::Safetensors),
            ),
            (
                "d.st",
                b"\xff\x00\x00\x00\x00\x00\x00\x00{}",
                Err("truncated"),
            ),
            ("e.pt", b"hello world", Err("neither a PyTorch")),
        ];
        for (name, bytes, expected) in cases {
            let path = dir.path().join(name);
            std::fs::write(&path, bytes).unwrap();
            match (sniff(&path), expected) {
                (Ok(f), Ok(e)) => assert_eq!(f, e, "{name}"),
                (Err(err), Err(e)) => {
                    let msg = err.to_string();
                    assert!(msg.contains(e) && msg.contains(name), "{msg}");
                }
                (got, _) => panic!("{name}: {got:?}"),
            }
        }
        let err = sniff(&dir.path().join("missing.pt")).unwrap_err();
        assert!(err.to_string().contains("missing.pt"), "{err}");
    }
}
