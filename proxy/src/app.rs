//! Wiring: CLI → bootstrap → validated config → snapshot → listeners and admin; signals,
//! drain and exit.

use crate::cli::{Cli, Mode};
use crate::cluster::ClusterRt;
use crate::config::bootstrap::Bootstrap;
use crate::config::load;
use crate::snapshot::{Server, ServerState, Snapshot};
use clap::Parser;
use prost_reflect::{DynamicMessage, Value};
use std::process::ExitCode;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::prelude::*;
use tracing_subscriber::reload;

type LogHandle = reload::Handle<LevelFilter, tracing_subscriber::Registry>;
static LOG: OnceLock<LogHandle> = OnceLock::new();

pub fn main() -> ExitCode {
    main_with(std::env::args_os())
}

/// Runs Ferry with this command line (`args[0]` is the program name): the binary's `main`, and
/// the HTTP fuzz target's in-process proxy.
pub fn main_with<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = Cli::parse_from(args);
    if cli.version {
        println!(
            "ferry  version: {}/{}/Clean/RELEASE/rustls",
            env!("CARGO_PKG_NAME"),
            crate::VERSION
        );
        return ExitCode::SUCCESS;
    }
    if cli.hot_restart_version {
        println!("disabled");
        return ExitCode::SUCCESS;
    }
    let level = match parse_level(&cli.log_level) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    init_logging(level);
    crate::access_log::sink::configure(
        Duration::from_millis(cli.file_flush_interval_msec),
        cli.file_flush_min_size_kb * 1024,
    );
    let shown = cli
        .config_path
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let bootstrap = match build_bootstrap(&cli) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error initializing configuration '{shown}': {e}");
            return ExitCode::from(1);
        }
    };
    if let Err(e) = apply_log_format(&cli, &bootstrap) {
        eprintln!("error initializing configuration '{shown}': {e}");
        return ExitCode::from(1);
    }
    if cli.mode == Mode::Validate {
        for i in &bootstrap.ignored {
            println!("accepted, not acted on: {}", i.path);
        }
        println!("configuration '{shown}' OK");
        return ExitCode::SUCCESS;
    }
    for i in &bootstrap.ignored {
        tracing::info!("accepted, not acted on: {}", i.path);
    }
    let concurrency = cli
        .concurrency
        .filter(|c| *c > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(concurrency)
        .enable_all()
        .thread_name("ferry-worker")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let code = rt.block_on(serve(cli, bootstrap, concurrency));
    rt.shutdown_timeout(Duration::from_millis(100));
    code
}

/// `--log-format` or the bootstrap's `application_log_config` (Envoy refuses both at once).
fn apply_log_format(cli: &Cli, bootstrap: &Bootstrap) -> Result<(), String> {
    use crate::logfmt::{set, LogFormat, Pattern};
    let format = match (&cli.log_format, &bootstrap.log_format) {
        (Some(_), Some(_)) => {
            return Err("Only one of ApplicationLogConfig.log_format or CLI option --log-format can be specified.".into())
        }
        (Some(p), None) => LogFormat::Text(Pattern::parse(p)?),
        (None, Some(f)) => f.clone(),
        (None, None) => LogFormat::Text(Pattern::parse(crate::logfmt::DEFAULT)?),
    };
    set(format, cli.log_format_escaped);
    Ok(())
}

/// File + `--config-yaml` → checked dynamic message (with the CLI's node overrides) → config.
fn build_bootstrap(cli: &Cli) -> crate::config::Result<Bootstrap> {
    if cli.config_path.is_none() && cli.config_yaml.is_none() {
        return crate::config::err(
            "",
            "at least one of --config-path or --config-yaml is required",
        );
    }
    let mut raw = load::bootstrap(
        cli.config_path.as_deref(),
        cli.config_yaml.as_deref(),
        cli.allow_unknown_static_fields,
    )?;
    override_node(&mut raw, cli);
    Bootstrap::from_dynamic(raw)
}

fn override_node(raw: &mut DynamicMessage, cli: &Cli) {
    if cli.service_node.is_none() && cli.service_cluster.is_none() && cli.service_zone.is_none() {
        return;
    }
    let mut node = match raw.get_field_by_name("node").as_deref() {
        Some(Value::Message(m)) => m.clone(),
        _ => DynamicMessage::new(load::descriptor("envoy.config.core.v3.Node")),
    };
    if let Some(id) = &cli.service_node {
        node.set_field_by_name("id", Value::String(id.clone()));
    }
    if let Some(c) = &cli.service_cluster {
        node.set_field_by_name("cluster", Value::String(c.clone()));
    }
    if let Some(z) = &cli.service_zone {
        let mut loc = match node.get_field_by_name("locality").as_deref() {
            Some(Value::Message(m)) => m.clone(),
            _ => DynamicMessage::new(load::descriptor("envoy.config.core.v3.Locality")),
        };
        loc.set_field_by_name("zone", Value::String(z.clone()));
        node.set_field_by_name("locality", Value::Message(loc));
    }
    raw.set_field_by_name("node", Value::Message(node));
}

