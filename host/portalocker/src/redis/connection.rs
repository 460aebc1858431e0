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
/// How long [`LockConnection::cut`] waits for the responder to notice the
/// death of a connection a command met.
const CUT_NOTICED: Duration = Duration::from_millis(20);

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

/// Which pub/sub a lock speaks: the server-wide one (a standalone server,
/// or the master a Sentinel group names), or Redis Cluster's sharded one,
/// whose channels live on the shard that owns their hash slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// `SUBSCRIBE`, `PUBLISH`, `PUBSUB NUMSUB`.
    Plain,
    /// `SSUBSCRIBE`, `SPUBLISH`, `PUBSUB SHARDNUMSUB`.
    Sharded,
}

impl Dialect {
    /// The command that publishes.
    pub(crate) fn publish(
        self,
        channel: impl AsRef<[u8]>,
        message: impl AsRef<[u8]>,
    ) -> redis::Cmd {
        let name = match self {
            Dialect::Plain => "PUBLISH",
            Dialect::Sharded => "SPUBLISH",
        };
        let mut cmd = redis::cmd(name);
        cmd.arg(channel.as_ref()).arg(message.as_ref());
        cmd
    }

    /// Subscribe `conn` to `channel`; returns once the server confirmed.
    /// One channel per command: each confirmation is taken as the reply of
    /// the command it answers.
    pub(crate) async fn subscribe(
        self,
        conn: &mut MultiplexedConnection,
        channel: impl AsRef<[u8]>,
    ) -> redis::RedisResult<()> {
        match self {
            Dialect::Plain => conn.subscribe(channel.as_ref()).await,
            Dialect::Sharded => {
                redis::cmd("SSUBSCRIBE")
                    .arg(channel.as_ref())
                    .exec_async(conn)
                    .await
            }
        }
    }

    /// Unsubscribe `conn` from `channel`.
    pub(crate) async fn unsubscribe(
        self,
        conn: &mut MultiplexedConnection,
        channel: impl AsRef<[u8]>,
    ) -> redis::RedisResult<()> {
        match self {
            Dialect::Plain => conn.unsubscribe(channel.as_ref()).await,
            Dialect::Sharded => {
                redis::cmd("SUNSUBSCRIBE")
                    .arg(channel.as_ref())
                    .exec_async(conn)
                    .await
            }
        }
    }

    /// Whether a push is a message in this dialect.
    pub(crate) fn is_message(self, kind: &PushKind) -> bool {
        match self {
            Dialect::Plain => *kind == PushKind::Message,
            Dialect::Sharded => *kind == PushKind::SMessage,
        }
    }

    /// Whether a push says a subscription ended (our own unsubscription,
    /// or the server's, when a cluster slot moves or its shard fails over).
    pub(crate) fn is_unsubscription(self, kind: &PushKind) -> bool {
        match self {
            Dialect::Plain => *kind == PushKind::Unsubscribe,
            Dialect::Sharded => *kind == PushKind::SUnsubscribe,
        }
    }

    /// How many connections this server has subscribed to `channel`
    /// (`PUBSUB NUMSUB` or `PUBSUB SHARDNUMSUB`).
    pub(crate) async fn numsub(
        self,
        conn: &mut MultiplexedConnection,
        channel: impl AsRef<[u8]>,
    ) -> Result<i64> {
        let which = match self {
            Dialect::Plain => "NUMSUB",
            Dialect::Sharded => "SHARDNUMSUB",
        };
        let counts: Vec<(Vec<u8>, i64)> = redis::cmd("PUBSUB")
            .arg(which)
            .arg(channel.as_ref())
            .query_async(conn)
            .await?;
        Ok(counts.first().map_or(0, |(_, n)| *n))
    }
}

/// What a server must be for a lock to use it, checked once per command
/// connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Check {
    /// A standalone primary: not a cluster node (pub/sub counts would be
    /// per node), not a replica (subscriptions are not replicated).
    Standalone,
    /// A node of a Redis Cluster, master or replica (which nodes own a
    /// lock's slot is checked on every subscription).
    ClusterNode,
    /// A node a Sentinel group watches, master or replica (whether it is
    /// the master is checked on every subscription).
    SentinelNode,
}

/// What a lock connection proves in the round trip that subscribes it,
/// where the server that answers might not be the one the lock must use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Proof {
    /// Nothing: the server was checked when the pool connected.
    None,
    /// That the node owns the lock's hash slot: a key of the slot is read
    /// (a node that does not own it answers `MOVED`).
    SlotOwner,
    /// That the node is a master (`ROLE`).
    Primary,
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

