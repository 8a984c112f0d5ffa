//! Hand-made HTTP/2 frames for the protocol-abuse tests: a client that writes exactly the
//! frames given (after the preface and an empty SETTINGS) and reports what came back —
//! RST_STREAM and GOAWAY frames with their codes, response HEADERS, and how the connection
//! ended.

use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const RST_STREAM: u8 = 3;
pub const WINDOW_UPDATE: u8 = 8;

/// One frame.
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut v = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    v.extend_from_slice(&[kind, flags]);
    v.extend_from_slice(&stream.to_be_bytes());
    v.extend_from_slice(payload);
    v
}

/// An HPACK literal without indexing (no Huffman); names and values under 127 bytes.
fn literal(name: &str, value: &str) -> Vec<u8> {
    let mut v = vec![0, name.len() as u8];
    v.extend_from_slice(name.as_bytes());
    v.push(value.len() as u8);
    v.extend_from_slice(value.as_bytes());
    v
}

/// A HEADERS frame (END_HEADERS, and END_STREAM when `end`) with these fields in order.
pub fn headers(stream: u32, fields: &[(&str, &str)], end: bool) -> Vec<u8> {
    let block: Vec<u8> = fields.iter().flat_map(|(n, v)| literal(n, v)).collect();
    frame(1, 0x4 | u8::from(end), stream, &block)
}

/// A well-formed `GET /` request's fields, plus `extra`.
pub fn get(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    let mut f = vec![
        (":method", "GET"),
        (":scheme", "http"),
        (":path", "/"),
        (":authority", "example.com"),
    ];
    f.extend_from_slice(extra);
    f
}

pub fn rst_stream(stream: u32, code: u32) -> Vec<u8> {
    frame(RST_STREAM, 0, stream, &code.to_be_bytes())
}

/// Writes the preface, an empty SETTINGS and `frames`, then reads for up to `wait` after the
/// last byte (or until the peer closes). Returns the frames of note in order and then
/// `closed` (FIN), `reset` (RST) or `open`.
pub async fn exchange(port: u16, frames: &[u8], wait: Duration) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)).await else {
        return vec!["connect failed".into()];
    };
    let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    hello.extend(frame(4, 0, 0, &[]));
    hello.extend_from_slice(frames);
    let write = s.write_all(&hello).await;
    let mut bytes = Vec::new();
    let mut buf = vec![0u8; 65536];
    let mut end = "open";
    let started = Instant::now();
    while started.elapsed() < wait * 4 {
        match tokio::time::timeout(wait, s.read(&mut buf)).await {
            Err(_) => break,
            Ok(Ok(0)) => {
                end = "closed";
                break;
            }
            Ok(Ok(n)) => bytes.extend_from_slice(&buf[..n]),
            Ok(Err(_)) => {
                end = "reset";
                break;
            }
        }
    }
    if write.is_err() && end == "open" {
        end = "reset";
    }
    let mut at = 0;
    while at + 9 <= bytes.len() {
        let len = u32::from_be_bytes([0, bytes[at], bytes[at + 1], bytes[at + 2]]) as usize;
        let kind = bytes[at + 3];
        let stream = u32::from_be_bytes([
            bytes[at + 5] & 0x7f,
            bytes[at + 6],
            bytes[at + 7],
            bytes[at + 8],
        ]);
        let Some(p) = bytes.get(at + 9..at + 9 + len) else {
            break;
        };
        let word = |i: usize| {
            p.get(i..i + 4)
                .map_or(0, |b| u32::from_be_bytes([b[0] & 0x7f, b[1], b[2], b[3]]))
        };
        match kind {
            1 => out.push(format!("HEADERS({stream})")),
            3 => out.push(format!("RST_STREAM({stream}, {})", reason(word(0)))),
            7 => out.push(format!("GOAWAY(last {}, {})", word(0), reason(word(4)))),
            _ => {}
        }
        at += 9 + len;
    }
    out.push(end.into());
    out
}

fn reason(code: u32) -> String {
    match code {
        0 => "NO_ERROR".into(),
        1 => "PROTOCOL_ERROR".into(),
        3 => "FLOW_CONTROL_ERROR".into(),
        8 => "CANCEL".into(),
        11 => "ENHANCE_YOUR_CALM".into(),
        c => format!("code {c}"),
    }
}
