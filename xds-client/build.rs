//! Compiles Envoy's v3 API `.proto` files — shipped inside the `envoy-types` crate, never copied
//! into this tree — into one `FileDescriptorSet` that the proxy embeds. The descriptor pool is what
//! lets Ferry read bootstrap YAML/JSON with the proto3 JSON mapping (`typed_config` Any by `@type`)
//! and render `/config_dump` the way Envoy does.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Proto directories (relative to `data-plane-api/envoy`) whose files go into the pool: the v3
/// resources and the extensions a sidecar configuration names (Ferry's own and those Istio
/// emits), with their imports. A `@type` outside the pool is rejected as unknown, with its path;
/// keeping the pool to this set keeps its memory small (the whole API costs ~15 MB resident).
const ROOTS: &[&str] = &[
    "config/bootstrap/v3",
    "config/listener/v3",
    "config/route/v3",
    "config/cluster/v3",
    "config/endpoint/v3",
    "config/core/v3",
    "config/accesslog/v3",
    "config/metrics/v3",
    "config/overload/v3",
    "config/trace/v3",
    "config/rbac/v3",
    "extensions/filters/network/http_connection_manager/v3",
    "extensions/filters/network/tcp_proxy/v3",
    "extensions/filters/network/rbac/v3",
    "extensions/filters/network/local_ratelimit/v3",
    "extensions/filters/network/connection_limit/v3",
    "extensions/filters/network/wasm/v3",
    "extensions/filters/http/wasm/v3",
    "extensions/request_id/uuid/v3",
    // Named so that a NACK can say what is not supported rather than "unknown type".
    "extensions/filters/http/ext_authz/v3",
    "extensions/filters/network/ext_authz/v3",
    "extensions/filters/http/router/v3",
    "extensions/filters/http/fault/v3",
    "extensions/filters/http/cors/v3",
    "extensions/filters/http/rbac/v3",
    "extensions/filters/http/health_check/v3",
    "extensions/filters/http/grpc_stats/v3",
    "extensions/filters/http/local_ratelimit/v3",
    "extensions/retry/host/previous_hosts/v3",
    "extensions/resource_monitors/downstream_connections/v3",
    "extensions/resource_monitors/fixed_heap/v3",
    "extensions/resource_monitors/cgroup_memory/v3",
    "extensions/bootstrap/internal_listener/v3",
    "extensions/filters/http/compressor/v3",
    "extensions/compression/gzip/compressor/v3",
    "extensions/compression/brotli/compressor/v3",
    "extensions/compression/zstd/compressor/v3",
    "extensions/filters/listener/tls_inspector/v3",
    "extensions/filters/listener/http_inspector/v3",
    "extensions/filters/listener/original_dst/v3",
    "extensions/transport_sockets/tls/v3",
    "extensions/transport_sockets/raw_buffer/v3",
    "extensions/upstreams/http/v3",
    "extensions/upstreams/tcp/v3",
    "extensions/access_loggers/file/v3",
    "extensions/access_loggers/stream/v3",
    "extensions/load_balancing_policies",
    "extensions/health_checkers",
    "service/discovery/v3",
    "service/secret/v3",
    "service/cluster/v3",
    "service/listener/v3",
    "service/route/v3",
    "service/endpoint/v3",
];

/// Extra files outside `envoy/` that configs name by `@type`.
const EXTRA: &[&str] = &[
    "google/protobuf/struct.proto",
    "google/protobuf/wrappers.proto",
    "google/protobuf/empty.proto",
];

/// Files whose relative type names protox resolves against a sibling package that protoc
/// passes over (`common.ratelimit.v3.…` inside `envoy.extensions.filters.…` meets
/// `envoy.extensions.filters.common`): compiled from a copy in `OUT_DIR` with those names
/// made absolute.
const QUALIFY: &[(&str, &[(&str, &str)])] = &[(
    "envoy/extensions/filters/http/local_ratelimit/v3/local_rate_limit.proto",
    &[(
        " common.ratelimit.v3.",
        " .envoy.extensions.common.ratelimit.v3.",
    )],
)];

/// `TypedStruct` (a `typed_config` given as a type URL and a JSON-like struct, as Istio writes
/// many of its configs): not shipped in `envoy-types`, so Ferry declares the two messages
/// itself, with the same package, names and field numbers as the published interface.
const TYPED_STRUCTS: &[(&str, &str)] = &[
    ("udpa/type/v1/typed_struct.proto", "udpa.type.v1"),
    ("xds/type/v3/typed_struct.proto", "xds.type.v3"),
];

