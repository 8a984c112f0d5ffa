//! Setting up a differential environment: shared upstreams, one Envoy and
//! one Ferry started on the same bootstrap (each on its own ports).

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::case::Case;
use crate::diff::{observe, Report};
use crate::echo::{self, Upstream};
use crate::normalise::Observation;
use crate::proxy::{self, Proxy, ProxyKind, Target};

enum Spec {
    Http(String),
    Http6(String),
    Tcp(String),
    TcpGreeter(String),
    Refusing,
    Blackhole,
    Firehose(std::sync::Arc<std::sync::atomic::AtomicU64>),
}

/// Builder for a [`DiffEnv`]. Placeholders registered here (upstreams) are
/// shared by both proxies; every other `{{NAME}}` in the bootstrap (ADMIN,
/// L1, ...) gets a fresh port per proxy instance.
pub struct Setup {
    title: String,
    template: String,
    specs: Vec<(String, Spec)>,
    args: Vec<String>,
}

impl Setup {
    pub fn new(title: &str, template: &str) -> Setup {
        Setup {
            title: title.to_string(),
            template: template.to_string(),
            specs: Vec::new(),
            args: Vec::new(),
        }
    }

    /// Extra command-line arguments for both proxies (after `-c FILE`);
    /// `{{NAME}}` placeholders in them are rendered like the bootstrap's.
    pub fn args(mut self, args: &[&str]) -> Setup {
        self.args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    /// An HTTP echo upstream on `[::1]` (see [`Setup::start`]).
    pub fn echo_v6(mut self, placeholder: &str, name: &str) -> Setup {
        self.specs
            .push((placeholder.into(), Spec::Http6(name.into())));
        self
    }

    /// An HTTP echo upstream named `name`, its port substituted for
    /// `{{placeholder}}`.
    pub fn echo(mut self, placeholder: &str, name: &str) -> Setup {
        self.specs
            .push((placeholder.into(), Spec::Http(name.into())));
        self
    }

    pub fn tcp_echo(mut self, placeholder: &str, name: &str) -> Setup {
        self.specs
            .push((placeholder.into(), Spec::Tcp(name.into())));
        self
    }

    /// A TCP echo that first sends `<name>\n` on every connection.
    pub fn tcp_greeter(mut self, placeholder: &str, name: &str) -> Setup {
        self.specs
            .push((placeholder.into(), Spec::TcpGreeter(name.into())));
        self
    }

    /// A port where connections are refused.
    pub fn refusing(mut self, placeholder: &str) -> Setup {
        self.specs.push((placeholder.into(), Spec::Refusing));
        self
    }

    /// An upstream answering every request with a 1 GiB body as fast as it is taken; `sent`
    /// counts the bytes the kernel accepted.
    pub fn firehose(
        mut self,
        placeholder: &str,
        sent: std::sync::Arc<std::sync::atomic::AtomicU64>,
    ) -> Setup {
        self.specs.push((placeholder.into(), Spec::Firehose(sent)));
        self
    }

    /// A listener that accepts and never answers.
    pub fn blackhole(mut self, placeholder: &str) -> Setup {
        self.specs.push((placeholder.into(), Spec::Blackhole));
        self
    }

    /// `None` when an IPv6 upstream cannot bind `[::1]`.
    async fn upstreams(&self) -> Option<(Vec<Upstream>, BTreeMap<String, String>)> {
        let mut ups = Vec::new();
        let mut shared = BTreeMap::new();
        for (placeholder, spec) in &self.specs {
            let up = match spec {
                Spec::Http(name) => echo::start_http(name).await,
                Spec::Http6(name) => echo::start_http_v6(name).await?,
                Spec::Tcp(name) => echo::start_tcp_echo(name).await,
                Spec::TcpGreeter(name) => echo::start_tcp_greeter(name).await,
                Spec::Refusing => echo::refusing(placeholder),
                Spec::Blackhole => echo::start_blackhole(placeholder).await,
                Spec::Firehose(sent) => echo::start_firehose(placeholder, sent.clone()).await,
            };
            shared.insert(placeholder.clone(), up.port().to_string());
            ups.push(up);
        }
        Some((ups, shared))
    }

    /// Starts the upstreams, Envoy and Ferry, and waits until both are
    /// ready. `None` (after a SKIP line) when Envoy is not installed or an
    /// IPv6 upstream cannot bind `[::1]`.
    pub async fn start(self) -> Option<DiffEnv> {
        let envoy_bin = proxy::envoy_or_skip()?;
        let ferry_bin = proxy::ferry_bin();
        let Some((upstreams, shared)) = self.upstreams().await else {
            eprintln!("SKIP {}: no IPv6 loopback (cannot bind [::1])", self.title);
            return None;
        };
        let (t, a) = (&self.template, &self.args);
        let (envoy, ferry) = tokio::join!(
            proxy::start(ProxyKind::Envoy, &envoy_bin, t, &shared, a),
            proxy::start(ProxyKind::Ferry, &ferry_bin, t, &shared, a),
        );
        Some(DiffEnv {
            title: self.title,
            upstreams,
            envoy,
            ferry,
            envoy_bin,
            ferry_bin,
        })
    }
}

/// Two running proxies on the same bootstrap plus the shared upstreams.
pub struct DiffEnv {
    pub title: String,
    pub upstreams: Vec<Upstream>,
    pub envoy: Proxy,
    pub ferry: Proxy,
    pub envoy_bin: PathBuf,
    pub ferry_bin: PathBuf,
}

impl DiffEnv {
    /// Both proxies, Envoy first.
    pub fn both(&self) -> [&Proxy; 2] {
        [&self.envoy, &self.ferry]
    }

