//! Envoy's command line. Flags Ferry accepts but does not act on say so in `--help`.

use clap::{Parser, ValueEnum};
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    Serve,
    Validate,
    #[value(name = "init_only")]
    InitOnly,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DrainStrategy {
    Gradual,
    Immediate,
}

#[derive(Debug, Clone, Parser)]
#[command(name = "ferry", version = crate::VERSION, disable_version_flag = true, about = "Ferry: a service-mesh sidecar proxy, a drop-in replacement for Envoy")]
pub struct Cli {
    /// Path to the bootstrap file (YAML or JSON by extension, or binary proto `.pb`).
    #[arg(short = 'c', long = "config-path")]
    pub config_path: Option<PathBuf>,
    /// YAML bootstrap merged over the file (proto MergeFrom).
    #[arg(long = "config-yaml")]
    pub config_yaml: Option<String>,
    /// serve: run; validate: check the configuration and exit; init_only: initialise and exit.
    #[arg(long, value_enum, default_value = "serve")]
    pub mode: Mode,
    /// Worker threads (default: the CPUs this process may use).
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// trace, debug, info, warning, error, critical, off.
    #[arg(short = 'l', long = "log-level", default_value = "info")]
    pub log_level: String,
    /// Per-component levels, `upstream:debug,connection:trace` (component names are accepted; levels apply process-wide to the most verbose named).
    #[arg(long = "component-log-level")]
    pub component_log_level: Option<String>,
    /// Log line format in Envoy's (spdlog's) pattern language (default `[%Y-%m-%d %T.%e][%t][%l][%n] [%g:%#] %v`).
    #[arg(long = "log-format")]
    pub log_format: Option<String>,
    /// Log file path (default stderr).
    #[arg(long = "log-path")]
    pub log_path: Option<PathBuf>,
    /// Overrides node.id.
    #[arg(long = "service-node")]
    pub service_node: Option<String>,
    /// Overrides node.cluster.
    #[arg(long = "service-cluster")]
    pub service_cluster: Option<String>,
    /// Overrides node.locality.zone.
    #[arg(long = "service-zone")]
    pub service_zone: Option<String>,
    /// Seconds connections get to drain on SIGTERM and /drain_listeners?graceful.
    #[arg(long = "drain-time-s", default_value_t = 600)]
    pub drain_time_s: u64,
    /// gradual or immediate (accepted; Ferry drains immediately either way).
    #[arg(long = "drain-strategy", value_enum, default_value = "gradual")]
    pub drain_strategy: DrainStrategy,
    /// Hot restart (accepted, not acted on: Ferry does not hot-restart).
    #[arg(long = "parent-shutdown-time-s", default_value_t = 900)]
    pub parent_shutdown_time_s: u64,
    /// Hot restart base id (accepted, not acted on).
    #[arg(long = "base-id", default_value_t = 0)]
    pub base_id: u64,
    /// Hot restart epoch (accepted, not acted on).
    #[arg(long = "restart-epoch", default_value_t = 0)]
    pub restart_epoch: u64,
    /// v4 or v6: the local address family (accepted, not acted on).
    #[arg(long = "local-address-ip-version", default_value = "v4")]
    pub local_address_ip_version: String,
    /// Disable hot restart (always the case in Ferry).
    #[arg(long = "disable-hot-restart")]
    pub disable_hot_restart: bool,
    /// Unknown fields in the static bootstrap are warnings, not errors.
    #[arg(long = "allow-unknown-static-fields")]
    pub allow_unknown_static_fields: bool,
    /// Accepted, not acted on.
    #[arg(long = "reject-unknown-dynamic-fields")]
    pub reject_unknown_dynamic_fields: bool,
    /// Accepted, not acted on.
    #[arg(long = "ignore-unknown-dynamic-fields")]
    pub ignore_unknown_dynamic_fields: bool,
    /// How often buffered access log lines are written out (Envoy's default 10 s).
    #[arg(long = "file-flush-interval-msec", default_value_t = 10_000)]
    pub file_flush_interval_msec: u64,
    /// Access log buffers this large are written out at once (KiB).
    #[arg(long = "file-flush-min-size-kb", default_value_t = 64)]
    pub file_flush_min_size_kb: u64,
    /// Accepted, not acted on.
    #[arg(long = "skip-deprecated-logs")]
    pub skip_deprecated_logs: bool,
    /// Accepted, not acted on.
    #[arg(long = "use-dynamic-base-id")]
    pub use_dynamic_base_id: bool,
    /// Accepted, not acted on.
    #[arg(long = "base-id-path")]
    pub base_id_path: Option<PathBuf>,
    /// Escape newlines in log messages.
    #[arg(long = "log-format-escaped")]
    pub log_format_escaped: bool,
    /// Accepted, not acted on.
    #[arg(long = "enable-fine-grain-logging")]
    pub enable_fine_grain_logging: bool,
    /// Accepted, not acted on.
    #[arg(long = "cpuset-threads")]
    pub cpuset_threads: bool,
    /// Accepted, not acted on.
    #[arg(long = "enable-core-dump")]
    pub enable_core_dump: bool,
    /// Write the admin address to this file once listening.
    #[arg(long = "admin-address-path")]
    pub admin_address_path: Option<PathBuf>,
    /// Print the version and exit.
    #[arg(long = "version", action = clap::ArgAction::SetTrue)]
    pub version: bool,
    /// Print the hot restart compatibility version and exit.
    #[arg(long = "hot-restart-version")]
    pub hot_restart_version: bool,
}
