//! The receiving side of an image transfer, as a state machine over decoded messages.
//!
//! The sender streams `CaptureBegin`, the chunks (any order, duplicates allowed), then
//! `CaptureEnd`. The receiver answers:
//!
//! - `Hello` -> `Capabilities` (and forgets any transfer: the peer restarted);
//! - `Ping` -> `Pong`;
//! - `CaptureBegin` -> `Ack(Begin)` after checking the geometry against its buffer, or a
//!   `Nack` (`TooLarge`, `BadGeometry`); a new `CaptureBegin` always drops the transfer in
//!   progress, so a sender that reset mid-transfer simply begins again;
//! - `ImageChunk` -> nothing (stored, duplicate, or foreign: counted);
//! - `CaptureEnd` -> `Nack(Missing)` listing the first missing chunks, `Nack(ImageCrc)` when
//!   the reassembled image fails its CRC, or [`Action::Completed`] with an `Ack(Complete)`.
//!   A repeated `CaptureEnd` for the image just completed is answered again (the sender lost
//!   our answer), flagged `fresh: false` so the caller re-sends its result instead of
//!   computing it twice.
//!
//! Storage is any `AsMut<[u8]>` the caller owns: a static array on a device, a `Vec` on the
//! host; the bitmap of received chunks is a fixed array. No allocation, no panics on input.

use crate::checksum::image_crc32;
use crate::message::{
    AckOf, Capabilities, CaptureBegin, ImageFormat, MAX_CHUNK, MAX_CHUNKS, Message, Missing,
    NACK_WINDOW, Nack, NackReason, PROTOCOL_VERSION,
};

/// What the caller should do after handing a message to the receiver.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Nothing to send.
    None,
    /// Send this answer.
    Reply(Message),
    /// Image complete and verified: send `ack`, then the result for `image_id`. The bytes are
    /// in [`ImageReceiver::image`] until the next `CaptureBegin`. `fresh` is false when this
    /// answers a repeated `CaptureEnd` for an image already completed.
    Completed {
        ack: Message,
        image_id: u32,
        fresh: bool,
    },
    /// A message that is not part of receiving images (results, screens, errors...): the
    /// caller's business.
    Other(Message),
}

/// Counters a firmware or host can report.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReceiverStats {
    pub chunks: u32,
    pub duplicate_chunks: u32,
    /// Chunks for another image, out of range, or of the wrong length.
    pub stray_chunks: u32,
    pub nacks: u32,
    pub completed: u32,
    /// Transfers dropped by a new `CaptureBegin` or `Hello` before they completed.
    pub abandoned: u32,
}

struct Transfer {
    begin: CaptureBegin,
    have: [u32; MAX_CHUNKS / 32],
    received: usize,
}

impl Transfer {
    fn has(&self, seq: usize) -> bool {
        self.have[seq / 32] & (1 << (seq % 32)) != 0
    }
    fn mark(&mut self, seq: usize) {
        self.have[seq / 32] |= 1 << (seq % 32);
        self.received += 1;
    }
}

pub struct ImageReceiver<B> {
    storage: B,
    caps: Capabilities,
    transfer: Option<Transfer>,
    /// The image id last completed (its bytes are still in `storage`).
    completed: Option<CaptureBegin>,
    stats: ReceiverStats,
}

impl<B: AsMut<[u8]> + AsRef<[u8]>> ImageReceiver<B> {
    /// A receiver whose largest image is `storage`'s length; `caps` is what it answers to
    /// `Hello` (its `max_image_bytes` and `max_chunk` are clamped to what it can hold).
    pub fn new(storage: B, mut caps: Capabilities) -> Self {
        let cap = storage.as_ref().len().min(u32::MAX as usize) as u32;
        caps.max_image_bytes = caps.max_image_bytes.min(cap);
        caps.max_chunk = caps.max_chunk.min(MAX_CHUNK as u16);
        caps.version = PROTOCOL_VERSION;
        Self {
            storage,
            caps,
            transfer: None,
            completed: None,
            stats: ReceiverStats::default(),
        }
    }

    pub fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    pub fn stats(&self) -> ReceiverStats {
        self.stats
    }

    /// The image id being received, if any.
    pub fn in_progress(&self) -> Option<u32> {
        self.transfer.as_ref().map(|t| t.begin.image_id)
    }

