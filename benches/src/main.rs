//! `ferry-bench`: a sidecar-realistic load benchmark running Ferry and Envoy (or any two
//! Envoy-compatible binaries) side by side on the same bootstrap, with its own load generator
//! and upstream. The proxy is pinned to one CPU, the generator and upstream to another.
//! Writes `benches/results/<UTC date-time>.{md,json,png}` and prints the markdown.
//! All traffic is to 127.0.0.1; every loop is bounded in time and count.

mod bootstrap;
mod certs;
mod grpc;
mod idle;
mod load;
mod mtls;
mod plot;
mod priority;
mod proxy;
mod report;
mod results;
mod scenarios;
mod targets;
mod tcpload;
#[cfg(test)]
mod tests;
mod upstream;
mod window;
mod xds_scale;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use clap::Parser;

use scenarios::{Ctx, Opts, Scenario};

#[derive(Parser, Debug)]
#[command(
    name = "ferry-bench",
    about = "Load benchmark: Ferry vs Envoy, side by side"
)]
pub struct Args {
    /// Baseline proxy binary (default: $ENVOY_BIN, else /opt/envoy-venv/…/envoy/_bin/envoy, else target/envoy-bin's path)
    #[arg(long)]
    pub envoy: Option<PathBuf>,
    /// Candidate proxy binary (default: $FERRY_BIN, else target/release/ferry, built if missing)
    #[arg(long)]
    pub ferry: Option<PathBuf>,
    /// Targets to measure (direct: load generator straight to the upstream)
    #[arg(long, value_delimiter = ',', default_value = "direct,envoy,ferry")]
    pub targets: Vec<String>,
    /// Scenarios (default: all; with --quick: http1,h2,tcp,conn)
    #[arg(long = "scenario", value_enum, value_delimiter = ',')]
    pub scenarios: Vec<Scenario>,
    /// Repetitions; the report shows the median and min–max (default 3; 1 with --quick)
    #[arg(long)]
    pub runs: Option<usize>,
    /// CI smoke run: short windows, 1 run, fewer scenarios; under 2 minutes
    #[arg(long)]
    pub quick: bool,
    /// Seconds per measured window (default 5; 2 with --quick)
    #[arg(long)]
    pub duration: Option<f64>,
    /// Seconds of warm-up before measuring (default 1; 0.5 with --quick)
    #[arg(long)]
    pub warmup: Option<f64>,
    /// Fixed rate for the latency measurement, req/s (default: --rate-fraction of the baseline's max)
    #[arg(long)]
    pub rate: Option<f64>,
    #[arg(long, default_value_t = 0.5)]
    pub rate_fraction: f64,
    /// HTTP/1.1 keep-alive connections
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    #[arg(long, default_value_t = 4)]
    pub h2_connections: usize,
    /// Concurrent streams per h2 connection
    #[arg(long, default_value_t = 16)]
    pub h2_streams: usize,
    /// Concurrent clients in the new-connection scenario
    #[arg(long, default_value_t = 16)]
    pub conn_workers: usize,
    #[arg(long, default_value_t = 1)]
    pub tcp_connections: usize,
    /// Extra clusters and virtual hosts in the mesh scenario
    #[arg(long, default_value_t = 1000)]
    pub mesh_size: usize,
    /// Connections held open in the idle scenario
    #[arg(long, default_value_t = 10_000)]
    pub idle_connections: usize,
    /// Cluster counts for xds-scale
    #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
    pub xds_sizes: Vec<usize>,
    /// Seconds a proxy gets to ACK CDS and EDS in xds-scale
    #[arg(long, default_value_t = 60)]
    pub xds_timeout: u64,
    /// Upper bound on requests (or connections) per measured window
    #[arg(long, default_value_t = 50_000_000)]
    pub max_requests: u64,
    /// Output directory (default: benches/results)
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[arg(long)]
    pub no_plot: bool,
    /// CPU for the proxy
    #[arg(long, default_value_t = 0)]
    pub proxy_cpu: usize,
    /// CPU for the load generator and upstream
    #[arg(long, default_value_t = 1)]
    pub load_cpu: usize,
    /// Nice value for the proxy and the load generator (negative: ahead of other work on a
    /// shared machine; needs root or CAP_SYS_NICE; 0 leaves it)
    #[arg(long, default_value_t = -10, allow_hyphen_values = true)]
    pub nice: i32,
}

