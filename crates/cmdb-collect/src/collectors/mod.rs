//! The built-in collectors, one folder each: the code, a doc comment listing exactly the commands
//! it runs (and which need root), and `testdata/` with real captured outputs.

pub mod basic;
pub mod board;
pub mod cpu;
pub mod disk;
pub mod memory;
pub mod nic;
