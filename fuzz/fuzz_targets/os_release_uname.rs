#![no_main]
//! Fuzz target: the parser must never panic, whatever the bytes.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = cmdb_collect::collectors::basic::parse_os_release(&text);
    let _ = cmdb_collect::collectors::basic::parse_uname(&text);
});
