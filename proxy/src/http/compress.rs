//! The compressor filters' response side: which encoding the client gets (one decision per
//! response, shared by every compressor filter of the chain, as Envoy makes it), the headers
//! that say so, and the body compressed frame by frame (gzip and brotli flushed per frame,
//! zstd at the end, as Envoy's libraries do).

use super::reply::Body;
use crate::config::filters::compressor::{CompressorCfg, Library};
use crate::config::filters::{FilterEntry, HttpFilter};
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode};
use hyper::body::{Body as _, Frame};
use std::io::Write;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// What the request said, kept for the response.
pub struct RequestFacts {
    accept: Option<HeaderValue>,
    head: bool,
}

/// The compressor filters of a chain, in chain order.
fn compressors(filters: &[FilterEntry]) -> impl DoubleEndedIterator<Item = &Arc<CompressorCfg>> {
    filters.iter().filter_map(|f| match &f.filter {
        HttpFilter::Compressor(c) => Some(c),
        _ => None,
    })
}

/// Before the request goes on: counts it (request compression is not configured) and strips
/// `accept-encoding` when a filter asks to.
pub fn on_request(filters: &[FilterEntry], req: &mut http::request::Parts) -> Option<RequestFacts> {
    let mut any = false;
    let mut strip = false;
    for c in compressors(filters) {
        any = true;
        c.stats.request_not_compressed.inc();
        strip |= c.remove_accept_encoding;
    }
    if !any {
        return None;
    }
    let facts = RequestFacts {
        accept: req.headers.get(header::ACCEPT_ENCODING).cloned(),
        head: req.method == http::Method::HEAD,
    };
    if strip {
        req.headers.remove(header::ACCEPT_ENCODING);
    }
    Some(facts)
}

fn media_type(h: &HeaderMap) -> Option<String> {
    let v = h.get(header::CONTENT_TYPE)?.to_str().ok()?;
    Some(
        v.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase(),
    )
}

fn allows_type(c: &CompressorCfg, media: &Option<String>) -> bool {
    media
        .as_ref()
        .is_none_or(|m| c.content_types.iter().any(|t| t == m))
}

