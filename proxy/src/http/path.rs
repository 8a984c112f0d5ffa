//! Path normalisation before routing, in Envoy's order: `path_with_escaped_slashes_action`,
//! then `normalize_path` (RFC 3986 dot segments and escapes, as Envoy's URL canonicaliser does
//! it), then `merge_slashes`. The query is never touched.

use crate::config::hcm::{EscapedSlashes, HttpConnMgr};

pub enum Outcome {
    Continue,
    /// 400: the path cannot be normalised (or has escaped slashes and the action rejects).
    Reject,
    /// 307 to the normalised path (`UNESCAPE_AND_REDIRECT` found escaped slashes).
    Redirect,
}

/// Rewrites the request's path as the connection manager asks.
pub fn normalize<B>(req: &mut http::Request<B>, hcm: &HttpConnMgr) -> Outcome {
    let path = req.uri().path();
    if path == "*" || !path.starts_with('/') {
        return Outcome::Continue;
    }
    let mut outcome = Outcome::Continue;
    let mut new: Option<String> = None;
    if hcm.escaped_slashes != EscapedSlashes::Keep && has_escaped_slash(path) {
        match hcm.escaped_slashes {
            EscapedSlashes::Reject => return Outcome::Reject,
            EscapedSlashes::Redirect => outcome = Outcome::Redirect,
            _ => {}
        }
        new = Some(unescape_slashes(path));
    }
    if hcm.normalize_path {
        let cur = new.as_deref().unwrap_or(path);
        if !is_canonical(cur) {
            match canonical(cur) {
                Some(c) if c != cur => new = Some(c),
                Some(_) => {}
                None => return Outcome::Reject,
            }
        }
    }
    if hcm.merge_slashes {
        let cur = new.as_deref().unwrap_or(path);
        if cur.contains("//") {
            new = Some(merge_slashes(cur));
        }
    }
    if let Some(p) = new {
        set_path(req, p);
    }
    outcome
}

fn set_path<B>(req: &mut http::Request<B>, mut path: String) {
    if let Some(q) = req.uri().query() {
        path.push('?');
        path.push_str(q);
    }
    let mut parts = req.uri().clone().into_parts();
    if let Ok(pq) = http::uri::PathAndQuery::try_from(path) {
        parts.path_and_query = Some(pq);
        if let Ok(u) = http::Uri::from_parts(parts) {
            *req.uri_mut() = u;
        }
    }
}

fn escape_at(p: &[u8], i: usize) -> Option<u8> {
    let h = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    match (p.get(i), p.get(i + 1), p.get(i + 2)) {
        (Some(b'%'), Some(a), Some(b)) => Some(h(*a)? << 4 | h(*b)?),
        _ => None,
    }
}

fn has_escaped_slash(path: &str) -> bool {
    let p = path.as_bytes();
    (0..p.len()).any(|i| matches!(escape_at(p, i), Some(b'/' | b'\\')))
}

