//! CPU accounting over a measured window: the proxy's CPU time, the load generator's own, and
//! what everything else on the machine took from those two CPUs meanwhile (a shared machine's
//! builds show up here, and the report flags windows where they did).

use std::time::Instant;

use crate::proxy::{cpu_seconds, Proxy};
use crate::results::Recorder;

/// Busy seconds (everything but idle and iowait) of one CPU since boot, from /proc/stat.
fn busy_seconds(cpu: usize) -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let name = format!("cpu{cpu}");
    let line = stat
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name.as_str()))?;
    let v: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    let busy = v.iter().take(8).sum::<f64>() - v.get(3)? - v.get(4).unwrap_or(&0.0);
    Some(busy / crate::proxy::ticks_per_second())
}

fn own_cpu() -> f64 {
    cpu_seconds(std::process::id() as i32).unwrap_or(0.0)
}

/// CPU seconds of all `proxies` together (a sidecar pair counts as one target).
pub fn proxies_cpu(proxies: &[&Proxy]) -> f64 {
    proxies.iter().map(|p| p.cpu_seconds()).sum()
}

/// The CPUs the proxy and the load generator are pinned to (None: not pinned).
#[derive(Clone, Copy, Debug)]
pub struct Cpus {
    pub proxy: usize,
    pub load: usize,
}

pub struct Window {
    at: Instant,
    proxy: f64,
    own: f64,
    busy: Option<(f64, f64)>,
}

impl Window {
    pub fn start(proxies: &[&Proxy], cpus: Option<Cpus>) -> Window {
        Window {
            at: Instant::now(),
            proxy: proxies_cpu(proxies),
            own: own_cpu(),
            busy: cpus.and_then(|c| Some((busy_seconds(c.proxy)?, busy_seconds(c.load)?))),
        }
    }

    /// Records `proxy_cpu_pct`, `gen_cpu_pct` and the interference on both CPUs; returns the
    /// proxies' CPU seconds in the window (summed; none for `direct`).
    pub fn finish(self, proxies: &[&Proxy], cpus: Option<Cpus>, rec: &mut Recorder<'_>) -> f64 {
        let secs = self.at.elapsed().as_secs_f64().max(1e-9);
        let proxy_cpu = proxies_cpu(proxies) - self.proxy;
        let own = own_cpu() - self.own;
        rec.put("gen_cpu_pct", own / secs * 100.0);
        if !proxies.is_empty() {
            rec.put("proxy_cpu_pct", proxy_cpu / secs * 100.0);
        }
        let now = cpus.and_then(|c| Some((busy_seconds(c.proxy)?, busy_seconds(c.load)?)));
        if let (Some((p0, l0)), Some((p1, l1))) = (self.busy, now) {
            let others_on_proxy = (p1 - p0) - proxy_cpu;
            let others_on_load = (l1 - l0) - own;
            rec.put(
                "noise_proxy_cpu_pct",
                (others_on_proxy / secs * 100.0).max(0.0),
            );
            rec.put(
                "noise_load_cpu_pct",
                (others_on_load / secs * 100.0).max(0.0),
            );
        }
        proxy_cpu
    }
}
