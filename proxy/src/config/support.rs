//! What Ferry implements, field by field, in one place.
//!
//! Every set field of every message in a configuration is checked against this table before
//! conversion (walking `typed_config` Anys into the message they name). A field that is not listed
//! is rejected with its full path — a behaviour Ferry does not implement is never silently
//! ignored. Fields listed with a leading `~` only tune (buffer sizes, stat names, log plumbing):
//! they are accepted and do not change what Ferry does; `ferry --mode validate` names them.

use super::{err, Result};
use prost_reflect::{DynamicMessage, MessageDescriptor, ReflectMessage, Value};
use std::collections::HashMap;
use std::sync::OnceLock;

/// `(message, fields)`: `"*"` accepts every field of a message (plain data such as Duration).
const SUPPORTED: &[(&str, &[&str])] = &[
    // bootstrap
    ("envoy.config.bootstrap.v3.Bootstrap", &["cluster_manager", "node", "static_resources", "dynamic_resources", "admin", "stats_config", "stats_flush_interval", "stats_sinks", "~layered_runtime", "~watchdog", "~watchdogs", "overload_manager", "~enable_dispatcher_stats", "application_log_config", "bootstrap_extensions", "~deferred_stat_options", "tracing"]),
    ("envoy.config.trace.v3.Tracing", &["http"]),
    ("envoy.config.trace.v3.Tracing.Http", &["name", "typed_config"]),
    ("envoy.config.trace.v3.ZipkinConfig", &["collector_cluster", "collector_endpoint", "trace_id_128bit", "shared_span_context", "collector_endpoint_version", "collector_hostname", "split_spans_for_request", "trace_context_option", "collector_service"]),
    ("envoy.config.core.v3.HttpService", &["http_uri", "request_headers_to_add"]),
    ("envoy.config.trace.v3.OpenTelemetryConfig", &["grpc_service", "http_service", "exporter", "service_name", "resource_detectors", "sampler", "max_cache_size", "set_telemetry_sdk_resource_attributes", "set_service_name_resource_attribute"]),
    ("envoy.config.bootstrap.v3.Bootstrap.ApplicationLogConfig", &["log_format"]),
    ("envoy.config.metrics.v3.StatsConfig", &["stats_tags", "use_all_default_tags", "stats_matcher", "histogram_bucket_settings", "allow_default_tag_overrides"]),
    ("envoy.config.metrics.v3.TagSpecifier", &["tag_name", "regex", "fixed_value"]),
    ("envoy.config.metrics.v3.StatsMatcher", &["reject_all", "exclusion_list", "inclusion_list"]),
    ("envoy.config.metrics.v3.StatsSink", &["name", "typed_config"]),
    ("envoy.config.metrics.v3.StatsdSink", &["address", "tcp_cluster_name", "prefix"]),
    ("envoy.type.matcher.v3.ListStringMatcher", &["patterns"]),
    ("envoy.config.bootstrap.v3.Bootstrap.ApplicationLogConfig.LogFormat", &["text_format", "json_format"]),
    ("envoy.extensions.bootstrap.internal_listener.v3.InternalListener", &["~buffer_size_kb"]),
    ("envoy.config.bootstrap.v3.ClusterManager", &["local_cluster_name", "~enable_deferred_cluster_creation", "outlier_detection"]),
    ("envoy.config.bootstrap.v3.ClusterManager.OutlierDetection", &["event_log_path"]),
    ("envoy.config.bootstrap.v3.Bootstrap.StaticResources", &["listeners", "clusters", "secrets"]),
    ("envoy.config.bootstrap.v3.Bootstrap.DynamicResources", &["lds_config", "cds_config", "ads_config"]),
    ("envoy.config.core.v3.ConfigSource", &["ads", "api_config_source", "resource_api_version", "initial_fetch_timeout"]),
    ("envoy.config.core.v3.AggregatedConfigSource", &["*"]),
    ("envoy.config.core.v3.ApiConfigSource", &["api_type", "transport_api_version", "grpc_services", "set_node_on_first_message_only", "~refresh_delay", "~request_timeout", "~rate_limit_settings"]),
    ("envoy.config.core.v3.RateLimitSettings", &["*"]),
    ("envoy.config.core.v3.GrpcService", &["envoy_grpc", "timeout", "initial_metadata"]),
    ("envoy.config.core.v3.GrpcService.EnvoyGrpc", &["cluster_name", "authority", "~retry_policy", "~max_receive_message_length"]),
    ("envoy.config.core.v3.RetryPolicy", &["*"]),
    ("envoy.config.core.v3.BackoffStrategy", &["*"]),
    ("envoy.config.core.v3.Pipe", &["path", "~mode"]),
    ("envoy.config.bootstrap.v3.Admin", &["address", "access_log", "access_log_path", "~profile_path", "~socket_options", "ignore_global_conn_limit"]),
    ("envoy.config.core.v3.Node", &["*"]),
    ("envoy.config.core.v3.Locality", &["*"]),
    ("envoy.config.core.v3.Metadata", &["*"]),
    ("envoy.config.core.v3.BuildVersion", &["*"]),
    ("envoy.config.core.v3.Extension", &["*"]),
    ("envoy.config.core.v3.SocketOption", &["*"]),
    ("envoy.config.core.v3.SocketOptionsOverride", &["*"]),
    ("envoy.config.metrics.v3.StatsConfig", &["*"]),
    ("envoy.config.metrics.v3.TagSpecifier", &["*"]),
    ("envoy.config.metrics.v3.StatsMatcher", &["*"]),
    ("envoy.config.metrics.v3.HistogramBucketSettings", &["*"]),
    ("envoy.config.bootstrap.v3.LayeredRuntime", &["*"]),
    ("envoy.config.bootstrap.v3.RuntimeLayer", &["*"]),
    ("envoy.config.bootstrap.v3.RuntimeLayer.DiskLayer", &["*"]),
    ("envoy.config.bootstrap.v3.RuntimeLayer.AdminLayer", &["*"]),
    ("envoy.config.bootstrap.v3.RuntimeLayer.RtdsLayer", &["*"]),
    ("envoy.config.bootstrap.v3.Watchdog", &["*"]),
    ("envoy.config.bootstrap.v3.Watchdogs", &["*"]),
    ("envoy.config.overload.v3.OverloadManager", &["refresh_interval", "resource_monitors", "actions", "~buffer_factory_config"]),
    ("envoy.config.overload.v3.ResourceMonitor", &["name", "typed_config"]),
    ("envoy.config.overload.v3.OverloadAction", &["name", "triggers"]),
    ("envoy.config.overload.v3.Trigger", &["name", "threshold", "scaled"]),
    ("envoy.config.overload.v3.ThresholdTrigger", &["*"]),
    ("envoy.config.overload.v3.ScaledTrigger", &["*"]),
    ("envoy.config.overload.v3.BufferFactoryConfig", &["*"]),
    ("envoy.extensions.resource_monitors.fixed_heap.v3.FixedHeapConfig", &["max_heap_size_bytes"]),
    ("envoy.extensions.resource_monitors.cgroup_memory.v3.CgroupMemoryConfig", &["max_memory_bytes"]),
    ("envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig", &["max_active_downstream_connections"]),
    ("envoy.config.accesslog.v3.AccessLog", &["*"]),
    ("envoy.config.accesslog.v3.AccessLogFilter", &["*"]),
    ("envoy.extensions.access_loggers.file.v3.FileAccessLog", &["*"]),
    ("envoy.extensions.access_loggers.stream.v3.StdoutAccessLog", &["*"]),
    ("envoy.extensions.access_loggers.stream.v3.StderrAccessLog", &["*"]),
    ("envoy.config.core.v3.SubstitutionFormatString", &["*"]),
    ("envoy.config.core.v3.TypedExtensionConfig", &["name", "typed_config"]),
    // addresses
    ("envoy.config.core.v3.Address", &["socket_address", "pipe"]),
    ("envoy.config.core.v3.SocketAddress", &["address", "port_value", "protocol", "ipv4_compat"]),
    ("envoy.config.core.v3.CidrRange", &["address_prefix", "prefix_len"]),
    // listeners
    ("envoy.config.listener.v3.Listener", &["name", "address", "additional_addresses", "filter_chains", "default_filter_chain", "listener_filters", "listener_filters_timeout", "continue_on_listener_filters_timeout", "~stat_prefix", "per_connection_buffer_limit_bytes", "~metadata", "traffic_direction", "~drain_type", "~socket_options", "~enable_reuse_port", "~reuse_port", "~tcp_fast_open_queue_length", "~tcp_backlog_size", "ignore_global_conn_limit", "bypass_overload_manager", "use_original_dst", "bind_to_port", "transparent", "freebind", "access_log"]),
    ("envoy.config.listener.v3.ListenerFilter", &["name", "typed_config", "filter_disabled"]),
    ("envoy.config.listener.v3.ListenerFilterChainMatchPredicate", &["or_match", "and_match", "not_match", "any_match", "destination_port_range"]),
    ("envoy.config.listener.v3.ListenerFilterChainMatchPredicate.MatchSet", &["rules"]),
    ("envoy.type.v3.Int32Range", &["*"]),
    ("envoy.extensions.filters.listener.original_dst.v3.OriginalDst", &["*"]),
    ("envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector", &["~initial_read_buffer_size", "~enable_ja3_fingerprinting"]),
    ("envoy.extensions.filters.listener.http_inspector.v3.HttpInspector", &["*"]),
    ("envoy.config.listener.v3.AdditionalAddress", &["address"]),
    ("envoy.config.listener.v3.FilterChain", &["filter_chain_match", "filters", "name", "~metadata", "~transport_socket_connect_timeout", "transport_socket"]),
    // TLS
    ("envoy.config.core.v3.TransportSocket", &["name", "typed_config"]),
    ("envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer", &["*"]),
    ("envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext", &["common_tls_context", "require_client_certificate", "~session_timeout", "~disable_stateful_session_resumption", "~session_ticket_keys", "~disable_stateless_session_resumption"]),
    ("envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext", &["common_tls_context", "sni", "~allow_renegotiation", "~max_session_keys"]),
    ("envoy.extensions.transport_sockets.tls.v3.CommonTlsContext", &["tls_params", "tls_certificates", "tls_certificate_sds_secret_configs", "validation_context", "validation_context_sds_secret_config", "combined_validation_context", "alpn_protocols"]),
    ("envoy.extensions.transport_sockets.tls.v3.CommonTlsContext.CombinedCertificateValidationContext", &["default_validation_context", "validation_context_sds_secret_config"]),
    ("envoy.extensions.transport_sockets.tls.v3.TlsParameters", &["tls_minimum_protocol_version", "tls_maximum_protocol_version", "cipher_suites", "ecdh_curves"]),
    ("envoy.extensions.transport_sockets.tls.v3.TlsCertificate", &["certificate_chain", "private_key"]),
    ("envoy.extensions.transport_sockets.tls.v3.CertificateValidationContext", &["trusted_ca", "match_typed_subject_alt_names", "match_subject_alt_names", "crl", "only_verify_leaf_cert_crl"]),
    ("envoy.extensions.transport_sockets.tls.v3.SubjectAltNameMatcher", &["san_type", "matcher"]),
    ("envoy.extensions.transport_sockets.tls.v3.SdsSecretConfig", &["name", "sds_config"]),
    ("envoy.extensions.transport_sockets.tls.v3.TlsSessionTicketKeys", &["*"]),
    ("envoy.extensions.transport_sockets.tls.v3.Secret", &["name", "tls_certificate", "validation_context"]),
    ("envoy.config.listener.v3.FilterChainMatch", &["destination_port", "prefix_ranges", "direct_source_prefix_ranges", "source_type", "source_prefix_ranges", "source_ports", "server_names", "transport_protocol", "application_protocols"]),
    ("envoy.config.listener.v3.Filter", &["name", "typed_config"]),
    // network filters
    ("envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy", &["stat_prefix", "cluster", "weighted_clusters", "idle_timeout", "max_connect_attempts", "access_log", "~max_downstream_connection_duration"]),
    ("envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy.WeightedCluster", &["clusters"]),
    ("envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy.WeightedCluster.ClusterWeight", &["name", "weight"]),
    ("envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager", &["codec_type", "stat_prefix", "route_config", "rds", "http_filters", "server_name", "server_header_transformation", "use_remote_address", "skip_xff_append", "xff_num_trusted_hops", "via", "generate_request_id", "preserve_external_request_id", "always_set_request_id_in_response", "upgrade_configs", "request_headers_timeout", "stream_idle_timeout", "request_timeout", "max_request_headers_kb", "common_http_protocol_options", "http_protocol_options", "http2_protocol_options", "strip_matching_host_port", "strip_any_host_port", "internal_address_config", "merge_slashes", "normalize_path", "path_with_escaped_slashes_action", "request_id_extension", "tracing", "access_log", "drain_timeout", "forward_client_cert_details", "set_current_client_cert_details", "~delayed_close_timeout", "~stream_flush_timeout"]),
    ("envoy.extensions.filters.network.http_connection_manager.v3.Rds", &["config_source", "route_config_name"]),
    ("envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.UpgradeConfig", &["upgrade_type", "enabled"]),
    ("envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.SetCurrentClientCertDetails", &["subject", "cert", "chain", "dns", "uri", "issuer", "format"]),
    ("envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.InternalAddressConfig", &["cidr_ranges"]),
    ("envoy.extensions.filters.network.http_connection_manager.v3.HttpFilter", &["name", "typed_config"]),
    ("envoy.extensions.filters.http.router.v3.Router", &["suppress_envoy_headers", "~dynamic_stats", "~start_child_span"]),
    ("envoy.config.core.v3.HttpProtocolOptions", &["idle_timeout", "max_headers_count", "max_response_headers_kb", "max_requests_per_connection", "~max_connection_duration", "max_stream_duration", "headers_with_underscores_action"]),
    ("envoy.config.core.v3.Http1ProtocolOptions", &["accept_http_10", "default_host_for_http_10"]),
    ("envoy.config.core.v3.Http2ProtocolOptions", &["~hpack_table_size", "max_concurrent_streams", "initial_stream_window_size", "initial_connection_window_size", "~max_outbound_frames", "~max_outbound_control_frames", "~max_consecutive_inbound_frames_with_empty_payload", "~max_inbound_priority_frames_per_stream", "~max_inbound_window_update_frames_per_data_frame_sent", "~connection_keepalive"]),
    ("envoy.config.core.v3.KeepaliveSettings", &["*"]),
    // routes
    ("envoy.config.route.v3.RouteConfiguration", &["name", "virtual_hosts", "typed_per_filter_config", "request_headers_to_add", "request_headers_to_remove", "response_headers_to_add", "response_headers_to_remove", "validate_clusters", "internal_only_headers", "ignore_port_in_host_matching", "~max_direct_response_body_size_bytes"]),
    ("envoy.config.route.v3.VirtualHost", &["name", "domains", "routes", "request_mirror_policies", "typed_per_filter_config", "retry_policy", "include_request_attempt_count", "include_attempt_count_in_response", "per_request_buffer_limit_bytes", "request_body_buffer_limit", "request_headers_to_add", "request_headers_to_remove", "response_headers_to_add", "response_headers_to_remove", "~metadata"]),
    ("envoy.config.route.v3.Route", &["name", "match", "route", "typed_per_filter_config", "per_request_buffer_limit_bytes", "request_body_buffer_limit", "redirect", "direct_response", "request_headers_to_add", "request_headers_to_remove", "response_headers_to_add", "response_headers_to_remove", "~metadata", "decorator"]),
    ("envoy.config.route.v3.Decorator", &["*"]),
    ("envoy.config.route.v3.RouteMatch", &["prefix", "path", "safe_regex", "path_separated_prefix", "case_sensitive", "headers", "query_parameters", "grpc"]),
    ("envoy.config.route.v3.RouteMatch.GrpcRouteMatchOptions", &["*"]),
    ("envoy.config.route.v3.HeaderMatcher", &["name", "exact_match", "safe_regex_match", "range_match", "present_match", "prefix_match", "suffix_match", "contains_match", "string_match", "invert_match", "treat_missing_header_as_empty"]),
    ("envoy.config.route.v3.QueryParameterMatcher", &["name", "string_match", "present_match"]),
    ("envoy.type.matcher.v3.StringMatcher", &["exact", "prefix", "suffix", "safe_regex", "contains", "ignore_case"]),
    ("envoy.type.matcher.v3.RegexMatcher", &["regex", "google_re2"]),
    ("envoy.type.matcher.v3.RegexMatcher.GoogleRE2", &["~max_program_size"]),
    ("envoy.type.matcher.v3.RegexMatchAndSubstitute", &["pattern", "substitution"]),
    ("envoy.type.v3.Int64Range", &["*"]),
    ("envoy.config.route.v3.RouteAction", &["hash_policy", "cluster", "cluster_header", "weighted_clusters", "cluster_not_found_response_code", "prefix_rewrite", "regex_rewrite", "host_rewrite_literal", "auto_host_rewrite", "host_rewrite_header", "timeout", "upgrade_configs", "retry_policy", "request_mirror_policies", "idle_timeout", "max_stream_duration", "max_grpc_timeout", "grpc_timeout_offset"]),
    ("envoy.config.route.v3.RouteAction.MaxStreamDuration", &["max_stream_duration", "grpc_timeout_header_max", "grpc_timeout_header_offset"]),
    ("envoy.config.route.v3.RouteAction.RequestMirrorPolicy", &["cluster", "cluster_header", "runtime_fraction", "disable_shadow_host_suffix_append", "host_rewrite_literal", "~trace_sampled"]),
    ("envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit", &["stat_prefix", "status", "token_bucket", "filter_enabled", "filter_enforced", "response_headers_to_add", "enable_x_ratelimit_headers", "rate_limited_as_resource_exhausted", "~stage", "~always_consume_default_token_bucket"]),
    ("envoy.type.v3.TokenBucket", &["*"]),
    ("envoy.config.core.v3.RuntimeFractionalPercent", &["default_value", "~runtime_key"]),
    ("envoy.type.v3.HttpStatus", &["*"]),
    ("envoy.extensions.filters.http.rbac.v3.RBAC", &["rules", "shadow_rules", "rules_stat_prefix", "shadow_rules_stat_prefix"]),
    ("envoy.extensions.filters.http.rbac.v3.RBACPerRoute", &["rbac"]),
    ("envoy.config.rbac.v3.RBAC", &["action", "policies"]),
    ("envoy.config.rbac.v3.Policy", &["permissions", "principals"]),
    ("envoy.config.rbac.v3.Permission", &["any", "and_rules", "or_rules", "not_rule", "header", "url_path", "destination_ip", "destination_port", "destination_port_range", "requested_server_name", "metadata"]),
    ("envoy.config.rbac.v3.Permission.Set", &["rules"]),
    ("envoy.type.matcher.v3.MetadataMatcher", &["filter", "path", "value", "invert"]),
    ("envoy.extensions.filters.http.ext_authz.v3.ExtAuthz", &["grpc_service", "http_service", "transport_api_version", "failure_mode_allow", "failure_mode_allow_header_add", "with_request_body", "clear_route_cache", "status_on_error", "filter_enabled", "filter_enabled_metadata", "deny_at_disable", "include_peer_certificate", "stat_prefix"]),
    ("envoy.config.core.v3.HttpUri", &["uri", "cluster", "timeout"]),
    ("envoy.extensions.filters.http.ext_authz.v3.HttpService", &["server_uri", "path_prefix", "authorization_request", "authorization_response"]),
    ("envoy.extensions.filters.http.ext_authz.v3.AuthorizationRequest", &["allowed_headers", "headers_to_add"]),
    ("envoy.extensions.filters.http.ext_authz.v3.AuthorizationResponse", &["allowed_upstream_headers", "allowed_upstream_headers_to_append", "allowed_client_headers", "allowed_client_headers_on_success"]),
    ("envoy.extensions.filters.http.ext_authz.v3.BufferSettings", &["max_request_bytes", "allow_partial_message", "pack_as_bytes"]),
    ("envoy.extensions.filters.network.ext_authz.v3.ExtAuthz", &["stat_prefix", "grpc_service", "failure_mode_allow", "include_peer_certificate", "transport_api_version", "filter_enabled_metadata", "bootstrap_metadata_labels_key", "include_tls_session", "send_tls_alert_on_denial", "metadata_context_namespaces"]),
    ("envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute", &["disabled", "check_settings"]),
    ("envoy.extensions.filters.http.ext_authz.v3.CheckSettings", &["context_extensions", "disable_request_body_buffering"]),
    ("envoy.type.matcher.v3.MetadataMatcher.PathSegment", &["key"]),
    ("envoy.type.matcher.v3.ValueMatcher", &["null_match", "double_match", "string_match", "bool_match", "present_match", "list_match", "or_match"]),
    ("envoy.type.matcher.v3.ValueMatcher.NullMatch", &["*"]),
    ("envoy.type.matcher.v3.ListMatcher", &["one_of"]),
    ("envoy.type.matcher.v3.OrMatcher", &["value_matchers"]),
    ("envoy.type.matcher.v3.DoubleMatcher", &["*"]),
    ("envoy.config.rbac.v3.Principal", &["any", "and_ids", "or_ids", "not_id", "authenticated", "source_ip", "direct_remote_ip", "remote_ip", "header", "url_path", "filter_state", "metadata"]),
    ("envoy.config.rbac.v3.Principal.Set", &["ids"]),
    ("envoy.config.rbac.v3.Principal.Authenticated", &["principal_name"]),
    ("envoy.type.matcher.v3.PathMatcher", &["path"]),
    ("envoy.type.matcher.v3.FilterStateMatcher", &["key", "string_match"]),
    ("envoy.extensions.filters.network.rbac.v3.RBAC", &["rules", "shadow_rules", "stat_prefix", "shadow_rules_stat_prefix", "enforcement_type"]),
    ("envoy.extensions.filters.network.local_ratelimit.v3.LocalRateLimit", &["stat_prefix", "token_bucket", "runtime_enabled", "~share_key"]),
    ("envoy.extensions.filters.network.connection_limit.v3.ConnectionLimit", &["stat_prefix", "max_connections", "delay", "runtime_enabled"]),
    ("envoy.config.core.v3.RuntimeFeatureFlag", &["default_value", "~runtime_key"]),
    ("envoy.extensions.filters.http.cors.v3.Cors", &["*"]),
    ("envoy.extensions.filters.http.compressor.v3.Compressor", &["content_length", "content_type", "disable_on_etag_header", "remove_accept_encoding_header", "runtime_enabled", "compressor_library", "request_direction_config", "response_direction_config", "choose_first"]),
    ("envoy.extensions.filters.http.compressor.v3.Compressor.ResponseDirectionConfig", &["common_config", "disable_on_etag_header", "weaken_etag_on_compress", "remove_accept_encoding_header", "uncompressible_response_codes", "status_header_enabled"]),
    ("envoy.extensions.filters.http.compressor.v3.Compressor.CommonDirectionConfig", &["enabled", "min_content_length", "content_type", "content_type_matcher"]),
    ("envoy.extensions.compression.gzip.compressor.v3.Gzip", &["compression_level", "~memory_level", "~compression_strategy", "~window_bits", "~chunk_size"]),
    ("envoy.extensions.compression.brotli.compressor.v3.Brotli", &["quality", "window_bits", "~encoder_mode", "~input_block_bits", "~chunk_size", "~disable_literal_context_modeling"]),
    ("envoy.extensions.compression.zstd.compressor.v3.Zstd", &["compression_level", "enable_checksum", "~strategy", "dictionary", "~chunk_size"]),
    ("envoy.extensions.filters.http.grpc_stats.v3.FilterConfig", &["~emit_filter_state", "stats_for_all_methods", "individual_method_stats_allowlist", "enable_upstream_stats", "replace_dots_in_grpc_service_name"]),
    ("envoy.config.core.v3.GrpcMethodList", &["services"]),
    ("envoy.config.core.v3.GrpcMethodList.Service", &["name", "method_names"]),
    ("envoy.extensions.filters.http.cors.v3.CorsPolicy", &["allow_origin_string_match", "allow_methods", "allow_headers", "expose_headers", "max_age", "allow_credentials", "filter_enabled", "shadow_enabled", "forward_not_matching_preflights"]),
    ("envoy.config.route.v3.FilterConfig", &["config", "disabled", "is_optional"]),
    ("envoy.extensions.filters.http.fault.v3.HTTPFault", &["delay", "abort", "upstream_cluster", "headers", "downstream_nodes", "max_active_faults", "response_rate_limit"]),
    ("envoy.extensions.filters.common.fault.v3.FaultRateLimit", &["fixed_limit", "header_limit", "percentage"]),
    ("envoy.extensions.filters.common.fault.v3.FaultRateLimit.FixedLimit", &["*"]),
    ("envoy.extensions.filters.common.fault.v3.FaultRateLimit.HeaderLimit", &["*"]),
    ("envoy.extensions.filters.http.fault.v3.FaultAbort", &["http_status", "grpc_status", "header_abort", "percentage", "response_body"]),
    ("envoy.extensions.filters.http.fault.v3.FaultAbort.HeaderAbort", &["*"]),
    ("envoy.extensions.filters.common.fault.v3.FaultDelay", &["fixed_delay", "header_delay", "percentage"]),
    ("envoy.extensions.filters.common.fault.v3.FaultDelay.HeaderDelay", &["*"]),
    ("envoy.config.route.v3.RetryPolicy", &["retry_on", "num_retries", "per_try_timeout", "per_try_idle_timeout", "retry_host_predicate", "host_selection_retry_max_attempts", "retriable_status_codes", "retry_back_off", "retriable_headers", "retriable_request_headers"]),
    ("envoy.config.route.v3.RetryPolicy.RetryBackOff", &["base_interval", "max_interval"]),
    ("envoy.config.route.v3.RetryPolicy.RetryHostPredicate", &["name", "typed_config"]),
    ("envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate", &["*"]),
    ("envoy.config.route.v3.RouteAction.HashPolicy", &["header", "cookie", "connection_properties", "query_parameter", "filter_state", "terminal"]),
    ("envoy.config.route.v3.RouteAction.HashPolicy.Header", &["header_name", "regex_rewrite"]),
    ("envoy.config.route.v3.RouteAction.HashPolicy.Cookie", &["name", "ttl", "path", "attributes"]),
    ("envoy.config.route.v3.RouteAction.HashPolicy.CookieAttribute", &["name", "value"]),
    ("envoy.config.route.v3.RouteAction.HashPolicy.ConnectionProperties", &["source_ip"]),
    ("envoy.config.route.v3.RouteAction.HashPolicy.QueryParameter", &["name"]),
    ("envoy.config.route.v3.RouteAction.HashPolicy.FilterState", &["key"]),
    ("envoy.config.route.v3.RouteAction.UpgradeConfig", &["upgrade_type", "enabled"]),
    ("envoy.config.route.v3.WeightedCluster", &["clusters", "total_weight", "~runtime_key_prefix"]),
    ("envoy.config.route.v3.WeightedCluster.ClusterWeight", &["name", "weight", "request_headers_to_add", "request_headers_to_remove", "response_headers_to_add", "response_headers_to_remove"]),
    ("envoy.config.route.v3.RedirectAction", &["https_redirect", "scheme_redirect", "host_redirect", "port_redirect", "path_redirect", "prefix_rewrite", "regex_rewrite", "response_code", "strip_query"]),
    ("envoy.config.route.v3.DirectResponseAction", &["status", "body"]),
    ("envoy.config.core.v3.DataSource", &["inline_string", "inline_bytes", "filename"]),
    ("envoy.config.core.v3.HeaderValueOption", &["header", "append", "append_action", "keep_empty_value"]),
    ("envoy.config.core.v3.HeaderValue", &["key", "value", "raw_value"]),
    ("envoy.config.core.v3.RuntimeFeatureFlag", &["default_value", "~runtime_key"]),
    // clusters
    ("envoy.config.cluster.v3.Cluster", &["name", "type", "eds_cluster_config", "connect_timeout", "lb_policy", "load_assignment", "dns_lookup_family", "dns_refresh_rate", "typed_extension_protocol_options", "http2_protocol_options", "http_protocol_options", "common_http_protocol_options", "alt_stat_name", "~per_connection_buffer_limit_bytes", "metadata", "~respect_dns_ttl", "max_requests_per_connection", "cleanup_interval", "original_dst_lb_config", "least_request_lb_config", "round_robin_lb_config", "upstream_bind_config", "upstream_connection_options", "~dns_jitter", "~dns_failure_refresh_rate", "~track_cluster_stats", "transport_socket", "transport_socket_matches", "circuit_breakers", "outlier_detection", "common_lb_config", "health_checks", "ring_hash_lb_config", "maglev_lb_config", "load_balancing_policy", "filters"]),
    ("envoy.config.cluster.v3.Cluster.RingHashLbConfig", &["minimum_ring_size", "maximum_ring_size", "hash_function"]),
    ("envoy.config.cluster.v3.Cluster.MaglevLbConfig", &["table_size"]),
    ("envoy.config.cluster.v3.Cluster.TransportSocketMatch", &["name", "match", "transport_socket"]),
    ("envoy.config.cluster.v3.Cluster.CommonLbConfig.ConsistentHashingLbConfig", &["use_hostname_for_hashing", "hash_balance_factor"]),
    ("envoy.extensions.load_balancing_policies.common.v3.ConsistentHashingLbConfig", &["use_hostname_for_hashing", "hash_balance_factor"]),
    ("envoy.config.cluster.v3.LoadBalancingPolicy", &["policies"]),
    ("envoy.config.cluster.v3.LoadBalancingPolicy.Policy", &["typed_extension_config"]),
    ("envoy.extensions.load_balancing_policies.round_robin.v3.RoundRobin", &["slow_start_config"]),
    ("envoy.extensions.load_balancing_policies.common.v3.SlowStartConfig", &["slow_start_window", "aggression", "min_weight_percent"]),
    ("envoy.config.cluster.v3.Cluster.SlowStartConfig", &["slow_start_window", "aggression", "min_weight_percent"]),
    ("envoy.config.cluster.v3.Cluster.RoundRobinLbConfig", &["slow_start_config"]),
    ("envoy.extensions.load_balancing_policies.random.v3.Random", &[]),
    ("envoy.extensions.load_balancing_policies.least_request.v3.LeastRequest", &["choice_count", "active_request_bias", "selection_method", "slow_start_config"]),
    ("envoy.config.core.v3.RuntimeDouble", &["default_value", "~runtime_key"]),
    ("envoy.extensions.load_balancing_policies.ring_hash.v3.RingHash", &["hash_function", "minimum_ring_size", "maximum_ring_size", "use_hostname_for_hashing", "hash_balance_factor", "consistent_hashing_lb_config"]),
    ("envoy.extensions.load_balancing_policies.maglev.v3.Maglev", &["table_size", "consistent_hashing_lb_config"]),
    ("envoy.config.core.v3.HealthCheck", &["timeout", "interval", "initial_jitter", "interval_jitter", "interval_jitter_percent", "unhealthy_threshold", "healthy_threshold", "alt_port", "reuse_connection", "http_health_check", "tcp_health_check", "grpc_health_check", "custom_health_check", "no_traffic_interval", "no_traffic_healthy_interval", "unhealthy_interval", "unhealthy_edge_interval", "healthy_edge_interval", "~event_log_path", "~always_log_health_check_failures", "~always_log_health_check_success"]),
    ("envoy.config.core.v3.HealthCheck.HttpHealthCheck", &["host", "path", "send", "receive", "request_headers_to_add", "request_headers_to_remove", "expected_statuses", "retriable_statuses", "codec_client_type", "service_name_matcher", "method", "~response_buffer_size"]),
    ("envoy.config.core.v3.HealthCheck.TcpHealthCheck", &["send", "receive", "proxy_protocol_config"]),
    ("envoy.config.core.v3.HealthCheck.GrpcHealthCheck", &["service_name", "authority", "initial_metadata"]),
    ("envoy.config.core.v3.HealthCheck.Payload", &["text", "binary"]),
    ("envoy.config.cluster.v3.Cluster.CommonLbConfig", &["healthy_panic_threshold", "consistent_hashing_lb_config", "locality_weighted_lb_config", "zone_aware_lb_config", "~update_merge_window"]),
    ("envoy.config.cluster.v3.Cluster.CommonLbConfig.ZoneAwareLbConfig", &["routing_enabled", "min_cluster_size", "fail_traffic_on_panic"]),
    ("envoy.config.cluster.v3.Cluster.CommonLbConfig.LocalityWeightedLbConfig", &[]),
    ("envoy.config.cluster.v3.OutlierDetection", &["consecutive_5xx", "interval", "base_ejection_time", "max_ejection_percent", "enforcing_consecutive_5xx", "enforcing_success_rate", "success_rate_minimum_hosts", "success_rate_request_volume", "success_rate_stdev_factor", "consecutive_gateway_failure", "enforcing_consecutive_gateway_failure", "split_external_local_origin_errors", "consecutive_local_origin_failure", "enforcing_consecutive_local_origin_failure", "enforcing_local_origin_success_rate", "failure_percentage_threshold", "enforcing_failure_percentage", "enforcing_failure_percentage_local_origin", "failure_percentage_minimum_hosts", "failure_percentage_request_volume", "max_ejection_time", "max_ejection_time_jitter", "successful_active_health_check_uneject_host", "monitors", "always_eject_one_host", "detect_degraded_hosts"]),
    ("envoy.config.cluster.v3.CircuitBreakers", &["thresholds", "per_host_thresholds"]),
    ("envoy.config.cluster.v3.CircuitBreakers.Thresholds", &["priority", "max_connections", "max_pending_requests", "max_requests", "max_retries", "track_remaining", "retry_budget", "max_connection_pools"]),
    ("envoy.config.cluster.v3.UpstreamConnectionOptions", &["tcp_keepalive", "happy_eyeballs_config", "~set_local_interface_name_on_upstream_connections"]),
    ("envoy.config.core.v3.TcpKeepalive", &["keepalive_probes", "keepalive_time", "keepalive_interval"]),
    ("envoy.config.cluster.v3.Cluster.LeastRequestLbConfig", &["choice_count", "active_request_bias", "slow_start_config"]),
    ("envoy.config.cluster.v3.Cluster.OriginalDstLbConfig", &["use_http_header", "http_header_name", "upstream_port_override", "metadata_key"]),
    ("envoy.config.core.v3.BindConfig", &["source_address", "freebind"]),
    ("envoy.config.cluster.v3.Cluster.EdsClusterConfig", &["eds_config", "service_name"]),
    ("envoy.config.cluster.v3.Cluster.RefreshRate", &["*"]),
    ("envoy.config.cluster.v3.TrackClusterStats", &["*"]),
    ("envoy.config.endpoint.v3.ClusterLoadAssignment", &["cluster_name", "endpoints", "~policy"]),
    ("envoy.config.endpoint.v3.ClusterLoadAssignment.Policy", &["overprovisioning_factor", "weighted_priority_health"]),
    ("envoy.config.endpoint.v3.LocalityLbEndpoints", &["lb_endpoints", "priority", "locality", "load_balancing_weight", "metadata"]),
    ("envoy.config.endpoint.v3.LbEndpoint", &["endpoint", "health_status", "load_balancing_weight", "metadata"]),
    ("envoy.config.endpoint.v3.Endpoint", &["address", "hostname", "~health_check_config"]),
    ("envoy.config.endpoint.v3.Endpoint.HealthCheckConfig", &["*"]),
    ("envoy.extensions.upstreams.http.v3.HttpProtocolOptions", &["common_http_protocol_options", "explicit_http_config", "use_downstream_protocol_config", "auto_config", "~upstream_http_protocol_options"]),
    ("envoy.extensions.upstreams.http.v3.HttpProtocolOptions.AutoHttpConfig", &["http_protocol_options", "http2_protocol_options"]),
    ("envoy.extensions.upstreams.http.v3.HttpProtocolOptions.ExplicitHttpConfig", &["http_protocol_options", "http2_protocol_options"]),
    ("envoy.extensions.upstreams.http.v3.HttpProtocolOptions.UseDownstreamHttpConfig", &["http_protocol_options", "http2_protocol_options"]),
    ("envoy.config.core.v3.UpstreamHttpProtocolOptions", &["*"]),
    // plain data
    ("google.protobuf.Duration", &["*"]),
    ("stats.PluginConfig", &["*"]),
    ("io.istio.network.authn.Config", &[]),
    ("istio.envoy.config.filter.http.alpn.v2alpha1.FilterConfig", &["*"]),
    ("envoy.tcp.metadataexchange.config.MetadataExchange", &["*"]),
    ("envoy.config.cluster.v3.Filter", &["name", "typed_config"]),
    ("io.istio.http.peer_metadata.Config", &["*"]),
    // Tracing settings without a provider (what Istio sets on every connection manager) only
    // decide sampling for spans that are never sent: accepted; a provider is refused.
    ("envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.Tracing", &["client_sampling", "random_sampling", "overall_sampling", "~verbose", "max_path_tag_length", "custom_tags", "spawn_upstream_span", "provider"]),
    // The UUID request id (what Istio configures): its options only concern trace sampling.
    ("envoy.extensions.filters.network.http_connection_manager.v3.RequestIDExtension", &["typed_config"]),
    ("envoy.extensions.request_id.uuid.v3.UuidRequestIdConfig", &["~pack_trace_reason", "~use_request_id_for_trace_sampling"]),
    // Istio's null-VM Wasm plugins (mapped to the native ones; any other module is refused).
    ("envoy.extensions.filters.http.wasm.v3.Wasm", &["config"]),
    ("envoy.extensions.filters.network.wasm.v3.Wasm", &["config"]),
    ("envoy.extensions.wasm.v3.PluginConfig", &["name", "root_id", "vm_config", "configuration", "fail_open", "failure_policy"]),
    ("envoy.extensions.wasm.v3.VmConfig", &["vm_id", "runtime", "code", "~allow_precompiled", "~nack_on_code_cache_miss"]),
    ("envoy.config.core.v3.AsyncDataSource", &["local"]),
    ("google.protobuf.Timestamp", &["*"]),
    ("google.protobuf.Struct", &["*"]),
    ("google.protobuf.Value", &["*"]),
    ("google.protobuf.ListValue", &["*"]),
    ("google.protobuf.BoolValue", &["*"]),
    ("google.protobuf.UInt32Value", &["*"]),
    ("google.protobuf.UInt64Value", &["*"]),
    ("google.protobuf.Int32Value", &["*"]),
    ("google.protobuf.Int64Value", &["*"]),
    ("google.protobuf.DoubleValue", &["*"]),
    ("google.protobuf.StringValue", &["*"]),
    ("envoy.type.v3.Percent", &["*"]),
    ("envoy.type.v3.FractionalPercent", &["*"]),
];

