//! Connections: the lock connection with its ping responder, RESP3 push
//! connections, the commands the protocol uses, and the topology check.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, Msg, ProtocolVersion, PushInfo, PushKind};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::protocol::{self, Notice, WireMode};
use crate::error::{Error, Result};

/// How often a lock connection pings the server, to notice a link that
/// went silent well before a peer could reap it.
const KEEPALIVE: Duration = Duration::from_millis(100);

/// How long an unsubscription may take before the connection is given up.
const UNSUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(1);

/// The client name of a lock connection between acquisitions: it names no
/// lock, so no reaper takes it for a silent holder.
pub(crate) const IDLE_NAME: &str = "portalocker-rs-idle";

/// A client that speaks RESP3 (a subscribed connection can then publish).
pub(crate) fn resp3(client: &Client) -> Result<Client> {
    let info = client.get_connection_info().clone();
    let settings = info
        .redis_settings()
        .clone()
        .set_protocol(ProtocolVersion::RESP3);
    Client::open(info.set_redis_settings(settings)).map_err(Error::from)
}

/// Counts the connections a pool has open; each connection holds one
/// [`Counted`] until it is dropped.
#[derive(Debug, Default)]
pub(crate) struct OpenCount(AtomicUsize);

impl OpenCount {
    /// Count one more connection.
    pub(crate) fn count(self: &Arc<Self>) -> Counted {
        self.0.fetch_add(1, Ordering::SeqCst);
        Counted(Arc::clone(self))
    }

