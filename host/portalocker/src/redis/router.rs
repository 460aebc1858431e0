//! One RESP3 connection that many listeners share: each listens on a
//! channel (several may listen on the same one), messages are routed to
//! them by channel name, and a channel is subscribed while anyone listens.
//! Probes collect ping replies through one; waiters hear release notices
//! through another. A connection per lock would cost the server a client
//! per lock instance.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{Client, Msg, PushInfo, PushKind};
use tokio::sync::mpsc;

use super::connection::{Counted, Dialect, push_connection};
use crate::error::{Error, Result};

/// A shared subscriber connection.
pub(crate) struct Router {
    conn: MultiplexedConnection,
    routes: Mutex<HashMap<Vec<u8>, Route>>,
    /// Per channel, how many unsubscriptions we sent whose notices the
    /// router has not seen yet (ours, not the server's).
    leaving: Mutex<HashMap<Vec<u8>, usize>>,
    /// Serialises (un)subscriptions, so a channel's SUBSCRIBE and
    /// UNSUBSCRIBE reach the server in the order the listeners came and
    /// went.
    changes: tokio::sync::Mutex<()>,
    next_id: AtomicU64,
    alive: Arc<AtomicBool>,
    dialect: Dialect,
    /// Which pool made it (see [`Listener::origin`]).
    origin: usize,
    timeout: Duration,
    /// The runtime the connection lives on, for unsubscribing from a drop.
    runtime: tokio::runtime::Handle,
    router: tokio::task::JoinHandle<()>,
    _counted: Counted,
}

#[derive(Default)]
struct Route {
    listeners: Vec<(u64, mpsc::UnboundedSender<Vec<u8>>)>,
    /// A SUBSCRIBE was sent (or may have been, if its sender was
    /// cancelled): leaving must unsubscribe.
    sent: bool,
    /// The server confirmed the subscription.
    confirmed: bool,
}

impl Router {
    /// Connect a router on the current runtime, where it stays.
    pub(crate) async fn connect(
        client3: &Client,
        timeout: Duration,
        counted: Counted,
        dialect: Dialect,
        origin: usize,
    ) -> Result<Arc<Self>> {
        let (conn, pushes) = push_connection(client3, timeout).await?;
        let alive = Arc::new(AtomicBool::new(true));
        Ok(Arc::new_cyclic(|weak: &std::sync::Weak<Router>| Router {
            router: tokio::spawn(route(weak.clone(), pushes, Arc::clone(&alive), dialect)),
            dialect,
            origin,
            conn,
            routes: Mutex::default(),
            leaving: Mutex::default(),
            changes: tokio::sync::Mutex::new(()),
            next_id: AtomicU64::new(0),
            alive,
            timeout,
            runtime: tokio::runtime::Handle::current(),
            _counted: counted,
        }))
    }

    /// Whether the connection still works.
    pub(crate) fn alive(&self) -> bool {
        self.alive.load(Ordering::SeqCst)
    }

    /// Listen on `channel`: when this returns the server has confirmed the
    /// subscription, so every message published afterwards arrives.
    pub(crate) async fn listen(self: &Arc<Self>, channel: &[u8]) -> Result<Listener> {
        let (sender, receiver) = mpsc::unbounded_channel();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let key = channel.to_vec();
        // Registered first, so a drop during the subscription cleans up.
        self.routes()
            .entry(key.clone())
            .or_default()
            .listeners
            .push((id, sender));
        let listener = Listener {
            router: Arc::clone(self),
            channel: key.clone(),
            id,
            receiver,
        };
        let _changing = self.changes.lock().await;
        let needed = match self.routes().get_mut(&key) {
            Some(route) if !route.confirmed => {
                route.sent = true;
                true
            }
            _ => false,
        };
        if needed {
            let mut conn = self.conn.clone();
            tokio::time::timeout(self.timeout, self.dialect.subscribe(&mut conn, channel))
                .await
                .map_err(|_| {
                    Error::RedisUnavailable(format!(
                        "no confirmation of a subscription within {:?}",
                        self.timeout
                    ))
                })??;
            if let Some(route) = self.routes().get_mut(&key) {
                route.confirmed = true;
            }
        }
        Ok(listener)
    }

    fn routes(&self) -> std::sync::MutexGuard<'_, HashMap<Vec<u8>, Route>> {
        self.routes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether an unsubscription notice of `channel` is one of ours
    /// (counted off).
    fn own_unsubscription(&self, channel: &[u8]) -> bool {
        let mut leaving = self.leaving.lock().unwrap_or_else(|p| p.into_inner());
        match leaving.get_mut(channel) {
            Some(pending) if *pending > 1 => {
                *pending -= 1;
                true
            }
            Some(_) => {
                leaving.remove(channel);
                true
            }
            None => false,
        }
    }

