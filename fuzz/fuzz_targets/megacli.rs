#![no_main]
//! Fuzz target: the parser must never panic, whatever the bytes.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = cmdb_collect::collectors::disk::megacli::parse_megacli(&text);
    let _ = cmdb_collect::collectors::disk::inquiry::split_inquiry(&text, Some("SATA"), Some("SN04"));
    let _ = cmdb_collect::collectors::disk::inquiry::split_inquiry(&text, Some("SAS"), None);
});
