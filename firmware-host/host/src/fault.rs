//! A fault-injecting relay between two pseudo-terminal pairs, for tests and `bench-link`.
//!
//! ```text
//! rig <-> slave A | master A <-> relay threads <-> master B | slave B <-> host
//! ```
//! Each direction flips bits, drops and duplicates bytes and stalls, from its own seeded
//! RNG, so a failing run can be replayed. Faults can be changed while the relay runs.

use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serialport::{SerialPort, TTYPort};

/// Per-byte fault probabilities (and a per-read stall probability).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Faults {
    /// A byte gets one random bit flipped.
    pub flip: f64,
    pub drop: f64,
    pub duplicate: f64,
    /// Each read burst is held back for `stall_for` with this probability.
    pub stall: f64,
    pub stall_for: Duration,
}

impl Faults {
    pub const CLEAN: Faults = Faults {
        flip: 0.0,
        drop: 0.0,
        duplicate: 0.0,
        stall: 0.0,
        stall_for: Duration::ZERO,
    };

    /// `rate` of the bytes corrupted (one bit flipped each), nothing else.
    pub fn corrupt(rate: f64) -> Self {
        Faults {
            flip: rate,
            ..Self::CLEAN
        }
    }
}

/// What one direction of the relay did.
#[derive(Debug, Default, Clone, Copy)]
pub struct RelayStats {
    pub bytes: u64,
    pub flipped: u64,
    pub dropped: u64,
    pub duplicated: u64,
    pub stalls: u64,
}

pub struct Relay {
    stop: Arc<AtomicBool>,
    faults: Arc<Mutex<Faults>>,
    threads: Vec<JoinHandle<RelayStats>>,
}

/// Two ports joined through a relay.
pub struct RelayedPorts {
    pub rig: Box<dyn SerialPort>,
    pub host: Box<dyn SerialPort>,
    pub relay: Relay,
}

pub fn relayed_pty_pair(faults: Faults, seed: u64) -> anyhow::Result<RelayedPorts> {
    let pty = "cannot create a pseudo-terminal pair (is /dev/ptmx available?)";
    let (master_a, slave_a) = TTYPort::pair().context(pty)?;
    let (master_b, slave_b) = TTYPort::pair().context(pty)?;
    let stop = Arc::new(AtomicBool::new(false));
    let faults = Arc::new(Mutex::new(faults));
    let clone = |p: &TTYPort| p.try_clone_native().context("cannot clone a pty master");
    let threads = vec![
        spawn(clone(&master_a)?, clone(&master_b)?, seed, &stop, &faults)?,
        spawn(
            master_b,
            master_a,
            seed ^ 0x9E37_79B9_7F4A_7C15,
            &stop,
            &faults,
        )?,
    ];
    Ok(RelayedPorts {
        rig: Box::new(slave_a),
        host: Box::new(slave_b),
        relay: Relay {
            stop,
            faults,
            threads,
        },
    })
}

impl Relay {
    pub fn set_faults(&self, faults: Faults) {
        if let Ok(mut f) = self.faults.lock() {
            *f = faults;
        }
    }

    /// Stops both directions; returns (rig -> host, host -> rig) statistics.
    pub fn stop(self) -> (RelayStats, RelayStats) {
        self.stop.store(true, Ordering::Relaxed);
        let mut stats = self
            .threads
            .into_iter()
            .map(|t| t.join().unwrap_or_default());
        (
            stats.next().unwrap_or_default(),
            stats.next().unwrap_or_default(),
        )
    }
}

fn spawn(
    mut from: TTYPort,
    mut to: TTYPort,
    seed: u64,
    stop: &Arc<AtomicBool>,
    faults: &Arc<Mutex<Faults>>,
) -> anyhow::Result<JoinHandle<RelayStats>> {
    from.set_timeout(Duration::from_millis(10))?;
    to.set_timeout(Duration::from_millis(10))?;
    let (stop, faults) = (stop.clone(), faults.clone());
    Ok(std::thread::spawn(move || {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut stats = RelayStats::default();
        let mut buf = [0u8; 256];
        let mut out = Vec::with_capacity(512);
        while !stop.load(Ordering::Relaxed) {
            let n = match from.read(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::TimedOut => continue,
                Err(_) => break, // the slave side closed
            };
            let f = faults.lock().map(|f| *f).unwrap_or_default();
            out.clear();
            for &b in &buf[..n] {
                stats.bytes += 1;
                if rng.random_bool(f.drop.clamp(0.0, 1.0)) {
                    stats.dropped += 1;
                    continue;
                }
                let mut b = b;
                if rng.random_bool(f.flip.clamp(0.0, 1.0)) {
                    b ^= 1 << rng.random_range(0..8);
                    stats.flipped += 1;
                }
                out.push(b);
                if rng.random_bool(f.duplicate.clamp(0.0, 1.0)) {
                    out.push(b);
                    stats.duplicated += 1;
                }
            }
            if rng.random_bool(f.stall.clamp(0.0, 1.0)) {
                stats.stalls += 1;
                std::thread::sleep(f.stall_for);
            }
            if write_all(&mut to, &out, &stop).is_err() {
                break;
            }
        }
        stats
    }))
}

fn write_all(to: &mut TTYPort, mut bytes: &[u8], stop: &AtomicBool) -> io::Result<()> {
    let start = Instant::now();
    while !bytes.is_empty() && !stop.load(Ordering::Relaxed) {
        match to.write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(e)
                if e.kind() == io::ErrorKind::TimedOut
                    && start.elapsed() < Duration::from_secs(10) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