/// Check that the server is what `check` asks for: a standalone primary
/// (refusing a cluster node or a replica: neither gives mutual exclusion
/// on the server-wide pub/sub), or a cluster node, or a node that is not
/// one.
pub(crate) async fn check_topology(conn: &mut MultiplexedConnection, check: Check) -> Result<()> {
    // `cluster_enabled:1` is what Redis (since 3.0) and Valkey both say;
    // their `INFO server` differ (`redis_mode:` against `server_mode:`).
    let info: String = redis::cmd("INFO").arg("cluster").query_async(conn).await?;
    let cluster = info.lines().any(|line| line.trim() == "cluster_enabled:1");
    match (check, cluster) {
        (Check::ClusterNode, true) => return Ok(()),
        (Check::ClusterNode, false) => {
            return Err(Error::Unsupported(
                "this server is not a Redis Cluster node (use a redis:// URL for a standalone server)"
                    .into(),
            ));
        }
        (_, true) => {
            return Err(Error::Unsupported(
                "this server is a cluster node: pub/sub counts are per node, so the lock would not be exclusive \
                 (use cluster mode: a redis+cluster:// URL, or --cluster)"
                    .into(),
            ));
        }
        (Check::SentinelNode, false) => return Ok(()),
        (Check::Standalone, false) => {}
    }
    if !is_primary(conn).await? {
        return Err(Error::Unsupported(
            "this Redis server is not a primary: subscriptions are not replicated, so the lock would not be exclusive"
                .into(),
        ));
    }
    Ok(())
}

/// Whether the server says it is a master (`ROLE`).
pub(crate) async fn is_primary(conn: &mut MultiplexedConnection) -> Result<bool> {
    let role: redis::Value = redis::cmd("ROLE").query_async(conn).await?;
    Ok(primary_role(&role))
}

/// Whether a `ROLE` reply is a master's.
fn primary_role(role: &redis::Value) -> bool {
    match role {
        redis::Value::Array(items) => {
            matches!(items.first(), Some(redis::Value::BulkString(b)) if b == b"master")
        }
        _ => false,
    }
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
    /// Whether the connection means to be subscribed to `channel`: an
    /// unsubscription it did not ask for (a cluster slot moved, its shard
    /// failed over) is then the loss of the lock.
    pub(crate) listening: bool,
    /// How many unsubscriptions we sent whose notices the responder has
    /// not seen yet (the notice of one may come after the next
    /// subscription: it is ours, not the server's).
    pub(crate) leaving: usize,
}

/// How the connections to one node talk and what they must prove (see
/// [`Dialect`] and [`Proof`]), and the signal that the node stopped being
/// the master (a Sentinel failover): every lock held through it is lost.
#[derive(Debug, Clone)]
pub(crate) struct NodeTerms {
    /// Server-wide or sharded pub/sub.
    pub(crate) dialect: Dialect,
    /// What each subscription proves.
    pub(crate) proof: Proof,
    /// Set, with the reason, when the node is no longer the master.
    pub(crate) demoted: watch::Receiver<Option<String>>,
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
    /// Set, before `lost`, when the socket closed under us: the server
    /// went away or killed the connection (a reaper's `CLIENT KILL`), as
    /// opposed to a server that stopped answering.
    closed: Arc<AtomicBool>,
    responder: JoinHandle<()>,
    subscribed: bool,
    /// Set by [`LockConnection::abandon`]: neither left nor reused again.
    abandoned: bool,
    /// Whether `CLIENT NO-EVICT on` was sent (with the first subscription).
    exempt: bool,
    dialect: Dialect,
    proof: Proof,
    _counted: Counted,
}

impl LockConnection {
    /// Connect; unnamed and unsubscribed until [`LockConnection::subscribe`].
    pub(crate) async fn connect(
        client3: &Client,
        timeout: Duration,
        counted: Counted,
        terms: NodeTerms,
    ) -> Result<Self> {
        let (conn, pushes) = push_connection(client3, timeout).await?;
        let state = Arc::new(Mutex::new(Advertised {
            channel: String::new(),
            holder_id: String::new(),
            mode: WireMode::Pending,
            elected: false,
            held: false,
            loss_after: timeout / 2,
            listening: false,
            leaving: 0,
        }));
        let polled = Arc::new(AtomicBool::new(false));
        let closed = Arc::new(AtomicBool::new(false));
        let (lost_tx, lost) = watch::channel(None);
        let responder = tokio::spawn(respond(
            Responder {
                conn: conn.clone(),
                dialect: terms.dialect,
                state: Arc::clone(&state),
                polled: Arc::clone(&polled),
                closed: Arc::clone(&closed),
            },
            pushes,
            terms.demoted,
            lost_tx,
        ));
        Ok(Self {
            conn,
            state,
            polled,
            lost,
            closed,
            responder,
            subscribed: false,
            abandoned: false,
            exempt: false,
            dialect: terms.dialect,
            proof: terms.proof,
            _counted: counted,
        })
    }

