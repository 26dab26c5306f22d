//! The messages and their size limits.
//!
//! Compatibility rule: the enums below are serialized by variant index, so new variants and
//! new reasons are only ever appended; anything else bumps [`PROTOCOL_VERSION`], which both
//! sides exchange in `Hello` / `Capabilities` before any transfer.

use heapless::{String, Vec};
use serde::{Deserialize, Serialize};

/// Version of the message set; peers with another version refuse the handshake.
pub const PROTOCOL_VERSION: u16 = 1;
/// Most image bytes in one `ImageChunk` (and most pixel bytes in one `DisplayChunk`).
pub const MAX_CHUNK: usize = 512;
/// Most chunks in one image: bounds the receiver's bitmap of received chunks (1 KiB).
pub const MAX_CHUNKS: usize = 8192;
/// Sequence numbers covered by one `Nack(Missing)` bitmap (the rest follow in later rounds).
/// A bitmap keeps the frame short (about 45 bytes) however scattered the losses: on a noisy
/// line, short frames are the ones that get through.
pub const NACK_WINDOW: usize = 256;
/// Most classes reported in a `Result` (background excluded).
pub const MAX_CLASSES: usize = 8;
/// Most vertices of the contour polygon in a `Result`.
pub const MAX_CONTOUR: usize = 64;
/// Most bytes of text in an `Error`.
pub const MAX_ERROR_TEXT: usize = 64;
/// Most bytes of a serialized message (postcard), before the CRC and COBS.
pub const MAX_PAYLOAD: usize = 600;
/// Most bytes of one frame on the wire: COBS(payload + CRC-32) and the 0x00 delimiter.
pub const MAX_FRAME: usize = cobs::max_encoding_length(MAX_PAYLOAD + 4) + 1;

/// A screen size in pixels.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size {
    pub width: u16,
    pub height: u16,
}

/// First message of a peer that sends images (a rig), also after it restarts.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hello {
    pub version: u16,
    /// Largest frame the peer can receive.
    pub max_frame: u16,
    /// The peer's own screen, if it wants `DisplayChunk`s.
    pub display: Option<Size>,
}

/// Answer to `Hello`: what this receiver accepts.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    pub version: u16,
    pub max_frame: u16,
    /// Largest image (`total_bytes`) accepted in a `CaptureBegin`.
    pub max_image_bytes: u32,
    /// Largest `chunk_size` accepted in a `CaptureBegin`.
    pub max_chunk: u16,
    /// Screen the receiver will drive with `DisplayChunk`s, if any.
    pub display: Option<Size>,
}

/// How the image bytes are to be read.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    /// 8-bit gray, row-major, `width * height` bytes.
    Gray8,
    /// 8-bit RGB, row-major, `3 * width * height` bytes.
    Rgb8,
    /// A PNG file.
    Png,
    /// A JPEG file (EXIF orientation is honoured).
    Jpeg,
}

/// Starts (or restarts) the transfer of one image.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaptureBegin {
    pub image_id: u32,
    pub width: u16,
    pub height: u16,
    pub format: ImageFormat,
    pub total_bytes: u32,
    /// Bytes per chunk (the last one may be shorter); at most [`MAX_CHUNK`].
    pub chunk_size: u16,
}

impl CaptureBegin {
    /// Number of chunks the image is cut into.
    pub fn chunk_count(&self) -> usize {
        if self.chunk_size == 0 {
            return 0;
        }
        (self.total_bytes as usize).div_ceil(self.chunk_size as usize)
    }

    /// Byte range of chunk `seq` inside the image, if `seq` is in range.
    pub fn chunk_range(&self, seq: u16) -> Option<core::ops::Range<usize>> {
        let seq = seq as usize;
        if seq >= self.chunk_count() {
            return None;
        }
        let start = seq * self.chunk_size as usize;
        let end = (start + self.chunk_size as usize).min(self.total_bytes as usize);
        Some(start..end)
    }
}

/// A slice of the image.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ImageChunk {
    pub image_id: u32,
    pub seq: u16,
    pub data: Vec<u8, MAX_CHUNK>,
}

/// What an `Ack` confirms.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckOf {
    /// The `CaptureBegin` was accepted: send the chunks.
    Begin,
    /// Every chunk arrived and the image CRC matched: a `Result` (or `Error`) follows.
    Complete,
}