/// `%2F` and `%5C` (either case) become `/` and `\`.
fn unescape_slashes(path: &str) -> String {
    let p = path.as_bytes();
    let mut out = Vec::with_capacity(p.len());
    let mut i = 0;
    while i < p.len() {
        match escape_at(p, i) {
            Some(c @ (b'/' | b'\\')) => {
                out.push(c);
                i += 3;
            }
            _ => {
                out.push(p[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Runs of `/` become one.
pub fn merge_slashes(path: &str) -> String {
    let mut merged = String::with_capacity(path.len());
    for c in path.chars() {
        if !(c == '/' && merged.ends_with('/')) {
            merged.push(c);
        }
    }
    merged
}

fn is_dot(seg: &[u8]) -> bool {
    seg == b"." || seg.eq_ignore_ascii_case(b"%2e")
}

fn is_dot_dot(seg: &[u8]) -> bool {
    let one = |s: &[u8]| is_dot(s);
    match seg.len() {
        2 => seg == b"..",
        4 => (one(&seg[..1]) && one(&seg[1..])) || (one(&seg[..3]) && one(&seg[3..])),
        6 => one(&seg[..3]) && one(&seg[3..]),
        _ => false,
    }
}

/// A path [`canonical`] would leave as it is, told without allocating (the common case): no
/// escapes, no backslashes, no dot segments, nothing to escape.
fn is_canonical(path: &str) -> bool {
    let p = path.as_bytes();
    p.iter().enumerate().all(|(i, &c)| {
        c > b' '
            && c < 0x7f
            && !matches!(
                c,
                b'%' | b'\\' | b'"' | b'#' | b'<' | b'>' | b'^' | b'`' | b'{' | b'|' | b'}'
            )
            && !(c == b'.'
                && i > 0
                && p[i - 1] == b'/'
                && matches!(p.get(i + 1), None | Some(b'/' | b'.')))
    })
}

/// Envoy's `normalize_path`: `\` is a separator, `.` and `..` segments (also escaped as
/// `%2e`) are resolved, escaped unreserved characters are unescaped, characters a path may not
/// hold raw are escaped, other escapes are kept as written. `None`: an escaped NUL, which
/// Envoy rejects.
pub fn canonical(path: &str) -> Option<String> {
    let p = path.as_bytes();
    let mut segs: Vec<Vec<u8>> = Vec::new();
    let mut trailing = false;
    let raw: Vec<&[u8]> = p[1..].split(|b| *b == b'/' || *b == b'\\').collect();
    let last = raw.len() - 1;
    for (i, seg) in raw.into_iter().enumerate() {
        if is_dot(seg) {
            trailing = i == last;
        } else if is_dot_dot(seg) {
            segs.pop();
            trailing = i == last;
        } else {
            segs.push(canonical_segment(seg)?);
            trailing = false;
        }
    }
    let mut out = Vec::with_capacity(p.len() + 8);
    for s in &segs {
        out.push(b'/');
        out.extend_from_slice(s);
    }
    if trailing || out.is_empty() {
        out.push(b'/');
    }
    String::from_utf8(out).ok()
}

fn unreserved(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~')
}

fn canonical_segment(seg: &[u8]) -> Option<Vec<u8>> {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = Vec::with_capacity(seg.len());
    let mut i = 0;
    while i < seg.len() {
        let c = seg[i];
        if let Some(v) = escape_at(seg, i) {
            if v == 0 {
                return None;
            }
            if unreserved(v) {
                out.push(v);
            } else {
                out.extend_from_slice(&seg[i..i + 3]);
            }
            i += 3;
            continue;
        }
        if c <= b' '
            || c >= 0x7f
            || matches!(
                c,
                b'"' | b'#' | b'<' | b'>' | b'^' | b'`' | b'{' | b'|' | b'}'
            )
        {
            out.extend_from_slice(&[b'%', HEX[(c >> 4) as usize], HEX[(c & 15) as usize]]);
        } else {
            out.push(c);
        }
        i += 1;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Envoy 1.39.3's `normalize_path` results for the same inputs.
    #[test]
    fn canonical_paths_as_envoy_normalises_them() {
        for (input, want) in [
            ("/a/./b", "/a/b"),
            ("/a/../b", "/b"),
            ("/../a", "/a"),
            ("/a/b/..", "/a/"),
            ("/a/b/.", "/a/b/"),
            ("/a/%2e%2e/b", "/b"),
            ("/a/%2E/b", "/a/b"),
            ("/%41%62c", "/Abc"),
            ("/a%2Fb", "/a%2Fb"),
            ("/a%2fb/../c", "/c"),
            ("/a%5Cb", "/a%5Cb"),
            ("/a\\b", "/a/b"),
            ("/a//b/../c", "/a//c"),
            ("/%7euser", "/~user"),
            ("/a%20b", "/a%20b"),
            ("/a%zzb", "/a%zzb"),
            ("/a%2", "/a%2"),
            ("/.", "/"),
            ("/..", "/"),
            ("/a/..%2fb", "/a/..%2fb"),
            ("/%2e%2e/x", "/x"),
            ("/caf%C3%A9", "/caf%C3%A9"),
            ("/a;b/../c", "/c"),
            ("/a/%252F", "/a/%252F"),
            ("/x%2fy", "/x%2fy"),
            ("/a%2e", "/a."),
            ("/%2E%2E", "/"),
            ("/a/.%2e/b", "/b"),
            ("/a/%2e./b", "/b"),
            ("/a/...", "/a/..."),
            ("/a/.b", "/a/.b"),
            ("/a\"b", "/a%22b"),
            ("/a{b}", "/a%7Bb%7D"),
            ("/a|b", "/a%7Cb"),
            ("/a^b", "/a%5Eb"),
            ("/a`b", "/a%60b"),
            ("/a%7Eb%5f", "/a~b_"),
            ("/%61/%2E%2E/%62", "/b"),
            ("/a/b/../../../c", "/c"),
            ("/a'b", "/a'b"),
            ("/a[b]", "/a[b]"),
            ("/a@b:c", "/a@b:c"),
            ("/a%2Cb", "/a%2Cb"),
            ("/", "/"),
            ("/a/", "/a/"),
        ] {
            assert_eq!(canonical(input).as_deref(), Some(want), "{input}");
        }
        assert_eq!(canonical("/a%00b"), None);
        // The allocation-free check agrees: whatever it calls canonical is left unchanged.
        for p in ["/", "/a/b", "/a/.b", "/a;b", "/a~b_c-d.e", "/a//b"] {
            assert!(is_canonical(p), "{p}");
            assert_eq!(canonical(p).as_deref(), Some(p));
        }
        for p in ["/a/./b", "/a/..", "/a/.", "/%41", "/a\\b", "/a{b"] {
            assert!(!is_canonical(p), "{p}");
        }
    }

    #[test]
    fn escaped_slashes() {
        assert!(has_escaped_slash("/a%2fb"));
        assert!(has_escaped_slash("/a%5Cb"));
        assert!(!has_escaped_slash("/a%252F"));
        assert_eq!(unescape_slashes("/a%2Fb/..%2fc%5c"), "/a/b/../c\\");
    }
}