/// Messages whose contents are plain data (or only ever tune): walked no further.
fn is_opaque(name: &str) -> bool {
    name.starts_with("google.protobuf.")
        || name.starts_with("envoy.config.metrics.")
        || name.starts_with("envoy.type.tracing.")
        || name.starts_with("envoy.type.metadata.")
        || name.starts_with("envoy.config.accesslog.")
        || name.starts_with("envoy.extensions.access_loggers.")
        // Istio's configs that Ferry converts whole, refusing what it does not implement.
        || name.starts_with("stats.")
        || name.starts_with("io.istio.http.peer_metadata.")
        || name.starts_with("istio.envoy.config.filter.http.alpn.")
}

enum Rule {
    All,
    Fields(HashMap<&'static str, bool>), // field → is tuning-only
}

fn table() -> &'static HashMap<&'static str, Rule> {
    static T: OnceLock<HashMap<&'static str, Rule>> = OnceLock::new();
    T.get_or_init(|| {
        SUPPORTED
            .iter()
            .map(|(msg, fields)| {
                let rule = if fields == &["*"] {
                    Rule::All
                } else {
                    Rule::Fields(
                        fields
                            .iter()
                            .map(|f| match f.strip_prefix('~') {
                                Some(f) => (f, true),
                                None => (*f, false),
                            })
                            .collect(),
                    )
                };
                (*msg, rule)
            })
            .collect()
    })
}

/// A tuning-only field that was set: accepted, not acted on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ignored {
    pub path: String,
}

