//! `medseg serve`: a local web page and a JSON API for the bedside. One page (drop or pick an
//! image or a DICOM file, see the overlay and the areas, download the mask and the JSON) and
//! `POST /api/segment` (the image file as the request body -> [`SegmentResponse`]).
//!
//! Limits, each answered with a JSON `{"error": ...}` that says what was wrong: upload size
//! (413), image dimensions checked before decoding (422: a decompression bomb is refused from
//! its header), per-request time, waiting included (504), a fixed number of requests in
//! inference at once and a bounded queue behind them; one more than those gets 503 with
//! `Retry-After` at once instead of queueing without bound.

mod page;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Json, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use serde::Serialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::Segmenter;
use crate::image_io::{as_gray, load_image_bytes};
use crate::measure::{ClassStats, class_stats};
use crate::medical::dicom_file::from_marker;
use crate::medical::scan::{Scan, ScanOptions};
use crate::outputs::{encode_mask_png, encode_overlay_png};

/// What one server accepts.
#[derive(Debug, Clone)]
pub struct ServeLimits {
    /// Largest upload, in bytes.
    pub max_upload_bytes: usize,
    /// Longest image side, in pixels, read from the header before decoding.
    pub max_side_px: u32,
    /// Longest a request may take, decoding to encoded outputs.
    pub timeout: Duration,
    /// Requests segmented at once.
    pub concurrency: usize,
    /// Requests that may wait for one of those slots; more are answered 503.
    pub queue: usize,
}

impl Default for ServeLimits {
    fn default() -> Self {
        Self {
            max_upload_bytes: 50 << 20,
            max_side_px: 8192,
            timeout: Duration::from_secs(30),
            concurrency: 2,
            queue: 32,
        }
    }
}

/// The model and the limits, shared by every request.
#[derive(Clone)]
pub struct ServeState {
    model: Arc<Segmenter>,
    /// Names the model in responses (its path, or the embedded model).
    model_name: Arc<str>,
    limits: ServeLimits,
    /// Requests admitted (in inference or waiting): `concurrency + queue`.
    admitted: Arc<Semaphore>,
    /// Requests in inference: `concurrency`.
    slots: Arc<Semaphore>,
}

impl ServeState {
    pub fn new(model: Segmenter, model_name: &str, limits: ServeLimits) -> Self {
        Self {
            model: Arc::new(model),
            model_name: model_name.into(),
            admitted: Arc::new(Semaphore::new(limits.concurrency + limits.queue)),
            slots: Arc::new(Semaphore::new(limits.concurrency)),
            limits,
        }
    }

    /// Takes every inference slot and every place in the queue until the returned permits
    /// are dropped: a server busy with long requests (for tests of the 503 answer).
    pub fn occupy_all(&self) -> Option<(OwnedSemaphorePermit, OwnedSemaphorePermit)> {
        let admitted = self.admitted.clone();
        let all = (self.limits.concurrency + self.limits.queue) as u32;
        Some((
            admitted.try_acquire_many_owned(all).ok()?,
            self.slots
                .clone()
                .try_acquire_many_owned(self.limits.concurrency as u32)
                .ok()?,
        ))
    }

    /// Takes every inference slot, leaving the queue open: requests then wait.
    pub fn occupy_slots(&self) -> Option<OwnedSemaphorePermit> {
        self.slots
            .clone()
            .try_acquire_many_owned(self.limits.concurrency as u32)
            .ok()
    }
}

/// The answer to `POST /api/segment`.
#[derive(Debug, Serialize, serde::Deserialize)]
pub struct SegmentResponse {
    pub model: String,
    pub width: usize,
    pub height: usize,
    /// (row, column) pixel spacing in mm of a DICOM upload; absent for pictures.
    pub pixel_spacing_mm: Option<[f64; 2]>,
    /// Frames in the upload (a multi-frame DICOM file); the first is segmented.
    pub frames: usize,
    /// Every class but the background: area in pixels (and mm^2 where the spacing is known),
    /// bounding box, centroid, outlines, mean confidence.
    pub classes: Vec<ClassStats>,
    /// Mean softmax confidence over the whole image.
    pub mean_confidence: f32,
    /// The model card's quality gate: `reliable` false, with its reasons, for an image the
    /// model should not be trusted on; absent for models exported without a gate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<crate::quality::Verdict>,
    pub inference_ms: f64,
    /// Decoding to encoded outputs, on the server.
    pub total_ms: f64,
    /// The class-index mask, an 8-bit gray PNG, base64.
    pub mask_png: String,
    /// The image in gray with each class tinted and outlined, an RGB PNG, base64.
    pub overlay_png: String,
}

/// The page and the API on one router.
pub fn router(state: ServeState) -> Router {
    Router::new()
        .route("/", get(|| async { Html(page::PAGE) }))
        .route("/api/model", get(model_info))
        .route("/api/segment", post(segment))
        .with_state(state)
}

/// An error answer: the status and a message a person can act on.
fn error(status: StatusCode, message: impl Into<String>) -> Response {
    #[derive(Serialize)]
    struct Body {
        error: String,
    }
    (
        status,
        Json(Body {
            error: message.into(),
        }),
    )
        .into_response()
}

