//! `medseg serve`'s router, driven in process (no socket): the page, a segmentation that
//! matches the library's, and every limit's answer.

use std::time::Duration;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode, header};
use base64::Engine as _;
use tower::ServiceExt as _;

mod common;

use common::{SPACING, ct_dicom};
use medseg_runtime::Segmenter;
use medseg_runtime::demo::{MODEL, SAMPLES};
use medseg_runtime::image_io::load_image_bytes;
use medseg_runtime::measure::class_stats;
use medseg_runtime::serve::{SegmentResponse, ServeLimits, ServeState, router};

fn model() -> Segmenter {
    Segmenter::from_bytes(MODEL, "demo").unwrap()
}

fn state(limits: ServeLimits) -> ServeState {
    ServeState::new(model(), "demo", limits)
}

async fn post(app: Router, body: Vec<u8>) -> (StatusCode, Option<String>, serde_json::Value) {
    let response = app
        .oneshot(
            Request::post("/api/segment")
                .header(header::CONTENT_TYPE, "image/png")
                .body(Body::from(body))
                .unwrap(),
        )
        .await
        .unwrap();
    let status = response.status();
    let retry = response
        .headers()
        .get(header::RETRY_AFTER)
        .map(|v| v.to_str().unwrap().to_string());
    let bytes = to_bytes(response.into_body(), usize::MAX).await.unwrap();
    (status, retry, serde_json::from_slice(&bytes).unwrap())
}

fn error_of(json: &serde_json::Value) -> &str {
    json["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error in {json}"))
}

