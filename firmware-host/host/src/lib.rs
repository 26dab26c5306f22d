//! medseg-host: the serial bridge between capture rigs / device screens and the runtime.
//!
//! `serve` answers rigs with segmentation results; `rig` simulates a capture rig; the
//! device screen is drawn with embedded-graphics. The wire format and the receiving state
//! machine live in `medseg-protocol`, shared with device firmware.

pub mod analyze;
pub mod bench;
pub mod contour;
pub mod fault;
pub mod link;
pub mod rig;
pub mod screen;
pub mod serve;
