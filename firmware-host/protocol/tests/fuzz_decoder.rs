//! Fuzz-style properties of the frame decoder on stable Rust (the cargo-fuzz target in
//! `fuzz/` feeds the same decoder from libFuzzer on nightly):
//! any byte sequence decodes without panicking, memory is one fixed buffer, and after any
//! garbage the first frame that follows a 0x00 delimiter is decoded intact.

mod common;

use common::{decode_all, frame, message};
use medseg_protocol::*;
use proptest::prelude::*;

/// Garbage that may contain anything, including delimiters and COBS-looking runs.
fn garbage() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..3 * MAX_FRAME),
        proptest::collection::vec(1u8..=255, 0..3 * MAX_FRAME),
        proptest::collection::vec(prop_oneof![Just(0u8), Just(1u8), Just(0xFFu8)], 0..64),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn any_bytes_decode_without_panic_into_at_most_one_outcome_per_delimiter(bytes in garbage()) {
        let out = decode_all(&bytes);
        let delimiters = bytes.iter().filter(|&&b| b == 0).count();
        // One outcome per non-empty frame, plus an early Oversize report per overlong run.
        prop_assert!(out.len() <= delimiters + bytes.len() / MAX_FRAME);
    }

    #[test]
    fn a_frame_after_garbage_and_a_delimiter_is_recovered(
        junk in garbage(),
        msgs in proptest::collection::vec(message(), 1..4),
    ) {
        let mut bytes = junk;
        bytes.push(0);
        for m in &msgs {
            bytes.extend(frame(m));
        }
        let out = decode_all(&bytes);
        let tail = &out[out.len() - msgs.len()..];
        prop_assert_eq!(tail.to_vec(), msgs.into_iter().map(Ok).collect::<Vec<_>>());
    }

    #[test]
    fn a_truncated_frame_is_refused_and_the_next_one_decodes(
        a in message(),
        b in message(),
        cut in any::<prop::sample::Index>(),
    ) {
        let fa = frame(&a);
        let keep = cut.index(fa.len() - 1); // drop at least the delimiter
        let mut bytes = fa[..keep].to_vec();
        bytes.push(0);
        bytes.extend(frame(&b));
        let out = decode_all(&bytes);
        prop_assert_eq!(out.last(), Some(&Ok(b)));
        prop_assert!(out[..out.len() - 1].iter().all(|r| r.is_err()), "a truncated frame was accepted: {:?}", out);
    }

    #[test]
    fn corrupted_bytes_never_yield_a_message_that_was_not_sent(
        msgs in proptest::collection::vec(message(), 1..6),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..8),
    ) {
        let mut bytes: Vec<u8> = msgs.iter().flat_map(frame).collect();
        for (at, mask) in flips {
            let i = at.index(bytes.len());
            bytes[i] ^= mask;
        }
        for m in decode_all(&bytes).into_iter().flatten() {
            prop_assert!(msgs.contains(&m), "decoded a message never sent: {:?}", m);
        }
    }
}

#[test]
fn decoder_memory_is_one_frame_buffer() {
    // Bounded by construction: one heapless buffer of MAX_FRAME bytes plus a flag.
    assert!(core::mem::size_of::<FrameDecoder>() <= MAX_FRAME + 16);
}
