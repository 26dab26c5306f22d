//! `medseg serve`: the bedside web page and JSON API (runtime/src/serve) on a local address.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;

use medseg_runtime::serve::{ServeLimits, ServeState, router};

use crate::model_arg::ModelArg;

/// Serve a web page that segments dropped images, and its JSON API.
///
/// Open the printed address in a browser, or POST an image file to /api/segment (the response
/// is JSON: class areas, bounding boxes, confidence, and the mask and overlay as base64 PNGs).
///
/// Example: medseg serve --model unet.onnx   (then open http://127.0.0.1:8080)
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArg,
    /// Address to listen on. The default is reachable from this machine only; give
    /// 0.0.0.0:PORT to serve other machines on the network.
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// Largest upload, in MB.
    #[arg(long, default_value_t = 50)]
    max_upload_mb: usize,
    /// Longest image side accepted, in pixels (checked from the header, before decoding).
    #[arg(long, default_value_t = 8192)]
    max_side_px: u32,
    /// Longest a request may take, in seconds.
    #[arg(long, default_value_t = 30.0)]
    timeout_s: f64,
    /// Images segmented at once.
    #[arg(long, default_value_t = 2)]
    concurrency: usize,
    /// Requests that may wait for one of those; one more is answered 503 with Retry-After.
    #[arg(long, default_value_t = 32)]
    queue: usize,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.concurrency >= 1,
        "--concurrency {}: at least one image must be segmented at a time",
        args.concurrency
    );
    anyhow::ensure!(
        args.timeout_s.is_finite() && args.timeout_s > 0.0,
        "--timeout-s {}: expected a positive number of seconds",
        args.timeout_s
    );
    anyhow::ensure!(
        args.max_upload_mb >= 1,
        "--max-upload-mb {}: expected at least 1",
        args.max_upload_mb
    );
    let model = args.model.load()?;
    let limits = ServeLimits {
        max_upload_bytes: args.max_upload_mb << 20,
        max_side_px: args.max_side_px,
        timeout: Duration::from_secs_f64(args.timeout_s),
        concurrency: args.concurrency,
        queue: args.queue,
    };
    let app = router(ServeState::new(model, &args.model.describe(), limits));
    let runtime = tokio::runtime::Runtime::new().context("starting the server's runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.addr)
            .await
            .with_context(|| format!("cannot listen on {}", args.addr))?;
        println!(
            "serving {} on http://{}",
            args.model.describe(),
            listener.local_addr()?
        );
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
            .context("the server stopped")
    })
}
