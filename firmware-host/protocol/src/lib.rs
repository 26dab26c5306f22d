//! Wire protocol between medseg-host and device firmware (capture rigs, bedside screens).
//!
//! `no_std` and allocation-free so that firmware can use the same code as the host:
//! every buffer is a fixed-capacity `heapless` container sized by the constants below.
//!
//! - [`message`]: the versioned messages (serialized with postcard).
//! - [`frame`]: COBS framing with a CRC-32 on every frame, and a streaming decoder that
//!   resynchronizes on the next frame delimiter after any garbage.
//! - [`receiver`]: the image-receiving side of a transfer (reassembly, gap reports, answers),
//!   as a state machine that a firmware or the host drives with decoded messages.
#![cfg_attr(not(test), no_std)]

pub mod checksum;
pub mod frame;
pub mod message;
pub mod receiver;

pub use checksum::image_crc32;
pub use frame::{FrameDecoder, FrameError, encode_frame};
pub use message::*;
pub use receiver::{Action, ImageReceiver, ReceiverStats};
