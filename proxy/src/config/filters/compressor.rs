//! `envoy.filters.http.compressor`: response compression with gzip, brotli or zstd, and
//! its stats (`http.<prefix>.compressor.<library name>.<library>.*`).

use super::super::{any_to, err, type_name, Result};
use crate::stats::{registry, Block, Cell, Kind, Scope};
use envoy_types::pb::envoy::extensions::compression::brotli::compressor::v3::Brotli;
use envoy_types::pb::envoy::extensions::compression::gzip::compressor::v3::Gzip;
use envoy_types::pb::envoy::extensions::compression::zstd::compressor::v3::Zstd;
use envoy_types::pb::envoy::extensions::filters::http::compressor::v3::Compressor;
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Library {
    Gzip { level: u32 },
    Brotli { quality: u32, window_bits: u32 },
    Zstd { level: i32, checksum: bool },
}

impl Library {
    /// The `content-encoding` token.
    pub fn encoding(&self) -> &'static str {
        match self {
            Library::Gzip { .. } => "gzip",
            Library::Brotli { .. } => "br",
            Library::Zstd { .. } => "zstd",
        }
    }

    /// The stat segment.
    fn stat_name(&self) -> &'static str {
        match self {
            Library::Gzip { .. } => "gzip",
            Library::Brotli { .. } => "brotli",
            Library::Zstd { .. } => "zstd",
        }
    }
}

#[derive(Debug)]
pub struct CompressorCfg {
    pub library: Library,
    /// Lower-case media types (without parameters) that may be compressed.
    pub content_types: Vec<String>,
    pub min_length: u64,
    pub disable_on_etag: bool,
    pub weaken_etag: bool,
    pub remove_accept_encoding: bool,
    pub choose_first: bool,
    pub uncompressible: Vec<u16>,
    pub stats: Arc<CompressorStats>,
}

/// Envoy's default content types.
const DEFAULT_TYPES: &[&str] = &[
    "text/html",
    "text/plain",
    "text/css",
    "application/javascript",
    "application/x-javascript",
    "text/javascript",
    "text/x-javascript",
    "text/ecmascript",
    "text/js",
    "text/jscript",
    "text/x-js",
    "application/ecmascript",
    "application/x-json",
    "application/xml",
    "application/json",
    "image/svg+xml",
    "text/xml",
    "application/xhtml+xml",
    "application/grpc-web",
    "application/grpc-web+proto",
];

const GZIP: &str = "envoy.extensions.compression.gzip.compressor.v3.Gzip";
const BROTLI: &str = "envoy.extensions.compression.brotli.compressor.v3.Brotli";
const ZSTD: &str = "envoy.extensions.compression.zstd.compressor.v3.Zstd";

