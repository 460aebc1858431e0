//! The namespace middleware: composed in front of a plugin, it confines the
//! names the plugin locks: its lock files to one sub-directory and its
//! semaphore and Redis lock names to a prefix, for hosts that cannot grant
//! each plugin its own directory and namespace.
//!
//! Settings (`portalocker compose --config KEY=VALUE`):
//!
//! - `namespace.directory`: an absolute path as the plugin sees it
//!   (`/jobs/team-a`), without `..`. A relative lock path is taken inside
//!   it (`a.lock` is `/jobs/team-a/a.lock`); an absolute one must lie
//!   inside it; neither may climb out with `..`. Semaphore directories
//!   follow the same rule. Without it, every lock file and semaphore is
//!   refused.
//! - `namespace.prefix`: put in front of every semaphore and Redis lock
//!   name (`team-a.` makes `reports` into `team-a.reports`). Without it, or
//!   empty, every semaphore and Redis lock is refused. Give plugins
//!   prefixes that are not prefixes of one another (`team-a.` and
//!   `team-a.b.` overlap: `b.x` of the first is `x` of the second).
//!
//! It fails closed: an unknown `namespace.` setting refuses every open, so
//! a misspelt setting cannot widen what the plugin reaches, and a path
//! with a backslash (a separator on Windows) is refused.
//!
//! **It confines names, not files.** The check is on the path's text, and
//! the host opens what it is given inside its own grant, following
//! symlinks in the directories on the way (not the lock file itself). A
//! plugin that can write into the shared directory can make a link out of
//! its sub-directory, so when plugins do not trust each other, grant each
//! its own directory (`portalocker run --dir`): the host enforces that.

use portalocker_middleware::{Config, Error, Hooks, Kind, Target, middleware};

struct Namespace;

impl Hooks for Namespace {
    const NAME: &'static str = "namespace";
    const SETTINGS: &'static [&'static str] = &["directory", "prefix"];

    fn open(target: &mut Target) -> Result<(), Error> {
        let config = Config::get();
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
        .filter(|_| !directory.contains('\\') && !directory.split('/').any(|part| part == ".."))
        .ok_or_else(|| {
            Error::InvalidArgument(format!(
                "namespace.directory must be an absolute path without `..` or `\\`: {directory:?}"
            ))
        })?;
    if path.is_empty() {
        return Err(Error::InvalidArgument("an empty path".into()));
    }
    if path.contains('\\') {
        return Err(Error::AccessDenied(format!(
            "{path} holds a backslash, a separator on Windows: refused inside a namespace"
        )));
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
        Some(prefix) if !prefix.is_empty() => Ok(format!("{prefix}{name}")),
        _ => Err(Error::AccessDenied(
            "the namespace middleware was composed without a namespace.prefix: no semaphores or Redis locks"
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
        for bad_root in ["jobs", "/jobs/a/..", "/jobs\\a"] {
            assert!(
                matches!(
                    confine(Some(bad_root), "a.lock"),
                    Err(Error::InvalidArgument(_))
                ),
                "{bad_root}"
            );
        }
        assert!(matches!(
            confine(dir, "..\\team-b\\x.lock"),
            Err(Error::AccessDenied(_))
        ));
        assert_eq!(confine(Some("/"), "/any/x.lock").unwrap(), "/any/x.lock");
    }

    #[test]
    fn names_need_a_prefix() {
        assert_eq!(prefixed(Some("a."), "x").unwrap(), "a.x");
        assert!(matches!(
            prefixed(Some(""), "x"),
            Err(Error::AccessDenied(_))
        ));
        assert!(matches!(prefixed(None, "x"), Err(Error::AccessDenied(_))));
    }
}
