//! A capture-rig simulator: the sending side of the protocol, as a rig's firmware runs it.
//!
//! Per image: `CaptureBegin` (retried until acknowledged), every chunk, then `CaptureEnd`
//! rounds: each `Nack(Missing)` gets the listed chunks again; silence gets `CaptureEnd`
//! again (the host answers a repeated `CaptureEnd` with its cached answer). A transfer that
//! stops making progress, or that the host dropped, restarts under a new image id, a bounded
//! number of times; then the image is reported failed. Answers for other image ids are
//! ignored, so a late answer can never be taken for the current image's.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use image::{DynamicImage, GrayImage};
use medseg_protocol::{
    AckOf, Capabilities, CaptureBegin, Hello, ImageChunk, ImageFormat, MAX_CHUNK, MAX_FRAME,
    Message, Nack, NackReason, PROTOCOL_VERSION, SegResult, Size, image_crc32,
};

use crate::link::Link;
use crate::screen::Screen;

/// One image as the rig sends it.
#[derive(Clone)]
pub struct RigImage {
    pub name: String,
    pub format: ImageFormat,
    pub width: u16,
    pub height: u16,
    pub bytes: Vec<u8>,
}

impl RigImage {
    /// Raw 8-bit gray pixels.
    pub fn gray8(name: &str, img: &GrayImage) -> anyhow::Result<Self> {
        let (width, height) = dims(img.width(), img.height(), name)?;
        Ok(Self {
            name: name.to_string(),
            format: ImageFormat::Gray8,
            width,
            height,
            bytes: img.as_raw().clone(),
        })
    }

    /// A PNG or JPEG file sent as it is (`raw`: decoded and sent as 8-bit gray pixels).
    pub fn from_file(path: &Path, raw: bool) -> anyhow::Result<Self> {
        let name = path.display().to_string();
        let img = medseg_runtime::image_io::load_image(path)?;
        if raw {
            return Self::gray8(&name, &img.to_luma8());
        }
        let bytes = std::fs::read(path).with_context(|| format!("cannot read {name}"))?;
        let format = match image::guess_format(&bytes) {
            Ok(image::ImageFormat::Png) => ImageFormat::Png,
            Ok(image::ImageFormat::Jpeg) => ImageFormat::Jpeg,
            _ => bail!("{name}: only PNG and JPEG files can be sent as they are (try --raw)"),
        };
        let (width, height) = dims(img.width(), img.height(), &name)?;
        Ok(Self {
            name,
            format,
            width,
            height,
            bytes,
        })
    }

    /// Encodes `img` as JPEG (quality 90) and sends the file bytes.
    pub fn jpeg(name: &str, img: &DynamicImage) -> anyhow::Result<Self> {
        let mut bytes = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 90)
            .encode_image(img)
            .with_context(|| format!("{name}: JPEG encoding failed"))?;
        let (width, height) = dims(img.width(), img.height(), name)?;
        Ok(Self {
            name: name.to_string(),
            format: ImageFormat::Jpeg,
            width,
            height,
            bytes,
        })
    }
}

fn dims(w: u32, h: u32, name: &str) -> anyhow::Result<(u16, u16)> {
    match (u16::try_from(w), u16::try_from(h)) {
        (Ok(w), Ok(h)) => Ok((w, h)),
        _ => bail!("{name}: {w}x{h} is larger than the protocol's 65535x65535"),
    }
}

pub struct RigOptions {
    /// First chunk size; adapted per image when `adapt` is on.
    pub chunk_size: u16,
    pub adapt: bool,
    /// The rig's own screen, announced in `Hello` (the host then sends `DisplayChunk`s).
    pub display: Option<(u32, u32)>,
    /// Wait for a control answer (`Ack`, `Nack`, `Capabilities`) before asking again.
    pub reply_timeout: Duration,
    /// Wait for the `Result` after `Ack(Complete)` before asking again.
    pub result_timeout: Duration,
    /// Rounds without fewer missing chunks before the transfer restarts.
    pub stall_rounds: u32,
    /// Restarts (new image id) before an image is reported failed.
    pub max_restarts: u32,
    /// Test hook: after this many chunks of image number `.0` (0-based), the rig "reboots"
    /// (forgets everything, handshakes again, restarts image ids at 1).
    pub reset_after: Option<(usize, usize)>,
}