    /// How many are open.
    pub(crate) fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// One open connection, counted until dropped.
#[derive(Debug)]
pub(crate) struct Counted(Arc<OpenCount>);

impl Drop for Counted {
    fn drop(&mut self) {
        (self.0).0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A RESP3 connection whose pushes (pub/sub messages) arrive on the
/// returned receiver.
pub(crate) async fn push_connection(
    client3: &Client,
    timeout: Duration,
) -> Result<(MultiplexedConnection, mpsc::UnboundedReceiver<PushInfo>)> {
    let (sender, receiver) = mpsc::unbounded_channel();
    let config = AsyncConnectionConfig::new()
        .set_push_sender(sender)
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout));
    let connection = tokio::time::timeout(
        timeout,
        client3.get_multiplexed_async_connection_with_config(&config),
    )
    .await
    .map_err(|_| Error::RedisUnavailable(format!("no connection to Redis within {timeout:?}")))??;
    Ok((connection, receiver))
}

/// `PUBSUB NUMSUB channel`.
pub(crate) async fn numsub(
    conn: &mut MultiplexedConnection,
    channel: impl AsRef<[u8]>,
) -> Result<i64> {
    let counts: Vec<(Vec<u8>, i64)> = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg(channel.as_ref())
        .query_async(conn)
        .await?;
    Ok(counts.first().map_or(0, |(_, n)| *n))
}

/// Ask the server never to evict this connection under client-memory
/// pressure (`maxmemory-clients`): evicting a holder's connection would
/// free its lock while it still works under it. Redis 7.0+ and Valkey have
/// `CLIENT NO-EVICT`; where it is missing or refused (an ACL without
/// `@admin`), the lock works as before, with eviction possible, and a
/// broken connection shows on the commands sent with it.
pub(crate) async fn exempt_from_eviction(conn: &mut MultiplexedConnection) {
    let result = redis::cmd("CLIENT")
        .arg("NO-EVICT")
        .arg("on")
        .exec_async(conn)
        .await;
    if let Err(e) = result {
        log::debug!("CLIENT NO-EVICT refused ({e}); the lock connection may be evicted");
    }
}

/// Refuse a cluster node or a replica: neither gives mutual exclusion.
pub(crate) async fn check_topology(conn: &mut MultiplexedConnection) -> Result<()> {
    // `cluster_enabled:1` is what Redis (since 3.0) and Valkey both say;
    // their `INFO server` differ (`redis_mode:` against `server_mode:`).
    let info: String = redis::cmd("INFO").arg("cluster").query_async(conn).await?;
    if info.lines().any(|line| line.trim() == "cluster_enabled:1") {
        return Err(Error::Unsupported(
            "this server is a cluster node: pub/sub counts are per node, so the lock would not be exclusive"
                .into(),
        ));
    }
    let role: redis::Value = redis::cmd("ROLE").query_async(conn).await?;
    let primary = match &role {
        redis::Value::Array(items) => {
            matches!(items.first(), Some(redis::Value::BulkString(b)) if b == b"master")
        }
        _ => false,
    };
    if !primary {
        return Err(Error::Unsupported(
            "this Redis server is not a primary: subscriptions are not replicated, so the lock would not be exclusive"
                .into(),
        ));
    }
    Ok(())
}

/// What a participant advertises in its ping replies, changed atomically
/// with respect to the responder's snapshots.
#[derive(Debug, Clone)]
pub(crate) struct Advertised {
    /// The lock channel the connection is subscribed to (pings on any
    /// other channel are stale and ignored).
    pub(crate) channel: String,
    /// Whose record this is.
    pub(crate) holder_id: String,
    /// The mode on the wire.
    pub(crate) mode: WireMode,
    /// Whether this writer won an election.
    pub(crate) elected: bool,
    /// Whether the lock is held through this connection now.
    pub(crate) held: bool,
    /// How long the server may stay silent before the connection counts as
    /// lost (see [`RedisLock::unavailable_timeout`](super::RedisLock)).
    pub(crate) loss_after: Duration,
}

/// A lock connection: dedicated to one acquisition at a time, named
/// `C-lock-<id>` while it takes or holds lock `C`, answering every ping on
/// `C` with our record from this very connection, and reporting its own
/// death. Between acquisitions it is unsubscribed and renamed
/// [`IDLE_NAME`], so a pool can keep it and lend it to any lock.
pub(crate) struct LockConnection {
    conn: MultiplexedConnection,
    state: Arc<Mutex<Advertised>>,
    /// Set when a waiter that polls (its ping lacks our mark) pinged while
    /// the lock was held here.
    polled: Arc<AtomicBool>,
    lost: watch::Receiver<Option<String>>,
    responder: JoinHandle<()>,
    subscribed: bool,
    /// Whether `CLIENT NO-EVICT on` was sent (with the first subscription).
    exempt: bool,
    _counted: Counted,
}

impl LockConnection {
    /// Connect; unnamed and unsubscribed until [`LockConnection::subscribe`].
    pub(crate) async fn connect(
        client3: &Client,
        timeout: Duration,
        counted: Counted,
    ) -> Result<Self> {
        let (conn, pushes) = push_connection(client3, timeout).await?;
        let state = Arc::new(Mutex::new(Advertised {
            channel: String::new(),
            holder_id: String::new(),
            mode: WireMode::Pending,
            elected: false,
            held: false,
            loss_after: timeout / 2,
        }));
        let polled = Arc::new(AtomicBool::new(false));
        let (lost_tx, lost) = watch::channel(None);
        let responder = tokio::spawn(respond(
            conn.clone(),
            pushes,
            Arc::clone(&state),
            Arc::clone(&polled),
            lost_tx,
        ));
        Ok(Self {
            conn,
            state,
            polled,
            lost,
            responder,
            subscribed: false,
            exempt: false,
            _counted: counted,
        })
    }

