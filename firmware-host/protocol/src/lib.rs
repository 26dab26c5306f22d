//! Wire protocol between medseg-host and device firmware.
//!
//! Empty shell for now: issue 4 fills it (no_std, heapless buffers, COBS framing, postcard).
#![no_std]
