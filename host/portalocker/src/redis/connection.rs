//! Connections: the named lock subscription with its ping responder, reply
//! subscriptions for probes, and the commands the protocol uses.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, Msg, ProtocolVersion, PushInfo, PushKind};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::protocol::{self, WireMode};
use crate::error::{Error, Result};

/// How often a holder pings its own subscription connection to notice a
/// half-open link (well under the 1 s peers wait for an answer).
const KEEPALIVE: Duration = Duration::from_millis(500);

/// A client that speaks RESP3 (a subscribed connection can then publish).
pub(crate) fn resp3(client: &Client) -> Result<Client> {
    let info = client.get_connection_info().clone();
    let settings = info
        .redis_settings()
        .clone()
        .set_protocol(ProtocolVersion::RESP3);
    Client::open(info.set_redis_settings(settings)).map_err(Error::from)
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
    let connection = client3
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    Ok((connection, receiver))
}

/// `PUBSUB NUMSUB channel`.
pub(crate) async fn numsub(conn: &mut MultiplexedConnection, channel: &str) -> Result<i64> {
    let counts: Vec<(String, i64)> = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg(channel)
        .query_async(conn)
        .await?;
    Ok(counts.first().map_or(0, |(_, n)| *n))
}

/// What a participant advertises, changed atomically with respect to the
/// responder's snapshots.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Advertised {
    pub(crate) mode: WireMode,
    pub(crate) elected: bool,
}

/// The lock connection: dedicated, named `C-lock-<id>`, answering every
/// ping on `C` with our record from this very connection while it is
/// subscribed, and reporting its own death. It is kept between
/// acquisitions (unsubscribed), so an acquire costs one round trip to
/// subscribe and count instead of a new connection.
pub(crate) struct Subscription {
    channel: String,
    conn: MultiplexedConnection,
    state: Arc<Mutex<Advertised>>,
    lost: watch::Receiver<Option<String>>,
    responder: JoinHandle<()>,
    subscribed: bool,
}

impl Subscription {
    /// Connect and name the connection; not subscribed yet.
    pub(crate) async fn connect(
        client3: &Client,
        channel: &str,
        holder_id: &str,
        timeout: Duration,
    ) -> Result<Self> {
        let connect = async {
            let (mut conn, pushes) = push_connection(client3, timeout).await?;
            redis::cmd("CLIENT")
                .arg("SETNAME")
                .arg(protocol::connection_name(channel, holder_id))
                .exec_async(&mut conn)
                .await?;
            Ok::<_, Error>((conn, pushes))
        };
        let (conn, pushes) = tokio::time::timeout(timeout, connect)
            .await
            .map_err(|_| Error::Redis(format!("no connection to Redis within {timeout:?}")))??;
        let state = Arc::new(Mutex::new(Advertised {
            mode: WireMode::Pending,
            elected: false,
        }));
        let (lost_tx, lost) = watch::channel(None);
        let responder = tokio::spawn(respond(
            conn.clone(),
            pushes,
            Arc::clone(&state),
            holder_id.to_owned(),
            lost_tx,
        ));
        Ok(Self {
            channel: channel.to_owned(),
            conn,
            state,
            lost,
            responder,
            subscribed: false,
        })
    }

    /// Advertise `advertised`, then in one round trip subscribe to `C`
    /// (waiting for the confirmation) and count the subscribers: Redis runs
    /// one connection's commands in order, so the count includes us.
    pub(crate) async fn subscribe(
        &mut self,
        advertised: Advertised,
        timeout: Duration,
    ) -> Result<i64> {
        self.advertise(advertised.mode, advertised.elected);
        let (mut subscribing, mut counting) = (self.conn.clone(), self.conn.clone());
        let channel = self.channel.clone();
        let both = async {
            tokio::try_join!(
                async { subscribing.subscribe(&channel).await.map_err(Error::from) },
                numsub(&mut counting, &channel),
            )
        };
        let ((), subscribers) = tokio::time::timeout(timeout, both).await.map_err(|_| {
            Error::Redis(format!(
                "the subscription to {:?} was not confirmed within {timeout:?}",
                self.channel
            ))
        })??;
        self.subscribed = true;
        Ok(subscribers)
    }

    /// Unsubscribe (and with `announce`, tell Rust waiters on the side
    /// channel, after the unsubscription so they count without us).
    pub(crate) async fn unsubscribe(&mut self, announce: bool) -> Result<()> {
        self.subscribed = false;
        let (mut leaving, mut telling) = (self.conn.clone(), self.conn.clone());
        let notice = protocol::release_channel(&self.channel);
        let mut publish = redis::cmd("PUBLISH");
        publish.arg(&notice).arg("released");
        let both = async {
            tokio::try_join!(
                async {
                    leaving
                        .unsubscribe(&self.channel)
                        .await
                        .map_err(Error::from)
                },
                async {
                    if announce {
                        publish.exec_async(&mut telling).await.map_err(Error::from)
                    } else {
                        Ok(())
                    }
                },
            )
        };
        tokio::time::timeout(Duration::from_secs(1), both)
            .await
            .map_err(|_| Error::Redis("unsubscribing timed out".into()))??;
        Ok(())
    }