impl RigOptions {
    /// Timeouts sized for the line rate: a few maximum-size frames plus scheduling slack.
    pub fn for_baud(baud: u32) -> Self {
        let frame = Duration::from_secs_f64(MAX_FRAME as f64 * 10.0 / baud as f64);
        Self {
            chunk_size: MAX_CHUNK as u16,
            adapt: true,
            display: None,
            reply_timeout: Duration::from_millis(150) + frame * 4,
            result_timeout: Duration::from_secs(2) + frame * 4,
            stall_rounds: 8,
            max_restarts: 6,
            reset_after: None,
        }
    }
}

/// What happened to one image.
#[derive(Debug, Clone)]
pub struct ImageReport {
    pub name: String,
    pub image_id: u32,
    pub bytes: usize,
    /// The host's result, or why the image failed.
    pub outcome: Result<SegResult, String>,
    /// `CaptureBegin` sent -> `Result` received.
    pub latency: Duration,
    /// `CaptureBegin` sent -> `Ack(Complete)` received.
    pub transfer: Option<Duration>,
    pub chunk_size: u16,
    pub retransmits: u64,
    pub restarts: u32,
    /// Bytes this rig put on the line for the image (frames, retries included).
    pub wire_bytes: u64,
}

// Short-lived (one per transfer attempt): not worth boxing the result.
#[allow(clippy::large_enum_variant)]
enum Attempt {
    Done(Result<SegResult, String>),
    Restart(&'static str),
}

pub struct Rig {
    link: Link,
    opts: RigOptions,
    caps: Option<Capabilities>,
    next_id: u32,
    chunk_size: u16,
    images_sent: usize,
    screen: Option<Screen>,
    /// The bottom-right chunk of the screen being drawn has arrived.
    screen_done: bool,
    pub screens_received: u64,
}

impl Rig {
    pub fn new(link: Link, opts: RigOptions) -> Self {
        // Only a sane size gets a frame buffer (Hello still announces what it was given).
        let screen = opts
            .display
            .filter(|&(w, h)| crate::screen::parse_size(&format!("{w}x{h}")).is_ok())
            .map(|(w, h)| Screen::new(w, h));
        let chunk_size = opts.chunk_size.clamp(1, MAX_CHUNK as u16);
        Self {
            link,
            opts,
            caps: None,
            next_id: 1,
            chunk_size,
            images_sent: 0,
            screen,
            screen_done: false,
            screens_received: 0,
        }
    }

    pub fn link(&self) -> &Link {
        &self.link
    }

    /// The rig's screen as last drawn by the host's `DisplayChunk`s.
    pub fn screen(&self) -> Option<&Screen> {
        self.screen.as_ref()
    }

    /// `Hello` until `Capabilities` come back.
    pub fn handshake(&mut self) -> anyhow::Result<Capabilities> {
        let display = self.opts.display.map(|(w, h)| Size {
            width: w as u16,
            height: h as u16,
        });
        let hello = Message::Hello(Hello {
            version: PROTOCOL_VERSION,
            max_frame: MAX_FRAME as u16,
            display,
        });
        for _ in 0..10 {
            self.link.send(&hello)?;
            let answer = self.wait_for(self.opts.reply_timeout, |m| match m {
                Message::Capabilities(c) => Some(Ok(*c)),
                Message::Nack(Nack {
                    reason: NackReason::Version,
                    ..
                }) => Some(Err(())),
                _ => None,
            })?;
            match answer {
                Some(Ok(caps)) => {
                    tracing::info!(?caps, "host capabilities");
                    self.caps = Some(caps);
                    return Ok(caps);
                }
                Some(Err(())) => bail!(
                    "the host on {} speaks another protocol version (this rig speaks {PROTOCOL_VERSION})",
                    self.link.name()
                ),
                None => {}
            }
        }
        bail!(
            "no answer to Hello on {} after 10 tries: is `medseg-host serve` running on the \
             other end, at the same baud rate?",
            self.link.name()
        )
    }