/// The configuration messages of istio-proxy's own extensions (istiod sends them to every
/// sidecar; stock Envoy has none of them). Declared here by Ferry from their published
/// interfaces: package, message and field names and numbers, which both the JSON/TypedStruct
/// mapping and the binary decoding depend on.
const ISTIO: &[(&str, &str)] = &[
    (
        "ferry/istio/stats.proto",
        "syntax = \"proto3\";\npackage stats;\nimport \"google/protobuf/duration.proto\";\n\
         message MetricConfig {\n  map<string, string> dimensions = 1;\n  string name = 2;\n  \
         repeated string tags_to_remove = 3;\n  string match = 4;\n  bool drop = 5;\n}\n\
         enum MetricType {\n  COUNTER = 0;\n  GAUGE = 1;\n  HISTOGRAM = 2;\n}\n\
         message MetricDefinition {\n  string name = 1;\n  string value = 2;\n  MetricType type = 3;\n}\n\
         enum Reporter {\n  UNSPECIFIED = 0;\n  SERVER_GATEWAY = 1;\n}\n\
         message PluginConfig {\n  bool disable_host_header_fallback = 6;\n  \
         google.protobuf.Duration tcp_reporting_duration = 7;\n  repeated MetricConfig metrics = 8;\n  \
         repeated MetricDefinition definitions = 9;\n  Reporter reporter = 10;\n  \
         google.protobuf.Duration rotation_interval = 11;\n  \
         google.protobuf.Duration graceful_deletion_interval = 12;\n}\n",
    ),
    (
        "ferry/istio/metadata_exchange.proto",
        "syntax = \"proto3\";\npackage envoy.tcp.metadataexchange.config;\n\
         message MetadataExchange {\n  string protocol = 1;\n  bool enable_discovery = 2;\n  \
         repeated string additional_labels = 3;\n}\n",
    ),
    (
        "ferry/istio/peer_metadata.proto",
        "syntax = \"proto3\";\npackage io.istio.http.peer_metadata;\n\
         message Config {\n  message Baggage {}\n  message WorkloadDiscovery {}\n  \
         message IstioHeaders {\n    bool skip_external_clusters = 1;\n  }\n  \
         message DiscoveryMethod {\n    oneof method_specifier {\n      Baggage baggage = 1;\n      \
         WorkloadDiscovery workload_discovery = 2;\n      IstioHeaders istio_headers = 3;\n    }\n  }\n  \
         message PropagationMethod {\n    oneof method_specifier {\n      IstioHeaders istio_headers = 1;\n    }\n  }\n  \
         repeated DiscoveryMethod downstream_discovery = 1;\n  repeated DiscoveryMethod upstream_discovery = 2;\n  \
         repeated PropagationMethod downstream_propagation = 3;\n  \
         repeated PropagationMethod upstream_propagation = 4;\n  bool shared_with_upstream = 5;\n  \
         repeated string additional_labels = 6;\n}\n",
    ),
    (
        "ferry/istio/alpn.proto",
        "syntax = \"proto3\";\npackage istio.envoy.config.filter.http.alpn.v2alpha1;\n\
         message FilterConfig {\n  enum Protocol {\n    HTTP10 = 0;\n    HTTP11 = 1;\n    HTTP2 = 2;\n  }\n  \
         message AlpnOverride {\n    Protocol upstream_protocol = 1;\n    repeated string alpn_override = 2;\n  }\n  \
         repeated AlpnOverride alpn_override = 1;\n}\n",
    ),
    (
        "ferry/istio/authn.proto",
        "syntax = \"proto3\";\npackage io.istio.network.authn;\nmessage Config {\n  bool shared = 1;\n}\n",
    ),
    (
        "ferry/istio/workload.proto",
        "syntax = \"proto3\";\npackage istio.workload;\n\
         import \"envoy/config/core/v3/config_source.proto\";\n\
         message BootstrapExtension {\n  envoy.config.core.v3.ConfigSource config_source = 1;\n}\n",
    ),
];

