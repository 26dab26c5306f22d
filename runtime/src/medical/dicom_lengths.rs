//! A check of a DICOM file's element lengths against its size, before dicom-rs parses it.
//!
//! Why by hand: dicom-rs 0.10 zero-fills a buffer of an element's declared length before
//! reading its value (`read_value_ob` and friends: `try_reserve_exact` then `resize`), so one
//! corrupted length field in a 3 KB file makes it fill 4 GB of memory before failing (found
//! by `runtime/tests/fuzz_loaders.rs`: 5 s and 4 GB resident per such upload; a bedside board
//! with 2 GB would be killed). No option of the parser bounds that, so the runtime walks the
//! element headers first, as the parser will, and refuses a length that runs past the end of
//! the file (a length that fits is read without harm).
//!
//! The walk follows the structure the parser follows: the file meta group (explicit VR little
//! endian), then the data set in its transfer syntax (implicit or explicit VR, little or big
//! endian; deflated data sets are inflated first, up to a limit). Sequences and items are
//! entered, so lengths nested in them are checked too; encapsulated pixel data fragments are
//! skipped by their lengths. In implicit VR a sequence with a defined length is recognised by
//! its first item tag (the dictionary the parser uses is not needed for that).

use std::io::Read;

use anyhow::{bail, ensure};

const ITEM: (u16, u16) = (0xFFFE, 0xE000);
const ITEM_END: (u16, u16) = (0xFFFE, 0xE00D);
const SEQUENCE_END: (u16, u16) = (0xFFFE, 0xE0DD);
const UNDEFINED: u32 = 0xFFFF_FFFF;
/// Largest inflated data set of a deflated file (the whole file then lives in memory).
const MAX_INFLATED: u64 = 1 << 30;

#[derive(Clone, Copy)]
struct Encoding {
    explicit_vr: bool,
    big_endian: bool,
}

/// Checks the file's bytes (with or without the 128-byte preamble, starting at "DICM" or at
/// the preamble); `name` is the file in errors. Files without the DICM marker are left to the
/// parser, which refuses them.
pub fn check(bytes: &[u8], name: &str) -> anyhow::Result<()> {
    let Some(marked) = super::dicom_file::from_marker(bytes) else {
        return Ok(());
    };
    let body = &marked[4..];
    let little_explicit = Encoding {
        explicit_vr: true,
        big_endian: false,
    };
    // The meta group: group 0002 elements, always explicit VR little endian.
    let mut walker = Walker {
        bytes: body,
        at: 0,
        encoding: little_explicit,
        name,
        last_vr_is_sequence: false,
        last_vr: [0; 2],
    };
    let mut syntax = String::new();
    while walker.at + 4 <= body.len() && walker.peek_group() == Some(0x0002) {
        let (tag, length) = walker.header()?;
        let value = walker.value(tag, length)?;
        if tag == (0x0002, 0x0010) {
            syntax = String::from_utf8_lossy(value)
                .trim_end_matches(['\0', ' '])
                .to_string();
        }
    }
    let rest = &body[walker.at..];
    let encoding = match syntax.as_str() {
        "1.2.840.10008.1.2" => Encoding {
            explicit_vr: false,
            big_endian: false,
        },
        "1.2.840.10008.1.2.2" => Encoding {
            explicit_vr: true,
            big_endian: true,
        },
        _ => little_explicit,
    };
    if syntax == "1.2.840.10008.1.2.1.99" {
        let mut inflated = Vec::new();
        // A corrupt stream is the parser's to report; only its size is bounded here.
        let _ = flate2::read::DeflateDecoder::new(rest)
            .take(MAX_INFLATED + 1)
            .read_to_end(&mut inflated);
        ensure!(
            inflated.len() as u64 <= MAX_INFLATED,
            "{name}: the deflated data set inflates to more than {} MB",
            MAX_INFLATED >> 20
        );
        return walk_data_set(&inflated, encoding, name);
    }
    walk_data_set(rest, encoding, name)
}

/// Where the walk is: in a data set (the file's, or a sequence item's), in a sequence
/// (expecting items), or in encapsulated pixel data (expecting fragments). `end` is the byte
/// where a defined-length item or sequence ends; undefined lengths end at their delimiter.
enum Context {
    DataSet { end: Option<usize> },
    Sequence { end: Option<usize> },
    Fragments,
}

