//! The config path: bytes as a bootstrap (YAML, or JSON when they start with `{`) through the
//! proto3 JSON mapping, the support check and conversion to the validated config. Any input
//! must give a config or an error with a field path, never a panic.
#![no_main]

use ferry::config::{bootstrap::Bootstrap, load};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let desc = load::descriptor(load::BOOTSTRAP);
    let raw = if data.first() == Some(&b'{') {
        load::from_json(data, &desc, false)
    } else {
        load::from_yaml(data, &desc, false)
    };
    if let Ok(raw) = raw {
        let _ = Bootstrap::from_dynamic(raw);
    }
});