/// Walks every set field of `msg`; returns the tuning-only fields that were set.
pub fn check(msg: &DynamicMessage, path: &str) -> Result<Vec<Ignored>> {
    let mut ignored = Vec::new();
    walk(msg, path, &mut ignored)?;
    Ok(ignored)
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_string()
    } else {
        format!("{path}.{field}")
    }
}

fn walk(msg: &DynamicMessage, path: &str, ignored: &mut Vec<Ignored>) -> Result<()> {
    let desc = msg.descriptor();
    let name = desc.full_name();
    if name == "google.protobuf.Any" {
        return walk_any(msg, path, ignored);
    }
    let rule = match table().get(name) {
        Some(r) => r,
        None if is_opaque(name) => return Ok(()),
        None => return err(path, format!("{name} is not supported by Ferry")),
    };
    for (field, value) in msg.fields() {
        let fpath = join(path, field.name());
        match rule {
            Rule::All => {
                if is_opaque(name) {
                    continue;
                }
            }
            Rule::Fields(fields) => match fields.get(field.name()) {
                None => return err(&fpath, "field is not supported by Ferry"),
                Some(true) => {
                    ignored.push(Ignored { path: fpath });
                    continue;
                }
                Some(false) => {}
            },
        }
        walk_value(value, &fpath, ignored)?;
    }
    Ok(())
}