fn walk_data_set(bytes: &[u8], encoding: Encoding, name: &str) -> anyhow::Result<()> {
    let mut w = Walker {
        bytes,
        at: 0,
        encoding,
        name,
        last_vr_is_sequence: false,
        last_vr: [0; 2],
    };
    let mut stack = vec![Context::DataSet { end: None }];
    // A truncated last header is the parser's to report, as is an unexpected tag: the walk
    // stops there, having checked every length before it.
    while w.at + 8 <= bytes.len() {
        let ended = |c: &Context| match c {
            Context::DataSet { end } | Context::Sequence { end } => end.is_some_and(|e| w.at >= e),
            Context::Fragments => false,
        };
        if stack.last().is_some_and(ended) {
            stack.pop();
            continue;
        }
        let Some(context) = stack.last() else {
            return Ok(());
        };
        let (tag, length) = w.header()?;
        match context {
            Context::DataSet { end } => {
                let in_item = end.is_some();
                if tag == ITEM_END {
                    if !in_item && stack.len() > 1 {
                        stack.pop();
                    }
                    continue;
                }
                if tag.0 == 0xFFFE {
                    return Ok(());
                }
                let sequence = if encoding.explicit_vr {
                    w.last_vr_is_sequence
                } else {
                    (length == UNDEFINED && tag != (0x7FE0, 0x0010)) || w.starts_item(length)
                };
                if encoding.explicit_vr && length == UNDEFINED && w.last_vr == *b"UN" {
                    // A sequence of unknown type: its contents are implicit VR whatever the
                    // file's syntax. Rare; the walk leaves the rest to the parser.
                    return Ok(());
                }
                if sequence || (length == UNDEFINED && tag != (0x7FE0, 0x0010)) {
                    let end = w.defined_end(tag, length)?;
                    stack.push(Context::Sequence { end });
                } else if length == UNDEFINED {
                    stack.push(Context::Fragments);
                } else {
                    w.value(tag, length)?;
                }
            }
            Context::Sequence { .. } => match tag {
                ITEM => {
                    let end = w.defined_end(tag, length)?;
                    stack.push(Context::DataSet { end });
                }
                SEQUENCE_END => {
                    stack.pop();
                }
                _ => return Ok(()),
            },
            Context::Fragments => match tag {
                ITEM => {
                    w.value(tag, length)?;
                }
                SEQUENCE_END => {
                    stack.pop();
                }
                _ => return Ok(()),
            },
        }
    }
    Ok(())
}

struct Walker<'a> {
    bytes: &'a [u8],
    at: usize,
    encoding: Encoding,
    name: &'a str,
    /// Whether the last explicit VR read was SQ, and that VR.
    last_vr_is_sequence: bool,
    last_vr: [u8; 2],
}

impl Walker<'_> {
    fn u16_at(&self, at: usize) -> Option<u16> {
        let b: [u8; 2] = self.bytes.get(at..at + 2)?.try_into().ok()?;
        Some(if self.encoding.big_endian {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        })
    }

    fn u32_at(&self, at: usize) -> Option<u32> {
        let b: [u8; 4] = self.bytes.get(at..at + 4)?.try_into().ok()?;
        Some(if self.encoding.big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        })
    }

    fn peek_group(&self) -> Option<u16> {
        self.u16_at(self.at)
    }

    fn tag_at(&self, at: usize) -> Option<(u16, u16)> {
        Some((self.u16_at(at)?, self.u16_at(at + 2)?))
    }

    /// Reads an element header: its tag and value length. Records whether an explicit VR
    /// named a sequence.
    fn header(&mut self) -> anyhow::Result<((u16, u16), u32)> {
        let short = || anyhow::anyhow!("{}: the file ends inside an element header", self.name);
        let tag = self.tag_at(self.at).ok_or_else(short)?;
        self.last_vr_is_sequence = false;
        self.last_vr = [0; 2];
        if tag.0 == 0xFFFE || !self.encoding.explicit_vr {
            let length = self.u32_at(self.at + 4).ok_or_else(short)?;
            self.at += 8;
            return Ok((tag, length));
        }
        let vr = self.bytes.get(self.at + 4..self.at + 6).ok_or_else(short)?;
        self.last_vr_is_sequence = vr == b"SQ";
        self.last_vr = [vr[0], vr[1]];
        let long = matches!(
            vr,
            b"OB"
                | b"OD"
                | b"OF"
                | b"OL"
                | b"OV"
                | b"OW"
                | b"SQ"
                | b"SV"
                | b"UC"
                | b"UN"
                | b"UR"
                | b"UT"
                | b"UV"
        );
        if long {
            let length = self.u32_at(self.at + 8).ok_or_else(short)?;
            self.at += 12;
            Ok((tag, length))
        } else {
            let length = self.u16_at(self.at + 6).ok_or_else(short)?;
            self.at += 8;
            Ok((tag, u32::from(length)))
        }
    }

    /// Skips a value of `length` bytes, refusing one that runs past the end of the file.
    fn value(&mut self, (g, e): (u16, u16), length: u32) -> anyhow::Result<&[u8]> {
        let remaining = self.bytes.len() - self.at;
        if length as usize > remaining {
            bail!(
                "{}: element ({g:04X},{e:04X}) at byte {} declares {length} bytes, but only \
                 {remaining} follow (a corrupt or truncated file)",
                self.name,
                self.at
            );
        }
        let value = &self.bytes[self.at..self.at + length as usize];
        self.at += length as usize;
        Ok(value)
    }

    /// Whether the value about to be read (of `length` bytes) begins with an item tag: a
    /// sequence in implicit VR.
    fn starts_item(&self, length: u32) -> bool {
        length >= 8 && self.tag_at(self.at) == Some(ITEM)
    }

    /// The byte where a container of `length` bytes starting here ends (`None` for an
    /// undefined length), refusing one that runs past the end of the file.
    fn defined_end(&self, (g, e): (u16, u16), length: u32) -> anyhow::Result<Option<usize>> {
        if length == UNDEFINED {
            return Ok(None);
        }
        let remaining = self.bytes.len() - self.at;
        ensure!(
            length as usize <= remaining,
            "{}: element ({g:04X},{e:04X}) at byte {} declares {length} bytes, but only \
             {remaining} follow (a corrupt or truncated file)",
            self.name,
            self.at
        );
        Ok(Some(self.at + length as usize))
    }
}

