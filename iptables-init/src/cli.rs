//! istio-iptables' command line: the same flags, short forms and environment variables (flag
//! beats environment beats default), plus Ferry's own `--backend`, `--clean` and `--ipv6`.
//!
//! Other istio-iptables flags that pods are started with are accepted so that an unchanged
//! injection template works: `--log_*` (Ferry logs to stderr), `--reconcile` and
//! `--force-apply` (Ferry always reconciles and applies), `--cni-mode`, `--iptables-probe-port`,
//! `--probe-timeout`. `--run-validation` is refused: Ferry does not implement the validation
//! probe.

use crate::config::{Backend, Config, Ipv6Mode};
use crate::error::Error;
use clap::{Parser, ValueEnum};
use std::ffi::OsString;

/// What to do, with the raw settings (validated later, after host facts are filled in).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invocation {
    pub config: Config,
    pub ipv6: Ipv6Mode,
    pub backend: Backend,
    pub clean: bool,
    pub dry_run: bool,
    pub skip_rule_apply: bool,
    /// `iptables`, `iptables-nft` or `iptables-legacy`: the binaries' prefix.
    pub iptables_binary: String,
    pub network_namespace: Option<String>,
    /// `ENVOY_USER`: whose UID is the proxy's when `-u` is not given.
    pub envoy_user: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum BackendArg {
    Iptables,
    Nft,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Ipv6Arg {
    Auto,
    #[value(alias = "on")]
    True,
    #[value(alias = "off")]
    False,
}

/// Booleans as Go's `strconv.ParseBool` reads them (flags take `--flag` or `--flag=false`).
/// An empty value (`DRY_RUN=`) is false, as Istio falls back to the default for it.
fn go_bool(s: &str) -> Result<bool, String> {
    match s {
        "" => Ok(false),
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(format!("{s:?} is not a boolean (true/false/1/0)")),
    }
}

#[derive(Parser, Debug)]
#[command(
    name = "ferry-iptables",
    about = "Set up iptables (or nftables) rules that capture a pod's traffic for the Ferry sidecar; \
             a drop-in for istio-iptables",
    args_override_self = true
)]
struct Cli {
    /// Port to which all outbound TCP traffic is redirected.
    #[arg(
        short = 'p',
        long = "envoy-port",
        value_name = "PORT",
        default_value = "15001"
    )]
    envoy_port: String,
    /// Port to which all inbound TCP traffic is redirected.
    #[arg(
        short = 'z',
        long,
        env = "INBOUND_CAPTURE_PORT",
        value_name = "PORT",
        default_value = "15006"
    )]
    inbound_capture_port: String,
    /// Inbound tunnel (HBONE) port, never redirected.
    #[arg(
        short = 'e',
        long,
        env = "INBOUND_TUNNEL_PORT",
        value_name = "PORT",
        default_value = "15008"
    )]
    inbound_tunnel_port: String,
    /// UIDs (comma separated) whose traffic is not redirected [default: uid of $ENVOY_USER, else 1337].
    #[arg(short = 'u', long, env = "PROXY_UID", value_name = "UIDS")]
    proxy_uid: Option<String>,
    /// GIDs (comma separated) whose traffic is not redirected [default: the -u value].
    #[arg(short = 'g', long, env = "PROXY_GID", value_name = "GIDS")]
    proxy_gid: Option<String>,
    /// Inbound redirection mode: REDIRECT or TPROXY [default: REDIRECT].
    #[arg(
        short = 'm',
        long,
        env = "ISTIO_INBOUND_INTERCEPTION_MODE",
        value_name = "MODE"
    )]
    istio_inbound_interception_mode: Option<String>,
    /// Packet mark of TPROXYed inbound traffic.
    #[arg(
        short = 't',
        long,
        env = "ISTIO_INBOUND_TPROXY_MARK",
        value_name = "MARK",
        default_value = "1337"
    )]
    istio_inbound_tproxy_mark: String,
    /// Routing table for TPROXYed inbound traffic.
    #[arg(
        short = 'r',
        long,
        env = "ISTIO_INBOUND_TPROXY_ROUTE_TABLE",
        value_name = "TABLE",
        default_value = "133"
    )]
    istio_inbound_tproxy_route_table: String,
    /// Inbound ports to redirect: a comma-separated list, "*" for all, empty for none.
    #[arg(short = 'b', long, env = "ISTIO_INBOUND_PORTS", value_name = "PORTS")]
    istio_inbound_ports: Option<String>,
    /// Inbound ports not redirected (only with -b "*").
    #[arg(
        short = 'd',
        long,
        env = "ISTIO_LOCAL_EXCLUDE_PORTS",
        value_name = "PORTS"
    )]
    istio_local_exclude_ports: Option<String>,
    /// Interfaces whose traffic is never captured.
    #[arg(
        short = 'c',
        long,
        env = "ISTIO_EXCLUDE_INTERFACES",
        value_name = "NICS"
    )]
    istio_exclude_interfaces: Option<String>,
    /// Outbound CIDRs to redirect: a comma-separated list, "*" for all, empty for none.
    #[arg(short = 'i', long, env = "ISTIO_SERVICE_CIDR", value_name = "CIDRS")]
    istio_service_cidr: Option<String>,
    /// Outbound CIDRs not redirected.
    #[arg(
        short = 'x',
        long,
        env = "ISTIO_SERVICE_EXCLUDE_CIDR",
        value_name = "CIDRS"
    )]
    istio_service_exclude_cidr: Option<String>,
    /// Outbound ports always redirected.
    #[arg(short = 'q', long, env = "ISTIO_OUTBOUND_PORTS", value_name = "PORTS")]
    istio_outbound_ports: Option<String>,
    /// Outbound ports never redirected.
    #[arg(
        short = 'o',
        long,
        env = "ISTIO_LOCAL_OUTBOUND_PORTS_EXCLUDE",
        value_name = "PORTS"
    )]
    istio_local_outbound_ports_exclude: Option<String>,
    /// Virtual interfaces whose inbound traffic (from a VM) is treated as outbound.
    #[arg(short = 'k', long, env = "KUBE_VIRT_INTERFACES", value_name = "NICS")]
    kube_virt_interfaces: Option<String>,
    /// Print the rules instead of applying them.
    #[arg(short = 'n', long, env = "DRY_RUN", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = go_bool, value_name = "BOOL")]
    dry_run: Option<bool>,
    /// Capture DNS to the resolvers in /etc/resolv.conf (to istio-agent on 15053) [env: REDIRECT_DNS, ISTIO_META_DNS_CAPTURE].
    #[arg(long, env = "REDIRECT_DNS", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = go_bool, value_name = "BOOL", hide_env = true)]
    redirect_dns: Option<bool>,
    /// With --redirect-dns: capture all DNS on port 53, whatever the server.
    #[arg(long, env = "CAPTURE_ALL_DNS", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = go_bool, value_name = "BOOL")]
    capture_all_dns: Option<bool>,
    /// Drop packets conntrack finds INVALID [env: DROP_INVALID, INVALID_DROP].
    #[arg(long, env = "DROP_INVALID", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = go_bool, value_name = "BOOL", hide_env = true)]
    drop_invalid: Option<bool>,
    /// Dual-stack pod (Istio uses it to detect IPv6; see --ipv6) [env: DUAL_STACK, ISTIO_DUAL_STACK].
    #[arg(long, env = "DUAL_STACK", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = go_bool, value_name = "BOOL", hide_env = true)]
    dual_stack: Option<bool>,

    /// Remove the capture instead of installing it (istio-clean-iptables).
    #[arg(long, env = "FERRY_IPTABLES_CLEAN", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = go_bool, value_name = "BOOL")]
    clean: Option<bool>,
    /// Istio's name for --clean.
    #[arg(long, env = "CLEANUP_ONLY", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = go_bool, value_name = "BOOL")]
    cleanup_only: Option<bool>,
    /// Ruleset writer.
    #[arg(
        long,
        env = "FERRY_IPTABLES_BACKEND",
        value_enum,
        default_value = "iptables"
    )]
    backend: BackendArg,
    /// Istio's switch for the nft backend.
    #[arg(long, env = "NATIVE_NFTABLES", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = go_bool, value_name = "BOOL")]
    native_nftables: Option<bool>,
    /// IPv6 rules: auto (when the pod has a global IPv6 address), true, false.
    #[arg(long, env = "FERRY_IPTABLES_IPV6", value_enum, default_value = "auto")]
    ipv6: Ipv6Arg,
    /// iptables binaries to use: iptables, iptables-nft or iptables-legacy.
    #[arg(
        long,
        env = "FORCE_IPTABLES_BINARY",
        value_name = "BINARY",
        default_value = "iptables"
    )]
    force_iptables_binary: String,
    /// Network namespace (a path such as /var/run/netns/pod) to apply the rules in.
    #[arg(long, env = "NETWORK_NAMESPACE", value_name = "PATH")]
    network_namespace: Option<String>,
    /// Do nothing (istio-cni does the capture).
    #[arg(long, env = "SKIP_RULE_APPLY", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = go_bool, value_name = "BOOL")]
    skip_rule_apply: Option<bool>,
    /// Not supported: Ferry has no iptables validation probe.
    #[arg(long, env = "RUN_VALIDATION", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = go_bool, value_name = "BOOL", hide = true)]
    run_validation: Option<bool>,

    // Accepted for compatibility; no effect.
    #[arg(long, env = "RECONCILE", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = go_bool, hide = true)]
    reconcile: Option<bool>,
    #[arg(long, env = "FORCE_APPLY", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = go_bool, hide = true)]
    force_apply: Option<bool>,
    #[arg(long, env = "CNI_MODE", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = go_bool, hide = true)]
    cni_mode: Option<bool>,
    #[arg(long, env = "IPTABLES_PROBE_PORT", hide = true)]
    iptables_probe_port: Option<String>,
    #[arg(long, env = "PROBE_TIMEOUT", hide = true)]
    probe_timeout: Option<String>,
    #[arg(long = "log_output_level", hide = true)]
    log_output_level: Option<String>,
    #[arg(long = "log_as_json", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = go_bool, hide = true)]
    log_as_json: Option<bool>,
    #[arg(long = "log_caller", hide = true)]
    log_caller: Option<String>,
    #[arg(long = "log_stacktrace_level", hide = true)]
    log_stacktrace_level: Option<String>,
    #[arg(long = "log_target", hide = true)]
    log_target: Option<String>,
    #[arg(long = "log_rotate", hide = true)]
    log_rotate: Option<String>,
    #[arg(long = "log_rotate_max_age", hide = true)]
    log_rotate_max_age: Option<String>,
    #[arg(long = "log_rotate_max_backups", hide = true)]
    log_rotate_max_backups: Option<String>,
    #[arg(long = "log_rotate_max_size", hide = true)]
    log_rotate_max_size: Option<String>,
}