fn main() {
    let proto_root = envoy_types_proto_dir();
    let api = proto_root.join("data-plane-api");
    let overlay = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR")).join("overlay");
    for (file, rewrites) in QUALIFY {
        let mut text = std::fs::read_to_string(api.join(file)).expect("read a proto to qualify");
        for (from, to) in *rewrites {
            text = text.replace(from, to);
        }
        let dst = overlay.join(file);
        std::fs::create_dir_all(dst.parent().expect("a proto path has a directory"))
            .expect("create the overlay directory");
        std::fs::write(dst, text).expect("write the qualified proto");
    }
    for (file, package) in TYPED_STRUCTS {
        let dst = overlay.join(file);
        std::fs::create_dir_all(dst.parent().expect("a proto path has a directory"))
            .expect("create the overlay directory");
        let text = format!(
            "syntax = \"proto3\";\npackage {package};\nimport \"google/protobuf/struct.proto\";\n\
             message TypedStruct {{\n  string type_url = 1;\n  google.protobuf.Struct value = 2;\n}}\n"
        );
        std::fs::write(dst, text).expect("write a TypedStruct proto");
    }
    for (file, text) in ISTIO {
        let dst = overlay.join(file);
        std::fs::create_dir_all(dst.parent().expect("a proto path has a directory"))
            .expect("create the overlay directory");
        std::fs::write(dst, text).expect("write an Istio proto");
    }
    let includes: Vec<PathBuf> = std::iter::once(overlay.clone())
        .chain(
            [
                "data-plane-api",
                "xds",
                "googleapis",
                "protoc-gen-validate",
                "cel-spec/proto",
                "opentelemetry-proto",
                "client_model",
            ]
            .iter()
            .map(|d| proto_root.join(d))
            .filter(|p| p.exists()),
        )
        .collect();

    let mut files = Vec::new();
    for root in ROOTS {
        collect(&api.join("envoy").join(root), &api, &mut files);
    }
    files.sort();
    // Alpha/experimental APIs are left out: they are not part of the stable v3 surface.
    files.retain(|f| !f.contains("v3alpha") && !f.contains("/v2"));
    // These declare packages (`envoy.extensions.config`, `envoy.extensions.clusters.common`) that
    // shadow `config.core.v3…`/`common.…` relative names in sibling files under protox's scoping.
    files.retain(|f| {
        !f.starts_with("envoy/extensions/config/")
            && !f.starts_with("envoy/extensions/clusters/common/")
    });
    files.extend(EXTRA.iter().map(|s| s.to_string()));
    files.extend(TYPED_STRUCTS.iter().map(|(f, _)| f.to_string()));
    files.extend(ISTIO.iter().map(|(f, _)| f.to_string()));

    // protox resolves a few relative type names differently from protoc (a package prefix that
    // shadows an outer one); such files are left out, and named in the build output.
    let mut skipped = Vec::new();
    let bytes = loop {
        let mut compiler =
            protox::Compiler::new(&includes).unwrap_or_else(|e| panic!("protox: {e:?}"));
        compiler.include_imports(true).include_source_info(false);
        match compiler.open_files(&files) {
            Ok(_) => break compiler.encode_file_descriptor_set(),
            Err(e) => {
                let msg = format!("{e:?}");
                let bad = msg
                    .find(".proto")
                    .map(|end| msg[..end + 6].trim_start_matches('"').to_string());
                let Some(bad) = bad.filter(|_| skipped.len() < 64) else {
                    panic!("protox: {msg}")
                };
                // Drop the failing file and every listed file that imports it.
                let import = format!("import \"{bad}\"");
                files.retain(|f| {
                    let text = std::fs::read_to_string(api.join(f)).unwrap_or_default();
                    f != &bad && !text.contains(&import)
                });
                skipped.push(bad);
            }
        }
    };
    // Recorded beside the descriptor set rather than warned about on every build.
    let skipped_list =
        PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR")).join("skipped_protos.txt");
    std::fs::write(skipped_list, skipped.join("\n")).expect("write skipped list");
    let out =
        PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR")).join("envoy_descriptors.bin");
    std::fs::write(&out, bytes).expect("write descriptor set");
    println!("cargo:rerun-if-changed=build.rs");
}

fn collect(dir: &Path, base: &Path, out: &mut Vec<String>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            collect(&p, base, out);
        } else if p.extension().is_some_and(|x| x == "proto") {
            if let Ok(rel) = p.strip_prefix(base) {
                out.push(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }
}

/// The `proto/` directory of the resolved `envoy-types` package: looked up in Cargo's registry
/// cache by the version that `Cargo.lock` pins; `cargo metadata` is the fallback (vendored or
/// path sources).
fn envoy_types_proto_dir() -> PathBuf {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    if let Some(dir) = from_registry(&manifest) {
        return dir;
    }
    from_metadata(&manifest)
}

fn from_registry(manifest: &Path) -> Option<PathBuf> {
    let lock = std::fs::read_to_string(manifest.parent()?.join("Cargo.lock")).ok()?;
    println!("cargo:rerun-if-changed=../Cargo.lock");
    let mut lines = lock.lines();
    let mut version = None;
    while let Some(l) = lines.next() {
        if l.trim() == "name = \"envoy-types\"" {
            version = lines
                .next()
                .and_then(|v| v.trim().strip_prefix("version = "))
                .map(|v| v.trim_matches('"').to_string());
            break;
        }
    }
    let version = version?;
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))?;
    for reg in std::fs::read_dir(home.join("registry/src")).ok()?.flatten() {
        let dir = reg
            .path()
            .join(format!("envoy-types-{version}"))
            .join("proto");
        if dir.is_dir() {
            return Some(dir);
        }
    }
    None
}

fn from_metadata(manifest: &Path) -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--manifest-path"])
        .arg(manifest.join("Cargo.toml"))
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata json");
    let pkgs = meta["packages"].as_array().expect("packages");
    let pkg = pkgs
        .iter()
        .find(|p| p["name"] == "envoy-types")
        .expect("envoy-types in the dependency graph");
    let manifest_path = PathBuf::from(pkg["manifest_path"].as_str().expect("manifest_path"));
    manifest_path.parent().expect("package dir").join("proto")
}
