//! `bench-link`: throughput and latency of the whole path over a paced pty pair.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use image::{DynamicImage, imageops::FilterType};

use crate::analyze::Analyzer;
use crate::fault::{Faults, relayed_pty_pair};
use crate::link::Link;
use crate::rig::{ImageReport, Rig, RigImage, RigOptions};
use crate::serve::{DEFAULT_MAX_IMAGE_BYTES, ServeOptions, Server};

/// The two images of the report: 256x256 raw 8-bit, and 512x512 JPEG (quality 90), both
/// from the embedded demo slice.
pub fn bench_images() -> anyhow::Result<Vec<RigImage>> {
    let sample = &medseg_runtime::demo::SAMPLES[0];
    let img = image::load_from_memory(sample.image).context("demo sample does not decode")?;
    let gray256 = img.resize_exact(256, 256, FilterType::Triangle).to_luma8();
    let rgb512 =
        DynamicImage::ImageLuma8(img.resize_exact(512, 512, FilterType::Triangle).to_luma8());
    Ok(vec![
        RigImage::gray8("256x256 gray8 raw", &gray256)?,
        RigImage::jpeg("512x512 JPEG", &rgb512)?,
    ])
}

/// One measured configuration.
pub struct CaseResult {
    pub baud: u32,
    pub corruption: f64,
    pub image: String,
    pub bytes: usize,
    /// Warm-up image (model warm-up, chunk-size adaptation), not in the medians.
    pub first: ImageReport,
    pub reports: Vec<ImageReport>,
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

impl CaseResult {
    fn ok(&self) -> impl Iterator<Item = &ImageReport> {
        self.reports.iter().filter(|r| r.outcome.is_ok())
    }
    pub fn latency_s(&self) -> f64 {
        median(self.ok().map(|r| r.latency.as_secs_f64()).collect())
    }
    /// Image bytes per second from `CaptureBegin` to `Ack(Complete)`.
    pub fn throughput(&self) -> f64 {
        median(
            self.ok()
                .filter_map(|r| r.transfer)
                .map(|t| self.bytes as f64 / t.as_secs_f64())
                .collect(),
        )
    }
    /// Bytes put on the line by the rig per image byte.
    pub fn wire_ratio(&self) -> f64 {
        median(
            self.ok()
                .map(|r| r.wire_bytes as f64 / self.bytes as f64)
                .collect(),
        )
    }
    pub fn inference_ms(&self) -> f64 {
        median(
            self.ok()
                .filter_map(|r| r.outcome.as_ref().ok())
                .map(|r| r.inference_ms as f64)
                .collect(),
        )
    }
    pub fn chunk_size(&self) -> f64 {
        median(self.ok().map(|r| r.chunk_size as f64).collect())
    }
    pub fn failed(&self) -> usize {
        self.reports.iter().filter(|r| r.outcome.is_err()).count()
    }
}

/// Runs `images` transfers (after one warm-up) of `img` at `baud` with `corruption` of the
/// bytes flipped in both directions; host and rig each pace their writes to `baud`.
pub fn run_case<A: Analyzer + Send + 'static>(
    analyzer: A,
    img: &RigImage,
    baud: u32,
    corruption: f64,
    images: usize,
    seed: u64,
) -> anyhow::Result<CaseResult> {
    let ports = relayed_pty_pair(Faults::corrupt(corruption), seed)?;
    let (rig_port, host_port, relay) = (ports.rig, ports.host, ports.relay);
    let stop = Arc::new(AtomicBool::new(false));
    let server = {
        let stop = stop.clone();
        let link = Link::from_port(host_port, "pty (host end)", baud, true)?;
        let opts = ServeOptions {
            max_image_bytes: DEFAULT_MAX_IMAGE_BYTES,
            display: None,
            screenshot: None,
            label: String::new(),
        };
        std::thread::spawn(move || -> anyhow::Result<()> {
            Server::new(link, analyzer, opts).run(&stop)
        })
    };
    let run = || -> anyhow::Result<(ImageReport, Vec<ImageReport>)> {
        let link = Link::from_port(rig_port, "pty (rig end)", baud, true)?;
        let mut rig = Rig::new(link, RigOptions::for_baud(baud));
        rig.handshake()?;
        let first = rig.send_image(img)?;
        let mut reports = Vec::new();
        for _ in 0..images {
            reports.push(rig.send_image(img)?);
        }
        Ok((first, reports))
    };
    let outcome = run();
    stop.store(true, Ordering::Relaxed);
    let served = server.join();
    relay.stop();
    let (first, reports) = outcome?;
    match served {
        Ok(r) => r.context("host side failed")?,
        Err(_) => anyhow::bail!("host thread panicked"),
    }
    Ok(CaseResult {
        baud,
        corruption,
        image: img.name.clone(),
        bytes: img.bytes.len(),
        first,
        reports,
    })
}

/// The report as a Markdown table.
pub fn table(results: &[CaseResult]) -> String {
    let mut s = String::from(
        "| image | bytes | baud | corrupted bytes | latency (median) | throughput | of line rate | wire bytes / image byte | chunk | inference | failed | first image |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in results {
        let line_rate = r.baud as f64 / 10.0;
        s += &format!(
            "| {} | {} | {} | {:.0}% | {:.2} s | {:.1} KB/s | {:.0}% | {:.3} | {:.0} B | {:.0} ms | {}/{} | {:.2} s |\n",
            r.image,
            r.bytes,
            r.baud,
            r.corruption * 100.0,
            r.latency_s(),
            r.throughput() / 1000.0,
            100.0 * r.throughput() / line_rate,
            r.wire_ratio(),
            r.chunk_size(),
            r.inference_ms(),
            r.failed(),
            r.reports.len(),
            r.first.latency.as_secs_f64(),
        );
    }
    s
}

/// Expected transfer time of `bytes` at `baud` with no overhead (for the summary line).
pub fn raw_time(bytes: usize, baud: u32) -> Duration {
    Duration::from_secs_f64(bytes as f64 * 10.0 / baud as f64)
}
