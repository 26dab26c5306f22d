//! Which split each patient belongs to: named ranges or lists (`train=myo01-myo38`) as a data
//! set's README gives them, or seeded fractions when it gives none. Whole patients only, so no
//! patient's slices are ever on both sides of a split.

use std::collections::BTreeMap;

use anyhow::{Context, bail, ensure};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

#[derive(Debug, Clone, PartialEq)]
pub enum Selector {
    /// `prefixNN-prefixMM`: same prefix, numeric suffix in the closed range.
    Range {
        prefix: String,
        lo: u64,
        hi: u64,
    },
    Name(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum SplitRule {
    /// split name -> the patients it takes, in the order given.
    Named(Vec<(String, Vec<Selector>)>),
    /// (split, fraction) shuffled with a seed; fractions sum to 1.
    Fractions {
        parts: Vec<(String, f64)>,
        seed: u64,
    },
}

impl SplitRule {
    /// Parses `--split` values such as `train=myo01-myo38` or `test=p7,p9`.
    pub fn named(specs: &[String]) -> anyhow::Result<Self> {
        let mut out: Vec<(String, Vec<Selector>)> = Vec::new();
        for spec in specs {
            let (split, rest) = spec.split_once('=').with_context(|| {
                format!("--split '{spec}': expected SPLIT=PATIENTS, e.g. train=myo01-myo38")
            })?;
            ensure!(!split.is_empty(), "--split '{spec}': empty split name");
            let mut sel = Vec::new();
            for item in rest.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                sel.push(parse_selector(item).with_context(|| format!("--split '{spec}'"))?);
            }
            ensure!(!sel.is_empty(), "--split '{spec}': no patients named");
            match out.iter_mut().find(|(s, _)| s == split) {
                Some((_, v)) => v.extend(sel),
                None => out.push((split.to_string(), sel)),
            }
        }
        ensure!(!out.is_empty(), "give at least one --split");
        Ok(Self::Named(out))
    }

    /// Parses `--split-fractions train=0.7,val=0.1,test=0.2`.
    pub fn fractions(spec: &str, seed: u64) -> anyhow::Result<Self> {
        let mut parts = Vec::new();
        for item in spec.split(',') {
            let (name, f) = item.split_once('=').with_context(|| {
                format!("--split-fractions '{spec}': expected SPLIT=FRACTION,...")
            })?;
            let f: f64 = f
                .trim()
                .parse()
                .with_context(|| format!("--split-fractions: '{f}' is not a number"))?;
            ensure!(
                f > 0.0 && f <= 1.0,
                "--split-fractions: {name}={f} must be in (0, 1]"
            );
            parts.push((name.trim().to_string(), f));
        }
        let sum: f64 = parts.iter().map(|p| p.1).sum();
        ensure!(
            (sum - 1.0).abs() < 1e-6,
            "--split-fractions '{spec}' sum to {sum}, expected 1"
        );
        Ok(Self::Fractions { parts, seed })
    }

    /// Assigns every patient to a split. Named rules refuse a patient named by two splits;
    /// patients named by none are left out (returned separately so the caller can say so).
    pub fn assign(&self, patients: &[String]) -> anyhow::Result<Assignment> {
        let mut split_of = BTreeMap::new();
        let mut unassigned = Vec::new();
        match self {
            Self::Named(rules) => {
                for p in patients {
                    let hits: Vec<&str> = rules
                        .iter()
                        .filter(|(_, sel)| sel.iter().any(|s| s.matches(p)))
                        .map(|(s, _)| s.as_str())
                        .collect();
                    match hits.as_slice() {
                        [] => unassigned.push(p.clone()),
                        [one] => {
                            split_of.insert(p.clone(), one.to_string());
                        }
                        many => bail!(
                            "patient '{p}' is named by more than one split: {}",
                            many.join(", ")
                        ),
                    }
                }
            }
            Self::Fractions { parts, seed } => {
                let mut order: Vec<&String> = patients.iter().collect();
                order.sort();
                order.dedup();
                order.shuffle(&mut ChaCha8Rng::seed_from_u64(*seed));
                let n = order.len();
                let mut start = 0usize;
                let mut acc = 0.0;
                for (i, (name, f)) in parts.iter().enumerate() {
                    acc += f;
                    let end = if i + 1 == parts.len() {
                        n
                    } else {
                        (acc * n as f64).round() as usize
                    };
                    for p in &order[start..end.max(start)] {
                        split_of.insert((*p).clone(), name.clone());
                    }
                    start = end.max(start);
                }
            }
        }
        Ok(Assignment {
            split_of,
            unassigned,
        })
    }
}

#[derive(Debug)]
pub struct Assignment {
    pub split_of: BTreeMap<String, String>,
    pub unassigned: Vec<String>,
}

fn parse_selector(item: &str) -> anyhow::Result<Selector> {
    if let Some((a, b)) = item.split_once('-') {
        let (pa, na) =
            split_number(a).with_context(|| format!("range start '{a}' has no number"))?;
        let (pb, nb) = split_number(b).with_context(|| format!("range end '{b}' has no number"))?;
        ensure!(
            pa == pb,
            "range '{item}': '{pa}' and '{pb}' are different prefixes"
        );
        ensure!(na <= nb, "range '{item}' is empty");
        return Ok(Selector::Range {
            prefix: pa.to_string(),
            lo: na,
            hi: nb,
        });
    }
    Ok(Selector::Name(item.to_string()))
}

/// `myo07` -> ("myo", 7).
fn split_number(s: &str) -> Option<(&str, u64)> {
    let digits = s.len() - s.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    if digits == 0 {
        return None;
    }
    let (prefix, num) = s.split_at(s.len() - digits);
    Some((prefix, num.parse().ok()?))
}

impl Selector {
    fn matches(&self, patient: &str) -> bool {
        match self {
            Self::Name(n) => n == patient,
            Self::Range { prefix, lo, hi } => {
                split_number(patient).is_some_and(|(p, n)| p == prefix && (*lo..=*hi).contains(&n))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn ranges_and_names_assign_whole_patients() {
        let rule = SplitRule::named(&names(&["train=myo01-myo03", "test=myo10,other"])).unwrap();
        let a = rule
            .assign(&names(&[
                "myo01", "myo03", "myo04", "myo10", "other", "myo1x",
            ]))
            .unwrap();
        assert_eq!(a.split_of["myo01"], "train");
        assert_eq!(a.split_of["myo03"], "train");
        assert_eq!(a.split_of["myo10"], "test");
        assert_eq!(a.split_of["other"], "test");
        assert_eq!(a.unassigned, names(&["myo04", "myo1x"]));
    }

    #[test]
    fn overlapping_rules_and_bad_ranges_are_refused() {
        let rule = SplitRule::named(&names(&["train=p1-p5", "val=p5"])).unwrap();
        let err = rule.assign(&names(&["p5"])).unwrap_err().to_string();
        assert!(err.contains("p5") && err.contains("more than one"), "{err}");
        assert!(SplitRule::named(&names(&["train=a1-b3"])).is_err());
        assert!(SplitRule::named(&names(&["train"])).is_err());
        assert!(SplitRule::named(&names(&["train=p9-p2"])).is_err());
    }

    #[test]
    fn fractions_cover_every_patient_once_and_are_seeded() {
        let patients: Vec<String> = (0..20).map(|i| format!("p{i}")).collect();
        let rule = SplitRule::fractions("train=0.7,val=0.1,test=0.2", 3).unwrap();
        let a = rule.assign(&patients).unwrap();
        assert_eq!(a.split_of.len(), 20);
        let count = |s: &str| a.split_of.values().filter(|v| *v == s).count();
        assert_eq!((count("train"), count("val"), count("test")), (14, 2, 4));
        assert_eq!(rule.assign(&patients).unwrap().split_of, a.split_of);
        assert!(SplitRule::fractions("train=0.7,test=0.2", 3).is_err());
    }
}