    /// Sends one image and waits for its result; never fails on link trouble (that is a
    /// failed image), only on port errors.
    pub fn send_image(&mut self, img: &RigImage) -> anyhow::Result<ImageReport> {
        if self.caps.is_none() {
            self.handshake()?;
        }
        let start = Instant::now();
        let tx0 = self.link.stats.bytes_tx;
        let mut report = ImageReport {
            name: img.name.clone(),
            image_id: 0,
            bytes: img.bytes.len(),
            outcome: Err("not sent".into()),
            latency: Duration::ZERO,
            transfer: None,
            chunk_size: self.chunk_size,
            retransmits: 0,
            restarts: 0,
            wire_bytes: 0,
        };
        let index = self.images_sent;
        self.images_sent += 1;
        let mut reset_hook = self.opts.reset_after.filter(|&(i, _)| i == index);
        loop {
            let attempt = self.attempt(img, &mut report, start, reset_hook.take())?;
            match attempt {
                Attempt::Done(outcome) => {
                    report.outcome = outcome;
                    break;
                }
                Attempt::Restart(why) if report.restarts < self.opts.max_restarts => {
                    report.restarts += 1;
                    tracing::info!(image = %img.name, why, restarts = report.restarts, "transfer restarts");
                }
                Attempt::Restart(why) => {
                    report.outcome = Err(format!(
                        "gave up after {} restarts (last: {why})",
                        report.restarts
                    ));
                    break;
                }
            }
        }
        report.latency = start.elapsed();
        report.wire_bytes = self.link.stats.bytes_tx - tx0;
        Ok(report)
    }