fn walk_value(value: &Value, path: &str, ignored: &mut Vec<Ignored>) -> Result<()> {
    match value {
        Value::Message(m) => walk(m, path, ignored),
        Value::List(items) => {
            for (i, v) in items.iter().enumerate() {
                walk_value(v, &format!("{path}[{i}]"), ignored)?;
            }
            Ok(())
        }
        Value::Map(entries) => {
            for (k, v) in entries {
                let key = match k {
                    prost_reflect::MapKey::String(s) => s.clone(),
                    other => format!("{other:?}"),
                };
                walk_value(v, &format!("{path}[{key}]"), ignored)?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn walk_any(msg: &DynamicMessage, path: &str, ignored: &mut Vec<Ignored>) -> Result<()> {
    let type_url = msg
        .get_field_by_name("type_url")
        .and_then(|v| v.as_str().map(str::to_string));
    let bytes = msg
        .get_field_by_name("value")
        .and_then(|v| v.as_bytes().cloned());
    let (Some(type_url), Some(bytes)) = (type_url, bytes) else {
        return err(path, "Any without @type");
    };
    let inner = decode_any(&type_url, &bytes, path)?;
    walk(&inner, path, ignored)
}

/// Resolves an Any's `@type` in the descriptor pool and decodes its value.
pub fn decode_any(type_url: &str, bytes: &[u8], path: &str) -> Result<DynamicMessage> {
    let name = type_url.rsplit('/').next().unwrap_or_default();
    let Some(desc): Option<MessageDescriptor> = ferry_xds::pool::pool().get_message_by_name(name)
    else {
        return err(path, format!("unknown type {type_url}"));
    };
    DynamicMessage::decode(desc, bytes).map_err(|e| super::ConfigError {
        path: path.into(),
        msg: format!("cannot decode {type_url}: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every message and field named in the table exists in Envoy's API: a typo here would
    /// reject a field Ferry means to support.
    #[test]
    fn table_names_exist_in_the_api() {
        let pool = ferry_xds::pool::pool();
        let mut missing = Vec::new();
        for (msg, fields) in SUPPORTED {
            let Some(desc) = pool.get_message_by_name(msg) else {
                missing.push(msg.to_string());
                continue;
            };
            for f in fields.iter().filter(|f| **f != "*") {
                let f = f.trim_start_matches('~');
                if desc.get_field_by_name(f).is_none() {
                    missing.push(format!("{msg}.{f}"));
                }
            }
        }
        assert!(missing.is_empty(), "not in Envoy's API: {missing:?}");
    }
}
