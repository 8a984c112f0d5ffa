//! The configuration messages of istio-proxy's extensions that Ferry implements, as prost
//! types (their descriptors are in the pool built by `ferry-xds`, for the JSON and TypedStruct
//! forms).

use envoy_types::pb::google::protobuf::Duration;

/// `stats.PluginConfig`: the `istio.stats` filter.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PluginConfig {
    #[prost(bool, tag = "6")]
    pub disable_host_header_fallback: bool,
    #[prost(message, optional, tag = "7")]
    pub tcp_reporting_duration: Option<Duration>,
    #[prost(message, repeated, tag = "8")]
    pub metrics: Vec<MetricConfig>,
    #[prost(message, repeated, tag = "9")]
    pub definitions: Vec<MetricDefinition>,
    #[prost(int32, tag = "10")]
    pub reporter: i32,
    #[prost(message, optional, tag = "11")]
    pub rotation_interval: Option<Duration>,
    #[prost(message, optional, tag = "12")]
    pub graceful_deletion_interval: Option<Duration>,
}

impl prost::Name for PluginConfig {
    const NAME: &'static str = "PluginConfig";
    const PACKAGE: &'static str = "stats";
    fn type_url() -> String {
        "type.googleapis.com/stats.PluginConfig".into()
    }
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct MetricConfig {
    #[prost(map = "string, string", tag = "1")]
    pub dimensions: std::collections::HashMap<String, String>,
    #[prost(string, tag = "2")]
    pub name: String,
    #[prost(string, repeated, tag = "3")]
    pub tags_to_remove: Vec<String>,
    #[prost(string, tag = "4")]
    pub r#match: String,
    #[prost(bool, tag = "5")]
    pub drop: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct MetricDefinition {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
    #[prost(int32, tag = "3")]
    pub r#type: i32,
}

/// `io.istio.http.peer_metadata.Config`: the HTTP `istio.metadata_exchange` filter.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PeerMetadata {
    #[prost(message, repeated, tag = "1")]
    pub downstream_discovery: Vec<DiscoveryMethod>,
    #[prost(message, repeated, tag = "2")]
    pub upstream_discovery: Vec<DiscoveryMethod>,
    #[prost(message, repeated, tag = "3")]
    pub downstream_propagation: Vec<PropagationMethod>,
    #[prost(message, repeated, tag = "4")]
    pub upstream_propagation: Vec<PropagationMethod>,
    #[prost(bool, tag = "5")]
    pub shared_with_upstream: bool,
    #[prost(string, repeated, tag = "6")]
    pub additional_labels: Vec<String>,
}

impl prost::Name for PeerMetadata {
    const NAME: &'static str = "Config";
    const PACKAGE: &'static str = "io.istio.http.peer_metadata";
    fn type_url() -> String {
        "type.googleapis.com/io.istio.http.peer_metadata.Config".into()
    }
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct IstioHeaders {
    #[prost(bool, tag = "1")]
    pub skip_external_clusters: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Empty {}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Discovery {
    #[prost(message, tag = "1")]
    Baggage(Empty),
    #[prost(message, tag = "2")]
    WorkloadDiscovery(Empty),
    #[prost(message, tag = "3")]
    IstioHeaders(IstioHeaders),
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct DiscoveryMethod {
    #[prost(oneof = "Discovery", tags = "1, 2, 3")]
    pub method: Option<Discovery>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Propagation {
    #[prost(message, tag = "1")]
    IstioHeaders(IstioHeaders),
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PropagationMethod {
    #[prost(oneof = "Propagation", tags = "1")]
    pub method: Option<Propagation>,
}

/// `istio.envoy.config.filter.http.alpn.v2alpha1.FilterConfig`: the `istio.alpn` filter.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AlpnConfig {
    #[prost(message, repeated, tag = "1")]
    pub alpn_override: Vec<AlpnOverride>,
}

impl prost::Name for AlpnConfig {
    const NAME: &'static str = "FilterConfig";
    const PACKAGE: &'static str = "istio.envoy.config.filter.http.alpn.v2alpha1";
    fn type_url() -> String {
        "type.googleapis.com/istio.envoy.config.filter.http.alpn.v2alpha1.FilterConfig".into()
    }
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct AlpnOverride {
    /// HTTP10 = 0, HTTP11 = 1, HTTP2 = 2.
    #[prost(int32, tag = "1")]
    pub upstream_protocol: i32,
    #[prost(string, repeated, tag = "2")]
    pub alpn_override: Vec<String>,
}
