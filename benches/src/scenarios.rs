//! The scenarios: for each target (a proxy binary, or `direct` to the upstream), start it on a
//! fresh bootstrap, warm up, then measure throughput, cost, latency and memory.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::ValueEnum;

use crate::bootstrap::{mesh_host, static_bootstrap, Ports};
use crate::grpc;
use crate::load::{self, HttpTarget, Proto};
use crate::mtls;
use crate::proxy::{free_port, Proxy};
use crate::results::{Recorder, Sample};
use crate::tcpload;
use crate::upstream::{Upstream, BIG_BODY_LEN, SMALL_BODY};
use crate::window::{proxies_cpu, Cpus, Window};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum Scenario {
    Http1,
    H2,
    Grpc,
    Body64k,
    Tcp,
    Conn,
    Mesh,
    Mtls,
    XdsScale,
    /// Memory per idle keep-alive connection.
    Idle,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Http1 => "http1",
            Scenario::H2 => "h2",
            Scenario::Grpc => "grpc",
            Scenario::Body64k => "body64k",
            Scenario::Tcp => "tcp",
            Scenario::Conn => "conn",
            Scenario::Mesh => "mesh",
            Scenario::Mtls => "mtls",
            Scenario::XdsScale => "xds-scale",
            Scenario::Idle => "idle",
        }
    }
}

/// The knobs every scenario reads.
#[derive(Clone, Debug)]
pub struct Opts {
    pub duration: Duration,
    pub warmup: Duration,
    pub rate: Option<f64>,
    pub rate_fraction: f64,
    pub connections: usize,
    pub h2_connections: usize,
    pub h2_streams: usize,
    pub conn_workers: usize,
    pub tcp_connections: usize,
    pub mesh_size: usize,
    pub max_requests: u64,
    pub idle_connections: usize,
}

/// A thing to measure: a proxy binary, or none (`direct` to the upstream).
#[derive(Clone, Debug)]
pub struct Target {
    pub name: String,
    pub bin: Option<PathBuf>,
    /// Where the binary came from (the report's path; `bin` may be a copy).
    pub source: Option<PathBuf>,
}

pub struct Ctx {
    pub opts: Opts,
    pub upstream: Upstream,
    /// In measuring order: the baseline (whose max rps sets the fixed rate) first.
    pub targets: Vec<Target>,
    pub tmp: PathBuf,
    pub cpus: Option<Cpus>,
    pub nice: i32,
}

/// What the report says about a scenario's set-up.
pub fn describe(sc: Scenario, o: &Opts) -> String {
    let fixed = match o.rate {
        Some(r) => format!("fixed rate {r:.0} req/s"),
        None => format!(
            "fixed rate = {:.0} % of the baseline's max throughput in the same run",
            o.rate_fraction * 100.0
        ),
    };
    match sc {
        Scenario::Http1 => format!("HTTP/1.1 keep-alive, {} connections, GET of a small body; {fixed}.", o.connections),
        Scenario::H2 => format!("h2c (prior knowledge) both sides, {} connections × {} streams, small body; {fixed}.", o.h2_connections, o.h2_streams),
        Scenario::Grpc => format!("gRPC unary over h2c both sides (tonic client, pass-through codec), {} connections × {} streams, a {}-byte request message and a {}-byte reply; a call counts only with HTTP 200, one complete message and `grpc-status: 0` in the trailers; {fixed}.", o.h2_connections, o.h2_streams, grpc::REQUEST.len(), grpc::REPLY.len()),
        Scenario::Body64k => format!("HTTP/1.1 keep-alive, {} connections, 64 KiB response bodies; {fixed}.", o.connections),
        Scenario::Tcp => format!("tcp_proxy to a TCP echo, {} connection(s) writing 64 KiB chunks; Gbit/s of payload echoed back (each byte crosses the proxy twice).", o.tcp_connections),
        Scenario::Conn => format!("a new TCP connection per request (`Connection: close`), {} concurrent clients.", o.conn_workers),
        Scenario::Mesh => format!("as http1, with {} more clusters and {} more virtual hosts (`svc-I.mesh.local`) in the bootstrap; connections spread over those hosts. Compare CPU per request with http1.", o.mesh_size, o.mesh_size),
        Scenario::Mtls => mtls::describe(o, &fixed),
        Scenario::Idle => format!("{} HTTP/1.1 keep-alive connections, each with one request answered, then held open and silent; proxy RSS growth over its idle footprint per connection held (every 100th is asked again at the end to count those still held).", o.idle_connections),
        Scenario::XdsScale => "ADS (state of the world) pushes N EDS clusters and N ClusterLoadAssignments; time from the first CDS response sent until CDS and EDS are both ACKed, and the proxy's peak RSS.".to_string(),
    }
}

