//! `status --redis NAME`: a Redis lock's holder, readers and contenders,
//! asked without taking part (see [`portalocker::redis::RedisLock::status`]).

use portalocker::redis::RedisLock;

use super::report::{self, Report};
use crate::failure::{Failure, exit};

/// Inspect the Redis lock `name` on `url` (default: `$REDIS_URL`, else the
/// local server).
///
/// # Errors
///
/// A [`Failure`] when the server cannot be asked.
pub fn inspect(name: &str, url: Option<String>, cluster: bool) -> Result<Report, Failure> {
    let url = crate::redis_lock::server_url(url, cluster)
        .map_err(|e| Failure::new(crate::failure::exit::USAGE, e))?;
    let shown = crate::redis_lock::redacted(&url);
    let status = RedisLock::open(&url, name)
        .and_then(|lock| lock.status())
        .map_err(|e| {
            let code = if matches!(e, portalocker::Error::InvalidArgument(_)) {
                exit::USAGE
            } else {
                exit::IO
            };
            Failure::because(
                code,
                &format!("cannot inspect Redis lock {name:?} on {shown}"),
                e,
            )
        })?;
    Ok(report::redis(&shown, &status))
}
