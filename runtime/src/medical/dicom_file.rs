//! Opening one DICOM file: its attributes, and a refusal naming the transfer syntax when this
//! build cannot decode its pixel data. Uncompressed, deflated, JPEG (8-bit baseline and
//! extended, lossless), JPEG 2000 and RLE Lossless files are decoded by dicom-rs's pure-Rust
//! codecs; other transfer syntaxes (JPEG-LS, video) get an error naming the syntax and the file.

use std::path::Path;

use anyhow::{Context, bail};
use dicom_dictionary_std::tags;
use dicom_object::file::ReadPreamble;
use dicom_object::{DefaultDicomObject, InMemDicomObject, OpenFileOptions, Tag};
use dicom_transfer_syntax_registry::{TransferSyntaxIndex, TransferSyntaxRegistry};

use super::dicom_lengths;

/// Opens a DICOM file and refuses transfer syntaxes whose pixel data this build cannot decode.
pub fn open(path: &Path) -> anyhow::Result<DefaultDicomObject> {
    let bytes = read(path)?;
    decodable(parse(&bytes, &path.display().to_string(), None)?, path)
}

/// [`open`] for a file already in memory (an upload), `name` standing for its path in errors.
/// Takes the file with or without its 128-byte preamble.
pub fn open_bytes(bytes: &[u8], name: &str) -> anyhow::Result<DefaultDicomObject> {
    decodable(parse(bytes, name, None)?, Path::new(name))
}

/// The file from its "DICM" marker on: at byte 128, after the preamble, or at byte 0 where a
/// writer left the preamble out (dicom-rs reads both). `None` for a file without the marker.
pub fn from_marker(bytes: &[u8]) -> Option<&[u8]> {
    match bytes.get(128..132) {
        Some(b"DICM") => Some(&bytes[128..]),
        _ if bytes.starts_with(b"DICM") => Some(bytes),
        _ => None,
    }
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

/// Parses a whole file from memory, up to `until` when given, once its element lengths are
/// known to fit in it ([`dicom_lengths`]: the parser would zero-fill whatever a corrupt
/// length declares).
fn parse(bytes: &[u8], name: &str, until: Option<Tag>) -> anyhow::Result<DefaultDicomObject> {
    let Some(body) = from_marker(bytes) else {
        bail!("{name} is not a DICOM file (no DICM marker at byte 0 or 128)");
    };
    dicom_lengths::check(bytes, name)?;
    let mut options = OpenFileOptions::new().read_preamble(ReadPreamble::Never);
    if let Some(tag) = until {
        options = options.read_until(tag);
    }
    options
        .from_reader(body)
        .with_context(|| format!("{name} is not a readable DICOM file"))
}

fn decodable(obj: DefaultDicomObject, path: &Path) -> anyhow::Result<DefaultDicomObject> {
    let uid = obj.meta().transfer_syntax().trim_end_matches(['\0', ' ']);
    match TransferSyntaxRegistry.get(uid) {
        Some(ts) if ts.can_decode_all() => Ok(obj),
        ts => bail!(
            "unsupported transfer syntax {} ({uid}) in {}: this build reads uncompressed, \
             deflated, JPEG, JPEG 2000 and RLE Lossless DICOM; decompress the file first \
             (e.g. `gdcmconv --raw IN OUT` or `dcmdjpls IN OUT`)",
            ts.map_or("unknown", |t| t.name()),
            path.display()
        ),
    }
}

/// Opens a DICOM file's attributes only, up to the pixel data, whatever its transfer syntax:
/// enough to tell its series, for the files of a folder that will not be read.
pub fn open_header(path: &Path) -> anyhow::Result<DefaultDicomObject> {
    let bytes = read(path)?;
    parse(&bytes, &path.display().to_string(), Some(tags::PIXEL_DATA))
}

/// A text attribute, trimmed; `None` when absent or not text. Takes files and sequence items.
pub fn text(obj: &InMemDicomObject, tag: Tag) -> Option<String> {
    obj.element_opt(tag)
        .ok()
        .flatten()
        .and_then(|e| e.to_str().ok())
        .map(|s| s.trim().to_string())
}