    /// A listener left: unsubscribe its channel if it was the last one.
    fn leave(self: &Arc<Self>, channel: Vec<u8>, id: u64) {
        let now_empty = {
            let mut routes = self.routes();
            match routes.get_mut(&channel) {
                Some(route) => {
                    route.listeners.retain(|(listener, _)| *listener != id);
                    route.listeners.is_empty()
                }
                None => false,
            }
        };
        if !now_empty || !self.alive() {
            return;
        }
        let router = Arc::clone(self);
        self.runtime.spawn(async move {
            let _changing = router.changes.lock().await;
            let unsubscribe = {
                let mut routes = router.routes();
                match routes.get(&channel) {
                    Some(route) if route.listeners.is_empty() => {
                        routes.remove(&channel).is_some_and(|route| route.sent)
                    }
                    _ => false,
                }
            };
            if unsubscribe {
                *router
                    .leaving
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .entry(channel.clone())
                    .or_default() += 1;
                let mut conn = router.conn.clone();
                let _ = tokio::time::timeout(
                    router.timeout,
                    router.dialect.unsubscribe(&mut conn, channel),
                )
                .await;
            }
        });
    }
}

impl Drop for Router {
    fn drop(&mut self) {
        self.router.abort();
    }
}

/// Deliver each message to the listeners of its channel; on the
/// connection's death, close every listener. A subscription the server
/// ends itself (a cluster slot moved, its shard failed over) is the
/// connection's death too: its listeners would hear nothing more, and
/// redis-rs may pair the server's notice with a later command's reply.
async fn route(
    router: std::sync::Weak<Router>,
    mut pushes: mpsc::UnboundedReceiver<PushInfo>,
    alive: Arc<AtomicBool>,
    dialect: Dialect,
) {
    while let Some(push) = pushes.recv().await {
        match push.kind {
            ref kind if dialect.is_unsubscription(kind) => {
                let Some(router) = router.upgrade() else {
                    break;
                };
                let listened = match push.data.first() {
                    Some(redis::Value::BulkString(channel)) => {
                        !router.own_unsubscription(channel)
                            && router.routes().get(channel).is_some_and(|route| route.sent)
                    }
                    _ => false,
                };
                if listened {
                    break;
                }
            }
            ref kind if dialect.is_message(kind) => {
                let Some(message) = Msg::from_push_info(push) else {
                    continue;
                };
                let Some(router) = router.upgrade() else {
                    break;
                };
                let Ok(channel) = message.get_channel::<Vec<u8>>() else {
                    continue;
                };
                let routes = router.routes();
                if let Some(route) = routes.get(&channel) {
                    for (_, listener) in &route.listeners {
                        let _ = listener.send(message.get_payload_bytes().to_vec());
                    }
                }
            }
            PushKind::Disconnection => break,
            _ => {}
        }
    }
    alive.store(false, Ordering::SeqCst);
    if let Some(router) = router.upgrade() {
        router.routes().clear();
    }
}

/// One listener's messages; dropping it stops listening.
pub(crate) struct Listener {
    router: Arc<Router>,
    channel: Vec<u8>,
    id: u64,
    receiver: mpsc::UnboundedReceiver<Vec<u8>>,
}

impl Listener {
    /// The next message, waiting at most `wait`: `Ok(None)` when none came.
    ///
    /// # Errors
    ///
    /// When the shared connection died.
    pub(crate) async fn next(&mut self, wait: Duration) -> Result<Option<Vec<u8>>> {
        match tokio::time::timeout(wait, self.receiver.recv()).await {
            Err(_) => Ok(None),
            Ok(Some(payload)) => Ok(Some(payload)),
            Ok(None) => Err(Error::RedisUnavailable(
                "the shared subscriber connection was lost".into(),
            )),
        }
    }

    /// Which pool's router it listens through.
    pub(crate) fn origin(&self) -> usize {
        self.router.origin
    }

    /// The next message, however long it takes; `None` when the shared
    /// connection died.
    pub(crate) async fn recv(&mut self) -> Option<Vec<u8>> {
        self.receiver.recv().await
    }

    /// Drop the messages that arrived already; `false` if the connection
    /// died.
    /// Take every queued message: `None` when the connection is gone.
    pub(crate) fn take_queued(&mut self) -> Option<Vec<Vec<u8>>> {
        let mut queued = Vec::new();
        loop {
            match self.receiver.try_recv() {
                Ok(payload) => queued.push(payload),
                Err(mpsc::error::TryRecvError::Empty) => return Some(queued),
                Err(mpsc::error::TryRecvError::Disconnected) => return None,
            }
        }
    }

    pub(crate) fn drain(&mut self) -> bool {
        loop {
            match self.receiver.try_recv() {
                Ok(_) => {}
                Err(mpsc::error::TryRecvError::Empty) => return true,
                Err(mpsc::error::TryRecvError::Disconnected) => return false,
            }
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.router
            .leave(std::mem::take(&mut self.channel), self.id);
    }
}
