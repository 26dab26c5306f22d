#![no_main]

use libfuzzer_sys::fuzz_target;
use medseg_protocol::{FrameDecoder, MAX_FRAME, Message, encode_frame};

fuzz_target!(|data: &[u8]| {
    let mut decoder = FrameDecoder::new();
    decoder.feed(data, |_| {});
    // Whatever came before, a delimiter and a valid frame must decode.
    let msg = Message::Ping { nonce: 0x5EED };
    let mut frame = [0u8; MAX_FRAME];
    let n = encode_frame(&msg, &mut frame).unwrap();
    let mut last = None;
    decoder.feed(&[0], |_| {});
    decoder.feed(&frame[..n], |r| last = Some(r));
    assert_eq!(last, Some(Ok(msg)));
});
