//! The bootstrap's `stats_sinks` and `stats_flush_interval`.

use super::{any_to, err, opt_duration, type_name, Result};
use crate::stats::statsd::StatsdCfg;
use envoy_types::pb::envoy::config::metrics::v3::{statsd_sink::StatsdSpecifier, StatsdSink};
use std::time::Duration;

const STATSD: &str = "envoy.config.metrics.v3.StatsdSink";

#[derive(Debug, Clone, Default)]
pub struct Sinks {
    pub statsd: Vec<StatsdCfg>,
    /// `stats_flush_interval` (default 5 s).
    pub flush_interval: Duration,
}

pub fn sinks(b: &envoy_types::pb::envoy::config::bootstrap::v3::Bootstrap) -> Result<Sinks> {
    let flush_interval = opt_duration(&b.stats_flush_interval, "stats_flush_interval")?
        .unwrap_or(Duration::from_secs(5));
    let mut statsd = Vec::new();
    for (i, s) in b.stats_sinks.iter().enumerate() {
        let path = format!("stats_sinks[{i}]");
        let Some(envoy_types::pb::envoy::config::metrics::v3::stats_sink::ConfigType::TypedConfig(
            any,
        )) = &s.config_type
        else {
            return err(&format!("{path}.typed_config"), "typed_config is required");
        };
        let tp = format!("{path}.typed_config");
        match type_name(any) {
            STATSD => {
                let c: StatsdSink = any_to(any, &tp)?;
                let Some(StatsdSpecifier::Address(a)) = &c.statsd_specifier else {
                    return err(
                        &format!("{tp}.tcp_cluster_name"),
                        "a StatsD sink over a TCP cluster is not supported by Ferry yet (use address)",
                    );
                };
                // StatsD is UDP whatever the address says.
                let mut a = a.clone();
                if let Some(
                    envoy_types::pb::envoy::config::core::v3::address::Address::SocketAddress(s),
                ) = a.address.as_mut()
                {
                    s.protocol = 0;
                }
                let address = super::listener::socket_address(&Some(a), &format!("{tp}.address"))?;
                statsd.push(StatsdCfg {
                    address,
                    prefix: if c.prefix.is_empty() {
                        "envoy".into()
                    } else {
                        c.prefix.clone()
                    },
                });
            }
            other => {
                return err(&tp, format!("stats sink {other} is not supported by Ferry"));
            }
        }
    }
    Ok(Sinks {
        statsd,
        flush_interval,
    })
}
