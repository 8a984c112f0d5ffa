//! Envoy's `http2.*` codec counters for downstream HTTP/2 connections, read off the frames
//! themselves: the connection's bytes pass through a scanner that only follows frame
//! boundaries (9-byte headers; payloads are skipped, but for the error codes of RST_STREAM and
//! GOAWAY). The HTTP/2 library keeps its own defences (rapid reset, empty-frame floods, flow
//! control); this is how they become visible, with Envoy's names.

use super::HcmStats;
use crate::stats::{registry, Counter, Scope};
use std::sync::{Arc, OnceLock};

const PREFACE_LEN: usize = 24;
const DATA: u8 = 0;
const RST_STREAM: u8 = 3;
const GOAWAY: u8 = 7;
const PROTOCOL_ERROR: u32 = 1;
const ENHANCE_YOUR_CALM: u32 = 11;

/// `http2.*`, shared by every downstream HTTP/2 connection as in Envoy.
struct H2Stats {
    rx_reset: Counter,
    tx_reset: Counter,
    rx_messaging_error: Counter,
    goaway_sent: Counter,
    inbound_empty_frames_flood: Counter,
}

fn h2_stats() -> &'static H2Stats {
    static S: OnceLock<H2Stats> = OnceLock::new();
    S.get_or_init(|| {
        let r = registry();
        let c = |n: &str| r.counter(Scope::Named("http2"), n);
        H2Stats {
            rx_reset: c("rx_reset"),
            tx_reset: c("tx_reset"),
            rx_messaging_error: c("rx_messaging_error"),
            goaway_sent: c("goaway_sent"),
            inbound_empty_frames_flood: c("inbound_empty_frames_flood"),
        }
    })
}

/// One frame header, with the first bytes of its payload for RST_STREAM and GOAWAY.
struct Frame {
    kind: u8,
    flags: u8,
    stream: u32,
    len: usize,
    /// The error code (RST_STREAM, GOAWAY).
    code: u32,
}

/// Follows frame boundaries in one direction of the connection.
#[derive(Default)]
struct Scanner {
    /// Bytes of the client preface still to skip (read side only).
    preface: usize,
    head: [u8; 9],
    have: usize,
    /// Payload bytes kept for the error code, and how many are wanted.
    cap: [u8; 8],
    cap_have: usize,
    cap_want: usize,
    /// Payload bytes left to skip.
    skip: usize,
}

impl Scanner {
    fn feed(&mut self, mut data: &[u8], on: &mut impl FnMut(Frame)) {
        while !data.is_empty() {
            if self.preface > 0 {
                let n = self.preface.min(data.len());
                self.preface -= n;
                data = &data[n..];
                continue;
            }
            if self.skip > 0 && self.cap_want == self.cap_have {
                let n = self.skip.min(data.len());
                self.skip -= n;
                data = &data[n..];
                continue;
            }
            if self.cap_want > self.cap_have {
                let n = (self.cap_want - self.cap_have).min(data.len());
                self.cap[self.cap_have..self.cap_have + n].copy_from_slice(&data[..n]);
                self.cap_have += n;
                self.skip -= n;
                data = &data[n..];
                if self.cap_have == self.cap_want {
                    self.emit(on);
                }
                continue;
            }
            let n = (9 - self.have).min(data.len());
            self.head[self.have..self.have + n].copy_from_slice(&data[..n]);
            self.have += n;
            data = &data[n..];
            if self.have == 9 {
                self.have = 0;
                let len =
                    u32::from_be_bytes([0, self.head[0], self.head[1], self.head[2]]) as usize;
                self.skip = len;
                self.cap_have = 0;
                self.cap_want = match self.head[3] {
                    RST_STREAM => 4.min(len),
                    GOAWAY => 8.min(len),
                    _ => 0,
                };
                if self.cap_want == 0 {
                    self.emit(on);
                }
            }
        }
    }