/// Chunks still missing: `total` of them; bit `i` of `bitmap` (LSB first) set means chunk
/// `first + i` is missing.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    pub total: u16,
    pub first: u16,
    pub bitmap: [u8; NACK_WINDOW / 8],
}

impl Missing {
    /// The missing sequence numbers this nack names, in order.
    pub fn seqs(&self) -> impl Iterator<Item = u16> + '_ {
        (0..NACK_WINDOW)
            .filter(|i| self.bitmap[i / 8] & (1 << (i % 8)) != 0)
            .filter_map(|i| self.first.checked_add(i as u16))
    }
}

/// Why a request was refused or is incomplete.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum NackReason {
    /// Chunks still missing.
    Missing(Missing),
    /// All chunks arrived but the image CRC differs: the transfer is dropped, begin again.
    ImageCrc,
    /// No transfer with this image id is in progress: begin again.
    UnknownImage,
    /// `total_bytes` exceeds the receiver's buffer.
    TooLarge,
    /// Size, chunk size or byte count are inconsistent or out of range.
    BadGeometry,
    /// The peer speaks another protocol version.
    Version,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Nack {
    pub image_id: u32,
    pub reason: NackReason,
}

/// A point of the contour polygon, in pixels of the original image.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Point {
    pub x: u16,
    pub y: u16,
}

/// The segmentation of one image.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct SegResult {
    pub image_id: u32,
    /// Area in pixels of classes 1.. (background excluded), at the image's own size.
    pub areas: Vec<u32, MAX_CLASSES>,
    /// Outline of the largest foreground region, simplified to at most [`MAX_CONTOUR`] points.
    pub contour: Vec<Point, MAX_CONTOUR>,
    /// Mean softmax confidence over foreground pixels (0 when there are none).
    pub confidence: f32,
    pub inference_ms: u32,
}

/// A rectangle of RGB565 pixels (big-endian, row-major) for a device screen.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct DisplayChunk {
    /// Increments per full screen, so a device can tell a new picture from the old one.
    pub screen: u16,
    pub x: u16,
    pub y: u16,
    pub width: u16,
    pub height: u16,
    pub pixels: Vec<u8, MAX_CHUNK>,
}

/// What kind of failure an `Error` reports.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// The image arrived intact but could not be decoded.
    BadImage,
    /// The model failed on the image.
    Inference,
    /// The peer sent something out of order or unsupported.
    Protocol,
    /// Anything else on the receiver's side.
    Internal,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ErrorMsg {
    /// The image the error is about (0 when none).
    pub image_id: u32,
    pub code: ErrorCode,
    pub text: String<MAX_ERROR_TEXT>,
}

impl ErrorMsg {
    /// An error whose text is cut (at a character boundary) to fit [`MAX_ERROR_TEXT`].
    pub fn new(image_id: u32, code: ErrorCode, text: &str) -> Self {
        let mut end = text.len().min(MAX_ERROR_TEXT);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let mut s = String::new();
        // Cannot fail: `end` bytes fit by construction.
        let _ = s.push_str(&text[..end]);
        Self {
            image_id,
            code,
            text: s,
        }
    }
}

/// Everything that travels on the link, in either direction.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub enum Message {
    Hello(Hello),
    Capabilities(Capabilities),
    Ping { nonce: u32 },
    Pong { nonce: u32 },
    CaptureBegin(CaptureBegin),
    ImageChunk(ImageChunk),
    CaptureEnd { image_id: u32, crc32: u32 },
    Ack { image_id: u32, of: AckOf },
    Nack(Nack),
    Result(SegResult),
    DisplayChunk(DisplayChunk),
    Error(ErrorMsg),
}

impl Message {
    /// Short name for logs and counters.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Hello(_) => "Hello",
            Message::Capabilities(_) => "Capabilities",
            Message::Ping { .. } => "Ping",
            Message::Pong { .. } => "Pong",
            Message::CaptureBegin(_) => "CaptureBegin",
            Message::ImageChunk(_) => "ImageChunk",
            Message::CaptureEnd { .. } => "CaptureEnd",
            Message::Ack { .. } => "Ack",
            Message::Nack(_) => "Nack",
            Message::Result(_) => "Result",
            Message::DisplayChunk(_) => "DisplayChunk",
            Message::Error(_) => "Error",
        }
    }
}
