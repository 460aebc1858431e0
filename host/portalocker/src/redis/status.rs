//! Who holds a Redis lock, asked without taking part: the subscribers of
//! `C` answer a ping as they answer any contender's (§6.3), and `CLIENT
//! LIST` tells their connections. Nothing is subscribed, reaped or drawn.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::lock::RedisLock;
use super::protocol::{self, WireMode};
use super::runtime::{self, InRuntime};
use crate::error::Result;

/// What a participant of a Redis lock says it is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Holds the lock alone (or a pre-4.x peer, which only ever holds).
    Exclusive,
    /// A reader: holding, or about to (a reader says so either way).
    Shared,
    /// A writer waiting its turn.
    Pending,
}

impl Role {
    /// `exclusive`, `shared` or `pending`, as on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Exclusive => "exclusive",
            Role::Shared => "shared",
            Role::Pending => "pending",
        }
    }
}

/// A connection to the server, as `CLIENT LIST` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientInfo {
    /// The server's client id.
    pub id: String,
    /// Its name: `C-lock-<holder id>` for a lock connection.
    pub name: String,
    /// Its address (`ip:port`) as the server sees it.
    pub addr: String,
    /// Seconds since it connected.
    pub age_secs: u64,
    /// Seconds since it last sent a command.
    pub idle_secs: u64,
    /// The client library and its version, where the server tells (Redis
    /// 7.2+, Valkey).
    pub library: Option<String>,
}

/// One participant: a subscriber of the lock's channel that answered, or a
/// lock connection of its that did not (yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Participant {
    /// Its holder id (a synthetic `legacy-N` for a pre-4.x peer).
    pub holder_id: String,
    /// What it answered; `None` when it did not answer the ping.
    pub role: Option<Role>,
    /// Whether it won the writers' election (`None`: it did not say).
    pub elected: Option<bool>,
    /// Whether it is subscribed to the lock's channel now.
    pub subscribed: bool,
    /// Its connection, where `CLIENT LIST` tells (it needs `@admin`).
    pub client: Option<ClientInfo>,
}

/// A snapshot of a Redis lock: see [`RedisLock::status`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockStatus {
    /// The lock name.
    pub name: String,
    /// `PUBSUB NUMSUB C`: how many connections take part now.
    pub subscribers: i64,
    /// Every participant: holders, readers, waiting writers, contenders
    /// between attempts (named but not subscribed) and silent subscribers.
    pub participants: Vec<Participant>,
    /// The fencing counter `C-fence` (the last token drawn), if any.
    pub fencing_counter: Option<String>,
    /// Whether `CLIENT LIST` was allowed (without it no connection is
    /// described).
    pub clients_listed: bool,
}

impl LockStatus {
    /// Whether anyone holds the lock, exclusive or shared.
    pub fn is_held(&self) -> bool {
        self.participants
            .iter()
            .any(|p| matches!(p.role, Some(Role::Exclusive | Role::Shared)))
    }

    /// The exclusive holder, if any.
    pub fn holder(&self) -> Option<&Participant> {
        self.participants
            .iter()
            .find(|p| p.role == Some(Role::Exclusive))
    }

    /// The readers.
    pub fn readers(&self) -> impl Iterator<Item = &Participant> {
        self.participants
            .iter()
            .filter(|p| p.role == Some(Role::Shared))
    }

    /// Contenders: writers waiting their turn, and lock connections named
    /// for this lock that are between attempts.
    pub fn waiting(&self) -> impl Iterator<Item = &Participant> {
        self.participants
            .iter()
            .filter(|p| p.role == Some(Role::Pending) || (p.role.is_none() && !p.subscribed))
    }

    /// Subscribers that did not answer within the window: wedged, or
    /// partitioned (a contender would reap them).
    pub fn silent(&self) -> impl Iterator<Item = &Participant> {
        self.participants
            .iter()
            .filter(|p| p.role.is_none() && p.subscribed)
    }
}

impl RedisLock {
    /// Who holds this lock now, asked without taking part: the subscribers
    /// answer a ping (waiting up to the lock's `unavailable_timeout` for
    /// all of them), `CLIENT LIST` describes their connections, and the
    /// fencing counter is read. Nothing is subscribed to the lock's
    /// channel, nobody is reaped and no token is drawn.
    ///
    /// # Errors
    ///
    /// [`crate::Error::RedisUnavailable`] when the server cannot be
    /// reached; [`crate::Error::Redis`] when it refuses the commands.
    pub fn status(&self) -> Result<LockStatus> {
        let lock = self.clone();
        runtime::block_on(async move { lock.inspect().await })?
    }

    /// [`RedisLock::status`] without blocking a thread.
    ///
    /// # Errors
    ///
    /// As [`RedisLock::status`].
    pub async fn status_async(&self) -> Result<LockStatus> {
        InRuntime::new(self.inspect())?.await
    }

