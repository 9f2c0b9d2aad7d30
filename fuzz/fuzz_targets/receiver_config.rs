//! A receiver config file, as `receiver --config` loads it.
//!
//! Properties: a config that loads writes out as YAML and as JSON and loads back equal from
//! both; one that does not load says why.
#![no_main]

use libfuzzer_sys::fuzz_target;
use model::config::ReceiverConfig;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match ReceiverConfig::parse(text) {
        Ok(config) => {
            let yaml = serde_yaml::to_string(&config).expect("a config writes as YAML");
            let again =
                ReceiverConfig::parse(&yaml).unwrap_or_else(|e| panic!("written YAML loads back: {e:#}\n{yaml}"));
            assert_eq!(again, config, "{yaml}");
            let json = serde_json::to_string(&config).expect("a config writes as JSON");
            let again =
                ReceiverConfig::parse(&json).unwrap_or_else(|e| panic!("written JSON loads back: {e:#}\n{json}"));
            assert_eq!(again, config, "{json}");
        }
        Err(error) => assert!(!error.to_string().is_empty()),
    }
});
