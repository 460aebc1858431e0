//! `SHAPE=CANONICAL ...`: for each pair, write a marker through WASI at
//! SHAPE, lock SHAPE through the host, and check the lock is on the file
//! WASI wrote: a second lock on CANONICAL (the same file, named plainly)
//! contends, and CANONICAL holds the marker. `!SHAPE` must be refused as
//! ambiguous, `^SHAPE` as an escape (by WASI and by the lock alike).
use portalocker_guest::{Error, FileLock};
use portalocker_test_programs::args;

fn main() {
    for (i, spec) in args().iter().enumerate() {
        if let Some(shape) = spec.strip_prefix('!') {
            match FileLock::open(shape) {
                Err(Error::InvalidArgument(m)) => println!("{shape}: refused: {m}"),
                other => panic!(
                    "{shape}: expected invalid-argument, got {:?}",
                    other.map(|l| l.path())
                ),
            }
            continue;
        }
        if let Some(shape) = spec.strip_prefix('^') {
            assert!(
                std::fs::write(shape, "x").is_err(),
                "{shape}: WASI wrote outside"
            );
            let refused = FileLock::open(shape).and_then(|l| l.try_lock().map(drop));
            assert!(
                matches!(refused, Err(Error::AccessDenied(_))),
                "{shape}: {refused:?}"
            );
            println!("{shape}: escape refused by both");
            continue;
        }
        let (shape, canonical) = spec.split_once('=').unwrap();
        let marker = format!("marker {i}");
        std::fs::write(shape, &marker).unwrap_or_else(|e| panic!("{shape}: WASI write: {e}"));
        let lock = FileLock::open(shape).unwrap();
        let guard = lock.try_lock().unwrap_or_else(|e| panic!("{shape}: {e:?}"));
        let other = FileLock::open(canonical).unwrap();
        match other.try_lock() {
            Err(Error::WouldBlock) => {}
            Ok(_) => {
                panic!("{shape}: the lock is not on the file WASI wrote ({canonical} is free)")
            }
            Err(e) => panic!("{shape}: {canonical}: {e:?}"),
        }
        drop(guard);
        assert_eq!(
            std::fs::read_to_string(canonical).unwrap(),
            marker,
            "{shape}"
        );
        println!("{shape}: one file with {canonical}");
    }
    println!("ok");
}
