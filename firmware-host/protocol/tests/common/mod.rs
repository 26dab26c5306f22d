//! proptest strategies for every message, up to the heapless capacities.
#![allow(dead_code)]

use heapless::Vec;
use medseg_protocol::*;
use proptest::prelude::*;

fn hvec<T: core::fmt::Debug + Clone, const N: usize>(
    item: impl Strategy<Value = T>,
) -> impl Strategy<Value = Vec<T, N>> {
    proptest::collection::vec(item, 0..=N).prop_map(|v| Vec::from_slice(&v).unwrap())
}

fn size() -> impl Strategy<Value = Size> {
    (any::<u16>(), any::<u16>()).prop_map(|(width, height)| Size { width, height })
}

fn format() -> impl Strategy<Value = ImageFormat> {
    prop_oneof![
        Just(ImageFormat::Gray8),
        Just(ImageFormat::Rgb8),
        Just(ImageFormat::Png),
        Just(ImageFormat::Jpeg),
    ]
}

fn nack_reason() -> impl Strategy<Value = NackReason> {
    prop_oneof![
        (any::<u16>(), any::<u16>(), any::<[u8; NACK_WINDOW / 8]>()).prop_map(
            |(total, first, bitmap)| NackReason::Missing(Missing {
                total,
                first,
                bitmap
            })
        ),
        Just(NackReason::ImageCrc),
        Just(NackReason::UnknownImage),
        Just(NackReason::TooLarge),
        Just(NackReason::BadGeometry),
        Just(NackReason::Version),
    ]
}

fn error_code() -> impl Strategy<Value = ErrorCode> {
    prop_oneof![
        Just(ErrorCode::BadImage),
        Just(ErrorCode::Inference),
        Just(ErrorCode::Protocol),
        Just(ErrorCode::Internal),
    ]
}

/// Any message, with field values over their whole range and collections up to capacity.
pub fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        (any::<u16>(), any::<u16>(), proptest::option::of(size())).prop_map(
            |(version, max_frame, display)| Message::Hello(Hello {
                version,
                max_frame,
                display
            })
        ),
        (
            any::<u16>(),
            any::<u16>(),
            any::<u32>(),
            any::<u16>(),
            proptest::option::of(size())
        )
            .prop_map(
                |(version, max_frame, max_image_bytes, max_chunk, display)| {
                    Message::Capabilities(Capabilities {
                        version,
                        max_frame,
                        max_image_bytes,
                        max_chunk,
                        display,
                    })
                }
            ),
        any::<u32>().prop_map(|nonce| Message::Ping { nonce }),
        any::<u32>().prop_map(|nonce| Message::Pong { nonce }),
        (
            any::<u32>(),
            any::<u16>(),
            any::<u16>(),
            format(),
            any::<u32>(),
            any::<u16>()
        )
            .prop_map(
                |(image_id, width, height, format, total_bytes, chunk_size)| {
                    Message::CaptureBegin(CaptureBegin {
                        image_id,
                        width,
                        height,
                        format,
                        total_bytes,
                        chunk_size,
                    })
                }
            ),
        (
            any::<u32>(),
            any::<u16>(),
            hvec::<u8, MAX_CHUNK>(any::<u8>())
        )
            .prop_map(|(image_id, seq, data)| Message::ImageChunk(ImageChunk {
                image_id,
                seq,
                data
            })),
        (any::<u32>(), any::<u32>())
            .prop_map(|(image_id, crc32)| Message::CaptureEnd { image_id, crc32 }),
        (
            any::<u32>(),
            prop_oneof![Just(AckOf::Begin), Just(AckOf::Complete)]
        )
            .prop_map(|(image_id, of)| Message::Ack { image_id, of }),
        (any::<u32>(), nack_reason())
            .prop_map(|(image_id, reason)| Message::Nack(Nack { image_id, reason })),
        (
            any::<u32>(),
            hvec::<u32, MAX_CLASSES>(any::<u32>()),
            hvec::<Point, MAX_CONTOUR>(
                (any::<u16>(), any::<u16>()).prop_map(|(x, y)| Point { x, y })
            ),
            0.0f32..=1.0,
            any::<u32>(),
        )
            .prop_map(|(image_id, areas, contour, confidence, inference_ms)| {
                Message::Result(SegResult {
                    image_id,
                    areas,
                    contour,
                    confidence,
                    inference_ms,
                })
            }),
        (
            any::<u16>(),
            any::<u16>(),
            any::<u16>(),
            any::<u16>(),
            any::<u16>(),
            hvec::<u8, MAX_CHUNK>(any::<u8>())
        )
            .prop_map(|(screen, x, y, width, height, pixels)| {
                Message::DisplayChunk(DisplayChunk {
                    screen,
                    x,
                    y,
                    width,
                    height,
                    pixels,
                })
            }),
        (any::<u32>(), error_code(), "\\PC{0,80}").prop_map(|(image_id, code, text)| {
            Message::Error(ErrorMsg::new(image_id, code, &text))
        }),
    ]
}

/// Encodes one message as a frame on the wire.
pub fn frame(msg: &Message) -> std::vec::Vec<u8> {
    let mut out = [0u8; MAX_FRAME];
    let n = encode_frame(msg, &mut out).expect("every message fits in a frame");
    out[..n].to_vec()
}

/// Feeds bytes into a fresh decoder and collects every frame outcome.
pub fn decode_all(bytes: &[u8]) -> std::vec::Vec<Result<Message, FrameError>> {
    let mut d = FrameDecoder::new();
    let mut out = std::vec::Vec::new();
    d.feed(bytes, |r| out.push(r));
    out
}
