//! `NAME EXPECT`: take the Redis lock, say "locked", wait for a line, then
//! check the guard reports EXPECT: `held`, or `lost` (the host killed the
//! lock's connection meanwhile: release must then report the loss).
use portalocker_guest::{Error, RedisLock};
use portalocker_test_programs::{args, assert_err, wait_for_line};

fn main() {
    let args = args();
    let lock = RedisLock::open(&args[0], false).unwrap();
    let guard = lock.lock().unwrap();
    println!("locked");
    wait_for_line();
    match args[1].as_str() {
        "held" => {
            assert!(!guard.is_lost());
            guard.release().unwrap();
        }
        "lost" => {
            // The loss reaches the host within a moment of the kill.
            let mut tries = 0;
            while !guard.is_lost() && tries < 200 {
                std::thread::sleep(std::time::Duration::from_millis(10));
                tries += 1;
            }
            assert!(guard.is_lost(), "the guard did not report the loss");
            assert_err!(guard.release(), Error::Lost);
        }
        other => panic!("unknown expectation {other}"),
    }
    println!("ok");
}
