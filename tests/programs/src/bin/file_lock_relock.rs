//! `PATH EXPECT`: lock and release, say "released", wait for a line, then
//! try again and check the outcome is EXPECT (`free` or `held`). The host
//! may replace the lock file meanwhile: the second try must lock the file
//! the path names now, never the replaced one it had open.
use portalocker_guest::{Error, FileLock};
use portalocker_test_programs::{args, assert_err, wait_for_line};

fn main() {
    let args = args();
    let lock = FileLock::open(&args[0]).unwrap();
    lock.lock().unwrap().release().unwrap();
    println!("released");
    wait_for_line();
    match args[1].as_str() {
        "free" => drop(lock.try_lock().unwrap()),
        "held" => assert_err!(lock.try_lock(), Error::WouldBlock),
        other => panic!("unknown expectation {other}"),
    }
    println!("ok");
}
