//! Where a pipeline comes from: a named preset, or a TOML file of `[[steps]]` tables (the
//! same shape run.json stores).

use std::path::{Path, PathBuf};

use super::colour::{ColourJitter, Gamma, Jitter, Temperature};
use super::degrade::{Blur, Jpeg, Noise};
use super::geometry::{Affine, Elastic, Flip, Perspective};
use super::{Pipeline, Step};

/// The presets `--augment` knows, with a line each for `--help` and errors.
pub const PRESETS: &[(&str, &str)] = &[
    ("none", "no augmentation"),
    (
        "basic",
        "left-right flip (p 0.5) and linear intensity jitter (gain 1±0.1, offset ±0.1): what every run had before",
    ),
    (
        "jmedseg",
        "JMedSeg's colour augmentation: colour jitter brightness/contrast/saturation 0.4, hue 0.1 with p 0.8, then Gaussian blur sigma 0.1-2 with p 0.5",
    ),
    (
        "strong",
        "other scanners and phone photos: flip, rotation/scale/shift, perspective, elastic, colour jitter, colour temperature, gamma, blur, noise, JPEG",
    ),
    (
        "sas",
        "SAS's augmentation: the phone-capture simulator with its training settings (p 0.5), then everything in strong",
    ),
];

#[derive(Debug, thiserror::Error)]
pub enum AugmentError {
    #[error(
        "--augment {0}: not a preset ({presets}) nor a .toml pipeline file",
        presets = PRESETS.iter().map(|p| p.0).collect::<Vec<_>>().join(", ")
    )]
    Unknown(String),
    #[error("reading the augmentation pipeline {path}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Toml { path: PathBuf, message: String },
    #[error("{}augmentation step {} ({kind}): key `{key}` is {got}; expected {expected}", file.as_ref().map(|f| format!("{}: ", f.display())).unwrap_or_default(), index + 1)]
    Range {
        index: usize,
        kind: String,
        key: &'static str,
        expected: String,
        got: String,
        file: Option<PathBuf>,
    },
}

impl Pipeline {
    /// A named preset; see [`PRESETS`] and docs/AUGMENTATION.md for what each holds and why.
    pub fn preset(name: &str) -> Option<Pipeline> {
        let steps = match name {
            "none" => vec![],
            "basic" => vec![Step::Flip(Flip::default()), Step::Jitter(Jitter::default())],
            "jmedseg" => vec![
                Step::ColourJitter(ColourJitter::default()),
                Step::Blur(Blur {
                    p: 0.5,
                    sigma: [0.1, 2.0],
                }),
            ],
            "strong" => vec![
                Step::Affine(Affine {
                    p: 0.8,
                    rotate_degrees: [-20.0, 20.0],
                    scale: [0.85, 1.2],
                    shift: [-0.1, 0.1],
                }),
                Step::Perspective(Perspective {
                    p: 0.5,
                    corner: [-0.08, 0.08],
                }),
                Step::Elastic(Elastic {
                    p: 0.3,
                    grid: 4,
                    magnitude: [0.0, 0.03],
                }),
                Step::Flip(Flip::default()),
                Step::ColourJitter(ColourJitter {
                    p: 0.8,
                    brightness: 0.3,
                    contrast: 0.3,
                    saturation: 0.3,
                    hue: 0.05,
                }),
                Step::Temperature(Temperature {
                    p: 0.5,
                    shift: [-0.2, 0.2],
                }),
                Step::Gamma(Gamma {
                    p: 0.5,
                    exponent: [0.7, 1.5],
                }),
                Step::Blur(Blur {
                    p: 0.3,
                    sigma: [0.1, 1.5],
                }),
                Step::Noise(Noise {
                    p: 0.3,
                    sigma: [0.0, 0.03],
                }),
                Step::Jpeg(Jpeg {
                    p: 0.3,
                    quality: [30.0, 90.0],
                }),
            ],
            "sas" => {
                let mut steps = vec![Step::Phone(super::capture::Phone::default())];
                steps.extend(Pipeline::preset("strong")?.steps);
                steps
            }
            _ => return None,
        };
        Some(Pipeline { steps })
    }

    /// `--augment PRESET_OR_FILE`: a preset name, or a path ending in `.toml`.
    pub fn from_arg(arg: &str) -> Result<Pipeline, AugmentError> {
        if let Some(p) = Pipeline::preset(arg) {
            return Ok(p);
        }
        if arg.to_ascii_lowercase().ends_with(".toml") {
            return Pipeline::from_toml_file(Path::new(arg));
        }
        Err(AugmentError::Unknown(arg.to_string()))
    }

