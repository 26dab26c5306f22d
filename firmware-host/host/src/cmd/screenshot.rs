use std::path::PathBuf;

use clap::Parser;

use medseg_host::analyze::Analyzer;
use medseg_host::screen::{Screen, ScreenView, parse_size};

/// Segment one image and write what the device screen would show (no serial port needed).
#[derive(Parser)]
#[command(
    after_help = "Example:\n  medseg-host screenshot --image slice.png --display 480x320 --out screen.png"
)]
pub struct Args {
    /// PNG or JPEG image.
    #[arg(long)]
    image: PathBuf,
    /// Output PNG.
    #[arg(long)]
    out: PathBuf,
    #[arg(long, value_parser = parse_size, default_value = "320x240")]
    display: (u32, u32),
    /// Exported model; the embedded demo model if omitted.
    #[arg(long)]
    model: Option<PathBuf>,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let model = super::load_model(a.model.as_deref())?;
    let img = medseg_runtime::image_io::load_image(&a.image)?;
    let analysis = model.analyze(1, &img)?;
    let mut screen = Screen::new(a.display.0, a.display.1);
    let status = "offline render: no serial link";
    screen.render(&ScreenView {
        image: &img,
        result: Some(&analysis.result),
        label: &super::label(&model),
        status,
    });
    screen.save_png(&a.out)?;
    println!("{}", a.out.display());
    Ok(())
}
