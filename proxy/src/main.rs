//! `ferry`: Envoy's command line, Envoy's bootstrap, Ferry's data path.

mod admin;
mod app;
mod cli;
mod cluster;
mod config;
mod http;
mod listener;
mod snapshot;
mod stats;
mod tcp_proxy;
mod util;
mod xds;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

fn main() -> std::process::ExitCode {
    app::main()
}
