//! One end of a serial link: frames out (paced to the line rate), frames in, counters.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use anyhow::Context;
use medseg_protocol::{FrameDecoder, FrameError, MAX_FRAME, Message, encode_frame};
use serialport::SerialPort;

/// How long a blocked write may wait for the other end before the link is declared dead.
const WRITE_STALL: Duration = Duration::from_secs(5);
/// Read timeout of the port: how often `recv` looks at its deadline.
const POLL: Duration = Duration::from_millis(5);

/// Counters of one link end.
#[derive(Debug, Default, Clone, Copy)]
pub struct LinkStats {
    pub frames_tx: u64,
    pub frames_rx: u64,
    pub bytes_tx: u64,
    pub bytes_rx: u64,
    pub crc_failures: u64,
    /// Frames refused for another reason (COBS, too short, not a message).
    pub bad_frames: u64,
    pub oversize_frames: u64,
}

/// Paces writes to what a UART at `baud` would carry (8N1: 10 bits per byte).
///
/// A pseudo-terminal moves bytes as fast as the kernel copies them, so without pacing every
/// time measured over a pty would be meaningless. Bytes go out in small pieces on an absolute
/// schedule (no drift from sleep granularity); idle time earns no burst credit.
pub struct Pacer {
    bytes_per_sec: f64,
    origin: Instant,
    sent: u64,
}

impl Pacer {
    pub fn new(baud: u32) -> Self {
        Self {
            // A zero baud would stall forever; no real UART is below 300.
            bytes_per_sec: baud.max(300) as f64 / 10.0,
            origin: Instant::now(),
            sent: 0,
        }
    }

    /// Waits until `n` more bytes may go out.
    fn wait(&mut self, n: usize) {
        let now = Instant::now();
        let due = self.origin + Duration::from_secs_f64(self.sent as f64 / self.bytes_per_sec);
        if now > due + Duration::from_millis(2) {
            // The line was idle: restart the schedule rather than allow a burst.
            self.origin = now;
            self.sent = 0;
        } else if due > now {
            std::thread::sleep(due - now);
        }
        self.sent += n as u64;
    }
}

pub struct Link {
    port: Box<dyn SerialPort>,
    name: String,
    baud: u32,
    decoder: FrameDecoder,
    pacer: Option<Pacer>,
    inbox: VecDeque<Message>,
    pub stats: LinkStats,
}

impl Link {
    /// Opens a serial device (or a pty's slave path) at `baud`; `pace` limits writes to that
    /// rate (needed over pseudo-terminals, harmless on a real UART).
    pub fn open(path: &str, baud: u32, pace: bool) -> anyhow::Result<Self> {
        let port = serialport::new(path, baud)
            .timeout(POLL)
            .open()
            .with_context(|| {
                format!(
                    "cannot open serial port {path} at {baud} baud \
                     (is the device plugged in, the path right, and the port not in use? \
                     `medseg-host list-ports` lists ports)"
                )
            })?;
        Self::from_port(port, path, baud, pace)
    }