    /// The last completed image: its header and bytes.
    pub fn image(&self) -> Option<(&CaptureBegin, &[u8])> {
        let begin = self.completed.as_ref()?;
        Some((begin, &self.storage.as_ref()[..begin.total_bytes as usize]))
    }

    pub fn handle(&mut self, msg: Message) -> Action {
        match msg {
            Message::Hello(hello) => {
                self.abandon();
                self.completed = None;
                if hello.version != PROTOCOL_VERSION {
                    self.stats.nacks += 1;
                    return Action::Reply(Message::Nack(Nack {
                        image_id: 0,
                        reason: NackReason::Version,
                    }));
                }
                Action::Reply(Message::Capabilities(self.caps))
            }
            Message::Ping { nonce } => Action::Reply(Message::Pong { nonce }),
            Message::CaptureBegin(begin) => self.begin(begin),
            Message::ImageChunk(chunk) => {
                self.chunk(chunk.image_id, chunk.seq, &chunk.data);
                Action::None
            }
            Message::CaptureEnd { image_id, crc32 } => self.end(image_id, crc32),
            other => Action::Other(other),
        }
    }

    fn nack(&mut self, image_id: u32, reason: NackReason) -> Action {
        self.stats.nacks += 1;
        Action::Reply(Message::Nack(Nack { image_id, reason }))
    }

    fn abandon(&mut self) {
        if self.transfer.take().is_some() {
            self.stats.abandoned += 1;
        }
    }

    fn begin(&mut self, begin: CaptureBegin) -> Action {
        self.abandon();
        self.completed = None;
        let id = begin.image_id;
        if begin.total_bytes > self.caps.max_image_bytes {
            return self.nack(id, NackReason::TooLarge);
        }
        let pixels = begin.width as u64 * begin.height as u64;
        let geometry_ok = pixels > 0
            && begin.total_bytes > 0
            && begin.chunk_size > 0
            && begin.chunk_size <= self.caps.max_chunk
            && begin.chunk_count() <= MAX_CHUNKS
            && match begin.format {
                ImageFormat::Gray8 => begin.total_bytes as u64 == pixels,
                ImageFormat::Rgb8 => begin.total_bytes as u64 == 3 * pixels,
                ImageFormat::Png | ImageFormat::Jpeg => true,
            };
        if !geometry_ok {
            return self.nack(id, NackReason::BadGeometry);
        }
        self.transfer = Some(Transfer {
            begin,
            have: [0; MAX_CHUNKS / 32],
            received: 0,
        });
        Action::Reply(Message::Ack {
            image_id: id,
            of: AckOf::Begin,
        })
    }

    fn chunk(&mut self, image_id: u32, seq: u16, data: &[u8]) {
        let Some(t) = self
            .transfer
            .as_mut()
            .filter(|t| t.begin.image_id == image_id)
        else {
            self.stats.stray_chunks += 1;
            return;
        };
        let Some(range) = t.begin.chunk_range(seq).filter(|r| r.len() == data.len()) else {
            self.stats.stray_chunks += 1;
            return;
        };
        if t.has(seq as usize) {
            self.stats.duplicate_chunks += 1;
            return;
        }
        self.storage.as_mut()[range].copy_from_slice(data);
        t.mark(seq as usize);
        self.stats.chunks += 1;
    }

