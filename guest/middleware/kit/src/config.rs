//! The settings a middleware was composed with.

use std::sync::OnceLock;

use crate::bindings::portalocker::locks::config;
use crate::{Error, Hooks};

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

    /// Refuse a setting of middleware `H` that it does not read: a misspelt
    /// setting must not pass unnoticed (it could be the one that confines).
    ///
    /// # Errors
    ///
    /// `invalid-argument` naming the setting and those `H` reads.
    pub fn check<H: Hooks>() -> Result<(), Error> {
        let prefix = format!("{}.", H::NAME);
        let unknown = Self::get().entries.iter().find(|(key, _)| {
            key.strip_prefix(&prefix)
                .is_some_and(|setting| !H::SETTINGS.contains(&setting))
        });
        match unknown {
            None => Ok(()),
            Some((key, _)) => Err(Error::InvalidArgument(format!(
                "the {} middleware has no setting `{key}` (it reads: {})",
                H::NAME,
                if H::SETTINGS.is_empty() {
                    "none".to_owned()
                } else {
                    H::SETTINGS
                        .iter()
                        .map(|s| format!("{}.{s}", H::NAME))
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            ))),
        }
    }
}