    /// Advertise `advertised`, then in one round trip name the connection
    /// `C-lock-<id>`, subscribe to `C` (waiting for the confirmation) and
    /// count the subscribers: Redis runs one connection's commands in
    /// order, so the count includes us, and anyone who sees us subscribed
    /// sees our name.
    pub(crate) async fn subscribe(
        &mut self,
        advertised: Advertised,
        timeout: Duration,
    ) -> Result<i64> {
        let channel = advertised.channel.clone();
        let name = protocol::connection_name(&channel, &advertised.holder_id);
        *self.lock_state() = advertised;
        self.polled.store(false, Ordering::SeqCst);
        let (mut naming, mut subscribing, mut counting) =
            (self.conn.clone(), self.conn.clone(), self.conn.clone());
        let mut exempting = (!self.exempt).then(|| self.conn.clone());
        self.exempt = true;
        let all = async {
            tokio::try_join!(
                async {
                    if let Some(conn) = exempting.as_mut() {
                        exempt_from_eviction(conn).await;
                    }
                    Ok::<(), Error>(())
                },
                async {
                    redis::cmd("CLIENT")
                        .arg("SETNAME")
                        .arg(&name)
                        .exec_async(&mut naming)
                        .await
                        .map_err(Error::from)
                },
                async { subscribing.subscribe(&channel).await.map_err(Error::from) },
                numsub(&mut counting, &channel),
            )
        };
        // Counted as subscribed from the first byte sent: if this fails
        // half-way, the caller must not reuse the connection.
        self.subscribed = true;
        let ((), (), (), subscribers) =
            tokio::time::timeout(timeout, all).await.map_err(|_| {
                Error::RedisUnavailable(format!(
                    "the subscription was not confirmed within {timeout:?}"
                ))
            })??;
        Ok(subscribers)
    }

    /// Unsubscribe and rename the connection [`IDLE_NAME`]; with `notice`,
    /// publish a release notice on that channel after the unsubscription,
    /// so Rust waiters count without us. Late pings on the channel are
    /// still answered, as a contender's. Returns how many subscribers heard
    /// the notice (0 without one).
    pub(crate) async fn unsubscribe(&mut self, notice: Option<(&[u8], Notice)>) -> Result<i64> {
        let (channel, holder_id) = {
            let mut state = self.lock_state();
            state.held = false;
            state.mode = WireMode::Pending;
            state.elected = false;
            (state.channel.clone(), state.holder_id.clone())
        };
        let (mut leaving, mut renaming, mut telling) =
            (self.conn.clone(), self.conn.clone(), self.conn.clone());
        let all = async {
            tokio::try_join!(
                async { leaving.unsubscribe(&channel).await.map_err(Error::from) },
                async {
                    redis::cmd("CLIENT")
                        .arg("SETNAME")
                        .arg(IDLE_NAME)
                        .exec_async(&mut renaming)
                        .await
                        .map_err(Error::from)
                },
                async {
                    match notice {
                        Some((channel, notice)) => redis::cmd("PUBLISH")
                            .arg(channel)
                            .arg(notice.payload(&holder_id))
                            .query_async::<i64>(&mut telling)
                            .await
                            .map_err(Error::from),
                        None => Ok(0),
                    }
                },
            )
        };
        let ((), (), heard) = tokio::time::timeout(UNSUBSCRIBE_TIMEOUT, all)
            .await
            .map_err(|_| Error::RedisUnavailable("unsubscribing timed out".into()))??;
        self.subscribed = false;
        Ok(heard)
    }

    /// Whether it may be subscribed to a lock channel now (a failed
    /// subscription or unsubscription leaves this set).
    pub(crate) fn subscribed(&self) -> bool {
        self.subscribed
    }

    /// Whether it can be lent to another acquisition: alive and
    /// unsubscribed.
    pub(crate) fn reusable(&self) -> bool {
        !self.subscribed && self.lost().is_none()
    }

    /// The connection, for commands that must run on it.
    pub(crate) fn connection(&self) -> MultiplexedConnection {
        self.conn.clone()
    }

    /// Change what we advertise.
    pub(crate) fn advertise(&self, mode: WireMode, elected: bool) {
        let mut state = self.lock_state();
        state.mode = mode;
        state.elected = elected;
    }

    /// The lock is held through this connection from now on.
    pub(crate) fn hold(&self) {
        self.lock_state().held = true;
    }