    pub fn from_toml_file(path: &Path) -> Result<Pipeline, AugmentError> {
        let text = std::fs::read_to_string(path).map_err(|source| AugmentError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Pipeline::from_toml(&text).map_err(|e| match e {
            AugmentError::Toml { message, .. } => AugmentError::Toml {
                path: path.to_path_buf(),
                message,
            },
            AugmentError::Range {
                index,
                kind,
                key,
                expected,
                got,
                ..
            } => AugmentError::Range {
                index,
                kind,
                key,
                expected,
                got,
                file: Some(path.to_path_buf()),
            },
            other => other,
        })
    }

    /// Parses and validates a pipeline file's text (errors carry an empty path).
    pub fn from_toml(text: &str) -> Result<Pipeline, AugmentError> {
        let toml_err = |message: String| AugmentError::Toml {
            path: PathBuf::new(),
            message,
        };
        let table: toml::Table = toml::from_str(text).map_err(|e| toml_err(e.to_string()))?;
        let mut steps = Vec::new();
        for (key, value) in table {
            if key != "steps" {
                return Err(toml_err(format!(
                    "unknown top-level key `{key}`; a pipeline file holds only [[steps]] tables"
                )));
            }
            let toml::Value::Array(items) = value else {
                return Err(toml_err(
                    "`steps` must be an array of [[steps]] tables".into(),
                ));
            };
            for (i, item) in items.into_iter().enumerate() {
                let kind = item
                    .get("kind")
                    .and_then(|k| k.as_str())
                    .map(str::to_string)
                    .ok_or_else(|| {
                        toml_err(format!(
                            "[[steps]] number {}: missing key `kind` (e.g. kind = \"flip\")",
                            i + 1
                        ))
                    })?;
                let step: Step = item.clone().try_into().map_err(|e: toml::de::Error| {
                    let culprit = culprit_key(&item, &kind)
                        .map(|k| format!(", key `{k}`"))
                        .unwrap_or_default();
                    toml_err(format!(
                        "[[steps]] number {} (kind = \"{kind}\"){culprit}: {}",
                        i + 1,
                        e.message()
                    ))
                })?;
                steps.push(step);
            }
        }
        let pipeline = Pipeline { steps };
        pipeline.validate()?;
        Ok(pipeline)
    }

    /// The pipeline as a TOML file (what `from_toml` reads back).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_default()
    }
}

/// The key of a step table that makes it fail to parse: `kind` itself, or the first key
/// that fails on its own beside it (serde's messages for a wrong type do not say which key).
fn culprit_key(item: &toml::Value, kind: &str) -> Option<String> {
    let parses = |extra: Option<(&String, &toml::Value)>| {
        let mut t = toml::Table::new();
        t.insert("kind".into(), toml::Value::String(kind.into()));
        if let Some((k, v)) = extra {
            t.insert(k.clone(), v.clone());
        }
        toml::Value::Table(t).try_into::<Step>().is_ok()
    };
    if !parses(None) {
        return Some("kind".into());
    }
    item.as_table()?
        .iter()
        .filter(|(k, _)| *k != "kind")
        .find(|(k, v)| !parses(Some((k, v))))
        .map(|(k, _)| k.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_parses_and_validates() {
        for (name, _) in PRESETS {
            let p = Pipeline::from_arg(name).unwrap();
            p.validate().unwrap();
            // Its TOML form reads back as the same pipeline.
            assert_eq!(Pipeline::from_toml(&p.to_toml()).unwrap(), p, "{name}");
        }
        assert!(Pipeline::preset("none").unwrap().steps.is_empty());
        let err = Pipeline::from_arg("strongest").unwrap_err().to_string();
        assert!(
            err.contains("strongest") && err.contains("jmedseg"),
            "{err}"
        );
    }

    #[test]
    fn a_pipeline_file_is_read_with_defaults_for_missing_keys() {
        let text = r#"
            [[steps]]
            kind = "flip"

            [[steps]]
            kind = "hue"
            p = 0.25
            shift = [-0.1, 0.1]

            [[steps]]
            kind = "jpeg"
            quality = [40, 80]
        "#;
        let p = Pipeline::from_toml(text).unwrap();
        assert_eq!(p.steps.len(), 3);
        assert_eq!(p.steps[0], Step::Flip(Flip::default()));
        assert_eq!(p.steps[1].op().probability(), 0.25);
        assert_eq!(
            p.steps[2],
            Step::Jpeg(Jpeg {
                p: 0.3,
                quality: [40.0, 80.0]
            })
        );
    }

    #[test]
    fn toml_errors_name_the_file_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path.to_string_lossy().into_owned()
        };
        let cases = [
            (
                "unknown_key.toml",
                "[[steps]]\nkind = \"blur\"\nsigmaa = [0.1, 1.0]\n",
                "sigmaa",
            ),
            (
                "unknown_kind.toml",
                "[[steps]]\nkind = \"sharpen\"\n",
                "sharpen",
            ),
            (
                "bad_range.toml",
                "[[steps]]\nkind = \"blur\"\nsigma = [2.0, 1.0]\n",
                "`sigma`",
            ),
            ("bad_p.toml", "[[steps]]\nkind = \"noise\"\np = 2\n", "`p`"),
            (
                "bad_type.toml",
                "[[steps]]\nkind = \"blur\"\nsigma = \"wide\"\n",
                "key `sigma`",
            ),
            ("no_kind.toml", "[[steps]]\np = 0.5\n", "`kind`"),
            ("top.toml", "preset = \"basic\"\n", "`preset`"),
            ("syntax.toml", "[[steps]\nkind = \"flip\"\n", "syntax.toml"),
        ];
        for (name, text, needle) in cases {
            let path = write(name, text);
            let err = Pipeline::from_arg(&path).unwrap_err().to_string();
            assert!(err.contains(name), "{name}: {err}");
            assert!(err.contains(needle), "{name}: {err}");
        }
        let missing = Pipeline::from_arg("/no/such/pipeline.toml")
            .unwrap_err()
            .to_string();
        assert!(missing.contains("/no/such/pipeline.toml"), "{missing}");
    }
}
