//! Every message survives encode -> frame -> decode unchanged, and fits the frame limits.

mod common;

use common::{decode_all, frame, message};
use medseg_protocol::*;
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn every_message_round_trips(msg in message()) {
        let bytes = frame(&msg);
        prop_assert!(bytes.len() <= MAX_FRAME);
        prop_assert_eq!(bytes.iter().filter(|&&b| b == 0).count(), 1);
        prop_assert_eq!(decode_all(&bytes), vec![Ok(msg)]);
    }

    #[test]
    fn back_to_back_frames_decode_in_order(msgs in proptest::collection::vec(message(), 1..8)) {
        let bytes: Vec<u8> = msgs.iter().flat_map(frame).collect();
        let expected: Vec<_> = msgs.into_iter().map(Ok).collect();
        prop_assert_eq!(decode_all(&bytes), expected);
    }
}

#[test]
fn the_largest_messages_fit_max_payload() {
    // Every collection at capacity and every integer at its widest varint.
    let full_chunk = Message::ImageChunk(ImageChunk {
        image_id: u32::MAX,
        seq: u16::MAX,
        data: heapless::Vec::from_slice(&[0xFF; MAX_CHUNK]).unwrap(),
    });
    let full_result = Message::Result(SegResult {
        image_id: u32::MAX,
        areas: heapless::Vec::from_slice(&[u32::MAX; MAX_CLASSES]).unwrap(),
        contour: heapless::Vec::from_slice(
            &[Point {
                x: u16::MAX,
                y: u16::MAX,
            }; MAX_CONTOUR],
        )
        .unwrap(),
        confidence: 1.0,
        inference_ms: u32::MAX,
    });
    let full_display = Message::DisplayChunk(DisplayChunk {
        screen: u16::MAX,
        x: u16::MAX,
        y: u16::MAX,
        width: u16::MAX,
        height: u16::MAX,
        pixels: heapless::Vec::from_slice(&[0xFF; MAX_CHUNK]).unwrap(),
    });
    let full_nack = Message::Nack(Nack {
        image_id: u32::MAX,
        reason: NackReason::Missing(Missing {
            total: u16::MAX,
            first: u16::MAX,
            bitmap: [0xFF; NACK_WINDOW / 8],
        }),
    });
    for msg in [full_chunk, full_result, full_display, full_nack] {
        let mut buf = [0u8; MAX_FRAME];
        let n = encode_frame(&msg, &mut buf).unwrap_or_else(|e| panic!("{}: {e}", msg.kind()));
        assert_eq!(decode_all(&buf[..n]), vec![Ok(msg)]);
    }
}

#[test]
fn error_text_is_cut_at_a_character_boundary() {
    let long = "é".repeat(100);
    let e = ErrorMsg::new(1, ErrorCode::Internal, &long);
    assert!(e.text.len() <= MAX_ERROR_TEXT);
    assert!(e.text.chars().all(|c| c == 'é'));
    assert_eq!(e.text.len(), MAX_ERROR_TEXT);
}