    fn emit(&mut self, on: &mut impl FnMut(Frame)) {
        let h = &self.head;
        let code_at = if h[3] == GOAWAY { 4 } else { 0 };
        let code = match self.cap.get(code_at..code_at + 4) {
            Some(b) if self.cap_have >= code_at + 4 => u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
            _ => 0,
        };
        on(Frame {
            kind: h[3],
            flags: h[4],
            stream: u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff,
            len: u32::from_be_bytes([0, h[0], h[1], h[2]]) as usize,
            code,
        });
        self.cap_want = 0;
        self.cap_have = 0;
    }
}

/// Both directions of one downstream HTTP/2 connection.
pub struct H2Watch {
    rx: Scanner,
    tx: Scanner,
    /// Streams the client reset, and empty DATA frames it sent: which defence a GOAWAY
    /// ENHANCE_YOUR_CALM answered.
    resets: u64,
    empty_data: u64,
    hcm: Arc<HcmStats>,
}

impl H2Watch {
    pub fn new(hcm: Arc<HcmStats>) -> H2Watch {
        H2Watch {
            rx: Scanner {
                preface: PREFACE_LEN,
                ..Scanner::default()
            },
            tx: Scanner::default(),
            resets: 0,
            empty_data: 0,
            hcm,
        }
    }

    /// Bytes read from the client.
    pub fn read(&mut self, data: &[u8]) {
        let (s, hcm) = (h2_stats(), &self.hcm);
        let (resets, empty) = (&mut self.resets, &mut self.empty_data);
        self.rx.feed(data, &mut |f| match f.kind {
            RST_STREAM if f.stream != 0 => {
                s.rx_reset.inc();
                hcm.downstream_rq_rx_reset.inc();
                *resets += 1;
            }
            DATA if f.len == 0 && f.flags & 1 == 0 => *empty += 1,
            _ => {}
        });
    }

    /// Bytes written to the client.
    pub fn wrote(&mut self, data: &[u8]) {
        let (s, hcm) = (h2_stats(), &self.hcm);
        let resets_more = self.resets > self.empty_data;
        self.tx.feed(data, &mut |f| match f.kind {
            RST_STREAM => {
                s.tx_reset.inc();
                if f.code == PROTOCOL_ERROR {
                    s.rx_messaging_error.inc();
                }
            }
            GOAWAY => {
                s.goaway_sent.inc();
                if f.code == ENHANCE_YOUR_CALM {
                    if resets_more {
                        hcm.downstream_rq_too_many_premature_resets.inc();
                    } else {
                        s.inbound_empty_frames_flood.inc();
                    }
                }
            }
            _ => {}
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut v = (payload.len() as u32).to_be_bytes()[1..].to_vec();
        v.extend_from_slice(&[kind, 0]);
        v.extend_from_slice(&stream.to_be_bytes());
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn frames_split_across_reads() {
        let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        bytes.extend(frame(4, 0, &[0; 6]));
        bytes.extend(frame(0, 1, &[7; 300]));
        bytes.extend(frame(RST_STREAM, 1, &8u32.to_be_bytes()));
        let mut goaway = 5u32.to_be_bytes().to_vec();
        goaway.extend_from_slice(&ENHANCE_YOUR_CALM.to_be_bytes());
        bytes.extend(frame(GOAWAY, 0, &goaway));
        for chunk in [1, 2, 5, 9, 64, 4096] {
            let mut s = Scanner {
                preface: PREFACE_LEN,
                ..Scanner::default()
            };
            let mut seen = Vec::new();
            for c in bytes.chunks(chunk) {
                s.feed(c, &mut |f| seen.push((f.kind, f.stream, f.len, f.code)));
            }
            assert_eq!(
                seen,
                vec![
                    (4, 0, 6, 0),
                    (0, 1, 300, 0),
                    (RST_STREAM, 1, 4, 8),
                    (GOAWAY, 0, 8, ENHANCE_YOUR_CALM)
                ],
                "chunks of {chunk}"
            );
        }
    }
}
