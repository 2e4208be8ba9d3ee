//! Protobuf's wire format, the little of it our encoders need: varints,
//! zigzag, tags, and length-delimited fields whose length is written once
//! their content is (`open` … `close`), so that a message is encoded in one
//! pass without computing sizes first.

/// Wire type 0: a varint.
pub(crate) const VARINT: u8 = 0;
/// Wire type 1: eight bytes, little-endian (a `double`).
pub(crate) const FIXED64: u8 = 1;
/// Wire type 2: a length, then that many bytes (strings, messages).
pub(crate) const LEN: u8 = 2;

/// A field's key: number and wire type.
pub(crate) const fn tag(field: u32, wire: u8) -> u64 {
    ((field as u64) << 3) | wire as u64
}

/// How many bytes `n` takes as a varint.
pub(crate) fn varint_len(mut n: u64) -> usize {
    let mut len = 1;
    while n >= 0x80 {
        n >>= 7;
        len += 1;
    }
    len
}

/// Appends `n` as a varint.
pub(crate) fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// `sint32`/`sint64`'s zigzag: small magnitudes of either sign stay short.
pub(crate) const fn zigzag(n: i64) -> u64 {
    ((n << 1) ^ (n >> 63)) as u64
}

/// A varint field.
pub(crate) fn put_uint(out: &mut Vec<u8>, field: u32, n: u64) {
    put_varint(out, tag(field, VARINT));
    put_varint(out, n);
}

/// A `sint32`/`sint64` field.
pub(crate) fn put_sint(out: &mut Vec<u8>, field: u32, n: i64) {
    put_uint(out, field, zigzag(n));
}

/// A `double` field.
pub(crate) fn put_double(out: &mut Vec<u8>, field: u32, value: f64) {
    put_varint(out, tag(field, FIXED64));
    out.extend_from_slice(&value.to_le_bytes());
}

/// A `string` (or `bytes`) field.
pub(crate) fn put_string(out: &mut Vec<u8>, field: u32, text: &str) {
    put_varint(out, tag(field, LEN));
    put_varint(out, text.len() as u64);
    out.extend_from_slice(text.as_bytes());
}

/// Starts a length-delimited field (a message); returns where its content
/// starts, for [`close`]. One byte is reserved for the length: most of our
/// messages are shorter than 128 bytes, and a longer one moves its content
/// once to make room.
pub(crate) fn open(out: &mut Vec<u8>, field: u32) -> usize {
    put_varint(out, tag(field, LEN));
    out.push(0);
    out.len()
}

/// Ends the field [`open`] started at `start`, writing its length.
pub(crate) fn close(out: &mut Vec<u8>, start: usize) {
    let len = out.len() - start;
    let width = varint_len(len as u64);
    if width > 1 {
        let extra = width - 1;
        out.resize(out.len() + extra, 0);
        out.copy_within(start..start + len, start + extra);
    }
    let mut n = len as u64;
    for byte in &mut out[start - 1..start - 1 + width] {
        *byte = (n as u8 & 0x7F) | 0x80;
        n >>= 7;
    }
    out[start + width - 2] &= 0x7F;
}

/// Starts a length-delimited message of a stream (the `delimited` encoding:
/// each message preceded by its length, no tag).
pub(crate) fn open_delimited(out: &mut Vec<u8>) -> usize {
    out.push(0);
    out.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_match_the_protobuf_examples() {
        for (n, bytes) in [
            (0u64, &[0x00][..]),
            (1, &[0x01]),
            (127, &[0x7F]),
            (128, &[0x80, 0x01]),
            (150, &[0x96, 0x01]),
            (300, &[0xAC, 0x02]),
            (
                u64::MAX,
                &[0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01],
            ),
        ] {
            let mut out = Vec::new();
            put_varint(&mut out, n);
            assert_eq!(out, bytes, "{n}");
            assert_eq!(varint_len(n), bytes.len(), "{n}");
        }
    }

    #[test]
    fn zigzag_matches_the_protobuf_table() {
        for (n, z) in [
            (0, 0),
            (-1, 1),
            (1, 2),
            (-2, 3),
            (2_147_483_647, 4_294_967_294),
        ] {
            assert_eq!(zigzag(n), z, "{n}");
        }
        assert_eq!(zigzag(i64::MIN), u64::MAX);
    }

    #[test]
    fn a_message_longer_than_127_bytes_gets_a_two_byte_length_in_front_of_it() {
        let mut out = vec![0xEE];
        let start = open(&mut out, 1);
        let text = "y".repeat(200);
        put_string(&mut out, 2, &text);
        close(&mut out, start);
        // Content: tag, 2-byte length, 200 bytes = 203 = 0xCB 0x01.
        assert_eq!(&out[..4], &[0xEE, 0x0A, 0xCB, 0x01]);
        assert_eq!(&out[4..7], &[0x12, 0xC8, 0x01]);
        assert_eq!(out.len(), 4 + 203);
        let mut short = Vec::new();
        let start = open_delimited(&mut short);
        put_uint(&mut short, 1, 5);
        close(&mut short, start);
        assert_eq!(short, [0x02, 0x08, 0x05]);
    }
}
