//! Framing: `COBS(postcard(message) ++ crc32_le(postcard(message))) ++ 0x00`.
//!
//! COBS removes every 0x00 from the frame body, so 0x00 only ever marks a frame end: after any
//! corruption, a receiver loses at most the frame it was in and starts clean at the next 0x00.
//! The CRC-32 catches corrupted bodies; frames longer than [`MAX_FRAME`] are refused while
//! they arrive, so the decoder's memory is one fixed buffer whatever the line carries.

use heapless::Vec;

use crate::checksum::CRC32;
use crate::message::{MAX_FRAME, MAX_PAYLOAD, Message};

/// Why a frame was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// More than [`MAX_FRAME`] bytes before a delimiter; dropped up to the next 0x00.
    Oversize,
    /// The COBS encoding is invalid (a corrupted length byte).
    Cobs,
    /// Shorter than a CRC.
    Short,
    /// The CRC does not match the body.
    Crc,
    /// CRC fine but the body is not a message (unknown variant, bad length, trailing bytes):
    /// a peer with another protocol version, or a corruption the CRC missed.
    Malformed,
    /// Encoding only: the message does not fit in [`MAX_PAYLOAD`] (cannot happen for messages
    /// built within the heapless capacities; kept so encoding never panics).
    TooLarge,
}

impl core::fmt::Display for FrameError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            FrameError::Oversize => "frame longer than MAX_FRAME",
            FrameError::Cobs => "invalid COBS encoding",
            FrameError::Short => "frame shorter than its CRC",
            FrameError::Crc => "CRC mismatch",
            FrameError::Malformed => "not a valid message",
            FrameError::TooLarge => "message larger than MAX_PAYLOAD",
        })
    }
}

/// Encodes `msg` as one frame (delimiter included) into `out`; returns the frame length.
pub fn encode_frame(msg: &Message, out: &mut [u8; MAX_FRAME]) -> Result<usize, FrameError> {
    let mut body = [0u8; MAX_PAYLOAD + 4];
    let n = postcard::to_slice(msg, &mut body[..MAX_PAYLOAD])
        .map_err(|_| FrameError::TooLarge)?
        .len();
    let crc = CRC32.checksum(&body[..n]);
    body[n..n + 4].copy_from_slice(&crc.to_le_bytes());
    // `out` holds the worst-case COBS length of MAX_PAYLOAD + 4 plus the delimiter.
    let len = cobs::try_encode(&body[..n + 4], &mut out[..MAX_FRAME - 1])
        .map_err(|_| FrameError::TooLarge)?;
    out[len] = 0;
    Ok(len + 1)
}

/// Streaming frame decoder with one fixed buffer; feed it bytes as they arrive.
#[derive(Default)]
pub struct FrameDecoder {
    buf: Vec<u8, MAX_FRAME>,
    /// Inside a frame that already overflowed: skip to the next delimiter.
    discarding: bool,
}

impl FrameDecoder {
    pub const fn new() -> Self {
        Self {
            buf: Vec::new(),
            discarding: false,
        }
    }

    /// Takes one byte; returns a decoded message or the reason a frame was refused when the
    /// byte ends a frame (empty frames, i.e. repeated delimiters, are skipped silently).
    pub fn push(&mut self, byte: u8) -> Option<Result<Message, FrameError>> {
        if byte != 0 {
            if self.discarding {
                return None;
            }
            if self.buf.push(byte).is_err() {
                self.buf.clear();
                self.discarding = true;
                return Some(Err(FrameError::Oversize));
            }
            return None;
        }
        if core::mem::take(&mut self.discarding) {
            return None;
        }
        if self.buf.is_empty() {
            return None;
        }
        let result = decode_body(&mut self.buf);
        self.buf.clear();
        Some(result)
    }

    /// Feeds a run of bytes, calling `on_frame` for every frame that ends in it.
    pub fn feed(&mut self, bytes: &[u8], mut on_frame: impl FnMut(Result<Message, FrameError>)) {
        for &b in bytes {
            if let Some(r) = self.push(b) {
                on_frame(r);
            }
        }
    }

    /// Drops a partly received frame (e.g. after the peer restarted).
    pub fn reset(&mut self) {
        self.buf.clear();
        self.discarding = false;
    }
}

fn decode_body(encoded: &mut [u8]) -> Result<Message, FrameError> {
    let n = cobs::decode_in_place(encoded).map_err(|_| FrameError::Cobs)?;
    if n < 4 {
        return Err(FrameError::Short);
    }
    let (body, crc) = encoded[..n].split_at(n - 4);
    let expected = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
    if CRC32.checksum(body) != expected {
        return Err(FrameError::Crc);
    }
    match postcard::take_from_bytes::<Message>(body) {
        Ok((msg, [])) => Ok(msg),
        _ => Err(FrameError::Malformed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(msg: &Message) -> std::vec::Vec<u8> {
        let mut out = [0u8; MAX_FRAME];
        let n = encode_frame(msg, &mut out).unwrap();
        out[..n].to_vec()
    }

    fn decode_all(bytes: &[u8]) -> std::vec::Vec<Result<Message, FrameError>> {
        let mut d = FrameDecoder::new();
        let mut out = std::vec::Vec::new();
        d.feed(bytes, |r| out.push(r));
        out
    }

    #[test]
    fn a_frame_has_one_zero_at_its_end() {
        let f = frame(&Message::Ping { nonce: 0 });
        assert_eq!(f.iter().filter(|&&b| b == 0).count(), 1);
        assert_eq!(*f.last().unwrap(), 0);
        assert_eq!(decode_all(&f), [Ok(Message::Ping { nonce: 0 })]);
    }

    #[test]
    fn a_flipped_bit_is_a_crc_or_cobs_error_and_the_next_frame_survives() {
        let a = frame(&Message::Pong { nonce: 0xDEAD_BEEF });
        let b = frame(&Message::Ping { nonce: 7 });
        for i in 0..a.len() - 1 {
            for bit in 0..8 {
                let mut bytes = a.clone();
                bytes[i] ^= 1 << bit;
                bytes.extend_from_slice(&b);
                let out = decode_all(&bytes);
                assert_eq!(
                    out.last(),
                    Some(&Ok(Message::Ping { nonce: 7 })),
                    "byte {i} bit {bit}"
                );
                assert!(
                    out[..out.len() - 1].iter().all(|r| r.is_err()),
                    "corrupted frame accepted: byte {i} bit {bit}: {out:?}"
                );
            }
        }
    }

    #[test]
    fn oversize_frames_are_refused_and_decoding_resumes_after_them() {
        let mut bytes = std::vec![0x55u8; MAX_FRAME * 3];
        bytes.push(0);
        bytes.extend(frame(&Message::Ping { nonce: 1 }));
        let out = decode_all(&bytes);
        assert_eq!(
            out,
            [Err(FrameError::Oversize), Ok(Message::Ping { nonce: 1 })]
        );
    }

    #[test]
    fn a_short_frame_and_a_valid_crc_over_garbage_are_refused() {
        assert_eq!(
            decode_all(&[0x03, 0x01, 0x02, 0x00]),
            [Err(FrameError::Short)]
        );
        // Well-framed, correct CRC, but variant 200 does not exist.
        let body = [200u8, 1, 2];
        let mut raw = body.to_vec();
        raw.extend(CRC32.checksum(&body).to_le_bytes());
        let mut enc = [0u8; 32];
        let n = cobs::encode(&raw, &mut enc);
        let mut bytes = enc[..n].to_vec();
        bytes.push(0);
        assert_eq!(decode_all(&bytes), [Err(FrameError::Malformed)]);
    }
}
