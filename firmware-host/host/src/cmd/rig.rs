use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Parser;

use medseg_host::link::Link;
use medseg_host::rig::{Rig, RigImage, RigOptions};
use medseg_host::screen::parse_size;

/// Capture-rig simulator: send every image of a folder to `medseg-host serve` and print
/// the results (run both ends on one machine over a pseudo-terminal pair).
#[derive(Parser)]
#[command(after_help = "Example (one machine, a pty pair made by socat):\n  \
    socat -d -d pty,raw,echo=0 pty,raw,echo=0    # prints two /dev/pts/N paths\n  \
    medseg-host serve --port /dev/pts/3 --baud 921600 &\n  \
    medseg-host rig --port /dev/pts/4 --baud 921600 --images runtime/assets/demo/samples")]
pub struct Args {
    /// Serial device (or a pseudo-terminal path).
    #[arg(long)]
    port: String,
    #[arg(long, default_value_t = 921_600)]
    baud: u32,
    /// Folder of PNG/JPEG images (files ending in _mask.png are skipped).
    #[arg(long)]
    images: PathBuf,
    /// Decode the images and send raw 8-bit gray pixels instead of the files.
    #[arg(long)]
    raw: bool,
    /// First chunk size in bytes (1..=512); adapted to the line's loss from image to image.
    #[arg(long, default_value_t = 512)]
    chunk: u16,
    /// Announce a screen of this size; the host then draws it with DisplayChunk frames.
    #[arg(long, value_parser = parse_size)]
    display: Option<(u32, u32)>,
    /// Write each screen received from the host to this folder (needs --display).
    #[arg(long)]
    screen_out: Option<PathBuf>,
    /// Write at full speed instead of pacing to --baud (pacing matters only over ptys).
    #[arg(long)]
    no_pace: bool,
}

fn image_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read the image folder {}", dir.display()))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("")
                .to_lowercase();
            (name.ends_with(".png") || name.ends_with(".jpg") || name.ends_with(".jpeg"))
                && !name.ends_with("_mask.png")
        })
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("{} has no .png/.jpg/.jpeg images", dir.display());
    }
    Ok(files)
}

pub fn run(a: Args) -> anyhow::Result<()> {
    if !(1..=512).contains(&a.chunk) {
        bail!("--chunk {} is out of range: 1 to 512 bytes", a.chunk);
    }
    if a.screen_out.is_some() && a.display.is_none() {
        bail!("--screen-out needs --display (the screen size the rig announces)");
    }
    let files = image_files(&a.images)?;
    if let Some(dir) = &a.screen_out {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let link = Link::open(&a.port, a.baud, !a.no_pace)?;
    let mut opts = RigOptions::for_baud(a.baud);
    opts.chunk_size = a.chunk;
    opts.display = a.display;
    let mut rig = Rig::new(link, opts);
    rig.handshake()?;
    let (mut ok, mut failed) = (0, 0);
    for (i, path) in files.iter().enumerate() {
        let img = RigImage::from_file(path, a.raw)?;
        let r = rig.send_image(&img)?;
        match &r.outcome {
            Ok(res) => {
                ok += 1;
                println!(
                    "{}\tid {}\t{} bytes\tarea {:?} px\tconfidence {:.3}\tinference {} ms\tlatency {:.2} s\tretransmits {}\trestarts {}\tcontour {} points",
                    r.name,
                    r.image_id,
                    r.bytes,
                    res.areas.as_slice(),
                    res.confidence,
                    res.inference_ms,
                    r.latency.as_secs_f64(),
                    r.retransmits,
                    r.restarts,
                    res.contour.len()
                );
            }
            Err(why) => {
                failed += 1;
                println!("{}\tFAILED: {why}", r.name);
            }
        }
        if a.display.is_some() && r.outcome.is_ok() && !rig.wait_screen()? {
            eprintln!("{}: the host did not finish drawing the screen", r.name);
        }
        if let (Some(dir), Some(screen)) = (&a.screen_out, rig.screen()) {
            screen.save_png(&dir.join(format!("screen-{i:03}.png")))?;
        }
    }
    let s = rig.link().stats;
    eprintln!(
        "{ok} ok, {failed} failed; frames sent {}, received {}, CRC failures {}, bad frames {}",
        s.frames_tx, s.frames_rx, s.crc_failures, s.bad_frames
    );
    if failed > 0 {
        bail!("{failed} of {} images failed", files.len());
    }
    Ok(())
}