    /// Wraps an already open port (tests and benches use pseudo-terminal pairs).
    pub fn from_port(
        mut port: Box<dyn SerialPort>,
        name: &str,
        baud: u32,
        pace: bool,
    ) -> anyhow::Result<Self> {
        port.set_timeout(POLL)
            .with_context(|| format!("serial port {name}: cannot set its read timeout"))?;
        let mut link = Self {
            port,
            name: name.to_string(),
            baud,
            decoder: FrameDecoder::new(),
            pacer: pace.then(|| Pacer::new(baud)),
            inbox: VecDeque::new(),
            stats: LinkStats::default(),
        };
        // A lone delimiter ends whatever partial frame the peer saw before we opened.
        link.write_paced(&[0])
            .with_context(|| format!("serial port {name}: first write failed"))?;
        Ok(link)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Frames refused so far (CRC, COBS, oversize, malformed).
    pub fn refused(&self) -> u64 {
        self.stats.crc_failures + self.stats.bad_frames + self.stats.oversize_frames
    }

    pub fn baud(&self) -> u32 {
        self.baud
    }

    pub fn send(&mut self, msg: &Message) -> anyhow::Result<()> {
        let mut buf = [0u8; MAX_FRAME];
        let n = encode_frame(msg, &mut buf)
            .map_err(|e| anyhow::anyhow!("cannot frame a {} message: {e}", msg.kind()))?;
        self.write_paced(&buf[..n])
            .with_context(|| format!("serial port {}: write failed", self.name))?;
        self.stats.frames_tx += 1;
        self.stats.bytes_tx += n as u64;
        tracing::trace!(kind = msg.kind(), bytes = n, "frame sent");
        Ok(())
    }

    fn write_paced(&mut self, bytes: &[u8]) -> io::Result<()> {
        // Small pieces keep the pacing smooth at low baud rates.
        for piece in bytes.chunks(32) {
            if let Some(p) = self.pacer.as_mut() {
                p.wait(piece.len());
            }
            self.write_all_patiently(piece)?;
        }
        Ok(())
    }

    /// `write_all` that tolerates the port's short timeouts while the peer is slow to read.
    fn write_all_patiently(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        let start = Instant::now();
        while !bytes.is_empty() {
            match self.port.write(bytes) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => bytes = &bytes[n..],
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
                    ) =>
                {
                    if start.elapsed() > WRITE_STALL {
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!("the other end read nothing for {WRITE_STALL:?}"),
                        ));
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// The next message, waiting at most `timeout`; `None` when none arrived in time.
    /// Refused frames are counted (and logged at debug level), never returned.
    pub fn recv(&mut self, timeout: Duration) -> anyhow::Result<Option<Message>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(m) = self.inbox.pop_front() {
                return Ok(Some(m));
            }
            let mut buf = [0u8; 512];
            match self.port.read(&mut buf) {
                Ok(n) => self.ingest(&buf[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("serial port {}: read failed", self.name));
                }
            }
            if self.inbox.is_empty() && Instant::now() >= deadline {
                return Ok(None);
            }
        }
    }

    fn ingest(&mut self, bytes: &[u8]) {
        self.stats.bytes_rx += bytes.len() as u64;
        let (inbox, stats) = (&mut self.inbox, &mut self.stats);
        self.decoder.feed(bytes, |r| match r {
            Ok(m) => {
                stats.frames_rx += 1;
                inbox.push_back(m);
            }
            Err(e) => {
                match e {
                    FrameError::Crc => stats.crc_failures += 1,
                    FrameError::Oversize => stats.oversize_frames += 1,
                    _ => stats.bad_frames += 1,
                }
                tracing::debug!(error = %e, "frame refused");
            }
        });
    }

    /// Forgets buffered input (used when this end restarts).
    pub fn reset_input(&mut self) {
        self.decoder.reset();
        self.inbox.clear();
        let _ = self.port.clear(serialport::ClearBuffer::Input);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serialport::TTYPort;

    #[test]
    fn writes_are_paced_to_the_line_rate() {
        let (master, _slave) = TTYPort::pair().unwrap();
        let mut link = Link::from_port(Box::new(master), "pty", 115_200, true).unwrap();
        let start = Instant::now();
        for nonce in 0..250 {
            link.send(&Message::Ping { nonce }).unwrap();
        }
        let bytes = link.stats.bytes_tx;
        let line = Duration::from_secs_f64(bytes as f64 * 10.0 / 115_200.0);
        let took = start.elapsed();
        assert!(bytes > 1500, "{bytes}");
        assert!(
            took >= line.mul_f64(0.9),
            "{bytes} bytes in {took:?}, the line needs {line:?}"
        );
        assert!(
            took <= line * 2 + Duration::from_millis(100),
            "{took:?} for {line:?}"
        );
    }

    #[test]
    fn corrupted_frames_are_counted_and_the_next_frame_arrives() {
        let (master, slave) = TTYPort::pair().unwrap();
        let mut tx = Link::from_port(Box::new(master), "a", 0, false).unwrap();
        let mut rx = Link::from_port(Box::new(slave), "b", 0, false).unwrap();
        let mut frame = [0u8; MAX_FRAME];
        let n = encode_frame(&Message::Pong { nonce: 1 }, &mut frame).unwrap();
        frame[2] ^= 0x10;
        tx.write_paced(&frame[..n]).unwrap();
        tx.write_paced(&[0x55; MAX_FRAME + 10]).unwrap();
        tx.write_paced(&[0]).unwrap();
        tx.send(&Message::Ping { nonce: 9 }).unwrap();
        let got = rx.recv(Duration::from_secs(2)).unwrap();
        assert_eq!(got, Some(Message::Ping { nonce: 9 }));
        assert_eq!(rx.stats.crc_failures, 1);
        assert_eq!(rx.stats.oversize_frames, 1);
        assert_eq!(rx.recv(Duration::from_millis(20)).unwrap(), None);
    }
}
