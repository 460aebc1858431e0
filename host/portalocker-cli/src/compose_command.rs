//! `portalocker compose`, and the composing step of `portalocker run
//! --with`.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::args::ComposeArgs;
use crate::compose::{self, Layers, Part};
use crate::failure::{Failure, exit};

/// Compose and write the result (atomically: a reader of OUTPUT sees the
/// old file or the whole new one).
///
/// # Errors
///
/// Unreadable inputs (66), a composition that fails (65, naming the
/// component and interface), bad settings (64), an unwritable output (74).
pub fn run(args: ComposeArgs) -> Result<u8, Failure> {
    let composed = composed(
        &args.plugin,
        &args.with,
        args.provider.as_deref(),
        &args.config,
    )?;
    portalocker::open_atomic(&args.output, |file| file.write_all(&composed)).map_err(|e| {
        Failure::because(exit::IO, &format!("writing {}", args.output.display()), e)
    })?;
    Ok(0)
}

/// The plugin at `plugin` composed with middleware `with` (first closest
/// to the plugin), an optional `provider` and `config` settings.
///
/// # Errors
///
/// As [`run`].
pub fn composed(
    plugin: &Path,
    with: &[PathBuf],
    provider: Option<&Path>,
    config: &[String],
) -> Result<Vec<u8>, Failure> {
    let config = config
        .iter()
        .map(|setting| parse_setting(setting))
        .collect::<Result<Vec<_>, _>>()?;
    let read = |path: &Path| {
        std::fs::read(path).map_err(|e| {
            Failure::because(exit::NO_INPUT, &format!("reading {}", path.display()), e)
        })
    };
    let plugin_bytes = read(plugin)?;
    let with_bytes = with
        .iter()
        .map(|p| read(p))
        .collect::<Result<Vec<_>, _>>()?;
    let provider_bytes = provider.map(read).transpose()?;
    let name = |path: &Path| path.display().to_string();
    let names: Vec<String> = with.iter().map(|p| name(p)).collect();
    let provider_name = provider.map(name);
    let plugin_name = name(plugin);
    let layers = Layers {
        middleware: names
            .iter()
            .zip(&with_bytes)
            .map(|(name, bytes)| Part { name, bytes })
            .collect(),
        provider: provider_name
            .as_deref()
            .zip(provider_bytes.as_deref())
            .map(|(name, bytes)| Part { name, bytes }),
        config,
    };
    let plugin = Part {
        name: &plugin_name,
        bytes: &plugin_bytes,
    };
    compose::compose(plugin, &layers).map_err(|e| Failure::new(exit::DATA, e.to_string()))
}

/// `KEY=VALUE`, with a non-empty key.
fn parse_setting(setting: &str) -> Result<(String, String), Failure> {
    match setting.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(Failure::new(
            exit::USAGE,
            format!("--config {setting:?}: a setting is KEY=VALUE (namespace.prefix=team-a.)"),
        )),
    }
}