async fn serve(cli: Cli, bootstrap: Bootstrap, concurrency: usize) -> ExitCode {
    crate::stats::configure(bootstrap.stats.clone());
    let bootstrap = Arc::new(bootstrap);
    for (name, secret) in &bootstrap.secrets {
        crate::tls::secrets::store().set(name, Some(secret.clone()), "");
    }
    crate::trace::init(
        crate::trace::Local {
            node_id: bootstrap.node.id.clone(),
            service: bootstrap.node.cluster.clone(),
            zone: bootstrap.node.locality.zone.clone(),
            ip: crate::util::local_address(),
        },
        bootstrap.tracer.clone(),
    );
    for s in &bootstrap.sinks.statsd {
        crate::stats::statsd::start(s, bootstrap.sinks.flush_interval);
    }
    if let Some(path) = &bootstrap.outlier_event_log {
        crate::cluster::outlier_log::open(path);
    }
    if let Some(local) = &bootstrap.local_cluster {
        crate::cluster::zone::set_local(local.clone(), bootstrap.node.locality.clone());
    }
    let mut snapshot = Snapshot::default();
    for c in &bootstrap.clusters {
        snapshot
            .clusters
            .insert(c.name.clone(), ClusterRt::new(c.clone()));
    }
    // DNS clusters warm before listeners serve, as Envoy's cluster manager initialises first.
    let warm = futures_join(snapshot.clusters.values().cloned().collect());
    let _ = tokio::time::timeout(Duration::from_secs(5), warm).await;
    for c in snapshot.clusters.values() {
        c.start();
    }
    // Health-checked clusters warm until each host has had its first check, as Envoy's do.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !snapshot.clusters.values().all(|c| c.health_warmed())
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let server = Server::new(bootstrap.clone(), snapshot, concurrency, cli.clone());
    crate::overload::start(bootstrap.overload.as_ref());
    // Secrets of separate SDS servers named by static listeners and clusters.
    let refs: Vec<_> = bootstrap
        .listeners
        .iter()
        .flat_map(|l| crate::tls::sds::listener_refs(l))
        .chain(
            bootstrap
                .clusters
                .iter()
                .flat_map(crate::tls::sds::cluster_refs),
        )
        .collect();
    crate::tls::sds::clients().want(&server, &refs);

    if let Some(addr) = bootstrap.admin {
        match crate::listener::bind(addr) {
            Ok(l) => {
                if let (Some(p), Ok(a)) = (&cli.admin_address_path, l.local_addr()) {
                    let _ = std::fs::write(p, a.to_string());
                }
                crate::admin::spawn(server.clone(), l, bootstrap.admin_access_logs.clone());
            }
            Err(e) => {
                eprintln!("error: cannot bind the admin address {addr}: {e}");
                return ExitCode::from(1);
            }
        }
    }
    // Dynamic configuration first: Envoy serves once the initial CDS/LDS responses are in, or
    // once initial_fetch_timeout has passed (0s: wait for ever).
    if bootstrap.dynamic.is_some() {
        server.set_state(ServerState::PreInitializing);
    }
    if let Some(x) = crate::xds::XdsState::start(&server) {
        let _ = server.xds.set(x.clone());
        let mut init = x.initialized.subscribe();
        let wait = init.wait_for(|done| *done);
        match bootstrap
            .dynamic
            .as_ref()
            .and_then(|d| d.initial_fetch_timeout)
        {
            Some(t) => {
                if tokio::time::timeout(t, wait).await.is_err() {
                    tracing::warn!(
                        "initial xDS fetch timed out after {t:?}; serving what is known"
                    );
                }
            }
            None => {
                let _ = wait.await;
            }
        }
    }
    let errors = server
        .listeners
        .apply(&server, &server.bootstrap.listeners, false);
    if let Some((name, e)) = errors.first() {
        eprintln!("error: listener '{name}': {e}");
        return ExitCode::from(1);
    }
    server.set_state(ServerState::Live);
    if server.xds.get().is_none() {
        // A static configuration has been read in full: the pool can go now.
        ferry_xds::pool::release_if_idle(Duration::ZERO);
    }
    release_startup_memory();
    // The API's descriptor pool is only needed while configuration is read: keep it only
    // while it is in use.
    tokio::spawn(async {
        loop {
            tokio::time::sleep(Duration::from_secs(10)).await;
            if ferry_xds::pool::release_if_idle(Duration::from_secs(20)) {
                release_startup_memory();
            }
        }
    });
    tracing::info!(
        listeners = server.bootstrap.listeners.len(),
        clusters = server.bootstrap.clusters.len(),
        "ferry is live"
    );
    if cli.mode == Mode::InitOnly {
        return ExitCode::SUCCESS;
    }
    wait_for_exit(&server, Duration::from_secs(cli.drain_time_s)).await
}