fn main() -> ExitCode {
    let mut args = Args::parse();
    // The idle scenario holds 10,000 client sockets here (and the upstream's own): raise the
    // descriptor limit as far as allowed.
    // SAFETY: setrlimit only reads the struct given.
    unsafe {
        let files = libc::rlimit {
            rlim_cur: 65_536,
            rlim_max: 65_536,
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &files) != 0 {
            let mut cur = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut cur) == 0 {
                cur.rlim_cur = cur.rlim_max;
                libc::setrlimit(libc::RLIMIT_NOFILE, &cur);
            }
        }
    }
    let from_env = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    args.envoy = args.envoy.or_else(|| from_env("ENVOY_BIN"));
    args.ferry = args.ferry.or_else(|| from_env("FERRY_BIN"));
    if let Some(code) = priority::reexec_in_own_session(args.nice) {
        return code;
    }
    match real_main(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ferry-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn real_main(args: Args) -> Result<()> {
    let started = SystemTime::now();
    let clock = Instant::now();
    let root = targets::workspace_root();
    let quick = args.quick;
    let mut scenarios = if !args.scenarios.is_empty() {
        args.scenarios.clone()
    } else if quick {
        vec![Scenario::Http1, Scenario::H2, Scenario::Tcp, Scenario::Conn]
    } else {
        vec![
            Scenario::Http1,
            Scenario::H2,
            Scenario::Grpc,
            Scenario::Body64k,
            Scenario::Tcp,
            Scenario::Conn,
            Scenario::Mesh,
            Scenario::Mtls,
            Scenario::Idle,
            Scenario::XdsScale,
        ]
    };
    scenarios.dedup();
    let runs = args.runs.unwrap_or(if quick { 1 } else { 3 }).max(1);
    let secs = |v: Option<f64>, quick_v: f64, full_v: f64| {
        Duration::from_secs_f64(v.unwrap_or(if quick { quick_v } else { full_v }).max(0.1))
    };
    let opts = Opts {
        duration: secs(args.duration, 2.0, 5.0),
        warmup: secs(args.warmup, 0.5, 1.0),
        rate: args.rate,
        rate_fraction: args.rate_fraction,
        connections: args.connections.max(1),
        h2_connections: args.h2_connections.max(1),
        h2_streams: args.h2_streams.max(1),
        conn_workers: args.conn_workers.max(1),
        tcp_connections: args.tcp_connections.max(1),
        mesh_size: args.mesh_size.max(1),
        idle_connections: args.idle_connections.max(1),
        max_requests: args.max_requests,
    };

    let tmp = std::env::temp_dir().join(format!("ferry-bench-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    let targets = targets::resolve(&args, &root, &tmp)?;
    let versions: Vec<(String, String, String)> = targets
        .iter()
        .map(|t| match (&t.bin, &t.source) {
            (Some(b), Some(src)) => (
                t.name.clone(),
                src.display().to_string(),
                targets::version(b),
            ),
            _ => (t.name.clone(), String::new(), String::new()),
        })
        .collect();

    let cpus = proxy::usable_cpus();
    let (pinned, mut pinning) = if cpus >= 2 {
        proxy::set_affinity(0, args.load_cpu).context("pin the load generator")?;
        (
            Some(window::Cpus {
                proxy: args.proxy_cpu,
                load: args.load_cpu,
            }),
            format!(
                "proxy (--concurrency 1) pinned to CPU {}, load generator + upstream to CPU {}",
                args.proxy_cpu, args.load_cpu
            ),
        )
    } else {
        (
            None,
            "one CPU only: nothing pinned (proxy and load share it)".to_string(),
        )
    };
    let mut nice = args.nice;
    let set = priority::set_autogroup_nice("self", nice).and_then(|()| priority::set_nice(nice));
    if let Err(e) = set {
        eprintln!("ferry-bench: cannot set nice {nice} ({e}); running at the default priority");
        nice = 0;
    }
    pinning.push_str(&format!("; nice {nice}"));
    let loadavg_start = loadavg();
    eprintln!("ferry-bench: {runs} run(s); {pinning}");

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut samples = Vec::new();
    let mut notes = Vec::new();
    let described: Vec<(String, String)> = rt.block_on(async {
        let upstream = upstream::Upstream::start().await?;
        let ctx = Ctx {
            opts: opts.clone(),
            upstream,
            targets: targets.clone(),
            tmp: tmp.clone(),
            cpus: pinned,
            nice,
        };
        let mut xds = xds_scale::XdsState::default();
        for run in 1..=runs {
            for &sc in &scenarios {
                if sc == Scenario::XdsScale {
                    let timeout = Duration::from_secs(args.xds_timeout);
                    xds_scale::run(
                        &ctx,
                        &args.xds_sizes,
                        timeout,
                        run,
                        &mut xds,
                        &mut samples,
                        &mut notes,
                    )
                    .await;
                } else {
                    scenarios::run(&ctx, sc, run, &mut samples, &mut notes).await;
                }
            }
        }
        let mut described = Vec::new();
        for &sc in &scenarios {
            let desc = scenarios::describe(sc, &opts);
            if sc == Scenario::XdsScale {
                for n in &args.xds_sizes {
                    described.push((format!("xds-scale-{n}"), format!("N = {n}. {desc}")));
                }
            } else if sc == Scenario::Mtls {
                described.push((sc.name().to_string(), desc));
                described.push((
                    mtls::HANDSHAKES.to_string(),
                    mtls::describe_handshakes(&opts),
                ));
            } else {
                described.push((sc.name().to_string(), desc));
            }
        }
        anyhow::Ok(described)
    })?;
    drop(rt);
    results::derive_mesh_ratio(&mut samples);
    notes.extend(report::caveats(&samples));

    let (started_utc, stamp) = report::utc(started);
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| root.join("benches/results"));
    std::fs::create_dir_all(&out).with_context(|| format!("create {}", out.display()))?;
    let mut meta = report::Meta {
        started_utc,
        command: std::env::args().collect::<Vec<_>>().join(" "),
        machine: targets::machine(cpus),
        pinning,
        targets: versions,
        runs,
        loadavg_start,
        loadavg_end: loadavg(),
        wall_s: clock.elapsed().as_secs_f64(),
        scenarios: described,
        notes,
        plot: None,
    };
    let latency_scenarios = [
        Scenario::Http1,
        Scenario::H2,
        Scenario::Grpc,
        Scenario::Body64k,
        Scenario::Mesh,
        Scenario::Mtls,
    ];
    if !args.no_plot && scenarios.iter().any(|s| latency_scenarios.contains(s)) {
        let png = out.join(format!("{stamp}.png"));
        let panels: Vec<String> = ["http1", "h2", "grpc", "body64k", "mesh", "mtls"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let names: Vec<String> = targets.iter().map(|t| t.name.clone()).collect();
        match plot::latency(&png, &samples, &panels, &names) {
            Ok(text) => {
                meta.plot = Some(format!("{stamp}.png"));
                if !text {
                    let legend: Vec<String> = names
                        .iter()
                        .zip(plot::COLOURS.iter())
                        .map(|(n, (c, _))| format!("{n} = {c}"))
                        .collect();
                    meta.notes.push(format!(
                        "the plot has no text (no TrueType font found): x = p50, p90, p99, p99.9, max; y = µs (log); {}",
                        legend.join(", ")
                    ));
                }
            }
            Err(e) => meta.notes.push(format!("no plot: {e:#}")),
        }
    }
    let md = report::markdown(&meta, &samples);
    let md_path = out.join(format!("{stamp}.md"));
    std::fs::write(&md_path, &md)?;
    let json_path = out.join(format!("{stamp}.json"));
    std::fs::write(
        &json_path,
        serde_json::to_string_pretty(&report::json(&meta, &samples))?,
    )?;
    println!("{md}");
    eprintln!(
        "ferry-bench: wrote {} and {} in {:.0} s",
        md_path.display(),
        json_path.display(),
        meta.wall_s
    );
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(())
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}