    fn attempt(
        &mut self,
        img: &RigImage,
        report: &mut ImageReport,
        start: Instant,
        reset_hook: Option<(usize, usize)>,
    ) -> anyhow::Result<Attempt> {
        let caps = self.caps.unwrap_or_else(no_caps);
        if img.bytes.len() > caps.max_image_bytes as usize {
            return Ok(Attempt::Done(Err(format!(
                "{} bytes; the host accepts at most {}",
                img.bytes.len(),
                caps.max_image_bytes
            ))));
        }
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        report.image_id = id;
        // Smallest chunk size that still fits the chunk count limit.
        let min_chunk = img.bytes.len().div_ceil(medseg_protocol::MAX_CHUNKS) as u16;
        let chunk_size = self.chunk_size.min(caps.max_chunk).max(min_chunk).max(1);
        report.chunk_size = chunk_size;
        let begin = CaptureBegin {
            image_id: id,
            width: img.width,
            height: img.height,
            format: img.format,
            total_bytes: img.bytes.len() as u32,
            chunk_size,
        };

        // 1. Begin, until acknowledged. A host busy driving our screen answers late.
        let display_time = self.display_time();
        let mut acked = false;
        for _ in 0..8 {
            self.link.send(&Message::CaptureBegin(begin))?;
            let answer = self.wait_for(self.opts.reply_timeout + display_time, |m| match m {
                Message::Ack {
                    image_id,
                    of: AckOf::Begin,
                } if *image_id == id => Some(Ok(())),
                Message::Nack(n) if n.image_id == id => Some(Err(n.reason.clone())),
                _ => None,
            })?;
            match answer {
                Some(Ok(())) => {
                    acked = true;
                    break;
                }
                Some(Err(reason)) => {
                    return Ok(Attempt::Done(Err(format!(
                        "host refused the image: {reason:?}"
                    ))));
                }
                None => {}
            }
        }
        if !acked {
            return Ok(Attempt::Restart("CaptureBegin not acknowledged"));
        }

        // 2. Every chunk once.
        let count = begin.chunk_count();
        for seq in 0..count as u16 {
            if let Some((_, after)) = reset_hook
                && seq as usize == after
            {
                tracing::info!(image = %img.name, chunk = seq, "simulated rig reset");
                self.reboot()?;
                return Ok(Attempt::Restart("rig reset"));
            }
            self.send_chunk(&begin, img, seq)?;
        }

        // 3. CaptureEnd rounds.
        let end = Message::CaptureEnd {
            image_id: id,
            crc32: image_crc32(&img.bytes),
        };
        let (mut best_missing, mut stalls, mut first_round) = (usize::MAX, 0u32, true);
        // Unanswered CaptureEnds in a row: cheap to repeat, so allowed more often than stalls.
        let mut silent = 0u32;
        // Once the host holds the image, only small frames are at stake: ask more often.
        let (mut acked_complete, mut result_asks) = (false, 0u32);
        loop {
            let limit = self.opts.stall_rounds;
            if stalls > limit || silent > 4 * limit || result_asks > 8 * limit {
                if self.opts.adapt && self.chunk_size > 32 {
                    self.chunk_size /= 2;
                }
                return Ok(Attempt::Restart("no progress"));
            }
            self.link.send(&end)?;
            let answer = self.wait_answer(self.opts.reply_timeout, |m| match m {
                Message::Ack { image_id, .. } if *image_id == id => Some(m.clone()),
                Message::Nack(n) if n.image_id == id => Some(m.clone()),
                Message::Result(r) if r.image_id == id => Some(m.clone()),
                Message::Error(e) if e.image_id == id => Some(m.clone()),
                _ => None,
            })?;
            match answer {
                None if acked_complete => result_asks += 1,
                None => silent += 1,
                Some(Message::Nack(Nack { reason, .. })) => match reason {
                    NackReason::Missing(missing) => {
                        let total = missing.total as usize;
                        if first_round && self.opts.adapt {
                            first_round = false;
                            // Most chunks lost: the line is too noisy for chunks this long.
                            if total * 2 > count && self.chunk_size > 32 {
                                self.chunk_size = (self.chunk_size / 4).max(32);
                                return Ok(Attempt::Restart("most chunks lost"));
                            }
                        }
                        silent = 0;
                        if total < best_missing {
                            best_missing = total;
                            stalls = 0;
                        } else {
                            stalls += 1;
                        }
                        for seq in missing.seqs() {
                            self.send_chunk(&begin, img, seq)?;
                            report.retransmits += 1;
                        }
                    }
                    NackReason::ImageCrc | NackReason::UnknownImage => {
                        return Ok(Attempt::Restart("host dropped the transfer"));
                    }
                    other => {
                        return Ok(Attempt::Done(Err(format!(
                            "host refused the image: {other:?}"
                        ))));
                    }
                },
                Some(Message::Ack { .. }) => {
                    report.transfer.get_or_insert(start.elapsed());
                    // The first time, the host segments before answering; a repeat is instant.
                    let wait = if acked_complete {
                        self.opts.reply_timeout
                    } else {
                        self.opts.result_timeout
                    };
                    acked_complete = true;
                    let result = self.wait_answer(wait, |m| match m {
                        Message::Result(r) if r.image_id == id => Some(m.clone()),
                        Message::Error(e) if e.image_id == id => Some(m.clone()),
                        _ => None,
                    })?;
                    match result {
                        Some(m) => return Ok(self.finish(m, report, count, start)),
                        None => result_asks += 1,
                    }
                }
                Some(m) => return Ok(self.finish(m, report, count, start)),
            }
        }
    }

    fn finish(
        &mut self,
        answer: Message,
        report: &mut ImageReport,
        count: usize,
        start: Instant,
    ) -> Attempt {
        // The Ack(Complete) may have been lost; the Result proves the transfer ended.
        report.transfer.get_or_insert(start.elapsed());
        // The screen for this image follows the answer; anything drawn so far is older.
        self.screen_done = false;
        if self.opts.adapt {
            let loss = report.retransmits as f64 / count.max(1) as f64;
            if loss > 0.25 && self.chunk_size > 32 {
                self.chunk_size /= 2;
            } else if loss < 0.02 && (self.chunk_size as usize) < MAX_CHUNK {
                self.chunk_size = (self.chunk_size * 2).min(MAX_CHUNK as u16);
            }
        }
        match answer {
            Message::Result(r) => Attempt::Done(Ok(r)),
            Message::Error(e) => Attempt::Done(Err(format!("host error {:?}: {}", e.code, e.text))),
            other => Attempt::Done(Err(format!("unexpected {}", other.kind()))),
        }
    }

