//! The host side of the link: answers rigs, segments the images they send, drives screens.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use medseg_protocol::{
    Action, Capabilities, ErrorCode, ErrorMsg, ImageReceiver, MAX_CHUNK, MAX_FRAME, Message,
    NackReason, PROTOCOL_VERSION, Size,
};

use crate::analyze::{Analyzer, decode};
use crate::link::Link;
use crate::screen::{Screen, ScreenView, parse_size};

/// Largest image the host accepts by default (a 1024x1024 RGB image is 3 MiB).
pub const DEFAULT_MAX_IMAGE_BYTES: usize = 4 << 20;

pub struct ServeOptions {
    pub max_image_bytes: usize,
    /// Screen to render (and to drive, when the peer announced a screen of its own).
    pub display: Option<(u32, u32)>,
    /// Writes the latest screen here after every image.
    pub screenshot: Option<PathBuf>,
    /// Name of class 1 on the screen.
    pub label: String,
}

/// Counters reported in logs and at the end of `serve`.
#[derive(Debug, Default, Clone, Copy)]
pub struct ServeStats {
    pub images: u64,
    pub failed: u64,
    pub results_resent: u64,
    pub nacks: u64,
    pub display_frames: u64,
    pub total_ms: f64,
}

pub struct Server<A> {
    link: Link,
    rx: ImageReceiver<Vec<u8>>,
    analyzer: A,
    opts: ServeOptions,
    /// The answer for the image last completed, re-sent if the rig asks again.
    last_answer: Option<(u32, Message)>,
    /// Times `last_answer` was asked for again.
    resends: u32,
    peer_display: Option<Size>,
    /// Largest frame the peer said it can receive.
    peer_max_frame: usize,
    screen_no: u16,
    pub stats: ServeStats,
}

impl<A: Analyzer> Server<A> {
    pub fn new(link: Link, analyzer: A, opts: ServeOptions) -> Self {
        let display = opts.display.map(|(w, h)| Size {
            width: w as u16,
            height: h as u16,
        });
        let caps = Capabilities {
            version: PROTOCOL_VERSION,
            max_frame: MAX_FRAME as u16,
            max_image_bytes: opts.max_image_bytes.min(u32::MAX as usize) as u32,
            max_chunk: MAX_CHUNK as u16,
            display,
        };
        let rx = ImageReceiver::new(vec![0u8; opts.max_image_bytes], caps);
        Self {
            link,
            rx,
            analyzer,
            opts,
            last_answer: None,
            resends: 0,
            peer_display: None,
            peer_max_frame: MAX_FRAME,
            screen_no: 0,
            stats: ServeStats::default(),
        }
    }

    pub fn link(&self) -> &Link {
        &self.link
    }

    /// Serves until `stop` is set; returns only then or on a port error.
    pub fn run(&mut self, stop: &AtomicBool) -> anyhow::Result<()> {
        tracing::info!(port = self.link.name(), "serving");
        while !stop.load(Ordering::Relaxed) {
            if let Some(msg) = self.link.recv(Duration::from_millis(50))? {
                self.handle(msg)?;
            }
        }
        Ok(())
    }

    pub fn handle(&mut self, msg: Message) -> anyhow::Result<()> {
        if let Message::Hello(h) = &msg {
            tracing::info!(version = h.version, display = ?h.display, "rig said hello");
            // A screen size from the wire is checked like one from the command line: a bogus
            // 65535x65535 must not become a 8 GB frame buffer.
            self.peer_display = h.display.filter(|d| {
                let ok = parse_size(&format!("{}x{}", d.width, d.height)).is_ok();
                if !ok {
                    tracing::warn!(
                        ?d,
                        "rig announced an unsupported screen size; not driving it"
                    );
                }
                ok
            });
            // Below 64 bytes not even an Ack-sized answer fits; treat that as a bogus value.
            self.peer_max_frame = (h.max_frame as usize).clamp(64, MAX_FRAME);
        }
        match self.rx.handle(msg) {
            Action::None => {}
            Action::Reply(reply) => {
                if let Message::Nack(n) = &reply {
                    self.stats.nacks += 1;
                    match &n.reason {
                        NackReason::Missing(m) => {
                            tracing::debug!(image = n.image_id, missing = m.total, "chunks missing")
                        }
                        r => tracing::warn!(image = n.image_id, reason = ?r, "refused"),
                    }
                }
                self.link.send(&reply)?;
            }
            Action::Completed {
                ack,
                image_id,
                fresh,
            } => {
                self.link.send(&ack)?;
                if fresh {
                    self.answer(image_id)?;
                } else if let Some((id, answer)) = &self.last_answer
                    && *id == image_id
                {
                    // Asked again: our answer was lost. Each repeat halves the frame size
                    // allowed, so on a noisy line a coarser outline gets through.
                    self.stats.results_resent += 1;
                    self.resends += 1;
                    let answer = match answer {
                        Message::Result(r) => {
                            let max = (self.peer_max_frame >> self.resends.min(8)).max(48);
                            Message::Result(fit_frame(r.clone(), max))
                        }
                        other => other.clone(),
                    };
                    tracing::debug!(image = image_id, resends = self.resends, "answer re-sent");
                    self.link.send(&answer)?;
                }
            }
            Action::Other(Message::Error(e)) => {
                tracing::warn!(image = e.image_id, code = ?e.code, text = %e.text, "rig reported an error")
            }
            Action::Other(other) => {
                tracing::debug!(kind = other.kind(), "ignored: not for a host")
            }
        }
        Ok(())
    }