    async fn inspect(&self) -> Result<LockStatus> {
        let on = self.on(self.pool.resolve(&self.wire).await?);
        on.inspect_server().await
    }

    async fn inspect_server(&self) -> Result<LockStatus> {
        let mut conn = self.pool.command().await?;
        let router = self.pool.replies().await?;
        let reply_channel = format!("{}-{}", self.wire, protocol::random_id());
        let mut replies = router.listen(reply_channel.as_bytes()).await?;
        let subscribers = self.count(&mut conn).await?;
        let mut records = HashMap::new();
        if subscribers > 0 {
            let _: () = self
                .pool
                .dialect()
                .publish(&self.wire, protocol::ping(&reply_channel))
                .query_async(&mut conn)
                .await?;
            let window = Instant::now() + self.unavailable_timeout;
            let mut legacy = 0;
            while records.len() < usize::try_from(subscribers).unwrap_or(0) {
                let left = window.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                // A late subscriber may add a record: keep collecting
                // until the window or the count is reached.
                if let Some(payload) = replies.next(left.min(Duration::from_millis(50))).await? {
                    let record = protocol::parse_record(&payload, &mut legacy);
                    records.insert(record.id.clone(), record);
                }
            }
        }
        drop(replies);
        let clients = self.client_list(&mut conn).await?;
        let fencing_counter: Option<String> = redis::cmd("GET")
            .arg(protocol::fence_key(&self.wire))
            .query_async(&mut conn)
            .await?;
        let listed = clients.as_deref().map(|list| self.lock_clients(list));
        let clients_listed = listed.is_some();
        let mut listed = listed.unwrap_or_default();
        let mut participants: Vec<Participant> = records
            .into_values()
            .map(|record| {
                let at = listed.iter().position(|(holder, _, _)| {
                    holder.as_deref() == Some(record.id.as_str())
                        || (record.legacy && holder.is_none())
                });
                let (subscribed, client) = match at {
                    Some(at) => {
                        let (_, subscribed, client) = listed.swap_remove(at);
                        (subscribed, Some(client))
                    }
                    None => (true, None),
                };
                Participant {
                    holder_id: record.id,
                    role: Some(match record.mode {
                        WireMode::Exclusive => Role::Exclusive,
                        WireMode::Shared => Role::Shared,
                        WireMode::Pending => Role::Pending,
                    }),
                    elected: record.elected,
                    subscribed,
                    client,
                }
            })
            .collect();
        participants.extend(
            listed
                .into_iter()
                .map(|(holder, subscribed, client)| Participant {
                    holder_id: holder.unwrap_or_else(|| "legacy".to_owned()),
                    role: None,
                    elected: None,
                    subscribed,
                    client: Some(client),
                }),
        );
        participants.sort_by_key(|p| {
            let rank = match p.role {
                Some(Role::Exclusive) => 0,
                Some(Role::Shared) => 1,
                Some(Role::Pending) => 2,
                None => 3,
            };
            (rank, p.client.as_ref().map_or(0, |c| u64::MAX - c.age_secs))
        });
        Ok(LockStatus {
            name: self.name.clone(),
            subscribers,
            participants,
            fencing_counter,
            clients_listed,
        })
    }

    /// The lock connections of this lock in a `CLIENT LIST` reply: holder
    /// id (`None` for a 3.x `C-lock`), whether subscribed, and the client.
    fn lock_clients(&self, list: &str) -> Vec<(Option<String>, bool, ClientInfo)> {
        let legacy_name = format!("{}-lock", self.wire);
        list.lines()
            .filter_map(|line| {
                let field = |key: &str| {
                    line.split(' ')
                        .find_map(|kv| kv.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
                };
                let number = |key: &str| field(key).and_then(|n| n.parse::<u64>().ok());
                let name = field("name")?;
                let holder = match protocol::holder_of_connection(&self.wire, name) {
                    Some(holder) => Some(holder.to_owned()),
                    None if name == legacy_name => None,
                    None => return None,
                };
                let library = field("lib-name").filter(|n| !n.is_empty()).map(|n| {
                    match field("lib-ver").filter(|v| !v.is_empty()) {
                        Some(version) => format!("{n} {version}"),
                        None => n.to_owned(),
                    }
                });
                let client = ClientInfo {
                    id: field("id")?.to_owned(),
                    name: name.to_owned(),
                    addr: field("addr").unwrap_or_default().to_owned(),
                    age_secs: number("age").unwrap_or(0),
                    idle_secs: number("idle").unwrap_or(0),
                    library,
                };
                Some((holder, number("sub").unwrap_or(0) > 0, client))
            })
            .collect()
    }
}
