//! xDS resources as a control plane sends them: the first byte picks the type (Listener,
//! Cluster, RouteConfiguration, ClusterLoadAssignment), the rest is the resource's protobuf
//! encoding. Decoding, TypedStruct normalisation, the support check and conversion must
//! accept or NACK, never panic.
#![no_main]

use envoy_types::pb::google::protobuf::Any;
use ferry_xds::ads;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((kind, value)) = data.split_first() else {
        return;
    };
    let type_url = match kind % 4 {
        0 => ads::LISTENER,
        1 => ads::CLUSTER,
        2 => ads::ROUTE,
        _ => ads::ENDPOINT,
    };
    let any = Any {
        type_url: type_url.to_string(),
        value: value.to_vec(),
    };
    let _ = ferry::xds::resource::validate(&any);
});
