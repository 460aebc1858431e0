//! `A B`: take lock A then B (twice), then B then A, each time waiting,
//! and say how each went: `A,B: ok`, or the error. Under the host alone
//! every order is fine; behind the lockdep middleware the inverted order is
//! refused before it waits. A `try` of A while holding B is never refused
//! (a try cannot deadlock). Last, a bounded wait for A while holding A.
use portalocker_guest::FileLock;
use portalocker_test_programs::args;

fn main() {
    let args = args();
    let (a, b) = (&args[0], &args[1]);
    let la = FileLock::open(a).unwrap();
    let lb = FileLock::open(b).unwrap();
    let both = |first: &FileLock, second: &FileLock, label: &str| {
        let g1 = first.lock().unwrap();
        match second.lock() {
            Ok(g2) => {
                println!("{label}: ok");
                drop(g2);
            }
            Err(e) => println!("{label}: {e:?}"),
        }
        drop(g1);
    };
    both(&la, &lb, "A,B");
    both(&la, &lb, "A,B");
    both(&lb, &la, "B,A");
    let held = lb.lock().unwrap();
    match la.try_lock() {
        Ok(g) => {
            println!("B,try A: ok");
            drop(g);
        }
        Err(e) => println!("B,try A: {e:?}"),
    }
    drop(held);
    // A wait on a lock held here: on the host alone it waits on itself
    // (bounded here); lockdep refuses it.
    let held = la.lock().unwrap();
    let again = FileLock::open(a).unwrap();
    match again.lock_for(std::time::Duration::from_millis(50)) {
        Ok(_) => println!("A,A: ok"),
        Err(e) => println!("A,A: {e:?}"),
    }
    drop(held);
}
