#![no_main]
//! Fuzz target: the parser must never panic, whatever the bytes.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let plan = cmdb_collect::Plan::all_builtin();
    let outputs = plan.split(data, "0123456789abcdef");
    let _ = plan.sections(&outputs);
});
