//! The runtime the Redis connections live on, and running work there from
//! any caller: a blocking thread, or any async executor.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, OnceLock};
use std::task::{Context, Poll};

use tokio::runtime::{Handle, Runtime};

use crate::error::{Error, Result};

/// The runtime the connections' tasks run on: one worker thread, so
/// responders answer pings whatever the caller's threads are doing, and
/// connections outlive the executor of whoever made them.
///
/// # Errors
///
/// [`Error::Io`] when the runtime cannot start (no thread or descriptor
/// left); the next call tries again.
pub(crate) fn runtime() -> Result<&'static Runtime> {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    static STARTING: Mutex<()> = Mutex::new(());
    if let Some(runtime) = RUNTIME.get() {
        return Ok(runtime);
    }
    let _starting = STARTING.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(runtime) = RUNTIME.get() {
        return Ok(runtime);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("portalocker-redis")
        .enable_all()
        .build()
        .map_err(|source| Error::Io {
            op: "start the Redis runtime",
            path: None,
            source,
        })?;
    Ok(RUNTIME.get_or_init(|| runtime))
}

/// Run `future` to completion on the Redis runtime and wait for it on
/// this thread. The whole future runs on the runtime's thread, beside the
/// connections it talks through, so its round trips cost no wake-up of
/// another thread (blocking this thread while polling it here would cost
/// two per round trip). Not from async code (tokio refuses to block there).
///
/// # Errors
///
/// As [`runtime`], or [`Error::RedisUnavailable`] if the runtime stopped
/// under it. A panic in `future` is resumed here.
pub(crate) fn block_on<F>(future: F) -> Result<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let runtime = runtime()?;
    match runtime.block_on(runtime.spawn(future)) {
        Ok(output) => Ok(output),
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => Err(Error::RedisUnavailable(format!(
            "the Redis runtime stopped: {e}"
        ))),
    }
}

/// Polls `future` in the caller's task with the Redis runtime entered, so
/// what it connects, spawns and sleeps on belongs to that runtime while
/// the future itself stays the caller's: dropping it cancels the work at
/// once, with nothing left running.
pub(crate) struct InRuntime<F> {
    handle: Handle,
    future: Option<Pin<Box<F>>>,
}

impl<F: Future> InRuntime<F> {
    /// Wrap `future`.
    ///
    /// # Errors
    ///
    /// As [`runtime`].
    pub(crate) fn new(future: F) -> Result<Self> {
        Ok(Self {
            handle: runtime()?.handle().clone(),
            future: Some(Box::pin(future)),
        })
    }
}

impl<F: Future> Future for InRuntime<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = &mut *self;
        let _entered = this.handle.enter();
        match this.future.as_mut() {
            Some(future) => {
                let polled = future.as_mut().poll(cx);
                if polled.is_ready() {
                    this.future = None;
                }
                polled
            }
            None => Poll::Pending,
        }
    }
}

impl<F> Drop for InRuntime<F> {
    /// Drop the work with the runtime entered: the destructors of what it
    /// held may spawn their clean-up there.
    fn drop(&mut self) {
        let _entered = self.handle.enter();
        self.future = None;
    }
}
