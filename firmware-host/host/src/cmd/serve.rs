use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use clap::Parser;

use medseg_host::link::Link;
use medseg_host::screen::parse_size;
use medseg_host::serve::{DEFAULT_MAX_IMAGE_BYTES, ServeOptions, Server};

/// Answer capture rigs on a serial port: receive images, segment them, send results.
#[derive(Parser)]
#[command(
    after_help = "Example:\n  medseg-host serve --port /dev/ttyUSB0 --baud 921600 --model unet.onnx --display 320x240 --screenshot screen.png"
)]
pub struct Args {
    /// Serial device (or a pseudo-terminal path).
    #[arg(long)]
    port: String,
    #[arg(long, default_value_t = 921_600)]
    baud: u32,
    /// Exported model (ONNX with its model card); the embedded demo model if omitted.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Device screen to render: 320x240 or 480x320. A rig that announces its own screen in
    /// Hello gets it as DisplayChunk frames.
    #[arg(long, value_parser = parse_size)]
    display: Option<(u32, u32)>,
    /// Write the latest screen to this PNG after every image (needs --display or a rig screen).
    #[arg(long)]
    screenshot: Option<PathBuf>,
    /// Largest image accepted, in bytes.
    #[arg(long, default_value_t = DEFAULT_MAX_IMAGE_BYTES)]
    max_image_bytes: usize,
    /// Write at full speed instead of pacing to --baud (pacing matters only over ptys).
    #[arg(long)]
    no_pace: bool,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    if a.screenshot.is_some() && a.display.is_none() {
        anyhow::bail!("--screenshot needs --display (320x240 or 480x320) to know the screen size");
    }
    let model = super::load_model(a.model.as_deref())?;
    let label = super::label(&model);
    let link = Link::open(&a.port, a.baud, !a.no_pace)?;
    let opts = ServeOptions {
        max_image_bytes: a.max_image_bytes,
        display: a.display,
        screenshot: a.screenshot,
        label,
    };
    eprintln!("serving on {} at {} baud (Ctrl-C stops)", a.port, a.baud);
    let mut server = Server::new(link, model, opts);
    server.run(&AtomicBool::new(false))
}