#[cfg(test)]
mod tests {
    use dicom_core::value::DataSetSequence;
    use dicom_core::{DataElement, PrimitiveValue, VR};
    use dicom_dictionary_std::{tags, uids};
    use dicom_object::{FileMetaTableBuilder, InMemDicomObject};

    use super::*;

    /// A file with a sequence (one item holding a text element) and 16-bit pixel data.
    fn file(syntax: &str) -> Vec<u8> {
        let item = InMemDicomObject::from_element_iter([DataElement::new(
            tags::CODE_MEANING,
            VR::LO,
            "vertebral body",
        )]);
        let obj = InMemDicomObject::from_element_iter([
            DataElement::new(tags::SOP_CLASS_UID, VR::UI, uids::CT_IMAGE_STORAGE),
            DataElement::new(tags::SOP_INSTANCE_UID, VR::UI, "1.2.3.4"),
            DataElement::new(
                tags::ANATOMIC_REGION_SEQUENCE,
                VR::SQ,
                DataSetSequence::from(vec![item]),
            ),
            DataElement::new(
                tags::PIXEL_DATA,
                VR::OW,
                PrimitiveValue::U16(vec![7; 64].into()),
            ),
        ]);
        let mut bytes = Vec::new();
        obj.with_meta(FileMetaTableBuilder::new().transfer_syntax(syntax))
            .unwrap()
            .write_all(&mut bytes)
            .unwrap();
        bytes
    }

    /// The byte offset of `needle` in `bytes`.
    fn find(bytes: &[u8], needle: &[u8]) -> usize {
        bytes
            .windows(needle.len())
            .position(|w| w == needle)
            .unwrap()
    }

    #[test]
    fn valid_files_pass_in_every_syntax_and_with_compressed_fragments() {
        for syntax in [
            uids::EXPLICIT_VR_LITTLE_ENDIAN,
            uids::IMPLICIT_VR_LITTLE_ENDIAN,
            uids::DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
        ] {
            check(&file(syntax), "f.dcm").unwrap_or_else(|e| panic!("{syntax}: {e:#}"));
        }
        let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../trainer/tests/fixtures/dicom");
        for kind in ["jpeg-lossless", "rle", "j2k", "jpeg-ls", "deflate"] {
            let bytes = std::fs::read(fixtures.join(kind).join("IM7")).unwrap();
            check(&bytes, kind).unwrap_or_else(|e| panic!("{kind}: {e:#}"));
        }
    }

    #[test]
    fn a_length_past_the_end_is_refused_at_the_top_and_inside_a_sequence() {
        for syntax in [
            uids::EXPLICIT_VR_LITTLE_ENDIAN,
            uids::IMPLICIT_VR_LITTLE_ENDIAN,
        ] {
            let good = file(syntax);
            // The pixel data's length: 128 bytes, declared as 4 GB.
            let mut bad = good.clone();
            let at = find(&bad, &128u32.to_le_bytes());
            bad[at..at + 4].copy_from_slice(&0xF000_0000u32.to_le_bytes());
            let err = check(&bad, "bad.dcm").unwrap_err().to_string();
            assert!(
                err.contains("bad.dcm") && err.contains("(7FE0,0010)"),
                "{syntax}: {err}"
            );
            // The text element inside the sequence's item.
            let mut bad = good.clone();
            let text = find(&bad, b"vertebral body");
            let length_at = if syntax == uids::IMPLICIT_VR_LITTLE_ENDIAN {
                text - 4
            } else {
                text - 2
            };
            bad[length_at] = 0xFF;
            bad[length_at + 1] = 0xFF;
            if syntax == uids::IMPLICIT_VR_LITTLE_ENDIAN {
                bad[length_at + 2] = 0x00;
                bad[length_at + 3] = 0x01;
            }
            let err = check(&bad, "nested.dcm").unwrap_err().to_string();
            assert!(err.contains("(0008,0104)"), "{syntax}: {err}");
        }
    }
}
