//! CRC-32 (ISO-HDLC, the zlib/Ethernet polynomial) for frames and whole images.

use crc::{CRC_32_ISO_HDLC, Crc};

/// The one CRC used on the wire: per frame (trailer) and per image (`CaptureEnd`).
pub const CRC32: Crc<u32> = Crc::<u32>::new(&CRC_32_ISO_HDLC);

/// CRC-32 of a whole image, as a rig puts it in `CaptureEnd`.
pub fn image_crc32(bytes: &[u8]) -> u32 {
    CRC32.checksum(bytes)
}

#[cfg(test)]
mod tests {
    #[test]
    fn matches_the_standard_check_value() {
        // The catalogue check value of CRC-32/ISO-HDLC for "123456789".
        assert_eq!(super::image_crc32(b"123456789"), 0xCBF4_3926);
    }
}