    fn answer(&mut self, image_id: u32) -> anyhow::Result<()> {
        let start = Instant::now();
        let Some((begin, bytes)) = self.rx.image() else {
            return Ok(());
        };
        let begin = *begin;
        let decoded = decode(&begin, bytes);
        let analysis = decoded
            .as_ref()
            .map_err(|e| (ErrorCode::BadImage, format!("{e:#}")))
            .and_then(|img| {
                self.analyzer
                    .analyze(image_id, img)
                    .map_err(|e| (ErrorCode::Inference, format!("{e:#}")))
            });
        let answer = match &analysis {
            Ok(a) => Message::Result(fit_frame(a.result.clone(), self.peer_max_frame)),
            Err((code, text)) => {
                self.stats.failed += 1;
                tracing::warn!(image = image_id, ?code, %text, "image failed");
                Message::Error(ErrorMsg::new(image_id, *code, text))
            }
        };
        self.link.send(&answer)?;
        self.last_answer = Some((image_id, answer));
        self.resends = 0;
        let ms = start.elapsed().as_secs_f64() * 1e3;
        if let (Ok(img), Ok(a)) = (&decoded, &analysis) {
            self.stats.images += 1;
            self.stats.total_ms += ms;
            let s = &self.link.stats;
            tracing::info!(
                image = image_id,
                format = ?begin.format,
                bytes = begin.total_bytes,
                area = a.result.areas.first().copied().unwrap_or(0),
                inference_ms = a.result.inference_ms,
                host_ms = format!("{ms:.0}"),
                frames_rx = s.frames_rx,
                crc_failures = s.crc_failures,
                nacks = self.stats.nacks,
                duplicate_chunks = self.rx.stats().duplicate_chunks,
                stray_chunks = self.rx.stats().stray_chunks,
                "image segmented"
            );
            self.show(img, &a.result)?;
        }
        Ok(())
    }

    /// Renders the device screen; writes the screenshot and drives the peer's screen.
    fn show(
        &mut self,
        img: &image::DynamicImage,
        result: &medseg_protocol::SegResult,
    ) -> anyhow::Result<()> {
        let size = match (self.peer_display, self.opts.display) {
            (Some(p), _) => (p.width as u32, p.height as u32),
            (None, Some(s)) => s,
            (None, None) => return Ok(()),
        };
        let mut screen = Screen::new(size.0, size.1);
        let s = &self.link.stats;
        let status = format!(
            "{} baud  img {}  crc {}  nack {}",
            self.link.baud(),
            self.stats.images,
            s.crc_failures,
            self.stats.nacks
        );
        screen.render(&ScreenView {
            image: img,
            result: Some(result),
            label: &self.opts.label,
            status: &status,
        });
        if let Some(path) = &self.opts.screenshot {
            screen.save_png(path)?;
        }
        if self.peer_display.is_some() {
            self.screen_no = self.screen_no.wrapping_add(1);
            // Row runs sized to the peer's frames (about 30 bytes of header and framing).
            let run = (self.peer_max_frame.saturating_sub(32) / 2).clamp(1, MAX_CHUNK / 2);
            for chunk in screen.chunks(self.screen_no, run) {
                self.link.send(&Message::DisplayChunk(chunk))?;
            }
            self.stats.display_frames += 1;
        }
        Ok(())
    }
}

/// Drops contour points (every other one) until the `Result` fits the peer's frames; a
/// small-memory device gets a coarser outline rather than nothing.
fn fit_frame(mut r: medseg_protocol::SegResult, max_frame: usize) -> medseg_protocol::SegResult {
    let mut buf = [0u8; MAX_FRAME];
    loop {
        let fits = medseg_protocol::encode_frame(&Message::Result(r.clone()), &mut buf)
            .is_ok_and(|n| n <= max_frame);
        if fits || r.contour.is_empty() {
            return r;
        }
        r.contour = r.contour.iter().step_by(2).copied().collect();
        if r.contour.len() == 1 {
            r.contour.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_shrink_their_contour_to_the_peers_frame_size() {
        let r = crate::analyze::to_result(3, &[500], &vec![(1000, 2000); 64], 0.9, 10.0);
        assert_eq!(fit_frame(r.clone(), MAX_FRAME).contour.len(), 64);
        let small = fit_frame(r.clone(), 120);
        let mut buf = [0u8; MAX_FRAME];
        let n = medseg_protocol::encode_frame(&Message::Result(small.clone()), &mut buf).unwrap();
        assert!(
            n <= 120 && !small.contour.is_empty(),
            "{n} bytes, {} points",
            small.contour.len()
        );
        assert_eq!(small.areas, r.areas);
        assert!(fit_frame(r, 20).contour.is_empty());
    }
}