    fn end(&mut self, image_id: u32, crc32: u32) -> Action {
        let ack = Message::Ack {
            image_id,
            of: AckOf::Complete,
        };
        let Some(t) = self
            .transfer
            .as_ref()
            .filter(|t| t.begin.image_id == image_id)
        else {
            if self.completed.is_some_and(|b| b.image_id == image_id) {
                return Action::Completed {
                    ack,
                    image_id,
                    fresh: false,
                };
            }
            return self.nack(image_id, NackReason::UnknownImage);
        };
        let count = t.begin.chunk_count();
        if t.received < count {
            let first = (0..count).find(|&s| !t.has(s)).unwrap_or(0);
            let mut bitmap = [0u8; NACK_WINDOW / 8];
            for i in (0..NACK_WINDOW).filter(|i| first + i < count && !t.has(first + i)) {
                bitmap[i / 8] |= 1 << (i % 8);
            }
            let missing = Missing {
                total: (count - t.received) as u16,
                first: first as u16,
                bitmap,
            };
            return self.nack(image_id, NackReason::Missing(missing));
        }
        let begin = t.begin;
        self.transfer = None;
        if image_crc32(&self.storage.as_ref()[..begin.total_bytes as usize]) != crc32 {
            self.stats.abandoned += 1;
            return self.nack(image_id, NackReason::ImageCrc);
        }
        self.completed = Some(begin);
        self.stats.completed += 1;
        Action::Completed {
            ack,
            image_id,
            fresh: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::ImageChunk;

    fn caps() -> Capabilities {
        Capabilities {
            version: PROTOCOL_VERSION,
            max_frame: crate::MAX_FRAME as u16,
            max_image_bytes: u32::MAX,
            max_chunk: MAX_CHUNK as u16,
            display: None,
        }
    }

    fn begin(id: u32, bytes: &[u8], chunk_size: u16) -> Message {
        Message::CaptureBegin(CaptureBegin {
            image_id: id,
            width: bytes.len() as u16,
            height: 1,
            format: ImageFormat::Gray8,
            total_bytes: bytes.len() as u32,
            chunk_size,
        })
    }

    fn chunk(id: u32, seq: u16, bytes: &[u8], chunk_size: usize) -> Message {
        let start = seq as usize * chunk_size;
        let end = (start + chunk_size).min(bytes.len());
        Message::ImageChunk(ImageChunk {
            image_id: id,
            seq,
            data: heapless::Vec::from_slice(&bytes[start..end]).unwrap(),
        })
    }

    fn end(id: u32, bytes: &[u8]) -> Message {
        Message::CaptureEnd {
            image_id: id,
            crc32: image_crc32(bytes),
        }
    }

    #[test]
    fn out_of_order_and_duplicate_chunks_reassemble_the_image() {
        let img: std::vec::Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
        let mut rx = ImageReceiver::new(std::vec![0u8; 4096], caps());
        assert!(matches!(
            rx.handle(begin(5, &img, 100)),
            Action::Reply(Message::Ack {
                image_id: 5,
                of: AckOf::Begin
            })
        ));
        for seq in [9u16, 3, 0, 3, 1, 2, 8, 7, 6, 5, 4, 9] {
            assert_eq!(rx.handle(chunk(5, seq, &img, 100)), Action::None);
        }
        let a = rx.handle(end(5, &img));
        assert!(
            matches!(
                a,
                Action::Completed {
                    image_id: 5,
                    fresh: true,
                    ..
                }
            ),
            "{a:?}"
        );
        assert_eq!(rx.image().unwrap().1, &img[..]);
        assert_eq!(rx.stats().duplicate_chunks, 2);
        // The sender lost our Ack: a repeated CaptureEnd is answered without a new transfer.
        assert!(matches!(
            rx.handle(end(5, &img)),
            Action::Completed { fresh: false, .. }
        ));
    }

    #[test]
    fn gaps_are_reported_from_the_first_missing_chunk_in_a_bounded_window() {
        let img = std::vec![1u8; 600 * 10];
        let mut rx = ImageReceiver::new(std::vec![0u8; 8192], caps());
        rx.handle(begin(1, &img, 10));
        for seq in (0..600u16).filter(|s| s % 2 == 0) {
            rx.handle(chunk(1, seq, &img, 10));
        }
        let Action::Reply(Message::Nack(Nack {
            reason: NackReason::Missing(m),
            ..
        })) = rx.handle(end(1, &img))
        else {
            panic!("expected a Missing nack");
        };
        assert_eq!((m.total, m.first), (300, 1));
        // The window covers seqs 1..=256: the odd ones are missing.
        let seqs: std::vec::Vec<u16> = m.seqs().collect();
        assert_eq!(
            seqs,
            (0..128).map(|i| 2 * i + 1).collect::<std::vec::Vec<u16>>()
        );
        for seq in (0..600u16).filter(|s| s % 2 == 1) {
            rx.handle(chunk(1, seq, &img, 10));
        }
        assert!(matches!(
            rx.handle(end(1, &img)),
            Action::Completed { fresh: true, .. }
        ));
    }

    #[test]
    fn the_gap_window_stops_at_the_last_chunk() {
        let img = std::vec![1u8; 30];
        let mut rx = ImageReceiver::new(std::vec![0u8; 64], caps());
        rx.handle(begin(4, &img, 10));
        rx.handle(chunk(4, 1, &img, 10));
        let Action::Reply(Message::Nack(Nack {
            reason: NackReason::Missing(m),
            ..
        })) = rx.handle(end(4, &img))
        else {
            panic!("expected a Missing nack");
        };
        assert_eq!(m.seqs().collect::<std::vec::Vec<_>>(), [0, 2]);
    }

    #[test]
    fn a_new_begin_drops_the_old_transfer_and_its_chunks() {
        let a = std::vec![0xAAu8; 300];
        let b = std::vec![0xBBu8; 300];
        let mut rx = ImageReceiver::new(std::vec![0u8; 1024], caps());
        rx.handle(begin(1, &a, 100));
        rx.handle(chunk(1, 0, &a, 100));
        rx.handle(chunk(1, 1, &a, 100));
        // The sender reset and restarts with the same id but another image.
        rx.handle(begin(1, &b, 100));
        assert_eq!(rx.stats().abandoned, 1);
        rx.handle(chunk(1, 2, &b, 100));
        assert!(matches!(
            rx.handle(end(1, &b)),
            Action::Reply(Message::Nack(Nack {
                reason: NackReason::Missing(Missing { total: 2, .. }),
                ..
            }))
        ));
        rx.handle(chunk(1, 0, &b, 100));
        rx.handle(chunk(1, 1, &b, 100));
        assert!(matches!(rx.handle(end(1, &b)), Action::Completed { .. }));
        assert_eq!(rx.image().unwrap().1, &b[..]);
    }

    #[test]
    fn bad_crc_unknown_ids_wrong_lengths_and_oversize_images_are_refused() {
        let img = std::vec![7u8; 250];
        let mut rx = ImageReceiver::new(std::vec![0u8; 256], caps());
        let nack = |a: Action| match a {
            Action::Reply(Message::Nack(n)) => n.reason,
            other => panic!("expected a nack, got {other:?}"),
        };
        assert_eq!(
            nack(rx.handle(begin(2, &[0u8; 300], 100))),
            NackReason::TooLarge
        );
        assert_eq!(nack(rx.handle(begin(2, &img, 0))), NackReason::BadGeometry);
        assert_eq!(
            nack(rx.handle(begin(2, &img, MAX_CHUNK as u16 + 1))),
            NackReason::BadGeometry
        );
        assert_eq!(nack(rx.handle(end(2, &img))), NackReason::UnknownImage);
        rx.handle(begin(2, &img, 100));
        // Wrong length for seq 0, out-of-range seq, another image's chunk: all ignored.
        rx.handle(chunk(2, 0, &img[..50], 100));
        rx.handle(Message::ImageChunk(ImageChunk {
            image_id: 2,
            seq: 3,
            data: heapless::Vec::from_slice(&img[..50]).unwrap(),
        }));
        rx.handle(chunk(9, 0, &img, 100));
        assert_eq!(rx.stats().stray_chunks, 3);
        for seq in 0..3 {
            rx.handle(chunk(2, seq, &img, 100));
        }
        let wrong = Message::CaptureEnd {
            image_id: 2,
            crc32: image_crc32(&img) ^ 1,
        };
        assert_eq!(nack(rx.handle(wrong)), NackReason::ImageCrc);
        assert!(rx.in_progress().is_none() && rx.image().is_none());
    }

    #[test]
    fn hello_is_answered_with_clamped_capabilities_and_other_versions_are_refused() {
        let mut rx = ImageReceiver::new([0u8; 64], caps());
        let hello = |version| {
            Message::Hello(crate::Hello {
                version,
                max_frame: 100,
                display: None,
            })
        };
        let Action::Reply(Message::Capabilities(c)) = rx.handle(hello(PROTOCOL_VERSION)) else {
            panic!("expected capabilities");
        };
        assert_eq!(c.max_image_bytes, 64);
        assert!(matches!(
            rx.handle(hello(PROTOCOL_VERSION + 1)),
            Action::Reply(Message::Nack(Nack {
                reason: NackReason::Version,
                ..
            }))
        ));
        assert_eq!(
            rx.handle(Message::Ping { nonce: 3 }),
            Action::Reply(Message::Pong { nonce: 3 })
        );
        let r = Message::Pong { nonce: 1 };
        assert_eq!(rx.handle(r.clone()), Action::Other(r));
    }
}
