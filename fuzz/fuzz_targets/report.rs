#![no_main]
//! Fuzz target: the parser must never panic, whatever the bytes.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = cmdb_model::parse_report(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = cmdb_model::signing::parse_authorization(text);
    }
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) {
        let _ = cmdb_model::legacy::to_report(&value, uuid::Uuid::nil(), chrono::Utc::now());
    }
});
