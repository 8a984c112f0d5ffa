//! The mtls scenario: two sidecars of the same proxy with mTLS between them, as in a mesh.
//! load generator → plaintext HTTP/1.1 → client sidecar → mTLS → server sidecar → upstream.
//! Both sidecars are pinned to the proxy CPU (one core for the pair, as the harness gives one
//! proxy elsewhere); their CPU time and memory are summed.
//!
//! Then the handshake rate: the load generator plays a client sidecar straight to the server
//! sidecar, one full mTLS handshake and one request per connection (recorded under the
//! scenario key `mtls-handshakes`).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Result};
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;

use crate::bootstrap::{mtls_client_bootstrap, mtls_server_bootstrap};
use crate::certs::{self, MeshCerts};
use crate::proxy::{free_port, Proxy};
use crate::results::Recorder;
use crate::scenarios::{measure_http, Ctx, Opts, Scenario};
use crate::tcpload::{self, Tls};
use crate::window::Window;

/// The scenario key of the handshake-rate figures.
pub const HANDSHAKES: &str = "mtls-handshakes";

pub fn describe(o: &Opts, fixed: &str) -> String {
    format!(
        "mTLS between two sidecars of the same proxy, Istio's shape: HTTP/1.1 keep-alive, {} connections → client sidecar → mTLS (TLS 1.2–1.3, ECDSA P-256 certificates of one CA with SPIFFE URI SANs, the server's identity checked exactly and the client's by namespace prefix, ALPN `istio-http/1.1`) → server sidecar → upstream; small body; {fixed}. Both sidecars (`--concurrency 1` each) share the proxy CPU; proxy CPU and RSS are the two summed.",
        o.connections
    )
}

pub fn describe_handshakes(o: &Opts) -> String {
    format!(
        "The load generator as a client sidecar straight to the mtls scenario's server sidecar: {} concurrent clients, each connection a full mTLS handshake (client certificate, Istio's ALPN, no session resumption) and one GET with `Connection: close`; a handshake counts only with HTTP 200. CPU is the server sidecar's. The generator's side of a handshake costs about as much as the proxy's, so compare CPU per handshake.",
        o.conn_workers
    )
}

fn at(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Starts the pair of `bin` sidecars, measures, stops them. Returns the max rps.
pub async fn measure(
    ctx: &Ctx,
    bin: &Path,
    name: &str,
    run: usize,
    rec: &mut Recorder<'_>,
    baseline_rps: Option<f64>,
) -> Result<f64> {
    let dir = ctx.tmp.join(format!("mtls-{name}-run{run}"));
    let mesh = MeshCerts::generate()?;
    let files = mesh.write(&dir)?;
    let (server_admin, server_port) = (free_port()?, free_port()?);
    let (client_admin, client_port) = (free_port()?, free_port()?);
    let server_yaml = dir.join("server.yaml");
    let client_yaml = dir.join("client.yaml");
    std::fs::write(
        &server_yaml,
        mtls_server_bootstrap(server_admin, server_port, &ctx.upstream, &files.server),
    )?;
    std::fs::write(
        &client_yaml,
        mtls_client_bootstrap(client_admin, client_port, at(server_port), &files.client),
    )?;
    let cpu = ctx.cpus.map(|c| c.proxy);
    let mut server = Proxy::start(bin, &server_yaml, at(server_admin), cpu, ctx.nice)?;
    let mut client = Proxy::start(bin, &client_yaml, at(client_admin), cpu, ctx.nice)?;
    server.wait_ready(Duration::from_secs(60)).await?;
    client.wait_ready(Duration::from_secs(60)).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss = |p: &Proxy| p.memory_kib();
    rec.put(
        "rss_idle_mib",
        (rss(&server).0 + rss(&client).0) as f64 / 1024.0,
    );

    let rps = measure_http(
        ctx,
        Scenario::Mtls,
        rec,
        &[&client, &server],
        at(client_port),
        baseline_rps,
    )
    .await?;

    let main = std::mem::replace(&mut rec.scenario, HANDSHAKES.to_string());
    let handshakes = handshakes(ctx, rec, &server, at(server_port), &mesh).await;
    rec.scenario = main;

    for (side, p) in [("server", &mut server), ("client", &mut client)] {
        if let Some(how) = p.exited() {
            bail!("the {side} sidecar exited during the load: {how}");
        }
    }
    rec.put(
        "rss_peak_mib",
        (rss(&server).1 + rss(&client).1) as f64 / 1024.0,
    );
    handshakes?;
    Ok(rps)
}

/// Full mTLS handshakes (+ one request each) per second against the server sidecar.
async fn handshakes(
    ctx: &Ctx,
    rec: &mut Recorder<'_>,
    server: &Proxy,
    addr: SocketAddr,
    mesh: &MeshCerts,
) -> Result<()> {
    let o = &ctx.opts;
    let tls = Tls {
        connector: TlsConnector::from(certs::client_config(&mesh.ca, &mesh.client)?),
        name: ServerName::try_from(certs::SNI)?,
    };
    let rate = |duration| {
        tcpload::conn_rate(
            addr,
            o.conn_workers,
            duration,
            o.max_requests,
            Some(tls.clone()),
        )
    };
    rate(o.warmup).await?;
    let w = Window::start(&[server], ctx.cpus);
    let r = rate(o.duration).await?;
    let used = w.finish(&[server], ctx.cpus, rec);
    if r.connections == 0 {
        bail!("no mTLS handshake succeeded ({} errors)", r.errors);
    }
    rec.put("hs_per_s", r.per_second());
    rec.put("hs_p99_us", r.hist.value_at_quantile(0.99) as f64 / 1000.0);
    rec.put("cpu_us_per_hs", used / r.connections as f64 * 1e6);
    rec.put("errors", r.errors as f64);
    Ok(())
}