#[tokio::test]
async fn the_page_offers_a_file_picker_and_the_model_is_described() {
    let app = router(state(ServeLimits::default()));
    let response = app
        .clone()
        .oneshot(Request::get("/").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let html = String::from_utf8(
        to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap()
            .to_vec(),
    )
    .unwrap();
    assert!(html.contains(r#"<input type="file""#) && html.contains("/api/segment"));
    let response = app
        .oneshot(Request::get("/api/model").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let bytes = to_bytes(response.into_body(), usize::MAX).await.unwrap();
    let info: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(info["classes"][1], "cancellous_bone");
    assert_eq!(info["architecture"]["name"], "unet");
}

#[tokio::test]
async fn an_upload_is_segmented_as_the_library_segments_it() {
    let sample = &SAMPLES[0];
    let (status, _, json) =
        post(router(state(ServeLimits::default())), sample.image.to_vec()).await;
    assert_eq!(status, StatusCode::OK, "{json}");
    let answer: SegmentResponse = serde_json::from_value(json).unwrap();

    let img = load_image_bytes(sample.image, "sample", 8192).unwrap();
    let model = model();
    let expected = model.segment(&img).unwrap().prediction;
    assert_eq!(
        (answer.width, answer.height),
        (img.width() as usize, img.height() as usize)
    );
    assert_eq!(
        answer.classes,
        class_stats(&expected, &model.card.classes, None)
    );
    assert!(answer.classes[0].area_pixels > 100, "{:?}", answer.classes);

    let b64 = base64::engine::general_purpose::STANDARD;
    let mask = image::load_from_memory(&b64.decode(&answer.mask_png).unwrap())
        .unwrap()
        .into_luma8();
    assert_eq!(mask.into_raw(), expected.mask.data);
    let overlay = image::load_from_memory(&b64.decode(&answer.overlay_png).unwrap()).unwrap();
    assert_eq!(
        (overlay.width(), overlay.height()),
        (img.width(), img.height())
    );
}

#[tokio::test]
async fn a_dicom_upload_segments_as_its_picture_with_areas_in_mm2() {
    // The demo slice's gray levels as a two-frame CT file (see common::ct_dicom).
    let gray = image::load_from_memory(SAMPLES[0].image)
        .unwrap()
        .into_luma8();
    let other = image::load_from_memory(SAMPLES[1].image)
        .unwrap()
        .into_luma8();
    let app = router(state(ServeLimits::default()));
    let (status, _, json) = post(app.clone(), ct_dicom(&[gray, other])).await;
    assert_eq!(status, StatusCode::OK, "{json}");
    let dicom: SegmentResponse = serde_json::from_value(json).unwrap();
    let (_, _, json) = post(app.clone(), SAMPLES[0].image.to_vec()).await;
    let picture: SegmentResponse = serde_json::from_value(json).unwrap();
    assert_eq!(dicom.mask_png, picture.mask_png);
    assert_eq!((dicom.frames, picture.frames), (2, 1));
    assert_eq!(dicom.pixel_spacing_mm, Some([SPACING.0, SPACING.1]));
    assert_eq!(picture.pixel_spacing_mm, None);
    let (d, p) = (&dicom.classes[0], &picture.classes[0]);
    assert_eq!(d.area_pixels, p.area_pixels);
    let mm2 = d.area_pixels as f64 * SPACING.0 * SPACING.1;
    assert!((d.area_mm2.unwrap() - mm2).abs() < 1e-6 && p.area_mm2.is_none());
    // A DICOM file cut short is named and refused, not a crash.
    let mut cut = ct_dicom(&[image::GrayImage::new(64, 64)]);
    cut.truncate(cut.len() - 1000);
    let (status, _, json) = post(app, cut).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{json}");
    assert!(error_of(&json).contains("upload"), "{json}");
}

#[tokio::test]
async fn bad_uploads_are_answered_with_what_was_wrong() {
    let app = router(state(ServeLimits::default()));
    let (status, _, json) = post(app.clone(), Vec::new()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(error_of(&json).contains("empty upload"), "{json}");

    let (status, _, json) = post(app.clone(), b"not an image at all".to_vec()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(error_of(&json).contains("not a decodable"), "{json}");

    // A truncated PNG: its header is fine, its data ends early.
    let png = SAMPLES[0].image;
    let (status, _, json) = post(app, png[..png.len() / 2].to_vec()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(error_of(&json).contains("truncated"), "{json}");
}

/// A PNG of `w` x `h` black pixels.
fn png(w: u32, h: u32) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    image::GrayImage::new(w, h)
        .write_to(&mut out, image::ImageFormat::Png)
        .unwrap();
    out.into_inner()
}

#[tokio::test]
async fn uploads_beyond_the_limits_are_refused_before_decoding() {
    let limits = ServeLimits {
        max_upload_bytes: 64 << 10,
        max_side_px: 1000,
        ..ServeLimits::default()
    };
    let app = router(state(limits));
    let (status, _, json) = post(app.clone(), vec![0u8; 100 << 10]).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(error_of(&json).contains("limit"), "{json}");
    // Declared too large: refused from the header, before the body is read.
    let response = app
        .clone()
        .oneshot(
            Request::post("/api/segment")
                .header(header::CONTENT_LENGTH, (1usize << 30).to_string())
                .body(Body::from(vec![0u8; 16]))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);

    // Small on the wire, too wide to decode: refused from its header.
    let wide = png(5000, 10);
    assert!(wide.len() < 64 << 10);
    let (status, _, json) = post(app, wide).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        error_of(&json).contains("5000x10") && error_of(&json).contains("1000 px"),
        "{json}"
    );
}

#[tokio::test]
async fn a_request_waits_for_a_free_slot_in_the_queue() {
    let st = state(ServeLimits::default());
    let held = st.occupy_slots().expect("no request is running");
    let waiting = tokio::spawn(post(router(st.clone()), SAMPLES[0].image.to_vec()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "it waits while every slot is taken");
    drop(held);
    let (status, _, json) = waiting.await.unwrap();
    assert_eq!(status, StatusCode::OK, "{json}");
}

#[tokio::test]
async fn a_busy_server_says_so_at_once_and_a_slow_request_times_out() {
    let st = state(ServeLimits::default());
    let held = st.occupy_all().expect("no request is running");
    let (status, retry, json) = post(router(st.clone()), SAMPLES[0].image.to_vec()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(retry.as_deref(), Some("1"));
    assert!(error_of(&json).contains("busy"), "{json}");
    drop(held);
    let (status, _, _) = post(router(st), SAMPLES[0].image.to_vec()).await;
    assert_eq!(status, StatusCode::OK, "free again once the slots are");

    let limits = ServeLimits {
        timeout: Duration::from_micros(1),
        ..ServeLimits::default()
    };
    let (status, _, json) = post(router(state(limits)), SAMPLES[0].image.to_vec()).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert!(error_of(&json).contains("longer than"), "{json}");
}