async fn model_info(State(state): State<ServeState>) -> Response {
    #[derive(Serialize)]
    struct Info<'a> {
        model: &'a str,
        architecture: &'a serde_json::Value,
        classes: &'a [String],
        input: &'a crate::InputSpec,
    }
    let card = &state.model.card;
    Json(Info {
        model: &state.model_name,
        architecture: &card.architecture,
        classes: &card.classes,
        input: &card.input,
    })
    .into_response()
}

async fn segment(State(state): State<ServeState>, headers: HeaderMap, body: Body) -> Response {
    let limits = &state.limits;
    let too_large = || {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the upload is larger than this server's limit of {} MB",
                limits.max_upload_bytes >> 20
            ),
        )
    };
    // A declared size beyond the limit is refused before anything is read.
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limits.max_upload_bytes) {
        return too_large();
    }
    // Admitted before the body is read, so that a burst of uploads beyond the queue costs
    // no memory.
    let Ok(admitted) = state.admitted.clone().try_acquire_owned() else {
        let mut busy = error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "busy: {} image(s) are being segmented and {} waiting; try again in a second",
                limits.concurrency, limits.queue
            ),
        );
        busy.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return busy;
    };
    let work_state = state.clone();
    let max_bytes = limits.max_upload_bytes;
    // Reading the body is under the timeout too: a client that sends slowly holds a place
    // in the queue no longer than one that waits.
    let work = async move {
        let bytes = match axum::body::to_bytes(body, max_bytes).await {
            Ok(b) => b,
            Err(e) if is_length_limit(&e) => return Err(None),
            Err(e) => {
                return Err(Some((
                    StatusCode::BAD_REQUEST,
                    format!("the upload could not be read: {e}"),
                )));
            }
        };
        if bytes.is_empty() {
            return Err(Some((
                StatusCode::BAD_REQUEST,
                "empty upload: send the image file (PNG, JPEG, BMP, TIFF or DICOM) as the request \
                 body"
                    .into(),
            )));
        }
        let slot = work_state
            .slots
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        // Inference is CPU-bound: it runs on the blocking pool, holding its slot until it
        // ends even when the request has timed out, so the slots bound the work, not just
        // the waiting.
        tokio::task::spawn_blocking(move || {
            let _held = (admitted, slot);
            segment_bytes(&work_state, &bytes)
        })
        .await
        .map_err(|join| {
            Some((
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("segmentation failed: {join}"),
            ))
        })?
        .map_err(Some)
    };
    match tokio::time::timeout(limits.timeout, work).await {
        Ok(Ok(response)) => Json(response).into_response(),
        Ok(Err(Some((status, message)))) => error(status, message),
        Ok(Err(None)) => too_large(),
        Err(_) => error(
            StatusCode::GATEWAY_TIMEOUT,
            format!(
                "segmentation took longer than this server's limit of {:.1} s, upload and \
                 waiting included",
                limits.timeout.as_secs_f64()
            ),
        ),
    }
}

/// Whether reading a body failed on its size limit (not a dropped connection).
fn is_length_limit(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if err.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = err.source();
    }
    false
}

/// Decode, segment and encode one upload.
fn segment_bytes(
    state: &ServeState,
    bytes: &[u8],
) -> Result<SegmentResponse, (StatusCode, String)> {
    let started = Instant::now();
    let unprocessable = |e: crate::RuntimeError| (StatusCode::UNPROCESSABLE_ENTITY, e.to_string());
    let (img, spacing_mm, frames) = if from_marker(bytes).is_some() {
        // A DICOM upload: its first frame, mapped by the file's own window as the importers
        // map training slices; a 2.5D model gets the frame's neighbours from the file.
        let options = ScanOptions {
            max_side_px: Some(state.limits.max_side_px),
            ..ScanOptions::default()
        };
        let scan = Scan::from_dicom_bytes(bytes, "upload", &options).map_err(unprocessable)?;
        let stacked = state.model.card.input.stacked_neighbours;
        let (img, slice) = scan.model_image(0, stacked);
        (img, slice.spacing_mm, scan.slice_count())
    } else {
        let img =
            load_image_bytes(bytes, "upload", state.limits.max_side_px).map_err(unprocessable)?;
        (img, None, 1)
    };
    let seg = state.model.segment(&img).map_err(unprocessable)?;
    let img = state.model.card.input.displayed(&img);
    let pred = &seg.prediction;
    let encode_failed = |e: std::io::Error| {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding the result failed: {e}"),
        )
    };
    let mut mask_png = Vec::new();
    encode_mask_png(&mut mask_png, &pred.mask).map_err(encode_failed)?;
    let mut overlay_png = Vec::new();
    encode_overlay_png(&mut overlay_png, &as_gray(&img), &pred.mask).map_err(encode_failed)?;
    let b64 = base64::engine::general_purpose::STANDARD;
    Ok(SegmentResponse {
        model: state.model_name.to_string(),
        width: pred.mask.width,
        height: pred.mask.height,
        pixel_spacing_mm: spacing_mm.map(|(r, c)| [r, c]),
        frames,
        classes: class_stats(pred, &state.model.card.classes, spacing_mm),
        mean_confidence: pred.mean_confidence(),
        quality: seg.quality.clone(),
        inference_ms: seg.inference_ms,
        total_ms: started.elapsed().as_secs_f64() * 1e3,
        mask_png: b64.encode(&mask_png),
        overlay_png: b64.encode(&overlay_png),
    })
}