/// One run of one scenario over every target.
pub async fn run(
    ctx: &Ctx,
    sc: Scenario,
    run: usize,
    samples: &mut Vec<Sample>,
    notes: &mut Vec<String>,
) {
    let mut baseline_rps: Option<f64> = None;
    for target in &ctx.targets {
        if matches!(sc, Scenario::Mesh | Scenario::Mtls | Scenario::Idle) && target.bin.is_none() {
            continue; // the same as http1 without a proxy
        }
        let mut rec = Recorder {
            samples,
            run,
            scenario: sc.name().to_string(),
            target: target.name.clone(),
        };
        eprintln!("  run {run} {} {}", sc.name(), target.name);
        match measure(ctx, sc, target, run, &mut rec, baseline_rps).await {
            Ok(rps) => {
                if baseline_rps.is_none() {
                    baseline_rps = rps;
                }
            }
            Err(e) => {
                let msg = format!("run {run}, {}, {}: {e:#}", sc.name(), target.name);
                eprintln!("  ! {msg}");
                notes.push(msg);
            }
        }
        // Let closed sockets settle between targets.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Measures one target; returns its max rps (HTTP scenarios) for the fixed-rate baseline.
async fn measure(
    ctx: &Ctx,
    sc: Scenario,
    target: &Target,
    run: usize,
    rec: &mut Recorder<'_>,
    baseline_rps: Option<f64>,
) -> Result<Option<f64>> {
    if sc == Scenario::Mtls {
        let bin = target.bin.as_deref().context("mtls needs a proxy")?;
        return mtls::measure(ctx, bin, &target.name, run, rec, baseline_rps)
            .await
            .map(Some);
    }
    let mut proxy = None;
    let (http, tcp) = match &target.bin {
        None => (ctx.upstream.http, ctx.upstream.echo),
        Some(bin) => {
            let ports = Ports {
                admin: free_port()?,
                http: free_port()?,
                tcp: free_port()?,
            };
            let mesh = if sc == Scenario::Mesh {
                ctx.opts.mesh_size
            } else {
                0
            };
            let yaml = static_bootstrap(&ports, &ctx.upstream, mesh);
            let path = ctx
                .tmp
                .join(format!("{}-{}-run{run}.yaml", sc.name(), target.name));
            std::fs::write(&path, yaml)?;
            let admin = SocketAddr::from(([127, 0, 0, 1], ports.admin));
            let mut p = Proxy::start(bin, &path, admin, ctx.cpus.map(|c| c.proxy), ctx.nice)?;
            p.wait_ready(Duration::from_secs(60)).await?;
            // Give the workers a moment after /ready, then take the idle footprint.
            tokio::time::sleep(Duration::from_millis(300)).await;
            let (rss, _) = p.memory_kib();
            rec.put("rss_idle_mib", rss as f64 / 1024.0);
            let at = |port| SocketAddr::from(([127, 0, 0, 1], port));
            proxy = Some(p);
            (at(ports.http), at(ports.tcp))
        }
    };
    let proxies: Vec<&Proxy> = proxy.iter().collect();
    let rps = match sc {
        Scenario::Tcp => {
            measure_tcp(ctx, rec, &proxies, tcp).await?;
            None
        }
        Scenario::Conn => {
            measure_conn(ctx, rec, &proxies, http).await?;
            None
        }
        Scenario::Idle => {
            let p = proxies.first().context("idle needs a proxy")?;
            crate::idle::measure(rec, p, http, ctx.opts.idle_connections).await?;
            None
        }
        _ => Some(measure_http(ctx, sc, rec, &proxies, http, baseline_rps).await?),
    };
    if let Some(p) = proxy.as_mut() {
        if let Some(how) = p.exited() {
            bail!("the proxy exited during the load: {how}");
        }
        let (_, hwm) = p.memory_kib();
        rec.put("rss_peak_mib", hwm as f64 / 1024.0);
    }
    Ok(rps)
}

/// Max throughput, then latency at the fixed rate; CPU summed over `proxies` (none for
/// `direct`). Returns the max rps.
pub async fn measure_http(
    ctx: &Ctx,
    sc: Scenario,
    rec: &mut Recorder<'_>,
    proxies: &[&Proxy],
    addr: SocketAddr,
    baseline_rps: Option<f64>,
) -> Result<f64> {
    let o = &ctx.opts;
    let (proto, connections, path) = match sc {
        Scenario::H2 => (Proto::H2, o.h2_connections, "/h2/"),
        Scenario::Grpc => (Proto::Grpc, o.h2_connections, grpc::METHOD),
        Scenario::Body64k => (Proto::H1, o.connections, "/64k"),
        _ => (Proto::H1, o.connections, "/"),
    };
    let hosts = if sc == Scenario::Mesh {
        (0..connections)
            .map(|i| mesh_host(i, o.mesh_size))
            .collect()
    } else {
        vec!["bench.local".to_string()]
    };
    let target = HttpTarget {
        addr,
        proto,
        connections,
        streams: o.h2_streams,
        path: path.to_string(),
        hosts,
    };
    load::closed(&target, o.warmup, o.max_requests).await?;

    let w = Window::start(proxies, ctx.cpus);
    let max = load::closed(&target, o.duration, o.max_requests).await?;
    let used = w.finish(proxies, ctx.cpus, rec);
    if max.requests == 0 {
        bail!("no request succeeded ({} errors)", max.errors);
    }
    let expected = match sc {
        Scenario::Body64k => BIG_BODY_LEN,
        Scenario::Grpc => grpc::REPLY.len(),
        _ => SMALL_BODY.len(),
    } as u64;
    if max.bytes != max.requests * expected {
        bail!(
            "response bodies averaged {} bytes, expected {expected}",
            max.bytes / max.requests
        );
    }
    rec.put("rps", max.rps());
    if !proxies.is_empty() {
        rec.put("cpu_us_per_req", used / max.requests as f64 * 1e6);
    }

    let rate = o
        .rate
        .unwrap_or(baseline_rps.unwrap_or(max.rps()) * o.rate_fraction);
    let c0 = proxies_cpu(proxies);
    let fixed = load::open(&target, rate, o.duration, o.max_requests).await?;
    let c1 = proxies_cpu(proxies);
    rec.put("rate", fixed.rps());
    for (key, q) in [
        ("p50_us", 0.5),
        ("p90_us", 0.9),
        ("p99_us", 0.99),
        ("p999_us", 0.999),
    ] {
        rec.put(key, fixed.hist.value_at_quantile(q) as f64 / 1000.0);
    }
    rec.put("max_us", fixed.hist.max() as f64 / 1000.0);
    if !proxies.is_empty() && fixed.requests > 0 {
        rec.put(
            "cpu_us_per_req_fixed",
            (c1 - c0) / fixed.requests as f64 * 1e6,
        );
    }
    rec.put("errors", (max.errors + fixed.errors) as f64);
    Ok(max.rps())
}

async fn measure_tcp(
    ctx: &Ctx,
    rec: &mut Recorder<'_>,
    proxies: &[&Proxy],
    addr: SocketAddr,
) -> Result<()> {
    let o = &ctx.opts;
    tcpload::throughput(addr, o.tcp_connections, o.warmup).await?;
    let w = Window::start(proxies, ctx.cpus);
    let r = tcpload::throughput(addr, o.tcp_connections, o.duration).await?;
    let used = w.finish(proxies, ctx.cpus, rec);
    rec.put("gbps", r.gbit_per_s());
    if !proxies.is_empty() {
        rec.put(
            "cpu_s_per_gib",
            used / (r.bytes as f64 / (1u64 << 30) as f64),
        );
    }
    Ok(())
}

async fn measure_conn(
    ctx: &Ctx,
    rec: &mut Recorder<'_>,
    proxies: &[&Proxy],
    addr: SocketAddr,
) -> Result<()> {
    let o = &ctx.opts;
    tcpload::conn_rate(addr, o.conn_workers, o.warmup, o.max_requests, None).await?;
    let w = Window::start(proxies, ctx.cpus);
    let r = tcpload::conn_rate(addr, o.conn_workers, o.duration, o.max_requests, None).await?;
    let used = w.finish(proxies, ctx.cpus, rec);
    if r.connections == 0 {
        bail!("no connection succeeded ({} errors)", r.errors);
    }
    rec.put("conn_per_s", r.per_second());
    rec.put(
        "conn_p99_us",
        r.hist.value_at_quantile(0.99) as f64 / 1000.0,
    );
    if !proxies.is_empty() {
        rec.put("cpu_us_per_conn", used / r.connections as f64 * 1e6);
    }
    rec.put("errors", r.errors as f64);
    Ok(())
}
