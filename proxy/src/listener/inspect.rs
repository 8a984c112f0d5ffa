//! Listener filters that look at a connection's first bytes without consuming them:
//! `tls_inspector` (TLS ClientHello: SNI and ALPN) and `http_inspector` (HTTP/1.x or the
//! HTTP/2 preface). What they find drives filter-chain matching on `server_names`,
//! `transport_protocol` and `application_protocols`.

use std::time::Duration;
use tokio::net::TcpStream;

/// What the inspectors learned.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Inspected {
    /// The inspectors ran out of time before deciding.
    pub timed_out: bool,
    pub transport: &'static str,
    pub server_name: String,
    pub alpn: Vec<String>,
}

const PEEK_MAX: usize = 16 * 1024;

/// Peeks until the inspectors can decide (or `timeout` passes, or the peer stops sending).
pub async fn inspect(stream: &TcpStream, tls: bool, http: bool, timeout: Duration) -> Inspected {
    let mut out = Inspected {
        transport: "raw_buffer",
        ..Default::default()
    };
    let mut buf = vec![0u8; PEEK_MAX];
    let deadline = tokio::time::Instant::now() + timeout;
    let mut seen = 0;
    loop {
        let n = match tokio::time::timeout_at(deadline, stream.peek(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => n,
            Ok(_) => return out,
            Err(_) => {
                out.timed_out = true;
                return out;
            }
        };
        let data = &buf[..n];
        let tls_v = if tls { client_hello(data) } else { Verdict::No };
        if let Verdict::Yes(sni, alpn) = tls_v {
            out.transport = "tls";
            out.server_name = sni;
            out.alpn = alpn;
            return out;
        }
        let http_v = if http && tls_v == Verdict::No {
            http_protocol(data)
        } else {
            Verdict::No
        };
        if let Verdict::Yes(proto, _) = http_v {
            out.alpn = vec![proto];
            return out;
        }
        let need_more = tls_v == Verdict::NeedMore || http_v == Verdict::NeedMore;
        if !need_more || n >= PEEK_MAX {
            return out;
        }
        if n == seen {
            // Nothing new yet: peek returns at once while data is buffered, so wait a little.
            if tokio::time::Instant::now() >= deadline {
                out.timed_out = true;
                return out;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        seen = n;
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Yes(String, Vec<String>),
    No,
    NeedMore,
}

/// A TLS handshake record carrying a ClientHello: its SNI host name and ALPN protocols.
fn client_hello(d: &[u8]) -> Verdict {
    if d.is_empty() {
        return Verdict::NeedMore;
    }
    if d[0] != 0x16 {
        return Verdict::No;
    }
    if d.len() < 5 {
        return Verdict::NeedMore;
    }
    if d[1] != 0x03 {
        return Verdict::No;
    }
    let rec_len = usize::from(u16::from_be_bytes([d[3], d[4]]));
    if d.len() < 5 + rec_len.min(4) {
        return Verdict::NeedMore;
    }
    let body = &d[5..];
    if body.first() != Some(&0x01) {
        return Verdict::No;
    }
    if body.len() < 4 {
        return Verdict::NeedMore;
    }
    let hs_len = (usize::from(body[1]) << 16) | (usize::from(body[2]) << 8) | usize::from(body[3]);
    if body.len() < 4 + hs_len {
        // ClientHellos larger than one peek are rare; what is there may still hold the SNI.
        return if d.len() >= PEEK_MAX {
            parse_hello(&body[4..]).map_or(Verdict::No, |(s, a)| Verdict::Yes(s, a))
        } else {
            Verdict::NeedMore
        };
    }
    match parse_hello(&body[4..4 + hs_len]) {
        Some((sni, alpn)) => Verdict::Yes(sni, alpn),
        None => Verdict::No,
    }
}

fn parse_hello(h: &[u8]) -> Option<(String, Vec<String>)> {
    let mut r = Reader(h);
    r.skip(2 + 32)?; // version, random
    let sid = usize::from(r.u8()?);
    r.skip(sid)?;
    let cs = usize::from(r.u16()?);
    r.skip(cs)?;
    let comp = usize::from(r.u8()?);
    r.skip(comp)?;
    let mut sni = String::new();
    let mut alpn = Vec::new();
    if r.0.is_empty() {
        return Some((sni, alpn));
    }
    let ext_len = usize::from(r.u16()?);
    let mut ext = Reader(r.take(ext_len.min(r.0.len()))?);
    while ext.0.len() >= 4 {
        let ty = ext.u16()?;
        let len = usize::from(ext.u16()?);
        let mut body = Reader(ext.take(len)?);
        match ty {
            0 => {
                let list = usize::from(body.u16()?);
                let mut names = Reader(body.take(list)?);
                while !names.0.is_empty() {
                    let kind = names.u8()?;
                    let n = usize::from(names.u16()?);
                    let name = names.take(n)?;
                    if kind == 0 {
                        sni = String::from_utf8_lossy(name).to_ascii_lowercase();
                    }
                }
            }
            16 => {
                let list = usize::from(body.u16()?);
                let mut protos = Reader(body.take(list)?);
                while !protos.0.is_empty() {
                    let n = usize::from(protos.u8()?);
                    alpn.push(String::from_utf8_lossy(protos.take(n)?).into_owned());
                }
            }
            _ => {}
        }
    }
    Some((sni, alpn))
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn skip(&mut self, n: usize) -> Option<()> {
        self.take(n).map(|_| ())
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
}

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// `http_inspector`: `h2c` for the HTTP/2 preface, `http/1.1` or `http/1.0` for a request line.
fn http_protocol(d: &[u8]) -> Verdict {
    let n = d.len().min(H2_PREFACE.len());
    if d[..n] == H2_PREFACE[..n] {
        return if d.len() >= H2_PREFACE.len() {
            Verdict::Yes("h2c".into(), vec![])
        } else {
            Verdict::NeedMore
        };
    }
    let Some(end) = d.windows(2).position(|w| w == b"\r\n") else {
        return if d.len() < 8192 && d.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
            Verdict::NeedMore
        } else {
            Verdict::No
        };
    };
    let line = &d[..end];
    if line.ends_with(b" HTTP/1.1") {
        Verdict::Yes("http/1.1".into(), vec![])
    } else if line.ends_with(b" HTTP/1.0") {
        Verdict::Yes("http/1.0".into(), vec![])
    } else {
        Verdict::No
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ClientHello record with SNI `example.com` and ALPN `h2`, `http/1.1`.
    fn hello() -> Vec<u8> {
        let sni_name = b"Example.com";
        let mut sni = vec![0, 0];
        let mut list = vec![0u8];
        list.extend((sni_name.len() as u16).to_be_bytes());
        list.extend(sni_name);
        let mut sni_body = (list.len() as u16).to_be_bytes().to_vec();
        sni_body.extend(&list);
        sni.extend((sni_body.len() as u16).to_be_bytes());
        sni.extend(&sni_body);
        let mut protos = Vec::new();
        for p in [&b"h2"[..], b"http/1.1"] {
            protos.push(p.len() as u8);
            protos.extend(p);
        }
        let mut alpn_body = (protos.len() as u16).to_be_bytes().to_vec();
        alpn_body.extend(&protos);
        let mut alpn = vec![0, 16];
        alpn.extend((alpn_body.len() as u16).to_be_bytes());
        alpn.extend(&alpn_body);
        let mut exts = sni;
        exts.extend(alpn);
        let mut h = vec![3, 3];
        h.extend([0u8; 32]);
        h.push(0); // session id
        h.extend([0, 2, 0x13, 0x01]); // one cipher suite
        h.extend([1, 0]); // null compression
        h.extend((exts.len() as u16).to_be_bytes());
        h.extend(exts);
        let mut hs = vec![1, 0];
        hs.extend((h.len() as u16).to_be_bytes());
        hs.extend(h);
        let mut rec = vec![0x16, 3, 1];
        rec.extend((hs.len() as u16).to_be_bytes());
        rec.extend(hs);
        rec
    }

    #[test]
    fn client_hello_sni_and_alpn() {
        let h = hello();
        assert_eq!(
            client_hello(&h),
            Verdict::Yes("example.com".into(), vec!["h2".into(), "http/1.1".into()])
        );
        assert_eq!(client_hello(&h[..10]), Verdict::NeedMore);
        assert_eq!(client_hello(b"GET / HTTP/1.1\r\n"), Verdict::No);
    }

    #[test]
    fn http_protocols() {
        assert_eq!(
            http_protocol(b"GET / HTTP/1.1\r\nHost: a\r\n"),
            Verdict::Yes("http/1.1".into(), vec![])
        );
        assert_eq!(
            http_protocol(b"GET / HTTP/1.0\r\n"),
            Verdict::Yes("http/1.0".into(), vec![])
        );
        assert_eq!(
            http_protocol(H2_PREFACE),
            Verdict::Yes("h2c".into(), vec![])
        );
        assert_eq!(http_protocol(b"PRI * HT"), Verdict::NeedMore);
        assert_eq!(http_protocol(b"GET /lo"), Verdict::NeedMore);
        assert_eq!(http_protocol(b"\x00\x01binary\r\n"), Verdict::No);
    }
}
