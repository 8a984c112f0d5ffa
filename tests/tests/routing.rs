//! Virtual host selection and route matching.

use ferry_tests::{Case, Setup};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vhost_domain_matching() {
    let Some(env) = Setup::new(
        "vhost_domain_matching",
        include_str!("../configs/vhosts.yaml"),
    )
    .echo("UP_A", "a")
    .start()
    .await
    else {
        return;
    };
    const VHOST: &str = "upstream.header:x-vhost";
    env.run(vec![
        Case::get("exact domain", "/")
            .host("exact.example.com")
            .expect(VHOST, "exact"),
        Case::get("exact domain, mixed case", "/")
            .host("EXACT.Example.COM")
            .expect(VHOST, "exact")
            .expect("upstream.header:host", "EXACT.Example.COM"),
        Case::get("longest suffix wildcard wins", "/")
            .host("a.wild.example.com")
            .expect(VHOST, "wild_suffix_long"),
        Case::get("suffix wildcard", "/")
            .host("other.example.com")
            .expect(VHOST, "wild_suffix"),
        Case::get("suffix wildcard needs a label", "/")
            .host("example.com")
            .expect(VHOST, "fallback"),
        Case::get("prefix wildcard", "/")
            .host("prefix.anything.org")
            .expect(VHOST, "wild_prefix"),
        Case::get("port kept: exact domain plus port", "/")
            .host("exact.example.com:8080")
            .expect(VHOST, "fallback"),
        Case::get("port kept: host:port domain", "/")
            .host("hostport.test:8080")
            .expect(VHOST, "host_with_port"),
        Case::get("port kept: host:port domain, other port", "/")
            .host("hostport.test:9090")
            .expect(VHOST, "fallback"),
        Case::get("port kept: host:port domain without port", "/")
            .host("hostport.test")
            .expect(VHOST, "fallback"),
        Case::get("unknown host falls back to *", "/")
            .host("unknown.org")
            .expect(VHOST, "fallback"),
        Case::get("h2 authority selects vhost", "/")
            .host("exact.example.com")
            .h2()
            .expect(VHOST, "exact"),
        Case::get("strip_any_host_port: exact plus port", "/")
            .host("exact.example.com:8080")
            .listener("L2")
            .expect(VHOST, "exact")
            .expect("upstream.header:host", "exact.example.com"),
        Case::get("strip_any_host_port: host:port domain", "/")
            .host("hostport.test:8080")
            .listener("L2")
            .expect_status(404)
            .expect_body(""),
        Case::get("strip_any_host_port: no vhost", "/")
            .host("unknown.org")
            .listener("L2")
            .expect_status(404),
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_matching() {
    let Some(env) = Setup::new(
        "route_matching",
        include_str!("../configs/route_match.yaml"),
    )
    .echo("UP_A", "a")
    .start()
    .await
    else {
        return;
    };
    let route = |name: &str| format!("route={name}");
    env.run(vec![
        Case::get("path: exact", "/exact").expect_body(&route("path")),
        Case::get("path: query ignored", "/exact?x=1").expect_body(&route("path")),
        Case::get("path: trailing slash differs", "/exact/").expect_body(&route("catch_all")),
        Case::get("prefix", "/prefix/more").expect_body(&route("prefix")),
        Case::get("prefix is case sensitive", "/PREFIX").expect_body(&route("catch_all")),
        Case::get("safe_regex: full match", "/re/123").expect_body(&route("regex")),
        Case::get("safe_regex: must match whole path", "/re/123/x")
            .expect_body(&route("catch_all")),
        Case::get("safe_regex: query ignored", "/re/7?a=b").expect_body(&route("regex")),
        Case::get("path_separated_prefix: exact", "/sep")
            .expect_body(&route("path_separated_prefix")),
        Case::get("path_separated_prefix: sub path", "/sep/x")
            .expect_body(&route("path_separated_prefix")),
        Case::get("path_separated_prefix: not a segment", "/separate")
            .expect_body(&route("catch_all")),
        Case::get("path_separated_prefix: query", "/sep?x")
            .expect_body(&route("path_separated_prefix")),
        Case::get("case_sensitive false", "/cAsE/x").expect_body(&route("case_insensitive")),
        Case::get(
            "pseudo-headers (Istio's method and authority matches)",
            "/pseudo?v=2",
        )
        .method("POST")
        .host("api.example.com")
        .expect_body(&route("pseudo_headers")),
        Case::get("pseudo-headers: another method", "/pseudo?v=2")
            .host("api.example.com")
            .expect_body(&route("catch_all")),
        Case::get("pseudo-headers: another authority", "/pseudo?v=2")
            .method("POST")
            .expect_body(&route("catch_all")),
        Case::get("header exact_match", "/hdr")
            .header("x-exact", "yes")
            .expect_body(&route("header_exact_match")),
        Case::get("header string_match exact", "/hdr")
            .header("x-string", "Value")
            .expect_body(&route("header_string_exact")),
        Case::get("header string_match exact is case sensitive", "/hdr")
            .header("x-string", "value")
            .header("x-block", "1")
            .expect_body(&route("catch_all")),
        Case::get("header string_match prefix", "/hdr")
            .header("x-string", "prefixed")
            .header("x-block", "1")
            .expect_body(&route("header_string_prefix")),
        Case::get("header present_match, empty value", "/hdr")
            .header("x-present", "")
            .header("x-block", "1")
            .expect_body(&route("header_present")),
        // A missing header never matches a string matcher, inverted or not.
        Case::get("header invert_match: absent header does not match", "/hdr")
            .expect_body(&route("catch_all")),
        Case::get("header invert_match: other value matches", "/hdr")
            .header("x-block", "2")
            .expect_body(&route("header_inverted")),
        Case::get("header invert_match: blocked", "/hdr")
            .header("x-block", "1")
            .expect_body(&route("catch_all")),
        Case::get("query string_match exact", "/q?mode=fast").expect_body(&route("query_exact")),
        Case::get("query string_match exact: other value", "/q?mode=slow")
            .expect_body(&route("catch_all")),
        Case::get("query present_match", "/q?a=1&debug").expect_body(&route("query_present")),
        Case::get("query present_match with value", "/q?debug=0")
            .expect_body(&route("query_present")),
        Case::get(
            "route to cluster keeps path and query",
            "/to_cluster/x?y=1&y=2",
        )
        .expect_upstream("a")
        .expect("upstream.path", "/to_cluster/x?y=1&y=2"),
        Case::get("h2: regex route", "/re/42")
            .h2()
            .expect_body(&route("regex")),
    ])
    .await;
}
