//! `NAME EXPECT`: one attempt at NAME; EXPECT is `held` (the host holds it
//! in the plugin's namespace), `free`, or `unsupported` (no Redis granted).
use portalocker_guest::{Error, RedisLock};
use portalocker_test_programs::{args, assert_err};

fn main() {
    let args = args();
    if args[1] == "unsupported" {
        assert_err!(RedisLock::open(&args[0], false), Error::Unsupported(_));
        println!("ok");
        return;
    }
    let lock = RedisLock::open(&args[0], false).unwrap();
    match args[1].as_str() {
        "held" => assert_err!(lock.try_lock(), Error::WouldBlock),
        "free" => drop(lock.try_lock().unwrap()),
        other => panic!("unknown expectation {other}"),
    }
    println!("ok");
}
