//! Arbitrary `portalocker:locks` call sequences, made through the host glue
//! on a real `LocksCtx` over a temporary grant; a panic is a finding. Each
//! input that ever crashed is kept in `fuzz/regressions/host_calls/`, which
//! the normal suite replays.

#![no_main]

use libfuzzer_sys::fuzz_target;
use portalocker_wasmtime::fuzzing::{Sequence, run};

fuzz_target!(|sequence: Sequence| run(&sequence));
