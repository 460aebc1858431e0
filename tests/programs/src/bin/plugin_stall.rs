//! `HOW [SECS]`: say `started`, then stall: `sleep` SECS seconds in WASI,
//! block reading `stdin`, or `spin` in a busy loop; say `done` if it ever
//! ends.
use std::time::Duration;

use portalocker_test_programs::{args, wait_for_line};

fn main() {
    let args = args();
    println!("started");
    match args[0].as_str() {
        "sleep" => std::thread::sleep(Duration::from_secs_f64(args[1].parse().unwrap())),
        "stdin" => wait_for_line(),
        "spin" => {
            let mut x = 0u64;
            for i in 0..args[1].parse::<u64>().unwrap() {
                x = x.wrapping_mul(31).wrapping_add(i);
            }
            std::hint::black_box(x);
        }
        other => panic!("unknown stall {other}"),
    }
    println!("done");
}
