//! The servers a lock URL names: one server, a Redis Cluster reached
//! through any of its nodes, or the master a Sentinel group watches.

use redis::{Client, ConnectionAddr, ConnectionInfo, IntoConnectionInfo};

use crate::error::{Error, Result};

/// A server's address as `CLUSTER SHARDS` and Sentinel give it.
pub(crate) type Addr = (String, u16);

/// Where a pool's locks live.
pub(crate) enum Servers {
    /// One standalone server (`redis://...`).
    Single(Client),
    /// A Redis Cluster (`redis+cluster://host:port[,host:port...]`).
    Cluster {
        /// The nodes to ask for the cluster's layout.
        seeds: Vec<Addr>,
        /// Credentials and settings for every node.
        base: ConnectionInfo,
    },
    /// A Sentinel group's master (`redis+sentinel://host:port[,...]/service[/db]`).
    Sentinel {
        /// The sentinels.
        sentinels: Vec<Addr>,
        /// The name the sentinels know the master by.
        service: String,
        /// Credentials, db and settings for the master and its replicas.
        base: ConnectionInfo,
        /// The settings sentinels are reached with (no credentials: those
        /// of the URL are the master's).
        sentinel_base: ConnectionInfo,
    },
}

const CLUSTER_SCHEME: &str = "redis+cluster://";
const SENTINEL_SCHEME: &str = "redis+sentinel://";
const DEFAULT_PORT: u16 = 6379;
const DEFAULT_SENTINEL_PORT: u16 = 26379;

impl Servers {
    /// Read `url` (see [`Pool::open`](super::Pool::open) for the forms).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a malformed URL.
    pub(crate) fn parse(url: &str) -> Result<Self> {
        let invalid = |why: &str| Error::invalid(format!("invalid Redis URL {url:?}: {why}"));
        if let Some(rest) = url.strip_prefix(CLUSTER_SCHEME) {
            let (userinfo, hosts, path) = split(rest);
            if !matches!(path, "" | "/" | "/0") {
                return Err(invalid("a cluster has only database 0"));
            }
            let seeds = addresses(hosts, DEFAULT_PORT).map_err(|why| invalid(&why))?;
            let base = base_info(userinfo, 0).map_err(|why| invalid(&why))?;
            return Ok(Servers::Cluster { seeds, base });
        }
        if let Some(rest) = url.strip_prefix(SENTINEL_SCHEME) {
            let (userinfo, hosts, path) = split(rest);
            let mut parts = path.trim_start_matches('/').split('/');
            let service = parts.next().unwrap_or_default();
            if service.is_empty() {
                return Err(invalid(
                    "name the master after the sentinels: redis+sentinel://host:port/mymaster",
                ));
            }
            let db = match parts.next() {
                None | Some("") => 0,
                Some(db) => db
                    .parse()
                    .map_err(|_| invalid("the database is not a number"))?,
            };
            if parts.next().is_some() {
                return Err(invalid("too many path segments"));
            }
            let sentinels = addresses(hosts, DEFAULT_SENTINEL_PORT).map_err(|why| invalid(&why))?;
            let base = base_info(userinfo, db).map_err(|why| invalid(&why))?;
            let sentinel_base = base_info(None, 0).map_err(|why| invalid(&why))?;
            return Ok(Servers::Sentinel {
                sentinels,
                service: service.to_owned(),
                base,
                sentinel_base,
            });
        }
        let client = Client::open(url).map_err(|e| invalid(&e.to_string()))?;
        Ok(Servers::Single(client))
    }
}

/// `[userinfo@]hosts[/path]` into its parts.
fn split(rest: &str) -> (Option<&str>, &str, &str) {
    let (authority, path) = match rest.find('/') {
        Some(slash) => rest.split_at(slash),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((userinfo, hosts)) => (Some(userinfo), hosts, path),
        None => (None, authority, path),
    }
}