impl CompressorCfg {
    // The deprecated top-level fields are still honoured, as in Envoy.
    #[allow(deprecated)]
    pub fn from_proto(c: &Compressor, stat_prefix: &str, path: &str) -> Result<CompressorCfg> {
        let lib_path = format!("{path}.compressor_library");
        let Some(lib) = &c.compressor_library else {
            return err(&lib_path, "compressor_library is required");
        };
        let Some(any) = &lib.typed_config else {
            return err(
                &format!("{lib_path}.typed_config"),
                "typed_config is required",
            );
        };
        let tp = format!("{lib_path}.typed_config");
        let library = match type_name(any) {
            GZIP => {
                let g: Gzip = any_to(any, &tp)?;
                // DEFAULT_COMPRESSION (0) is zlib's default, level 6.
                let level = match g.compression_level {
                    0 => 6,
                    l @ 1..=9 => l as u32,
                    _ => return err(&format!("{tp}.compression_level"), "unknown level"),
                };
                Library::Gzip { level }
            }
            BROTLI => {
                let b: Brotli = any_to(any, &tp)?;
                Library::Brotli {
                    quality: b.quality.map_or(3, |q| q.value.min(11)),
                    window_bits: b.window_bits.map_or(18, |w| w.value.clamp(10, 24)),
                }
            }
            ZSTD => {
                let z: Zstd = any_to(any, &tp)?;
                if z.dictionary.is_some() {
                    return err(
                        &format!("{tp}.dictionary"),
                        "zstd dictionaries are not supported by Ferry",
                    );
                }
                Library::Zstd {
                    level: z.compression_level.map_or(3, |l| l.value as i32),
                    checksum: z.enable_checksum,
                }
            }
            other => {
                return err(
                    &tp,
                    format!("compressor library {other} is not supported by Ferry"),
                )
            }
        };
        if c.request_direction_config.is_some() {
            return err(
                &format!("{path}.request_direction_config"),
                "request compression is not supported by Ferry",
            );
        }
        if c.runtime_enabled.is_some() {
            return err(
                &format!("{path}.runtime_enabled"),
                "runtime_enabled is not supported by Ferry (use response_direction_config.common_config.enabled)",
            );
        }
        // The deprecated top-level fields apply without a response_direction_config.
        let mut types = c.content_type.clone();
        let mut min_length = c.content_length.as_ref().map(|v| u64::from(v.value));
        let mut disable_on_etag = c.disable_on_etag_header;
        let mut remove_accept_encoding = c.remove_accept_encoding_header;
        let mut weaken_etag = false;
        let mut uncompressible = Vec::new();
        let response = c.response_direction_config.as_ref();
        if let Some(r) = response {
            let rp = format!("{path}.response_direction_config");
            if r.status_header_enabled {
                return err(
                    &format!("{rp}.status_header_enabled"),
                    "the compression status header is not supported by Ferry",
                );
            }
            if let Some(cc) = &r.common_config {
                if let Some(e) = &cc.enabled {
                    if e.default_value.as_ref().is_some_and(|v| !v.value) {
                        return err(
                            &format!("{rp}.common_config.enabled"),
                            "a disabled compressor is not supported by Ferry (remove the filter)",
                        );
                    }
                }
                if !cc.content_type_matcher.is_empty() {
                    return err(
                        &format!("{rp}.common_config.content_type_matcher"),
                        "content_type_matcher is not supported by Ferry (use content_type)",
                    );
                }
                types = cc.content_type.clone();
                min_length = cc.min_content_length.as_ref().map(|v| u64::from(v.value));
            }
            disable_on_etag = r.disable_on_etag_header;
            weaken_etag = r.weaken_etag_on_compress;
            remove_accept_encoding = r.remove_accept_encoding_header;
            for (i, code) in r.uncompressible_response_codes.iter().enumerate() {
                if !(200..=599).contains(code) {
                    return err(
                        &format!("{rp}.uncompressible_response_codes[{i}]"),
                        "must be within 200..599",
                    );
                }
                uncompressible.push(*code as u16);
            }
        }
        let content_types = if types.is_empty() {
            DEFAULT_TYPES.iter().map(|t| t.to_string()).collect()
        } else {
            types
                .iter()
                .map(|t| t.trim().to_ascii_lowercase())
                .collect()
        };
        let scope = format!(
            "http.{stat_prefix}.compressor.{}.{}",
            lib.name,
            library.stat_name()
        );
        let stats = registry().block(Scope::Named(&scope), || CompressorStats {
            response_prefix: response.is_some(),
            ..Default::default()
        });
        Ok(CompressorCfg {
            library,
            content_types,
            // Envoy reads 0 as its default, 30.
            min_length: min_length.filter(|m| *m > 0).unwrap_or(30),
            disable_on_etag,
            weaken_etag,
            remove_accept_encoding,
            choose_first: c.choose_first,
            uncompressible,
            stats,
        })
    }
}

/// The filter's counters; the response ones under `response.` when the filter has a
/// `response_direction_config`.
#[derive(Debug, Default)]
pub struct CompressorStats {
    response_prefix: bool,
    pub compressed: Cell,
    pub not_compressed: Cell,
    pub total_uncompressed_bytes: Cell,
    pub total_compressed_bytes: Cell,
    pub content_length_too_small: Cell,
    pub no_accept_header: Cell,
    pub header_identity: Cell,
    pub header_compressor_used: Cell,
    pub header_compressor_overshadowed: Cell,
    pub header_wildcard: Cell,
    pub header_not_valid: Cell,
    pub not_compressed_etag: Cell,
    pub request_not_compressed: Cell,
}

impl Block for CompressorStats {
    fn visit(&self, f: &mut dyn FnMut(&str, Kind, u64)) {
        use Kind::Counter as C;
        let r = |n: &str| {
            if self.response_prefix {
                format!("response.{n}")
            } else {
                n.to_string()
            }
        };
        f(&r("compressed"), C, self.compressed.get());
        f(&r("not_compressed"), C, self.not_compressed.get());
        f(
            &r("total_uncompressed_bytes"),
            C,
            self.total_uncompressed_bytes.get(),
        );
        f(
            &r("total_compressed_bytes"),
            C,
            self.total_compressed_bytes.get(),
        );
        f(
            &r("content_length_too_small"),
            C,
            self.content_length_too_small.get(),
        );
        f("no_accept_header", C, self.no_accept_header.get());
        f("header_identity", C, self.header_identity.get());
        f(
            "header_compressor_used",
            C,
            self.header_compressor_used.get(),
        );
        f(
            "header_compressor_overshadowed",
            C,
            self.header_compressor_overshadowed.get(),
        );
        f("header_wildcard", C, self.header_wildcard.get());
        f("header_not_valid", C, self.header_not_valid.get());
        f("not_compressed_etag", C, self.not_compressed_etag.get());
        f("request.compressed", C, 0);
        f(
            "request.not_compressed",
            C,
            self.request_not_compressed.get(),
        );
        f("request.total_uncompressed_bytes", C, 0);
        f("request.total_compressed_bytes", C, 0);
        f("request.content_length_too_small", C, 0);
    }
}