/// The outcome of reading `accept-encoding` against the chain's encodings.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Decision {
    Use(&'static str),
    Wildcard(&'static str),
    Identity,
    NotValid,
}

/// `(encoding, q)` tokens; a token whose q does not parse is dropped.
fn parse_accept(v: &str) -> Vec<(&str, f64)> {
    let mut out = Vec::new();
    for item in v.split(',') {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        let (name, params) = match item.split_once(';') {
            Some((n, p)) => (n.trim(), Some(p)),
            None => (item, None),
        };
        let mut q = 1.0;
        if let Some(p) = params {
            if let Some((k, v)) = p.split_once('=') {
                if k.trim().eq_ignore_ascii_case("q") {
                    match v.trim().parse::<f64>() {
                        Ok(x) => q = x,
                        Err(_) => continue,
                    }
                }
            }
        }
        out.push((name, q));
    }
    out
}

/// Envoy's choice: the highest q wins; on a tie the first listed wins unless the later
/// one's filter has `choose_first`; `*` means the first encoding of the chain.
fn decide(allowed: &[(&'static str, bool)], accept: &str) -> Decision {
    let tokens = parse_accept(accept);
    let excluded: Vec<&str> = tokens
        .iter()
        .filter(|(_, q)| *q == 0.0)
        .map(|(n, _)| *n)
        .collect();
    let allowed: Vec<(&'static str, bool)> = allowed
        .iter()
        .filter(|(e, _)| !excluded.contains(e))
        .copied()
        .collect();
    if tokens.is_empty() || allowed.is_empty() {
        return Decision::NotValid;
    }
    let mut best: (&str, f64) = ("identity", 0.0);
    for (name, q) in &tokens {
        let known = *name == "identity" || *name == "*" || allowed.iter().any(|(e, _)| e == name);
        if !known {
            continue;
        }
        let first = allowed.iter().any(|(e, f)| e == name && *f);
        if *q > best.1 || (*q == best.1 && first) {
            best = (name, *q);
        }
    }
    if best.1 <= 0.0 {
        return Decision::NotValid;
    }
    match best.0 {
        "identity" => Decision::Identity,
        "*" => Decision::Wildcard(allowed[0].0),
        name => allowed
            .iter()
            .find(|(e, _)| *e == name)
            .map_or(Decision::NotValid, |(e, _)| Decision::Use(e)),
    }
}

fn has_token(v: &HeaderValue, token: &str) -> bool {
    v.to_str()
        .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
}

/// Runs the chain's compressor filters over the response, nearest the router first.
pub fn on_response(filters: &[FilterEntry], facts: &RequestFacts, resp: &mut Response<Body>) {
    let status = resp.status();
    let ends = facts.head
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
        || resp.body().is_end_stream();
    let media = media_type(resp.headers());
    let mut decision: Option<Decision> = None;
    for c in compressors(filters).rev() {
        let st = &c.stats;
        let h = resp.headers();
        let big_enough = match h.get(header::CONTENT_LENGTH) {
            None => true,
            Some(v) => {
                let ok = v
                    .to_str()
                    .ok()
                    .and_then(|s| s.trim().parse::<u64>().ok())
                    .is_some_and(|n| n >= c.min_length);
                if !ok {
                    st.content_length_too_small.inc();
                }
                ok
            }
        };
        let etag_ok = if c.disable_on_etag && !c.weaken_etag && h.contains_key(header::ETAG) {
            st.not_compressed_etag.inc();
            false
        } else {
            true
        };
        let compressible = big_enough
            && status != StatusCode::SWITCHING_PROTOCOLS
            && allows_type(c, &media)
            && !h
                .get_all(header::CACHE_CONTROL)
                .iter()
                .any(|v| has_token(v, "no-transform"))
            && etag_ok
            && !h.contains_key(header::CONTENT_ENCODING)
            && !c.uncompressible.contains(&status.as_u16());
        let mut chosen = false;
        if big_enough && !ends {
            match &facts.accept {
                None => st.no_accept_header.inc(),
                Some(accept) => {
                    let d = decision.get_or_insert_with(|| {
                        let allowed: Vec<(&'static str, bool)> = {
                            let mut v: Vec<(&'static str, bool)> = Vec::new();
                            for f in compressors(filters).filter(|f| allows_type(f, &media)) {
                                let e = f.library.encoding();
                                if !v.iter().any(|(x, _)| *x == e) {
                                    v.push((e, f.choose_first));
                                }
                            }
                            v
                        };
                        decide(&allowed, accept.to_str().unwrap_or(""))
                    });
                    let mine = c.library.encoding();
                    match d {
                        Decision::Use(e) if *e == mine => {
                            st.header_compressor_used.inc();
                            chosen = true;
                        }
                        Decision::Use(_) => st.header_compressor_overshadowed.inc(),
                        Decision::Wildcard(e) => {
                            st.header_wildcard.inc();
                            chosen = *e == mine;
                        }
                        Decision::Identity => st.header_identity.inc(),
                        Decision::NotValid => st.header_not_valid.inc(),
                    }
                }
            }
        }
        if compressible {
            add_vary(resp.headers_mut());
        }
        if !(chosen && compressible && !ends) {
            st.not_compressed.inc();
            continue;
        }
        st.compressed.inc();
        let h = resp.headers_mut();
        h.remove(header::CONTENT_LENGTH);
        h.insert(
            header::CONTENT_ENCODING,
            HeaderValue::from_static(c.library.encoding()),
        );
        weaken_etag(h, c.weaken_etag);
        let body = std::mem::replace(resp.body_mut(), Body::empty());
        *resp.body_mut() = Body::Compressed(Box::new(Compress::new(body, c.clone())));
    }
}

/// `vary: Accept-Encoding`, appended to a `vary` that lacks it (matched case-sensitively,
/// as Envoy does).
fn add_vary(h: &mut HeaderMap) {
    const AE: &str = "Accept-Encoding";
    match h.get(header::VARY).and_then(|v| v.to_str().ok()) {
        None => {
            h.insert(header::VARY, HeaderValue::from_static(AE));
        }
        Some(v) if v.split(',').any(|t| t.trim() == AE) => {}
        Some(v) => {
            if let Ok(nv) = HeaderValue::from_str(&format!("{v}, {AE}")) {
                h.insert(header::VARY, nv);
            }
        }
    }
}

/// A compressed body can no longer match a strong validator: a weak tag is kept, a strong
/// one is removed (or, with `weaken_etag_on_compress`, made weak).
fn weaken_etag(h: &mut HeaderMap, weaken: bool) {
    let Some(v) = h.get(header::ETAG).and_then(|v| v.to_str().ok()) else {
        return;
    };
    if v.starts_with("W/") || v.starts_with("w/") {
        return;
    }
    let weak = format!("W/{v}");
    h.remove(header::ETAG);
    if weaken {
        if let Ok(nv) = HeaderValue::from_str(&weak) {
            h.insert(header::ETAG, nv);
        }
    }
}

enum Encoder {
    Gzip(flate2::write::GzEncoder<Vec<u8>>),
    Brotli(Box<brotli::CompressorWriter<Vec<u8>>>),
    Zstd(zstd::stream::write::Encoder<'static, Vec<u8>>),
}

impl Encoder {
    fn new(lib: Library) -> std::io::Result<Encoder> {
        Ok(match lib {
            Library::Gzip { level } => Encoder::Gzip(flate2::write::GzEncoder::new(
                Vec::new(),
                flate2::Compression::new(level),
            )),
            Library::Brotli {
                quality,
                window_bits,
            } => Encoder::Brotli(Box::new(brotli::CompressorWriter::new(
                Vec::new(),
                4096,
                quality,
                window_bits,
            ))),
            Library::Zstd { level, checksum } => {
                let mut e = zstd::stream::write::Encoder::new(Vec::new(), level)?;
                e.include_checksum(checksum)?;
                Encoder::Zstd(e)
            }
        })
    }

    /// Compresses one frame and returns what is ready to send.
    fn frame(&mut self, data: &[u8]) -> std::io::Result<Vec<u8>> {
        match self {
            Encoder::Gzip(e) => {
                e.write_all(data)?;
                e.flush()?;
                Ok(std::mem::take(e.get_mut()))
            }
            Encoder::Brotli(e) => {
                e.write_all(data)?;
                e.flush()?;
                Ok(std::mem::take(e.get_mut()))
            }
            Encoder::Zstd(e) => {
                e.write_all(data)?;
                Ok(std::mem::take(e.get_mut()))
            }
        }
    }

    fn finish(self) -> std::io::Result<Vec<u8>> {
        match self {
            Encoder::Gzip(e) => e.finish(),
            Encoder::Brotli(e) => Ok(e.into_inner()),
            Encoder::Zstd(e) => e.finish(),
        }
    }
}

/// A response body compressed as it streams.
pub struct Compress {
    inner: Body,
    encoder: Option<Encoder>,
    cfg: Arc<CompressorCfg>,
    /// Trailers to send after the last compressed bytes.
    trailers: Option<HeaderMap>,
}

impl Compress {
    fn new(inner: Body, cfg: Arc<CompressorCfg>) -> Compress {
        Compress {
            inner,
            encoder: Encoder::new(cfg.library).ok(),
            cfg,
            trailers: None,
        }
    }

    fn out(&self, v: Vec<u8>) -> Frame<Bytes> {
        self.cfg.stats.total_compressed_bytes.add(v.len() as u64);
        Frame::data(Bytes::from(v))
    }

    pub fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, super::body::BoxError>>> {
        loop {
            if self.encoder.is_none() {
                return Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t))));
            }
            match Pin::new(&mut self.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(Some(Ok(f))) => match f.into_data() {
                    Ok(d) => {
                        self.cfg.stats.total_uncompressed_bytes.add(d.len() as u64);
                        let Some(enc) = self.encoder.as_mut() else {
                            continue;
                        };
                        match enc.frame(&d) {
                            Ok(v) if v.is_empty() => continue,
                            Ok(v) => return Poll::Ready(Some(Ok(self.out(v)))),
                            Err(e) => return Poll::Ready(Some(Err(Box::new(e)))),
                        }
                    }
                    Err(f) => {
                        if let Ok(t) = f.into_trailers() {
                            self.trailers = Some(t);
                        }
                    }
                },
                Poll::Ready(None) => {}
            }
            // The end (or trailers): finish the stream.
            let Some(enc) = self.encoder.take() else {
                continue;
            };
            return match enc.finish() {
                Ok(v) => Poll::Ready(Some(Ok(self.out(v)))),
                Err(e) => Poll::Ready(Some(Err(Box::new(e)))),
            };
        }
    }

    pub fn is_end_stream(&self) -> bool {
        self.encoder.is_none() && self.trailers.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISTIO: &[(&str, bool)] = &[("br", false), ("zstd", false), ("gzip", false)];

    #[test]
    fn istio_chain_decisions() {
        let cases = [
            ("gzip", Decision::Use("gzip")),
            ("br", Decision::Use("br")),
            ("gzip, br", Decision::Use("gzip")),
            ("br, gzip", Decision::Use("br")),
            ("br;q=0.5, gzip", Decision::Use("gzip")),
            ("gzip;q=0.5, zstd;q=0.9, br;q=0.5", Decision::Use("zstd")),
            ("*", Decision::Wildcard("br")),
            ("br;q=0, *", Decision::Wildcard("zstd")),
            ("*;q=0, gzip", Decision::Use("gzip")),
            ("identity", Decision::Identity),
            ("identity, gzip", Decision::Identity),
            ("gzip;q=0", Decision::NotValid),
            ("deflate", Decision::NotValid),
            ("GZIP", Decision::NotValid),
            ("", Decision::NotValid),
            ("br;q=0.5;foo=1", Decision::NotValid),
            ("Gzip;Q=1", Decision::NotValid),
            ("gzip;Q=0.5", Decision::Use("gzip")),
        ];
        for (accept, want) in cases {
            assert_eq!(decide(ISTIO, accept), want, "{accept:?}");
        }
        let first = [("br", false), ("gzip", true)];
        assert_eq!(decide(&first, "br, gzip"), Decision::Use("gzip"));
        assert_eq!(decide(&first, "br;q=0.9, gzip;q=0.8"), Decision::Use("br"));
    }

    #[test]
    fn encoders_round_trip() {
        use std::io::Read;
        let text = "metric_total 1\n".repeat(300);
        for lib in [
            Library::Gzip { level: 6 },
            Library::Brotli {
                quality: 3,
                window_bits: 18,
            },
            Library::Zstd {
                level: 3,
                checksum: false,
            },
        ] {
            let mut e = Encoder::new(lib).expect("encoder");
            let mut out = e.frame(&text.as_bytes()[..1000]).expect("frame");
            out.extend(e.frame(&text.as_bytes()[1000..]).expect("frame"));
            out.extend(e.finish().expect("finish"));
            assert!(out.len() < text.len() / 4, "{lib:?}: {}", out.len());
            let mut back = String::new();
            match lib {
                Library::Gzip { .. } => {
                    flate2::read::GzDecoder::new(&out[..]).read_to_string(&mut back)
                }
                Library::Brotli { .. } => {
                    brotli::Decompressor::new(&out[..], 4096).read_to_string(&mut back)
                }
                Library::Zstd { .. } => zstd::stream::read::Decoder::new(&out[..])
                    .expect("decoder")
                    .read_to_string(&mut back),
            }
            .expect("decompress");
            assert_eq!(back, text, "{lib:?}");
        }
    }
}