/// A boolean from the first of `names` that is set.
fn env_bool(names: &[&'static str]) -> Result<Option<bool>, Error> {
    for name in names {
        if let Some(v) = std::env::var_os(name) {
            let v = v.to_string_lossy();
            return go_bool(&v)
                .map(Some)
                .map_err(|e| Error::invalid(name, &v, e));
        }
    }
    Ok(None)
}

/// An env-only setting: its value when set (even empty), else the default.
fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

/// Parses the command line (and the environment). `Err(Usage)` carries clap's message, which
/// includes `--help` output when asked for.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Invocation, Error> {
    let mut args: Vec<OsString> = args.into_iter().collect();
    // `pilot-agent istio-iptables …` / `istio-clean-iptables …` are how pods call it.
    let mut clean_word = false;
    if let Some(word) = args.get(1).and_then(|a| a.to_str()) {
        if word == "istio-iptables" || word == "istio-clean-iptables" {
            clean_word = word == "istio-clean-iptables";
            args.remove(1);
        }
    }
    let cli = Cli::try_parse_from(args).map_err(|e| match e.kind() {
        clap::error::ErrorKind::DisplayHelp => Error::Help(e.to_string()),
        _ => Error::Usage(e.to_string()),
    })?;
    if cli.run_validation == Some(true) {
        return Err(Error::Unsupported {
            flag: "--run-validation",
            why: "Ferry has no iptables validation probe; with istio-cni, run Istio's \
                  istio-validation init container",
        });
    }
    let variant = match cli.force_iptables_binary.as_str() {
        "iptables" | "ip6tables" => "iptables",
        "iptables-nft" | "ip6tables-nft" => "iptables-nft",
        "iptables-legacy" | "ip6tables-legacy" => "iptables-legacy",
        other => {
            return Err(Error::invalid(
                "--force-iptables-binary",
                other,
                "expected iptables, iptables-nft or iptables-legacy",
            ))
        }
    };
    let redirect_dns = match cli.redirect_dns {
        Some(b) => b,
        None => env_bool(&["ISTIO_META_DNS_CAPTURE"])?.unwrap_or(false),
    };
    let drop_invalid = match cli.drop_invalid {
        Some(b) => b,
        None => env_bool(&["INVALID_DROP"])?.unwrap_or(false),
    };
    let dual_stack = match cli.dual_stack {
        Some(b) => b,
        None => env_bool(&["ISTIO_DUAL_STACK"])?.unwrap_or(false),
    };
    let config = Config {
        proxy_port: cli.envoy_port,
        inbound_capture_port: cli.inbound_capture_port,
        inbound_tunnel_port: cli.inbound_tunnel_port,
        proxy_uid: cli.proxy_uid.unwrap_or_default(),
        proxy_gid: cli.proxy_gid.unwrap_or_default(),
        inbound_interception_mode: cli.istio_inbound_interception_mode.unwrap_or_default(),
        inbound_tproxy_mark: cli.istio_inbound_tproxy_mark,
        inbound_tproxy_route_table: cli.istio_inbound_tproxy_route_table,
        inbound_ports_include: cli.istio_inbound_ports.unwrap_or_default(),
        inbound_ports_exclude: cli.istio_local_exclude_ports.unwrap_or_default(),
        owner_groups_include: env_or("ISTIO_OUTBOUND_OWNER_GROUPS", "*"),
        owner_groups_exclude: env_or("ISTIO_OUTBOUND_OWNER_GROUPS_EXCLUDE", ""),
        outbound_ports_include: cli.istio_outbound_ports.unwrap_or_default(),
        outbound_ports_exclude: cli.istio_local_outbound_ports_exclude.unwrap_or_default(),
        outbound_ip_ranges_include: cli.istio_service_cidr.unwrap_or_default(),
        outbound_ip_ranges_exclude: cli.istio_service_exclude_cidr.unwrap_or_default(),
        reroute_virtual_interfaces: cli.kube_virt_interfaces.unwrap_or_default(),
        exclude_interfaces: cli.istio_exclude_interfaces.unwrap_or_default(),
        host_ipv4_loopback_cidr: env_or("ISTIO_OUTBOUND_IPV4_LOOPBACK_CIDR", "127.0.0.1/32"),
        redirect_dns,
        capture_all_dns: cli.capture_all_dns.unwrap_or(false),
        drop_invalid,
        dual_stack,
        enable_ipv6: false,
        dns_servers_v4: Vec::new(),
        dns_servers_v6: Vec::new(),
        dry_run: cli.dry_run.unwrap_or(false),
    };
    let nft = cli.backend == BackendArg::Nft || cli.native_nftables == Some(true);
    Ok(Invocation {
        dry_run: config.dry_run,
        config,
        ipv6: match cli.ipv6 {
            Ipv6Arg::Auto => Ipv6Mode::Auto,
            Ipv6Arg::True => Ipv6Mode::On,
            Ipv6Arg::False => Ipv6Mode::Off,
        },
        backend: if nft { Backend::Nft } else { Backend::Iptables },
        clean: clean_word || cli.clean == Some(true) || cli.cleanup_only == Some(true),
        skip_rule_apply: cli.skip_rule_apply.unwrap_or(false),
        iptables_binary: variant.to_string(),
        network_namespace: cli.network_namespace.filter(|p| !p.is_empty()),
        envoy_user: env_or("ENVOY_USER", "istio-proxy"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Invocation, Error> {
        let mut v = vec![OsString::from("ferry-iptables")];
        v.extend(args.iter().map(OsString::from));
        parse(v)
    }

    // These run with whatever environment the test process has; the variables they depend on
    // are Istio's and are not set in a normal test environment.

    #[test]
    fn injector_arguments_parse() {
        let inv = p(&[
            "istio-iptables",
            "-p",
            "15001",
            "-z",
            "15006",
            "-u",
            "1337",
            "-m",
            "REDIRECT",
            "-i",
            "*",
            "-x",
            "",
            "-b",
            "*",
            "-d",
            "15090,15021,15020",
            "--log_output_level=default:info",
        ])
        .expect("parses");
        let c = &inv.config;
        assert_eq!(c.inbound_ports_include, "*");
        assert_eq!(c.outbound_ip_ranges_exclude, "");
        assert_eq!(c.inbound_ports_exclude, "15090,15021,15020");
        assert_eq!(inv.backend, Backend::Iptables);
        assert!(!inv.clean && !inv.dry_run);
    }

    #[test]
    fn booleans_take_go_values() {
        let inv = p(&[
            "--redirect-dns",
            "-n",
            "--capture-all-dns=false",
            "--drop-invalid=1",
        ])
        .expect("parses");
        assert!(inv.config.redirect_dns && inv.dry_run && inv.config.drop_invalid);
        assert!(!inv.config.capture_all_dns);
        assert!(p(&["--redirect-dns=maybe"]).is_err());
    }

    #[test]
    fn clean_and_backend_spellings() {
        assert!(p(&["--clean"]).expect("parses").clean);
        assert!(p(&["--cleanup-only"]).expect("parses").clean);
        assert!(p(&["istio-clean-iptables"]).expect("parses").clean);
        assert_eq!(
            p(&["--backend", "nft"]).expect("parses").backend,
            Backend::Nft
        );
        assert_eq!(
            p(&["--native-nftables"]).expect("parses").backend,
            Backend::Nft
        );
        assert_eq!(p(&["--ipv6", "off"]).expect("parses").ipv6, Ipv6Mode::Off);
    }

    #[test]
    fn refusals_exit_2() {
        for args in [
            &["--no-such-flag"][..],
            &["--run-validation"],
            &["--backend", "pf"],
            &["--force-iptables-binary", "xtables"],
            &["-p"],
        ] {
            match p(args) {
                Err(e) => assert_eq!(e.exit_code(), 2, "{args:?}: {e}"),
                Ok(_) => panic!("{args:?} accepted"),
            }
        }
    }

    #[test]
    fn last_flag_wins() {
        let inv = p(&["-p", "1", "-p", "2"]).expect("parses");
        assert_eq!(inv.config.proxy_port, "2");
    }
}
