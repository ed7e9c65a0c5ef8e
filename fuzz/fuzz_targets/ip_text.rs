#![no_main]
//! Fuzz target: the parser must never panic, whatever the bytes.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = cmdb_collect::collectors::nic::parse_ip_text(&String::from_utf8_lossy(data));
});
