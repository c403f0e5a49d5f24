//! The TOML and JSON configs: `TrainConfig` (TOML), `MineConfig` and `ModelConfig` (JSON) parse
//! or fail with an error; what parses round-trips.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(c) = swerl_grpo::TrainConfig::from_toml_str(text) {
        let again = swerl_grpo::TrainConfig::from_toml_str(&c.to_toml()).expect("round trip");
        assert!(again == c || format!("{again:?}") == format!("{c:?}"));
        let _ = c.validate();
    }
    if let Ok(c) = swerl_data::MineConfig::from_json_str(text, "fuzz.json".as_ref()) {
        let json = serde_json::to_string(&c).expect("serialises");
        let again = swerl_data::MineConfig::from_json_str(&json, "fuzz.json".as_ref()).expect("round trip");
        assert_eq!(again, c);
    }
    if let Ok(c) = swerl_model::ModelConfig::from_json_str(text, "fuzz.json") {
        c.validate("fuzz.json").expect("a parsed config is valid");
    }
});
