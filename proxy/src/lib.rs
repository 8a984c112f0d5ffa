//! Ferry: Envoy's command line, Envoy's bootstrap, Ferry's data path. The library is the
//! whole proxy; the `ferry` binary only calls [`app::main`]. It is a library so that the micro
//! benchmarks (`benches/`) can time the hot pure functions.

pub mod access_log;
pub mod admin;
pub mod app;
pub mod cli;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod http;
pub mod io;
pub mod istio;
pub mod listener;
pub mod logfmt;
pub mod overload;
pub mod snapshot;
pub mod stats;
pub mod stream_info;
pub mod tcp_proxy;
pub mod tls;
pub mod trace;
pub mod util;
pub mod xds;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");
