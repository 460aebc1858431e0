//! An example `portalocker:locks@0.2.0` plugin: two tasks of one component
//! share a fenced lock file.
//!
//! The holder takes the lock and keeps it until told to let go. The waiter
//! first asks for the lock with a short timeout, which runs out while the
//! holder holds it; then it waits again, and lets the holder go while its
//! wait is pending: the lock passes to it, with a larger fencing token.
//! Both tasks wait in the host at the same time, and neither holds a host
//! thread while it waits.
//!
//! ```text
//! portalocker run --dir /srv/jobs::/jobs async_tasks.wasm -- /jobs/journal.lock
//! ```

use std::time::Duration;

use futures::channel::oneshot;
use portalocker_guest::aio::{self, Error, FileLock};

async fn main() -> Result<(), Error> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "/jobs/journal.lock".into());
    let (held_tx, held_rx) = oneshot::channel();
    let (release_tx, release_rx) = oneshot::channel::<()>();

    let holder_path = path.clone();
    let holder = aio::spawn(async move {
        let lock = FileLock::open(&holder_path, true)?;
        let guard = lock.lock().await?;
        let token = guard.fencing_token().unwrap_or(0);
        println!("holder: locked with token {token}");
        let _ = held_tx.send(token);
        let _ = release_rx.await;
        println!("holder: releasing");
        guard.release()
    });

    let holder_token = held_rx
        .await
        .map_err(|_| Error::Other("the holder ended early".into()))?;
    let lock = FileLock::open(&path, true)?;
    match lock.lock_for(Duration::from_millis(100)).await {
        Err(Error::TimedOut) => println!("waiter: timed out while the holder held the lock"),
        Ok(_) => return Err(Error::Other("the lock was granted twice".into())),
        Err(other) => return Err(other),
    }

    // Start waiting, then let the holder go: the wait is pending in the
    // host while the holder's task runs and releases.
    let (acquired, released) = futures::join!(lock.lock_for(Duration::from_secs(10)), async {
        let _ = release_tx.send(());
        holder.await
    });
    released.ok_or_else(|| Error::Other("the holder was cancelled".into()))??;
    let guard = acquired?;
    let token = guard.fencing_token().unwrap_or(0);
    println!("waiter: locked with token {token}");
    if token <= holder_token {
        return Err(Error::Other(format!(
            "fencing token {token} is not above the holder's {holder_token}"
        )));
    }
    Ok(())
}

portalocker_guest::run!(main);
