//! Every way out of the grant is refused, as an error value.
use portalocker_guest::{Error, FileLock, Semaphore};
use portalocker_test_programs::args;

fn refused(path: &str) -> Error {
    match FileLock::open(path) {
        Err(e) => e,
        Ok(lock) => match lock.try_lock() {
            Err(e) => e,
            Ok(_) => panic!("{path:?}: locked outside the sandbox"),
        },
    }
}

fn main() {
    let grant = &args()[0];
    let long = format!("{grant}/{}", "x".repeat(5000));
    for path in [
        "/etc/portalocker-escape.lock".to_string(),
        format!("{grant}/../escape.lock"),
        "../escape.lock".to_string(),
        "escape.lock".to_string(),
        format!("{grant}/link-out/escape.lock"),
        format!("{grant}/link-in.lock"),
        format!("{grant}/link-out.lock"),
    ] {
        let e = refused(&path);
        assert!(matches!(e, Error::AccessDenied(_)), "{path:?}: {e:?}");
        println!("{path}: {e:?}");
    }
    for path in [String::new(), format!("{grant}/a\0b"), long, grant.clone()] {
        let e = refused(&path);
        assert!(
            matches!(e, Error::InvalidArgument(_)),
            "{:?}: {e:?}",
            path.get(..40)
        );
    }
    for (name, slots, dir) in [
        ("../escape", 2, grant.as_str()),
        ("", 2, grant.as_str()),
        ("ok", 0, grant.as_str()),
        ("ok", 1_000_000, grant.as_str()),
    ] {
        let e = Semaphore::open(name, slots, dir).unwrap_err();
        assert!(
            matches!(e, Error::InvalidArgument(_)),
            "{name:?}/{slots}: {e:?}"
        );
    }
    for dir in ["/etc", "/", &format!("{grant}/../..")] {
        let e = Semaphore::open("ok", 2, dir).unwrap_err();
        assert!(matches!(e, Error::AccessDenied(_)), "{dir}: {e:?}");
    }
    let e = Semaphore::open("ok", 2, format!("{grant}/link-out"))
        .and_then(|s| s.try_acquire().map(drop))
        .unwrap_err();
    assert!(
        matches!(e, Error::AccessDenied(_)),
        "link-out semaphore: {e:?}"
    );
    println!("ok");
}