/// Loading the configuration allocates far more than the running proxy keeps; hand the freed
/// heap back to the OS so that idle RSS reflects what Ferry holds.
fn release_startup_memory() {
    // SAFETY: malloc_trim only releases free heap pages; it has no preconditions.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    unsafe {
        libc::malloc_trim(0);
    }
}

async fn futures_join(clusters: Vec<Arc<ClusterRt>>) {
    let mut set = tokio::task::JoinSet::new();
    for c in clusters {
        set.spawn(async move { c.resolve_once().await });
    }
    while set.join_next().await.is_some() {}
}

/// SIGINT and `/quitquitquit` exit at once; SIGTERM drains (listeners close, connections are
/// asked to finish) for at most the drain time, then exits.
async fn wait_for_exit(server: &Arc<Server>, drain_time: Duration) -> ExitCode {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        eprintln!("error: cannot install signal handlers");
        return ExitCode::from(1);
    };
    let mut quit = server.quit.subscribe();
    tokio::select! {
        _ = int.recv() => tracing::info!("SIGINT: exiting"),
        _ = quit.wait_for(|q| *q) => tracing::info!("quitquitquit: exiting"),
        _ = term.recv() => {
            tracing::info!("SIGTERM: draining for at most {drain_time:?}");
            server.set_state(ServerState::Draining);
            let _ = server.stop_listeners.send(Some((false, false)));
            let _ = server.drain.send(true);
            let deadline = tokio::time::Instant::now() + drain_time;
            let mut quit = server.quit.subscribe();
            while server.stats.total_connections.get() > 0 && tokio::time::Instant::now() < deadline {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                    _ = int.recv() => break,
                    _ = quit.wait_for(|q| *q) => break,
                }
            }
        }
    }
    crate::access_log::sink::flush_all();
    ExitCode::SUCCESS
}

/// `/drain_listeners`: stop accepting; with `graceful`, first ask connections to finish for
/// the drain time.
pub fn drain_listeners(server: &Arc<Server>, graceful: bool, inbound_only: bool) {
    if graceful {
        // Envoy keeps reporting LIVE through a graceful listener drain.
        let _ = server.drain.send(true);
        let s = server.clone();
        let wait = Duration::from_secs(s.cli.drain_time_s);
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            let _ = s.stop_listeners.send(Some((true, inbound_only)));
        });
    } else {
        let _ = server.stop_listeners.send(Some((false, inbound_only)));
    }
}

/// Envoy's (spdlog's) name for a level given on the command line.
pub fn level_name(s: &str) -> String {
    match s.to_ascii_lowercase().as_str() {
        "warn" => "warning".into(),
        other => other.into(),
    }
}

fn parse_level(s: &str) -> Result<LevelFilter, String> {
    Ok(match s.to_ascii_lowercase().as_str() {
        "trace" => LevelFilter::TRACE,
        "debug" => LevelFilter::DEBUG,
        "info" => LevelFilter::INFO,
        "warning" | "warn" => LevelFilter::WARN,
        "error" | "critical" => LevelFilter::ERROR,
        "off" => LevelFilter::OFF,
        other => return Err(format!("invalid log level '{other}'")),
    })
}

fn init_logging(level: LevelFilter) {
    let (filter, handle) = reload::Layer::new(level);
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .event_format(crate::logfmt::EnvoyFormat);
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .try_init();
    let _ = LOG.set(handle);
}

pub fn set_log_level(level: &str) -> Result<(), String> {
    let l = parse_level(level)?;
    LOG.get()
        .ok_or("logging is not initialised")?
        .modify(|f| *f = l)
        .map_err(|e| e.to_string())
}

fn current_level() -> String {
    let l = LOG
        .get()
        .and_then(|h| h.clone_current())
        .unwrap_or(LevelFilter::INFO);
    match l {
        LevelFilter::OFF => "off".into(),
        LevelFilter::WARN => "warning".into(),
        other => other.to_string().to_ascii_lowercase(),
    }
}

const COMPONENTS: &[&str] = &[
    "admin",
    "config",
    "connection",
    "conn_handler",
    "filter",
    "http",
    "http2",
    "main",
    "pool",
    "router",
    "runtime",
    "upstream",
];

pub fn loggers_text() -> String {
    let level = current_level();
    let mut out = String::from("active loggers:\n");
    for c in COMPONENTS {
        out.push_str(&format!("  {c}: {level}\n"));
    }
    out
}