    fn send_chunk(&mut self, begin: &CaptureBegin, img: &RigImage, seq: u16) -> anyhow::Result<()> {
        let Some(range) = begin.chunk_range(seq) else {
            return Ok(()); // a corrupted-but-valid Nack cannot name a chunk we do not have
        };
        let data = heapless::Vec::from_slice(&img.bytes[range])
            .map_err(|_| anyhow::anyhow!("chunk larger than MAX_CHUNK"))?;
        self.link.send(&Message::ImageChunk(ImageChunk {
            image_id: begin.image_id,
            seq,
            data,
        }))
    }

    /// Time the host needs to send our whole screen (it does so after each result).
    fn display_time(&self) -> Duration {
        match &self.screen {
            Some(screen) => {
                let bytes = (screen.width() * screen.height() * 2) as f64;
                let baud = self.link.baud().max(1) as f64;
                Duration::from_secs_f64(bytes * 1.1 * 10.0 / baud)
            }
            None => Duration::ZERO,
        }
    }

    /// Forgets all state as a power-cycled rig would, and greets the host again.
    fn reboot(&mut self) -> anyhow::Result<()> {
        self.link.reset_input();
        self.next_id = 1;
        self.caps = None;
        self.handshake().map(|_| ())
    }

    /// Waits until the host has finished drawing the screen for the last image (it sends
    /// it after the result); false if it did not within the time a full screen needs.
    pub fn wait_screen(&mut self) -> anyhow::Result<bool> {
        let deadline = Instant::now() + self.display_time() * 2 + Duration::from_secs(1);
        while !self.screen_done && Instant::now() < deadline {
            self.drain(Duration::from_millis(20))?;
        }
        Ok(std::mem::take(&mut self.screen_done))
    }

    /// Reads for `time`, drawing any screen chunks that arrive.
    pub fn drain(&mut self, time: Duration) -> anyhow::Result<()> {
        self.wait_for(time, |_| None::<()>).map(|_| ())
    }

    /// As [`Self::wait_for`], but gives up as soon as a corrupted frame arrives: on a noisy
    /// line that was most likely the awaited answer, and asking again at once beats waiting
    /// out the timeout (a needless repeat only costs a duplicate answer).
    fn wait_answer<T>(
        &mut self,
        timeout: Duration,
        mut pick: impl FnMut(&Message) -> Option<T>,
    ) -> anyhow::Result<Option<T>> {
        let deadline = Instant::now() + timeout;
        let refused = self.link.refused();
        while Instant::now() < deadline {
            let slice = deadline
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(10));
            if let Some(t) = self.wait_for(slice, &mut pick)? {
                return Ok(Some(t));
            }
            if self.link.refused() > refused {
                return Ok(None);
            }
        }
        Ok(None)
    }

    /// Reads messages until `pick` accepts one or `timeout` passes. Screen chunks are drawn
    /// on the way; everything else not picked is dropped (late or foreign answers).
    fn wait_for<T>(
        &mut self,
        timeout: Duration,
        mut pick: impl FnMut(&Message) -> Option<T>,
    ) -> anyhow::Result<Option<T>> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Some(msg) = self.link.recv(left)? else {
                return Ok(None);
            };
            if let Message::DisplayChunk(c) = &msg {
                if let Some(screen) = self.screen.as_mut()
                    && screen.apply(c)
                {
                    if c.x == 0 && c.y == 0 {
                        self.screens_received += 1;
                        self.screen_done = false;
                    }
                    let (right, bottom) = (c.x + c.width, c.y + c.height);
                    if right as u32 == screen.width() && bottom as u32 == screen.height() {
                        self.screen_done = true;
                    }
                }
                continue;
            }
            if let Some(t) = pick(&msg) {
                return Ok(Some(t));
            }
            tracing::debug!(kind = msg.kind(), "ignored while waiting");
            if left.is_zero() {
                return Ok(None);
            }
        }
    }
}

fn no_caps() -> Capabilities {
    // `send_image` handshakes first; a default keeps this path panic-free regardless.
    Capabilities {
        version: PROTOCOL_VERSION,
        max_frame: MAX_FRAME as u16,
        max_image_bytes: 0,
        max_chunk: MAX_CHUNK as u16,
        display: None,
    }
}
