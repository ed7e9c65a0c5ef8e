#![no_main]
//! Fuzz target: the parser must never panic, whatever the bytes.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = cmdb_collect::collectors::board::dmidecode::parse_records(&text);
    let _ = cmdb_collect::collectors::board::parse_system(&text);
    let _ = cmdb_collect::collectors::board::sysfs::parse_dmi_sysfs(&text);
    let _ = cmdb_collect::collectors::memory::parse_memory_devices(&text);
});
