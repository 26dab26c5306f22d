//! A host serving in a thread and a rig, joined by a fault-injecting relay over two real
//! pseudo-terminal pairs.
#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;

use image::{DynamicImage, imageops::FilterType};
use medseg_host::analyze::Analyzer;
use medseg_host::fault::{Faults, Relay, RelayStats, relayed_pty_pair};
use medseg_host::link::{Link, LinkStats};
use medseg_host::rig::{Rig, RigImage, RigOptions};
use medseg_host::serve::{ServeOptions, ServeStats, Server};
use medseg_protocol::SegResult;
use medseg_runtime::Segmenter;

/// Fast enough to keep tests short, slow enough that pacing and timeouts are exercised.
pub const BAUD: u32 = 3_000_000;

pub fn model() -> Arc<Segmenter> {
    static MODEL: OnceLock<Arc<Segmenter>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            Arc::new(
                Segmenter::from_bytes(medseg_runtime::demo::MODEL, "demo")
                    .expect("demo model loads"),
            )
        })
        .clone()
}

/// Distinct small images (so that results differ), in three wire formats.
pub fn images() -> Vec<RigImage> {
    let mut out = Vec::new();
    for (i, s) in medseg_runtime::demo::SAMPLES.iter().enumerate() {
        let img = image::load_from_memory(s.image).unwrap();
        let small = img.resize_exact(128, 128, FilterType::Triangle).to_luma8();
        let name = format!("{}-{i}", s.name);
        out.push(match i % 3 {
            0 => RigImage::gray8(&name, &small).unwrap(),
            1 => RigImage::jpeg(&name, &DynamicImage::ImageLuma8(small)).unwrap(),
            _ => {
                let mut png = Vec::new();
                DynamicImage::ImageLuma8(small)
                    .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
                    .unwrap();
                medseg_host::rig::RigImage {
                    name,
                    format: medseg_protocol::ImageFormat::Png,
                    width: 128,
                    height: 128,
                    bytes: png,
                }
            }
        });
    }
    out
}

/// What the host must answer for `img`: the model run directly on the decoded image.
pub fn expected(img: &RigImage) -> SegResult {
    let begin = medseg_protocol::CaptureBegin {
        image_id: 0,
        width: img.width,
        height: img.height,
        format: img.format,
        total_bytes: img.bytes.len() as u32,
        chunk_size: 1,
    };
    let decoded = medseg_host::analyze::decode(&begin, &img.bytes).unwrap();
    model().analyze(0, &decoded).unwrap().result
}

/// Same segmentation (timing aside).
pub fn same(a: &SegResult, b: &SegResult) -> bool {
    a.areas == b.areas && a.contour == b.contour && (a.confidence - b.confidence).abs() < 1e-4
}

/// Same segmentation, the contour possibly thinned (every 2^k-th point) by a host whose
/// full-size answers were lost on a noisy line.
pub fn same_or_coarser(got: &SegResult, want: &SegResult) -> bool {
    let thinned = |k: u32| -> Vec<_> { want.contour.iter().step_by(1 << k).copied().collect() };
    got.areas == want.areas
        && (got.confidence - want.confidence).abs() < 1e-4
        && (got.contour.is_empty() || (0..8).any(|k| got.contour.as_slice() == thinned(k)))
}

pub struct Harness {
    pub rig: Rig,
    pub relay: Relay,
    stop: Arc<AtomicBool>,
    server: JoinHandle<anyhow::Result<(LinkStats, ServeStats)>>,
}

pub struct Finished {
    pub host_link: LinkStats,
    pub host: ServeStats,
    pub rig_to_host: RelayStats,
    pub host_to_rig: RelayStats,
}

impl Harness {
    pub fn start<A: Analyzer + Send + 'static>(
        analyzer: A,
        faults: Faults,
        seed: u64,
        serve: ServeOptions,
        rig: impl FnOnce(&mut RigOptions),
    ) -> Self {
        let ports = relayed_pty_pair(faults, seed).unwrap();
        let (rig_port, host_port, relay) = (ports.rig, ports.host, ports.relay);
        let stop = Arc::new(AtomicBool::new(false));
        let host_link = Link::from_port(host_port, "pty host end", BAUD, true).unwrap();
        let server = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut server = Server::new(host_link, analyzer, serve);
                server.run(&stop)?;
                Ok((server.link().stats, server.stats))
            })
        };
        let mut opts = RigOptions::for_baud(BAUD);
        rig(&mut opts);
        let link = Link::from_port(rig_port, "pty rig end", BAUD, true).unwrap();
        Self {
            rig: Rig::new(link, opts),
            relay,
            stop,
            server,
        }
    }

    /// Stops the host; fails the test if the host thread errored or panicked.
    pub fn finish(self) -> Finished {
        self.stop.store(true, Ordering::Relaxed);
        let served = self.server.join().expect("the host thread panicked");
        let (host_link, host) = served.expect("the host stopped with an error");
        let (rig_to_host, host_to_rig) = self.relay.stop();
        Finished {
            host_link,
            host,
            rig_to_host,
            host_to_rig,
        }
    }
}

pub fn serve_opts() -> ServeOptions {
    ServeOptions {
        max_image_bytes: 1 << 20,
        display: None,
        screenshot: None,
        label: "bone".into(),
    }
}