    /// Whether a waiter that polls pinged while the lock was held here.
    pub(crate) fn was_polled(&self) -> bool {
        self.polled.load(Ordering::SeqCst)
    }

    /// Why the connection died, if it did.
    pub(crate) fn lost(&self) -> Option<String> {
        self.lost.borrow().clone()
    }

    /// A receiver that changes when the connection dies.
    pub(crate) fn watch_lost(&self) -> watch::Receiver<Option<String>> {
        self.lost.clone()
    }

    fn lock_state(&self) -> std::sync::MutexGuard<'_, Advertised> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for LockConnection {
    /// Stopping the responder and dropping our handle close the socket:
    /// Redis drops a remaining subscription at once.
    fn drop(&mut self) {
        self.responder.abort();
    }
}

/// The answer to a keepalive PING, to come.
type Pong = std::pin::Pin<Box<dyn Future<Output = redis::RedisResult<redis::Value>> + Send>>;

/// Answer pings on the connection's channel (each answer sent without
/// waiting for the next), ping the server every [`KEEPALIVE`], and report
/// the connection's death on `lost`: when it closes, or when the server
/// leaves a PING unanswered for the connection's `loss_after` (a half-open
/// link, a partition, a stalled server: a peer may reap us soon after).
async fn respond(
    conn: MultiplexedConnection,
    mut pushes: mpsc::UnboundedReceiver<PushInfo>,
    state: Arc<Mutex<Advertised>>,
    polled: Arc<AtomicBool>,
    lost: watch::Sender<Option<String>>,
) {
    let mut keepalive = tokio::time::interval(KEEPALIVE);
    keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The PING in flight and when it was sent: silence is judged by how
    // long the server leaves a PING unanswered, not by how long since the
    // last answer (a process starved of CPU is not a silent server).
    let mut pinging: Option<(Instant, Pong)> = None;
    let reason = loop {
        tokio::select! {
            biased;
            pong = async {
                match pinging.as_mut() {
                    Some((_, ping)) => ping.await,
                    None => std::future::pending().await,
                }
            }, if pinging.is_some() => {
                pinging = None;
                if let Err(e) = pong
                    && e.is_unrecoverable_error()
                {
                    break format!("the connection failed: {e}");
                }
            }
            push = pushes.recv() => match push {
                None => break "the connection closed".to_owned(),
                Some(push) if push.kind == PushKind::Disconnection => break "the connection was lost".to_owned(),
                Some(push) if push.kind == PushKind::Message => {
                    let Some(message) = Msg::from_push_info(push) else { continue };
                    let Some(ping) = protocol::parse_ping(message.get_payload_bytes()) else { continue };
                    let record = {
                        let state = state.lock().unwrap_or_else(|p| p.into_inner());
                        if message.get_channel::<Vec<u8>>().ok().as_deref() != Some(state.channel.as_bytes()) {
                            continue;
                        }
                        if state.held && !ping.noticed {
                            polled.store(true, Ordering::SeqCst);
                        }
                        protocol::record(&state.holder_id, state.mode, state.elected)
                    };
                    let mut publishing = conn.clone();
                    tokio::spawn(async move {
                        let _: redis::RedisResult<()> = redis::cmd("PUBLISH")
                            .arg(ping.reply_channel)
                            .arg(record)
                            .query_async(&mut publishing)
                            .await;
                    });
                }
                Some(_) => {}
            },
            _ = keepalive.tick() => {
                let loss_after = state.lock().unwrap_or_else(|p| p.into_inner()).loss_after;
                match &pinging {
                    Some((sent, _)) if sent.elapsed() > loss_after => {
                        break format!("the server left a PING unanswered for {:?}", sent.elapsed());
                    }
                    Some(_) => {}
                    None => {
                        let mut conn = conn.clone();
                        pinging = Some((
                            Instant::now(),
                            Box::pin(async move { redis::cmd("PING").query_async(&mut conn).await }),
                        ));
                    }
                }
            }
        }
    };
    let _ = lost.send(Some(reason));
}