    /// Whether it is subscribed to `C` now.
    pub(crate) fn subscribed(&self) -> bool {
        self.subscribed
    }

    /// The connection, for counting and probing.
    pub(crate) fn connection(&self) -> MultiplexedConnection {
        self.conn.clone()
    }

    /// Change what we advertise.
    pub(crate) fn advertise(&self, mode: WireMode, elected: bool) {
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = Advertised { mode, elected };
    }

    /// Why the connection died, if it did.
    pub(crate) fn lost(&self) -> Option<String> {
        self.lost.borrow().clone()
    }

    /// A receiver that changes when the connection dies.
    pub(crate) fn watch_lost(&self) -> watch::Receiver<Option<String>> {
        self.lost.clone()
    }
}

impl Drop for Subscription {
    /// Stopping the responder and dropping our handle close the socket:
    /// Redis drops a remaining subscription at once.
    fn drop(&mut self) {
        self.responder.abort();
    }
}

async fn respond(
    mut conn: MultiplexedConnection,
    mut pushes: mpsc::UnboundedReceiver<PushInfo>,
    state: Arc<Mutex<Advertised>>,
    holder_id: String,
    lost: watch::Sender<Option<String>>,
) {
    let mut keepalive = tokio::time::interval(KEEPALIVE);
    keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    keepalive.tick().await;
    let reason = loop {
        tokio::select! {
            push = pushes.recv() => match push {
                None => break "the connection closed".to_owned(),
                Some(push) if push.kind == PushKind::Disconnection => break "the connection was lost".to_owned(),
                Some(push) if push.kind == PushKind::Message => {
                    let Some(message) = Msg::from_push_info(push) else { continue };
                    let Some(reply_channel) = protocol::parse_ping(message.get_payload_bytes()) else { continue };
                    let advertised = *state.lock().unwrap_or_else(|p| p.into_inner());
                    let record = protocol::record(&holder_id, advertised.mode, advertised.elected);
                    let published: redis::RedisResult<()> =
                        redis::cmd("PUBLISH").arg(reply_channel).arg(record).query_async(&mut conn).await;
                    if let Err(e) = published && e.is_unrecoverable_error() {
                        break format!("answering a ping failed: {e}");
                    }
                }
                Some(_) => {}
            },
            _ = keepalive.tick() => {
                let pong: redis::RedisResult<redis::Value> = redis::cmd("PING").query_async(&mut conn).await;
                if let Err(e) = pong {
                    break format!("the connection stopped answering: {e}");
                }
            }
        }
    };
    let _ = lost.send(Some(reason));
}

/// The connection probes collect replies on: kept between probes, each
/// probe subscribing to a fresh reply channel and leaving it afterwards.
pub(crate) struct Replies {
    conn: MultiplexedConnection,
    pushes: mpsc::UnboundedReceiver<PushInfo>,
    channel: String,
}

impl Replies {
    /// Connect (not listening to anything yet).
    pub(crate) async fn connect(client3: &Client, timeout: Duration) -> Result<Self> {
        let (conn, pushes) = push_connection(client3, timeout).await?;
        Ok(Self {
            conn,
            pushes,
            channel: String::new(),
        })
    }

    /// Listen on `reply_channel` (waiting for the confirmation), dropping
    /// anything left over from an earlier probe.
    pub(crate) async fn listen(&mut self, reply_channel: &str, timeout: Duration) -> Result<()> {
        while let Ok(push) = self.pushes.try_recv() {
            if push.kind == PushKind::Disconnection {
                return Err(Error::Redis("the reply connection was lost".into()));
            }
        }
        self.channel = reply_channel.to_owned();
        tokio::time::timeout(timeout, self.conn.subscribe(reply_channel))
            .await
            .map_err(|_| {
                Error::Redis(format!(
                    "no confirmation for the reply channel {reply_channel:?}"
                ))
            })??;
        Ok(())
    }

    /// Stop listening on the current reply channel.
    pub(crate) async fn stop(&mut self) -> Result<()> {
        let channel = std::mem::take(&mut self.channel);
        self.conn.unsubscribe(&channel).await?;
        Ok(())
    }

    /// The next reply on the current channel, waiting at most `wait`;
    /// `Err` when the connection died.
    pub(crate) async fn next(&mut self, wait: Duration) -> Result<Option<Vec<u8>>> {
        loop {
            match tokio::time::timeout(wait, self.pushes.recv()).await {
                Err(_) => return Ok(None),
                Ok(None) => return Err(Error::Redis("the reply connection closed".into())),
                Ok(Some(push)) if push.kind == PushKind::Message => {
                    if let Some(message) = Msg::from_push_info(push)
                        && message.get_channel_name() == self.channel
                    {
                        return Ok(Some(message.get_payload_bytes().to_vec()));
                    }
                }
                Ok(Some(push)) if push.kind == PushKind::Disconnection => {
                    return Err(Error::Redis("the reply connection was lost".into()));
                }
                Ok(Some(_)) => {}
            }
        }
    }
}
