//! Downstream codecs (HTTP/1.1, h2 prior knowledge) and malformed input
//! sent as raw bytes.

use ferry_tests::{Case, Setup};

const H2_PREFACE: &str = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downstream_codecs() {
    let Some(env) = Setup::new("downstream_codecs", include_str!("../configs/codecs.yaml"))
        .echo("UP_A", "a")
        .start()
        .await
    else {
        return;
    };
    env.run(vec![
        Case::get("AUTO: HTTP/1.1", "/h1").expect_status(200),
        Case::get("AUTO: h2 prior knowledge", "/h2")
            .h2()
            .expect_status(200)
            .expect("upstream.version", "HTTP/1.1")
            .expect("upstream.header:host", "example.com"),
        Case::get("AUTO: h2 POST", "/h2")
            .h2()
            .method("POST")
            .body("h2 body")
            .expect("upstream.body", "h2 body"),
        Case::get("HTTP1: HTTP/1.1", "/h1").listener("L2").expect_status(200),
        Case::raw("HTTP1: raw h2 preface", H2_PREFACE)
            .listener("L2")
            .expect("status_line", "HTTP/1.1 400 Bad Request")
            .expect("header:connection", "close")
            .differs_field("", CODEC)
            .expect_ferry("closed", "true"),
        Case::raw("AUTO: raw keep-alive request", "GET /raw HTTP/1.1\r\nHost: example.com\r\n\r\n")
            .expect("status_line", "HTTP/1.1 200 OK")
            .expect_absent("header:connection"),
        Case::raw("AUTO: raw request, connection close", "GET /raw HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n"),
        Case::raw("AUTO: chunked request body", "POST /raw HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
            .expect("upstream.body", "hello"),
        // HTTP/1.0 is refused unless http_protocol_options.accept_http_10.
        Case::raw("AUTO: HTTP/1.0", "GET /raw HTTP/1.0\r\nHost: example.com\r\n\r\n")
            .differs_field("status_line", "hyper writes the status line in the client's version (HTTP/1.0); the status is Envoy's")
            .expect_ferry("status", "426")
            .expect("status_line", "HTTP/1.1 426 Upgrade Required")
            .expect_body("Upgrade Required"),
        Case::raw("AUTO: absolute URI", "GET http://absolute.example/raw?x=1 HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n")
            .expect("upstream.header:host", "absolute.example")
            .expect("upstream.path", "/raw?x=1"),
        Case::raw("AUTO: no Host header", "GET /raw HTTP/1.1\r\nConnection: close\r\n\r\n")
            .expect("status", "400")
            .expect_body(""),
        Case::raw("AUTO: custom method", "PURGE /raw HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n")
            .expect("upstream.method", "PURGE"),
        Case::raw("AUTO: Expect 100-continue", "POST /raw HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok")
            .expect("interim", "HTTP/1.1 100 Continue")
            .expect("upstream.body", "ok")
            .expect_absent("upstream.header:expect"),
    ])
    .await;
}

/// Ferry's HTTP/1 codec is hyper's: malformed requests get the same status class (and the
/// connection closes), but hyper writes its own minimal reply — no body, no `server` or
/// `content-type` — and answers unknown versions with 400 where Envoy says 426. A codec of
/// Ferry's own (hardening issue) will answer with Envoy's exact replies.
const CODEC: &str =
    "hyper's HTTP/1 error replies: same status class, no body or server/content-type headers";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests() {
    let Some(env) = Setup::new("malformed_requests", include_str!("../configs/codecs.yaml"))
        .echo("UP_A", "a")
        .start()
        .await
    else {
        return;
    };
    let big_headers: String = (0..16)
        .map(|i| format!("x-filler-{i:02}: {}\r\n", "a".repeat(1000)))
        .collect();
    let bad = "HTTP/1.1 400 Bad Request";
    env.run(vec![
        Case::raw("malformed request line", "GARBAGE\r\n\r\n")
            .expect("status_line", bad)
            .expect_body("Bad Request")
            .expect("header:connection", "close").differs_field("body", CODEC).differs_field("header:", CODEC),
        Case::raw("request line without version", "GET /\r\nHost: example.com\r\n\r\n").expect("status", "426").differs_field("body", CODEC).differs_field("header:", CODEC).differs_field("status", CODEC).expect_ferry("status", "400"),
        Case::raw("unknown HTTP version", "GET / HTTP/9.9\r\nHost: example.com\r\n\r\n").expect("status", "426").differs_field("body", CODEC).differs_field("header:", CODEC).differs_field("status", CODEC).expect_ferry("status", "400"),
        Case::raw("headers over max_request_headers_kb", format!("GET / HTTP/1.1\r\nHost: example.com\r\n{big_headers}\r\n"))
            .expect("status_line", "HTTP/1.1 431 Request Header Fields Too Large")
            .expect_body("Request Header Fields Too Large").differs_field("body", CODEC).differs_field("header:", CODEC),
        // hyper follows RFC 9112 §6.3: Transfer-Encoding wins, Content-Length is dropped and the
        // request is re-framed toward the upstream, which sees one framing only (no smuggling).
        // Envoy rejects the request instead. Owning the HTTP/1 codec will align the two.
        Case::raw("Content-Length with chunked", "POST / HTTP/1.1\r\nHost: example.com\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n").expect("status_line", bad)
            .differs("RFC 9112 §6.3 handling by hyper, see above")
            .expect_ferry("upstream.header:transfer-encoding", "chunked")
            .expect_ferry_absent("upstream.header:content-length"),
        Case::raw("non-numeric Content-Length", "POST / HTTP/1.1\r\nHost: example.com\r\nContent-Length: abc\r\n\r\n").expect("status_line", bad).differs_field("body", CODEC).differs_field("header:", CODEC),
        Case::raw("conflicting Content-Length", "POST / HTTP/1.1\r\nHost: example.com\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc").expect("status_line", bad).differs_field("body", CODEC).differs_field("header:", CODEC),
        Case::raw("space before colon", "GET / HTTP/1.1\r\nHost : example.com\r\n\r\n").expect("status_line", bad).differs_field("body", CODEC).differs_field("header:", CODEC),
        Case::raw("invalid header name", "GET / HTTP/1.1\r\nHost: example.com\r\nBad(Header): x\r\n\r\n").expect("status_line", bad).differs_field("body", CODEC).differs_field("header:", CODEC),
        Case::raw("bad chunk size", "POST / HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n").expect("status_line", bad),
        Case::raw("unsupported transfer-encoding", "POST / HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: gzip\r\n\r\n")
            .expect("status_line", "HTTP/1.1 501 Not Implemented").differs_field("body", CODEC).differs_field("header:", CODEC).differs_field("status", CODEC).expect_ferry("status", "400"),
    ])
    .await;
}
