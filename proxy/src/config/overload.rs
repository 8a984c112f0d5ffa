//! `overload_manager`: the resource monitors Ferry reads and the actions they trigger.

use super::{any_to, err, opt_duration, type_name, Result};
use envoy_types::pb::envoy::config::overload::v3 as pb;
use envoy_types::pb::envoy::extensions::resource_monitors as rm;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MonitorKind {
    /// `envoy.resource_monitors.fixed_heap`: the heap in use against a fixed maximum.
    FixedHeap { max: u64 },
    /// `envoy.resource_monitors.cgroup_memory`: the container's working set against its
    /// cgroup limit (or a smaller configured maximum).
    CgroupMemory { max: Option<u64> },
}

#[derive(Debug, Clone)]
pub struct Monitor {
    /// The extension name, which is also its stat prefix (`overload.<name>.pressure`).
    pub name: String,
    pub kind: MonitorKind,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Trigger {
    /// Saturated at and above the value, inactive below.
    Threshold(f64),
    /// Scales from 0 at `scaling` to saturated at `saturation`.
    Scaled { scaling: f64, saturation: f64 },
}

impl Trigger {
    /// The action's state in [0, 1] for a pressure.
    pub fn state(&self, pressure: f64) -> f64 {
        match *self {
            Trigger::Threshold(v) => f64::from(u8::from(pressure >= v)),
            Trigger::Scaled {
                scaling,
                saturation,
            } => {
                if pressure >= saturation {
                    1.0
                } else if pressure <= scaling {
                    0.0
                } else {
                    (pressure - scaling) / (saturation - scaling)
                }
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ActionKind {
    StopAcceptingRequests,
    DisableHttpKeepalive,
    StopAcceptingConnections,
    RejectIncomingConnections,
    ShrinkHeap,
}

impl ActionKind {
    pub const ALL: [ActionKind; 5] = [
        ActionKind::StopAcceptingRequests,
        ActionKind::DisableHttpKeepalive,
        ActionKind::StopAcceptingConnections,
        ActionKind::RejectIncomingConnections,
        ActionKind::ShrinkHeap,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ActionKind::StopAcceptingRequests => "envoy.overload_actions.stop_accepting_requests",
            ActionKind::DisableHttpKeepalive => "envoy.overload_actions.disable_http_keepalive",
            ActionKind::StopAcceptingConnections => {
                "envoy.overload_actions.stop_accepting_connections"
            }
            ActionKind::RejectIncomingConnections => {
                "envoy.overload_actions.reject_incoming_connections"
            }
            ActionKind::ShrinkHeap => "envoy.overload_actions.shrink_heap",
        }
    }

    fn from_name(name: &str) -> Option<ActionKind> {
        Self::ALL.into_iter().find(|a| a.name() == name)
    }
}

#[derive(Debug, Clone)]
pub struct Action {
    pub kind: ActionKind,
    /// `(index into monitors, trigger)`: the action's state is the largest of its triggers'.
    pub triggers: Vec<(usize, Trigger)>,
}

#[derive(Debug, Clone)]
pub struct Overload {
    pub refresh: Duration,
    pub monitors: Vec<Monitor>,
    pub actions: Vec<Action>,
    /// `envoy.resource_monitors.global_downstream_max_connections`.
    pub max_connections: Option<u64>,
    /// Not from the bootstrap: Ferry's own default, shedding before the cgroup's OOM killer.
    pub implicit: bool,
}

const CGROUP_MEMORY: &str = "envoy.resource_monitors.cgroup_memory";
const MAX_CONNECTIONS: &str = "envoy.resource_monitors.global_downstream_max_connections";

impl Overload {
    pub fn from_proto(o: &pb::OverloadManager) -> Result<Overload> {
        let path = "overload_manager";
        if !o.loadshed_points.is_empty() {
            return err(
                &format!("{path}.loadshed_points"),
                "load shed points are not supported by Ferry",
            );
        }
        let refresh = opt_duration(&o.refresh_interval, &format!("{path}.refresh_interval"))?
            .unwrap_or(Duration::from_secs(1))
            .max(Duration::from_millis(1));
        let mut monitors = Vec::new();
        let mut max_connections = None;
        for (i, m) in o.resource_monitors.iter().enumerate() {
            let mp = format!("{path}.resource_monitors[{i}]");
            let Some(pb::resource_monitor::ConfigType::TypedConfig(any)) = &m.config_type else {
                return err(&format!("{mp}.typed_config"), "typed_config is required");
            };
            let tp = format!("{mp}.typed_config");
            if monitors.iter().any(|x: &Monitor| x.name == m.name)
                || (m.name == MAX_CONNECTIONS && max_connections.is_some())
            {
                return err(
                    &format!("{mp}.name"),
                    format!("Duplicate resource monitor {}", m.name),
                );
            }
            let kind = match type_name(any) {
                "envoy.extensions.resource_monitors.fixed_heap.v3.FixedHeapConfig" => {
                    let c: rm::fixed_heap::v3::FixedHeapConfig = any_to(any, &tp)?;
                    if c.max_heap_size_bytes == 0 {
                        return err(
                            &format!("{tp}.max_heap_size_bytes"),
                            "max_heap_size_bytes must be greater than 0",
                        );
                    }
                    MonitorKind::FixedHeap {
                        max: c.max_heap_size_bytes,
                    }
                }
                "envoy.extensions.resource_monitors.cgroup_memory.v3.CgroupMemoryConfig" => {
                    let c: rm::cgroup_memory::v3::CgroupMemoryConfig = any_to(any, &tp)?;
                    MonitorKind::CgroupMemory {
                        max: (c.max_memory_bytes > 0).then_some(c.max_memory_bytes),
                    }
                }
                "envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig" => {
                    let c: rm::downstream_connections::v3::DownstreamConnectionsConfig =
                        any_to(any, &tp)?;
                    if c.max_active_downstream_connections <= 0 {
                        return err(
                            &format!("{tp}.max_active_downstream_connections"),
                            "max_active_downstream_connections must be greater than 0",
                        );
                    }
                    max_connections = Some(c.max_active_downstream_connections as u64);
                    continue;
                }
                other => {
                    return err(
                        &tp,
                        format!("resource monitor {other} is not supported by Ferry"),
                    )
                }
            };
            monitors.push(Monitor {
                name: m.name.clone(),
                kind,
            });
        }
        let mut actions: Vec<Action> = Vec::new();
        for (i, a) in o.actions.iter().enumerate() {
            let ap = format!("{path}.actions[{i}]");
            let Some(kind) = ActionKind::from_name(&a.name) else {
                return err(
                    &format!("{ap}.name"),
                    format!("overload action {} is not supported by Ferry", a.name),
                );
            };
            if actions.iter().any(|x| x.kind == kind) {
                return err(
                    &format!("{ap}.name"),
                    format!("Duplicate overload action {}", a.name),
                );
            }
            if a.typed_config.is_some() {
                return err(
                    &format!("{ap}.typed_config"),
                    "action configs are not supported by Ferry",
                );
            }
            let mut triggers = Vec::with_capacity(a.triggers.len());
            for (j, t) in a.triggers.iter().enumerate() {
                let tp = format!("{ap}.triggers[{j}]");
                let Some(at) = monitors.iter().position(|m| m.name == t.name) else {
                    let why = if t.name == MAX_CONNECTIONS {
                        "a proactive resource monitor cannot trigger an action".to_string()
                    } else {
                        format!("Unknown trigger resource {}", t.name)
                    };
                    return err(&format!("{tp}.name"), why);
                };
                use pb::trigger::TriggerOneof as T;
                let trig = match &t.trigger_oneof {
                    Some(T::Threshold(th)) => Trigger::Threshold(unit(th.value, &tp)?),
                    Some(T::Scaled(s)) => {
                        let (scaling, saturation) = (
                            unit(s.scaling_threshold, &tp)?,
                            unit(s.saturation_threshold, &tp)?,
                        );
                        if scaling >= saturation {
                            return err(
                                &format!("{tp}.scaled"),
                                "scaling_threshold must be less than saturation_threshold",
                            );
                        }
                        Trigger::Scaled {
                            scaling,
                            saturation,
                        }
                    }
                    None => return err(&tp, "a threshold or scaled trigger is required"),
                };
                triggers.push((at, trig));
            }
            actions.push(Action { kind, triggers });
        }
        Ok(Overload {
            refresh,
            monitors,
            actions,
            max_connections,
            implicit: false,
        })
    }

    /// Ferry's default when the bootstrap has no overload manager: the cgroup's working set
    /// against its limit, closing keep-alive connections and trimming the heap from 90 % and
    /// refusing new requests from 95 %, before the OOM killer would take the whole pod's
    /// traffic down. Without a cgroup memory limit it does nothing.
    pub fn implicit() -> Overload {
        let trig = |v| vec![(0, Trigger::Threshold(v))];
        Overload {
            refresh: Duration::from_secs(1),
            monitors: vec![Monitor {
                name: CGROUP_MEMORY.to_string(),
                kind: MonitorKind::CgroupMemory { max: None },
            }],
            actions: vec![
                Action {
                    kind: ActionKind::ShrinkHeap,
                    triggers: trig(0.90),
                },
                Action {
                    kind: ActionKind::DisableHttpKeepalive,
                    triggers: trig(0.90),
                },
                Action {
                    kind: ActionKind::StopAcceptingRequests,
                    triggers: trig(0.95),
                },
            ],
            max_connections: None,
            implicit: true,
        }
    }
}

fn unit(v: f64, path: &str) -> Result<f64> {
    if !(0.0..=1.0).contains(&v) {
        return err(path, "a trigger threshold must be within [0, 1]");
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaled_trigger_interpolates() {
        let t = Trigger::Scaled {
            scaling: 0.5,
            saturation: 0.9,
        };
        assert_eq!(t.state(0.4), 0.0);
        assert!((t.state(0.7) - 0.5).abs() < 1e-9);
        assert_eq!(t.state(0.95), 1.0);
        assert_eq!(Trigger::Threshold(0.8).state(0.79), 0.0);
        assert_eq!(Trigger::Threshold(0.8).state(0.8), 1.0);
    }
}
