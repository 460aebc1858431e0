//! `PREFIX`: every Redis lock name `open` accepts works, the others are
//! refused at `open`, and no message shows the host's namespace PREFIX.
use portalocker_guest::{Error, RedisLock};
use portalocker_test_programs::args;

fn main() {
    let prefix = &args()[0];
    for bad in ["a b", "caf\u{e9}", "tab\there", "new\nline"] {
        match RedisLock::open(bad, false) {
            Err(Error::InvalidArgument(message)) => {
                assert!(
                    !message.contains(prefix.as_str()),
                    "{bad:?}: the prefix leaked: {message}"
                );
                println!("{bad:?}: {message}");
            }
            other => panic!(
                "{bad:?}: expected invalid-argument, got {:?}",
                other.map(|l| l.name())
            ),
        }
    }
    for good in ["jobs", "a:b/c{d}-e_f!", &"x".repeat(256)] {
        let lock = RedisLock::open(good, true).unwrap();
        let guard = lock
            .try_lock()
            .unwrap_or_else(|e| panic!("{good:?}: {e:?}"));
        assert!(guard.fencing_token().is_some());
        guard.release().unwrap();
        drop(lock.lock_shared().unwrap());
    }
    println!("ok");
}
