//! The settings a middleware was composed with.

use std::sync::OnceLock;

use crate::bindings::portalocker::locks::config;

/// The settings given at composition time (`--config KEY=VALUE`), read
/// once.
#[derive(Debug, Default)]
pub struct Config {
    entries: Vec<(String, String)>,
}

impl Config {
    /// The settings (asked of the config component on first use).
    pub fn get() -> &'static Config {
        static CONFIG: OnceLock<Config> = OnceLock::new();
        CONFIG.get_or_init(|| Config {
            entries: config::entries(),
        })
    }

    /// The value of `key` (the last one given wins).
    #[must_use]
    pub fn value(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every key that starts with `prefix` (a middleware's `name.`) but is
    /// not one of `known`: a setting that would otherwise be ignored
    /// silently.
    #[must_use]
    pub fn unknown(&self, prefix: &str, known: &[&str]) -> Vec<&str> {
        self.entries
            .iter()
            .map(|(k, _)| k.as_str())
            .filter(|k| {
                k.strip_prefix(prefix)
                    .is_some_and(|setting| !known.contains(&setting))
            })
            .collect()
    }
}