    /// Advertise `advertised`, then in one round trip name the connection
    /// `C-lock-<id>`, subscribe to `C` (waiting for the confirmation) and
    /// count the subscribers: Redis runs one connection's commands in
    /// order, so the count includes us, and anyone who sees us subscribed
    /// sees our name. Where the node might not be the one the lock must
    /// use, the same round trip proves it is (see [`Proof`]).
    pub(crate) async fn subscribe(
        &mut self,
        mut advertised: Advertised,
        timeout: Duration,
    ) -> Result<i64> {
        let channel = advertised.channel.clone();
        let name = protocol::connection_name(&channel, &advertised.holder_id);
        advertised.listening = true;
        {
            let mut state = self.lock_state();
            advertised.leaving = state.leaving;
            *state = advertised;
        }
        self.polled.store(false, Ordering::SeqCst);
        let (mut naming, mut subscribing, mut counting, mut proving) = (
            self.conn.clone(),
            self.conn.clone(),
            self.conn.clone(),
            self.conn.clone(),
        );
        let mut exempting = (!self.exempt).then(|| self.conn.clone());
        self.exempt = true;
        let (dialect, proof) = (self.dialect, self.proof);
        let all = async {
            tokio::try_join!(
                async {
                    if let Some(conn) = exempting.as_mut() {
                        exempt_from_eviction(conn).await;
                    }
                    Ok::<(), Error>(())
                },
                prove(&mut proving, proof, &channel),
                async {
                    redis::cmd("CLIENT")
                        .arg("SETNAME")
                        .arg(&name)
                        .exec_async(&mut naming)
                        .await
                        .map_err(Error::from)
                },
                async {
                    dialect
                        .subscribe(&mut subscribing, &channel)
                        .await
                        .map_err(Error::from)
                },
                dialect.numsub(&mut counting, &channel),
            )
        };
        // Counted as subscribed from the first byte sent: if this fails
        // half-way, the caller must not reuse the connection.
        self.subscribed = true;
        let ((), (), (), (), subscribers) =
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
            state.listening = false;
            state.leaving += 1;
            (state.channel.clone(), state.holder_id.clone())
        };
        let (mut leaving, mut renaming, mut telling) =
            (self.conn.clone(), self.conn.clone(), self.conn.clone());
        let dialect = self.dialect;
        let all = async {
            tokio::try_join!(
                async {
                    dialect
                        .unsubscribe(&mut leaving, &channel)
                        .await
                        .map_err(Error::from)
                },
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
                        Some((channel, notice)) => dialect
                            .publish(channel, notice.payload(&holder_id))
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

    /// Whether it may be subscribed to a lock channel now and can still
    /// leave it (a failed subscription or unsubscription leaves this set;
    /// an abandoned connection leaves by closing).
    pub(crate) fn subscribed(&self) -> bool {
        self.subscribed && !self.abandoned
    }

    /// Whether it can be lent to another acquisition: alive, unsubscribed
    /// and not abandoned.
    pub(crate) fn reusable(&self) -> bool {
        !self.subscribed && !self.abandoned && self.lost().is_none()
    }

    /// Give the connection up after it failed to leave its channel: it
    /// answers no more pings, is neither left nor reused, and dropping it
    /// closes the socket, which leaves the channel all the same.
    pub(crate) fn abandon(&mut self) {
        self.responder.abort();
        self.abandoned = true;
    }

    /// Whether the socket closed under us (the server went away, or a
    /// reaper killed the connection), as opposed to a server that stopped
    /// answering. The death of a connection reaches its responder a moment
    /// after the command that met it: this waits for it up to
    /// [`CUT_NOTICED`].
    pub(crate) async fn cut(&self) -> bool {
        let mut lost = self.lost.clone();
        let _ = tokio::time::timeout(CUT_NOTICED, lost.wait_for(Option::is_some)).await;
        self.closed.load(Ordering::SeqCst)
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

/// Prove, in the round trip that subscribes, that this node is the one
/// the lock must use (see [`Proof`]).
async fn prove(conn: &mut MultiplexedConnection, proof: Proof, channel: &str) -> Result<()> {
    match proof {
        Proof::None => Ok(()),
        // A node that does not own the slot (a replica, or a master the
        // slot moved away from) answers `MOVED`, which the caller takes
        // for a topology change and follows.
        Proof::SlotOwner => redis::cmd("EXISTS")
            .arg(protocol::fence_key(channel))
            .query_async::<i64>(conn)
            .await
            .map(drop)
            .map_err(Error::from),
        Proof::Primary => match is_primary(conn).await? {
            true => Ok(()),
            false => Err(Error::RedisUnavailable(
                "the server is no longer the master (a failover)".into(),
            )),
        },
    }
}

/// The answer to a keepalive PING, to come.
type Pong = std::pin::Pin<Box<dyn Future<Output = redis::RedisResult<redis::Value>> + Send>>;

/// What the responder of a lock connection works with.
struct Responder {
    conn: MultiplexedConnection,
    dialect: Dialect,
    state: Arc<Mutex<Advertised>>,
    polled: Arc<AtomicBool>,
    closed: Arc<AtomicBool>,
}

impl Responder {
    fn state(&self) -> std::sync::MutexGuard<'_, Advertised> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Answer a ping on our channel with our record, without waiting for
    /// the answer to go out.
    fn answer(&self, message: &Msg) {
        let Some(ping) = protocol::parse_ping(message.get_payload_bytes()) else {
            return;
        };
        let record = {
            let state = self.state();
            if message.get_channel::<Vec<u8>>().ok().as_deref() != Some(state.channel.as_bytes()) {
                return;
            }
            if state.held && !ping.noticed {
                self.polled.store(true, Ordering::SeqCst);
            }
            protocol::record(&state.holder_id, state.mode, state.elected)
        };
        let mut publishing = self.conn.clone();
        let publish = self.dialect.publish(ping.reply_channel, record);
        tokio::spawn(async move {
            let _: redis::RedisResult<()> = publish.query_async(&mut publishing).await;
        });
    }

    /// Whether an unsubscription push ends the subscription we mean to
    /// keep: the server dropped it (a slot moved, a failover). Notices of
    /// our own unsubscriptions are counted off first.
    fn dropped(&self, push: &PushInfo) -> bool {
        let mut state = self.state();
        if state.leaving > 0 {
            state.leaving -= 1;
            return false;
        }
        state.listening
            && push.data.first().is_some_and(|channel| {
                matches!(channel, redis::Value::BulkString(name) if name == state.channel.as_bytes())
            })
    }
}

/// Answer pings on the connection's channel (each answer sent without
/// waiting for the next), ping the server every [`KEEPALIVE`], and report
/// the connection's death on `lost`: when it closes, when the server
/// leaves a PING unanswered for the connection's `loss_after` (a half-open
/// link, a partition, a stalled server: a peer may reap us soon after),
/// when the server ends the subscription itself (a cluster slot moved or
/// its shard failed over), or when the node is `demoted` (a Sentinel
/// failover: then the connection is closed, so the old master drops the
/// subscription too).
async fn respond(
    responder: Responder,
    mut pushes: mpsc::UnboundedReceiver<PushInfo>,
    mut demoted: watch::Receiver<Option<String>>,
    lost: watch::Sender<Option<String>>,
) {
    let mut keepalive = tokio::time::interval(KEEPALIVE);
    keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The PING in flight and when it was sent: silence is judged by how
    // long the server leaves a PING unanswered, not by how long since the
    // last answer (a process starved of CPU is not a silent server).
    let mut pinging: Option<(Instant, Pong)> = None;
    let dialect = responder.dialect;
    let mut watching = true;
    let reason = loop {
        tokio::select! {
            biased;
            reason = async {
                demoted
                    .wait_for(Option::is_some)
                    .await
                    .ok()
                    .and_then(|reason| (*reason).clone())
            }, if watching => {
                match reason {
                    Some(reason) => {
                        // Known as lost first; then the old master is
                        // told to drop the subscription.
                        let _ = lost.send(Some(reason));
                        let mut conn = responder.conn.clone();
                        let _ = tokio::time::timeout(
                            UNSUBSCRIBE_TIMEOUT,
                            redis::cmd("QUIT").exec_async(&mut conn),
                        )
                        .await;
                        return;
                    }
                    // The pool is gone; nobody demotes the node any more.
                    None => watching = false,
                }
            }
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
                    if e.is_connection_dropped() {
                        responder.closed.store(true, Ordering::SeqCst);
                    }
                    break format!("the connection failed: {e}");
                }
            }
            push = pushes.recv() => match push {
                None => {
                    responder.closed.store(true, Ordering::SeqCst);
                    break "the connection closed".to_owned();
                }
                Some(push) if push.kind == PushKind::Disconnection => {
                    responder.closed.store(true, Ordering::SeqCst);
                    break "the connection was lost".to_owned();
                }
                Some(push) if dialect.is_message(&push.kind) => {
                    if let Some(message) = Msg::from_push_info(push) {
                        responder.answer(&message);
                    }
                }
                Some(push) if dialect.is_unsubscription(&push.kind) && responder.dropped(&push) => {
                    break "the server ended the subscription (the lock's slot moved, or its shard failed over)".to_owned();
                }
                Some(_) => {}
            },
            _ = keepalive.tick() => {
                let loss_after = responder.state().loss_after;
                match &pinging {
                    Some((sent, _)) if sent.elapsed() > loss_after => {
                        break format!("the server left a PING unanswered for {:?}", sent.elapsed());
                    }
                    Some(_) => {}
                    None => {
                        let mut conn = responder.conn.clone();
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
