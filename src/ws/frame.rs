//! Server-to-client frames, encoded by hand (RFC 6455 §5.2).
//!
//! Frames from a server are not masked, so one event's frame is the same
//! bytes for every client: it is encoded once, on first use, and each
//! client's thread only copies it into its own output buffer. Going
//! through tungstenite's `write` instead cost every client a frame build
//! and two updates of the message's shared reference count, a cache line
//! that a hundred client threads then fought over.

const FIN: u8 = 0x80;
const TEXT: u8 = 0x1;
const PING: u8 = 0x9;

fn push_header(out: &mut Vec<u8>, opcode: u8, len: usize) {
    out.push(FIN | opcode);
    match len {
        0..=125 => out.push(len as u8),
        126..=0xFFFF => {
            out.push(126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
}

/// Appends the header of a final text frame of `len` bytes, for a payload
/// that is written from elsewhere (a shared `hello`).
pub(crate) fn push_text_header(out: &mut Vec<u8>, len: usize) {
    push_header(out, TEXT, len);
}

/// Appends a final text frame carrying `text`.
pub(crate) fn push_text(out: &mut Vec<u8>, text: &str) {
    push_header(out, TEXT, text.len());
    out.extend_from_slice(text.as_bytes());
}

/// Appends an empty ping frame.
pub(crate) fn push_ping(out: &mut Vec<u8>) {
    push_header(out, PING, 0);
}

/// A whole text frame carrying `text`.
pub(crate) fn text(text: &str) -> Box<[u8]> {
    let mut out = Vec::with_capacity(text.len() + 10);
    push_text(&mut out, text);
    out.into_boxed_slice()
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use tungstenite::protocol::frame::FrameHeader;
    use tungstenite::protocol::frame::coding::{Data, OpCode};

    use super::*;

    #[test]
    fn text_frames_of_every_length_form_parse_as_final_unmasked_text() {
        for len in [0, 1, 125, 126, 300, 0xFFFF, 0x10000, 70_000] {
            let payload = "x".repeat(len);
            let frame = text(&payload);
            let mut cursor = Cursor::new(&frame[..]);
            let (header, length) = FrameHeader::parse(&mut cursor)
                .expect("valid header")
                .expect("complete header");
            assert!(header.is_final, "{len}");
            assert_eq!(header.opcode, OpCode::Data(Data::Text), "{len}");
            assert!(header.mask.is_none(), "{len}");
            assert_eq!(length, len as u64);
            assert_eq!(&frame[cursor.position() as usize..], payload.as_bytes());
        }
    }

    #[test]
    fn a_ping_frame_is_two_bytes() {
        let mut out = Vec::new();
        push_ping(&mut out);
        assert_eq!(out, [0x89, 0x00]);
    }
}
