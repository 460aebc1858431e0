//! The namespace middleware: composed in front of a plugin, it confines the
//! plugin's lock files to one sub-directory and its semaphore and Redis
//! lock names to a prefix, for hosts that cannot grant each plugin its own
//! directory and namespace.
//!
//! Settings (`portalocker compose --config KEY=VALUE`):
//!
//! - `namespace.directory`: an absolute path as the plugin sees it
//!   (`/jobs/team-a`). A relative lock path is taken inside it
//!   (`a.lock` is `/jobs/team-a/a.lock`); an absolute one must lie inside
//!   it; either may not climb out with `..`. Semaphore directories follow
//!   the same rule. Without it, every lock file and semaphore is refused.
//! - `namespace.prefix`: put in front of every semaphore and Redis lock
//!   name (`team-a.` makes `reports` into `team-a.reports`). Without it,
//!   every semaphore and Redis lock is refused.
//!
//! It fails closed: an unknown `namespace.` setting refuses every open, so
//! a misspelt setting cannot widen what the plugin reaches. The check is on
//! the path's text; the host still applies its own grants to what it is
//! given (and opens no symlinked lock file).

use portalocker_middleware::{Config, Error, Hooks, Kind, Target, middleware};

struct Namespace;

impl Hooks for Namespace {
    fn open(target: &mut Target) -> Result<(), Error> {
        let config = Config::get();
        if let Some(key) = config
            .unknown("namespace.", &["directory", "prefix"])
            .first()
        {
            return Err(Error::InvalidArgument(format!(
                "the namespace middleware has no setting `{key}` (it knows namespace.directory and namespace.prefix)"
            )));
        }
        let directory = config.value("namespace.directory");
        let prefix = config.value("namespace.prefix");
        match target.kind {
            Kind::File => target.name = confine(directory, &target.name)?,
            Kind::Semaphore => {
                target.directory = confine(directory, &target.directory)?;
                target.name = prefixed(prefix, &target.name)?;
            }
            Kind::Redis => target.name = prefixed(prefix, &target.name)?,
        }
        Ok(())
    }
}

middleware!(Namespace);

/// `path` inside `directory`, as an absolute path without `.` or `..`.
fn confine(directory: Option<&str>, path: &str) -> Result<String, Error> {
    let Some(directory) = directory else {
        return Err(Error::AccessDenied(
            "the namespace middleware was composed without namespace.directory: no lock files"
                .into(),
        ));
    };
    let root = normalize(directory, "")
        .filter(|_| directory.starts_with('/'))
        .ok_or_else(|| {
            Error::InvalidArgument(format!(
                "namespace.directory must be an absolute path without `..`: {directory:?}"
            ))
        })?;
    if path.is_empty() {
        return Err(Error::InvalidArgument("an empty path".into()));
    }
    let (base, rest) = if path.starts_with('/') {
        ("", path)
    } else {
        (root.as_str(), path)
    };
    let inside = normalize(base, rest)
        .filter(|full| {
            full == &root || full.starts_with(&format!("{}/", root.trim_end_matches('/')))
        })
        .ok_or_else(|| {
            Error::AccessDenied(format!("{path} is outside the plugin's namespace, {root}"))
        })?;
    Ok(inside)
}

/// `base` then `rest`, each `.` dropped and each `..` taking one
/// component back; `None` when a `..` would climb above the root.
fn normalize(base: &str, rest: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for part in base.split('/').chain(rest.split('/')) {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            part => parts.push(part),
        }
    }
    Some(format!("/{}", parts.join("/")))
}

/// `name` behind the prefix.
fn prefixed(prefix: Option<&str>, name: &str) -> Result<String, Error> {
    match prefix {
        Some(prefix) => Ok(format!("{prefix}{name}")),
        None => Err(Error::AccessDenied(
            "the namespace middleware was composed without namespace.prefix: no semaphores or Redis locks"
                .into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_inside_the_directory() {
        let dir = Some("/jobs/team-a");
        assert_eq!(confine(dir, "a.lock").unwrap(), "/jobs/team-a/a.lock");
        assert_eq!(
            confine(dir, "./x/../a.lock").unwrap(),
            "/jobs/team-a/a.lock"
        );
        assert_eq!(
            confine(dir, "/jobs/team-a/b/c.lock").unwrap(),
            "/jobs/team-a/b/c.lock"
        );
        for outside in [
            "../b.lock",
            "/jobs/team-b/a.lock",
            "/jobs/team-ab/a.lock",
            "/etc/passwd",
            "x/../../y",
        ] {
            assert!(
                matches!(confine(dir, outside), Err(Error::AccessDenied(_))),
                "{outside}"
            );
        }
        assert!(matches!(
            confine(None, "a.lock"),
            Err(Error::AccessDenied(_))
        ));
        assert!(matches!(
            confine(Some("jobs"), "a.lock"),
            Err(Error::InvalidArgument(_))
        ));
    }
}