    pub fn both_mut(&mut self) -> [&mut Proxy; 2] {
        [&mut self.envoy, &mut self.ferry]
    }

    pub fn upstream(&self, name: &str) -> &Upstream {
        self.upstreams
            .iter()
            .find(|u| u.name == name)
            .unwrap_or_else(|| panic!("no upstream named {name}"))
    }

    pub fn report(&self) -> Report {
        Report::new(&self.title)
    }

    /// Runs every case against Envoy and then Ferry, comparing as it goes.
    pub async fn run_cases(&self, report: &mut Report, cases: &[Case]) {
        for case in cases {
            let started = std::time::Instant::now();
            let envoy = observe(&self.envoy, case).await;
            let envoy_time = started.elapsed();
            let ferry = observe(&self.ferry, case).await;
            if std::env::var_os("FERRY_TESTS_DUMP").is_some() {
                eprintln!("time: envoy {envoy_time:?}, total {:?}", started.elapsed());
            }
            report.compare_case(case, &envoy, &ferry);
        }
    }

    /// Runs the table and fails once, listing every mismatch.
    pub async fn run(&self, cases: Vec<Case>) {
        let mut report = self.report();
        self.run_cases(&mut report, &cases).await;
        report.finish();
    }

    /// Runs a custom async observation against both proxies and compares.
    /// The closure gets an owned [`Target`] describing one proxy.
    pub async fn compare_with<F, Fut>(&self, report: &mut Report, case: &str, f: F)
    where
        F: Fn(Target) -> Fut,
        Fut: std::future::Future<Output = Observation>,
    {
        let e = f(self.envoy.target()).await;
        let g = f(self.ferry.target()).await;
        report.compare(case, &e, &g);
    }

    /// Compares the value of each named stat (`<absent>` when a proxy has none) between the
    /// two proxies, through their `ADMIN` port.
    pub async fn compare_stats<S: AsRef<str>>(&self, report: &mut Report, names: &[S]) {
        for name in names {
            let name = name.as_ref();
            self.compare_with(report, name, |t: Target| async move {
                let v = crate::conn::stat(t.port("ADMIN"), name).await;
                BTreeMap::from([("value".to_string(), v)])
            })
            .await;
        }
    }
}
