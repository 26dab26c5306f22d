//! Flags the user typed that the command would not use. clap knows which flags were typed
//! (`ValueSource::CommandLine`); the parsed structs only hold values, defaults included.

use anyhow::bail;
use clap::parser::ValueSource;
use clap::{Arg, ArgMatches, Command};

/// The subcommand's own flags (not the global ones) given on the command line.
fn typed<'a>(command: &'a Command, m: &'a ArgMatches) -> impl Iterator<Item = &'a Arg> {
    command
        .get_arguments()
        .filter(|a| !a.is_global_set())
        .filter(|a| m.value_source(a.get_id().as_str()) == Some(ValueSource::CommandLine))
}

fn flag(a: &Arg) -> String {
    format!("--{}", a.get_long().unwrap_or(a.get_id().as_str()))
}

/// Refuses the flags of `ids` that were typed, naming them and saying `why`.
pub fn refuse(command: &Command, m: &ArgMatches, ids: &[&str], why: &str) -> anyhow::Result<()> {
    let typed: Vec<String> = typed(command, m)
        .filter(|a| ids.contains(&a.get_id().as_str()))
        .map(flag)
        .collect();
    if !typed.is_empty() {
        bail!("{}: {why}", typed.join(", "));
    }
    Ok(())
}

/// With `train --resume`, a typed flag that the run's saved settings override would be
/// ignored without a word (a lower `--lr` that never applies): refuse it, naming it. `read`
/// are the ids a resumed run does read.
pub fn refuse_ignored_by_resume(
    command: &Command,
    m: &ArgMatches,
    read: &[&str],
) -> anyhow::Result<()> {
    if !m.get_flag("resume") {
        return Ok(());
    }
    let ignored: Vec<String> = typed(command, m)
        .filter(|a| !read.contains(&a.get_id().as_str()))
        .map(flag)
        .collect();
    if !ignored.is_empty() {
        bail!(
            "--resume continues the run with the settings in its run.json, so {} would be \
             ignored; drop them, or start a new run from this one with --init-from",
            ignored.join(", ")
        );
    }
    Ok(())
}

/// `import`: a flag whose help ends in a format tag such as `[nifti, msd, dicom]` applies to
/// those `--from` formats only; typed with another one it would be ignored, so it is refused.
/// The tags are what `--help` shows, and the format names are `--from`'s own values, so the
/// help and this check cannot disagree. A bracket that names anything else is not a tag.
pub fn refuse_other_formats(command: &Command, m: &ArgMatches) -> anyhow::Result<()> {
    let Some(from) = m
        .get_raw("from")
        .and_then(|mut v| v.next())
        .and_then(|v| v.to_str())
    else {
        return Ok(());
    };
    let formats: Vec<String> = command
        .get_arguments()
        .find(|a| a.get_id() == "from")
        .map(|a| {
            a.get_possible_values()
                .iter()
                .map(|v| v.get_name().to_string())
                .collect()
        })
        .unwrap_or_default();
    for a in typed(command, m) {
        // The long help is the whole doc comment where it has several paragraphs.
        let help = a
            .get_long_help()
            .or(a.get_help())
            .map(|h| h.to_string())
            .unwrap_or_default();
        let Some(tag) = help
            .trim_end()
            .strip_suffix(']')
            .and_then(|h| h.rsplit_once('['))
            .map(|(_, tag)| tag)
        else {
            continue;
        };
        let named: Vec<&str> = tag.split(',').map(str::trim).collect();
        if named.iter().all(|f| formats.iter().any(|g| g == f)) && !named.contains(&from) {
            bail!(
                "{} applies to --from {}, not --from {from}",
                flag(a),
                named.join(", ")
            );
        }
    }
    Ok(())
}
