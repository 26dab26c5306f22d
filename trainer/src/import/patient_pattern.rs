//! `import --patient-pattern`: which part of a file name is the patient, shared by the formats
//! that name patients that way (slices without a manifest, NIfTI volumes).

use std::fmt;

use regex::Regex;

/// A regular expression whose first group is the patient in a file name or stem. Checked when
/// the flag is parsed, so a bad pattern is refused before anything is read or written.
#[derive(Clone, Debug)]
pub struct PatientPattern(Regex);

impl PatientPattern {
    /// clap's value parser: a valid expression with at least one group.
    pub fn parse(pattern: &str) -> Result<Self, String> {
        let re = Regex::new(pattern)
            .map_err(|e| format!("'{pattern}' is not a valid regular expression: {e}"))?;
        if re.captures_len() < 2 {
            return Err(format!(
                "'{pattern}' needs a group ( ) around the patient, e.g. '^(myo\\d+)_'"
            ));
        }
        Ok(Self(re))
    }

    /// The patient in `name`: the first group's text, or None when the pattern does not match.
    pub fn patient<'a>(&self, name: &'a str) -> Option<&'a str> {
        self.0.captures(name)?.get(1).map(|m| m.as_str())
    }
}

impl fmt::Display for PatientPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_group_is_the_patient() {
        let p = PatientPattern::parse(r"^(myo\d+)_").unwrap();
        assert_eq!(p.patient("myo07_sag010.png"), Some("myo07"));
        assert_eq!(p.patient("other.png"), None);
        assert_eq!(p.to_string(), r"^(myo\d+)_");
    }

    #[test]
    fn a_bad_pattern_is_refused_by_name() {
        let err = PatientPattern::parse("(unclosed").unwrap_err();
        assert!(
            err.contains("'(unclosed' is not a valid regular expression"),
            "{err}"
        );
        let err = PatientPattern::parse("^myo").unwrap_err();
        assert!(err.contains("'^myo' needs a group"), "{err}");
    }
}
