//! `PATH HOW`: take the lock, then end badly while holding it: `panic`
//! (a trap), `exit` (exit status 3), `loop` (stopped by fuel or epoch),
//! `forget` (leak the guard and return).
use portalocker_guest::{FileLock, Semaphore};
use portalocker_test_programs::args;

fn main() {
    let args = args();
    let lock = FileLock::open(&args[0]).unwrap();
    let guard = lock.lock().unwrap();
    let dir = args[0].rsplit_once('/').map_or(".", |(d, _)| d).to_owned();
    let sem = Semaphore::open("fault", 1, &dir).unwrap();
    let permit = sem.try_acquire().unwrap();
    println!("locked");
    match args[1].as_str() {
        "panic" => panic!("trapping while holding the lock"),
        "exit" => std::process::exit(3),
        "loop" => {
            let mut x = 0u64;
            loop {
                x = std::hint::black_box(x.wrapping_add(1));
            }
        }
        "forget" => {
            std::mem::forget(guard);
            std::mem::forget(permit);
        }
        other => panic!("unknown fault {other}"),
    }
}