/// `host[:port][,host[:port]...]`; an IPv6 address goes in brackets
/// (`[::1]:7000`, `[::1]`), as in any URL.
fn addresses(hosts: &str, default_port: u16) -> std::result::Result<Vec<Addr>, String> {
    let mut found = Vec::new();
    for host in hosts.split(',') {
        if host.is_empty() {
            return Err("an empty host in the list".into());
        }
        let (name, port) = if let Some(bracketed) = host.strip_prefix('[') {
            let (name, after) = bracketed
                .split_once(']')
                .ok_or_else(|| format!("{host:?} opens a bracket it does not close"))?;
            match after {
                "" => (name, None),
                _ => match after.strip_prefix(':') {
                    Some(port) => (name, Some(port)),
                    None => return Err(format!("{host:?}: only a port may follow the address")),
                },
            }
        } else {
            match host.split_once(':') {
                Some((_, port)) if port.contains(':') => {
                    return Err(format!(
                        "{host:?}: put an IPv6 address in brackets, as in [::1]:6379"
                    ));
                }
                Some((name, port)) => (name, Some(port)),
                None => (host, None),
            }
        };
        let port = match port {
            Some(port) => port
                .parse::<u16>()
                .map_err(|_| format!("{port:?} is not a port"))?,
            None => default_port,
        };
        if name.is_empty() {
            return Err("an empty host name".into());
        }
        found.push((name.to_owned(), port));
    }
    Ok(found)
}

/// The settings every data node is reached with: credentials and db.
fn base_info(userinfo: Option<&str>, db: i64) -> std::result::Result<ConnectionInfo, String> {
    let userinfo = userinfo.map(|u| format!("{u}@")).unwrap_or_default();
    format!("redis://{userinfo}127.0.0.1/{db}")
        .into_connection_info()
        .map_err(|e| e.to_string())
}

/// A client for the server at `addr`, with `base`'s settings.
///
/// # Errors
///
/// [`Error::InvalidArgument`] if the client cannot be built.
pub(crate) fn client_at(base: &ConnectionInfo, addr: &Addr) -> Result<Client> {
    let info = base
        .clone()
        .set_addr(ConnectionAddr::Tcp(addr.0.clone(), addr.1));
    Client::open(info)
        .map_err(|e| Error::invalid(format!("no client for {}:{}: {e}", addr.0, addr.1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_urls_list_their_seeds() {
        let Servers::Cluster { seeds, base } =
            Servers::parse("redis+cluster://u:p@10.0.0.1:7000,node-b,[::1]:7002/").unwrap()
        else {
            panic!("not a cluster");
        };
        assert_eq!(
            seeds,
            vec![
                ("10.0.0.1".to_owned(), 7000),
                ("node-b".to_owned(), 6379),
                ("::1".to_owned(), 7002)
            ]
        );
        assert_eq!(base.redis_settings().password(), Some("p"));
        assert!(Servers::parse("redis+cluster://a:1/3").is_err());
        assert!(Servers::parse("redis+cluster://a:x").is_err());
        assert!(Servers::parse("redis+cluster://a:1,,b:2").is_err());
    }

    #[test]
    fn ipv6_hosts_go_in_brackets() {
        let seeds = |url: &str| match Servers::parse(url) {
            Ok(Servers::Cluster { seeds, .. }) => Ok(seeds),
            Ok(_) => panic!("not a cluster"),
            Err(e) => Err(e.to_string()),
        };
        assert_eq!(
            seeds("redis+cluster://[::1],[fe80::2]:7001").unwrap(),
            vec![("::1".to_owned(), 6379), ("fe80::2".to_owned(), 7001)]
        );
        let err = seeds("redis+cluster://::1").unwrap_err();
        assert!(err.contains("brackets"), "{err}");
        assert!(seeds("redis+cluster://::1:7000").is_err());
        assert!(seeds("redis+cluster://[::1").is_err());
        assert!(seeds("redis+cluster://[::1]7000").is_err());
        assert!(seeds("redis+cluster://[]:7000").is_err());
        let Servers::Sentinel { sentinels, .. } =
            Servers::parse("redis+sentinel://[::1]/mymaster").unwrap()
        else {
            panic!("not sentinel");
        };
        assert_eq!(sentinels, vec![("::1".to_owned(), 26379)]);
    }

    #[test]
    fn sentinel_urls_name_their_master() {
        let Servers::Sentinel {
            sentinels,
            service,
            base,
            ..
        } = Servers::parse("redis+sentinel://s1:26379,s2/mymaster/2").unwrap()
        else {
            panic!("not sentinel");
        };
        assert_eq!(sentinels[1], ("s2".to_owned(), 26379));
        assert_eq!(service, "mymaster");
        assert_eq!(base.redis_settings().db(), 2);
        assert!(Servers::parse("redis+sentinel://s1:26379").is_err());
        assert!(Servers::parse("redis+sentinel://s1/m/x").is_err());
        assert!(matches!(
            Servers::parse("redis://127.0.0.1:6379/").unwrap(),
            Servers::Single(_)
        ));
    }
}
