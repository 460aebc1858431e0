//! Composition: middleware in front of a plugin, a provider under it, and
//! the settings the middleware reads, made into one component with the
//! `wac-graph` library (no external tool).
//!
//! The plugin's `portalocker:locks` imports are what gets composed: each
//! middleware, from the first given (closest to the plugin) to the last,
//! must export every one of them; it imports them again, so the next
//! layer (or the host) serves them. A provider, last, serves them all
//! (and `types`): the result then imports no `portalocker:locks` at all.
//! A middleware that imports `portalocker:locks/config` is given a small
//! component whose `entries` are the settings.

use std::fmt;

use wac_graph::types::{ItemKind, Package, are_semver_compatible};
use wac_graph::{CompositionGraph, EncodeOptions, NodeId, PackageId};

/// The package every composed interface belongs to.
const LOCKS: &str = "portalocker:locks/";

/// The interface a middleware's settings come through.
const CONFIG: &str = "portalocker:locks/config@0.1.0";

/// The custom section in which a middleware built on the kit declares its
/// name and settings (`NAME SETTING...`, one line).
const DECLARATION: &str = "portalocker:middleware";

/// A component given by the user, with the name errors call it by.
#[derive(Debug, Clone, Copy)]
pub struct Part<'a> {
    /// What to call it (its file name).
    pub name: &'a str,
    /// The component's bytes.
    pub bytes: &'a [u8],
}

/// What to compose around a plugin.
#[derive(Debug, Default, Clone)]
pub struct Layers<'a> {
    /// Middleware, the first closest to the plugin.
    pub middleware: Vec<Part<'a>>,
    /// A provider under everything.
    pub provider: Option<Part<'a>>,
    /// `KEY=VALUE` settings for the middleware.
    pub config: Vec<(String, String)>,
}

/// Why a composition failed: a sentence naming the component and, where
/// there is one, the interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComposeError(pub String);

impl fmt::Display for ComposeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ComposeError {}

fn fail<T>(message: impl Into<String>) -> Result<T, ComposeError> {
    Err(ComposeError(message.into()))
}

/// Compose `layers` around `plugin`; the composed component's bytes.
///
/// # Errors
///
/// A part that is not a component; a middleware or provider that does not
/// export an interface the plugin imports, or exports it in an
/// incompatible version or shape; settings given without a middleware
/// that reads them; a composition that does not validate.
pub fn compose(plugin: Part<'_>, layers: &Layers<'_>) -> Result<Vec<u8>, ComposeError> {
    // wac-graph panics on some inputs it cannot handle (a `todo!` for a
    // few newer type forms): an error about that input, not a crash.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        compose_checked(plugin, layers)
    }))
    .unwrap_or_else(|panic| {
        let why = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        fail(format!(
            "the composition library (wac-graph) cannot compose these components: {why}"
        ))
    })
}

/// [`compose`], unguarded.
fn compose_checked(plugin: Part<'_>, layers: &Layers<'_>) -> Result<Vec<u8>, ComposeError> {
    if layers.middleware.is_empty() && layers.provider.is_none() {
        return fail("nothing to compose: give a middleware (--with) or a provider (--provider)");
    }
    check_settings(layers)?;
    let mut socket = plugin.bytes.to_vec();
    let mut socket_name = plugin.name.to_owned();
    let mut config_read = false;
    for middleware in &layers.middleware {
        let (bytes, read) = plug(
            &socket,
            &socket_name,
            *middleware,
            Some(&layers.config),
            false,
        )?;
        config_read |= read;
        socket = bytes;
        socket_name = format!("{socket_name} with {}", middleware.name);
    }
    if let Some(provider) = layers.provider {
        socket = plug(&socket, &socket_name, provider, None, true)?.0;
        // A provider that imports lock interfaces itself leaves them to a
        // host: the result would not run without one.
        let mut graph = CompositionGraph::new();
        let result = register(&mut graph, "portalocker:result", &socket_name, &socket)?;
        if let Some(left) = world(&graph, result, Side::Imports)
            .into_iter()
            .find(|name| name.starts_with(LOCKS))
        {
            return fail(format!(
                "{} imports {left} itself: composed with it, {socket_name} still needs a host for it",
                provider.name
            ));
        }
    }
    if !layers.config.is_empty() && !config_read {
        return fail(format!(
            "settings were given (--config {}=...) but no middleware reads settings (none imports {CONFIG})",
            layers.config[0].0
        ));
    }
    Ok(socket)
}

/// Plug `layer`'s exports into `socket`'s `portalocker:locks` imports
/// (with `types` too when `provider`); the composed bytes, and whether the
/// layer read the settings.
fn plug(
    socket: &[u8],
    socket_name: &str,
    layer: Part<'_>,
    config: Option<&[(String, String)]>,
    provider: bool,
) -> Result<(Vec<u8>, bool), ComposeError> {
    let mut graph = CompositionGraph::new();
    let socket_id = register(&mut graph, "portalocker:socket", socket_name, socket)?;
    let layer_id = register(&mut graph, "portalocker:layer", layer.name, layer.bytes)?;
    let wanted: Vec<String> = world(&graph, socket_id, Side::Imports)
        .into_iter()
        .filter(|name| name.starts_with(LOCKS) && (provider || !is_types(name)))
        .collect();
    if wanted.iter().all(|name| is_types(name)) {
        return fail(format!(
            "{socket_name} imports no portalocker:locks interface: {} has nothing to serve",
            layer.name
        ));
    }
    let offered = world(&graph, layer_id, Side::Exports);
    let socket_node = graph.instantiate(socket_id);
    let layer_node = graph.instantiate(layer_id);
    for name in &wanted {
        let Some(export) = offered.iter().find(|e| are_semver_compatible(e, name)) else {
            let near = offered.iter().find(|e| same_interface(e, name));
            return fail(match near {
                Some(other) => format!(
                    "{} exports {other}, not a version compatible with {name}, which {socket_name} imports",
                    layer.name
                ),
                None => format!(
                    "{} does not export {name}, which {socket_name} imports",
                    layer.name
                ),
            });
        };
        let alias = graph
            .alias_instance_export(layer_node, export)
            .map_err(|e| ComposeError(format!("{}: {name}: {e}", layer.name)))?;
        graph
            .set_instantiation_argument(socket_node, name, alias)
            .map_err(|e| {
                ComposeError(format!(
                    "{} cannot serve {name} to {socket_name}: {}",
                    layer.name,
                    chain(&e)
                ))
            })?;
    }
    let mut read = false;
    let layer_imports = world(&graph, layer_id, Side::Imports);
    if let Some(other) = layer_imports
        .iter()
        .find(|name| same_interface(name, CONFIG) && !are_semver_compatible(name, CONFIG))
    {
        return fail(format!(
            "{} imports {other}, a version of the settings interface this portalocker ({CONFIG}) cannot serve",
            layer.name
        ));
    }
    if let Some(config) = config
        && let Some(import) = layer_imports
            .iter()
            .find(|name| are_semver_compatible(name, CONFIG))
    {
        read = true;
        let settings = config_component(config)?;
        let config_id = register(&mut graph, "portalocker:config", "the settings", &settings)?;
        let config_node = graph.instantiate(config_id);
        let alias = graph
            .alias_instance_export(config_node, CONFIG)
            .map_err(|e| ComposeError(format!("the settings: {e}")))?;
        graph
            .set_instantiation_argument(layer_node, import, alias)
            .map_err(|e| {
                ComposeError(format!(
                    "{} cannot read the settings: {}",
                    layer.name,
                    chain(&e)
                ))
            })?;
    }
    export_all(&mut graph, socket_id, socket_node)?;
    let bytes = graph
        .encode(EncodeOptions {
            processor: Some(wac_graph::Processor {
                name: "portalocker",
                version: env!("CARGO_PKG_VERSION"),
            }),
            ..EncodeOptions::default()
        })
        .map_err(|e| {
            ComposeError(format!(
                "composing {} with {socket_name}: {}",
                layer.name,
                chain(&e)
            ))
        })?;
    Ok((bytes, read))
}

/// Refuse a setting that no middleware given reads: each middleware built
/// on the kit declares its name and settings; a setting whose middleware
/// is declared must be one of its settings, and one whose middleware is
/// not must have a middleware that reads settings without declaring them.
fn check_settings(layers: &Layers<'_>) -> Result<(), ComposeError> {
    if layers.config.is_empty() {
        return Ok(());
    }
    // Each middleware's sections are read once.
    let per_middleware: Vec<Vec<(String, Vec<String>)>> = layers
        .middleware
        .iter()
        .map(|part| declarations(part.bytes))
        .collect();
    let undeclared = per_middleware.iter().any(Vec::is_empty);
    let declared: Vec<(String, Vec<String>)> = per_middleware.into_iter().flatten().collect();
    let given = || {
        declared
            .iter()
            .map(|(name, settings)| match settings.as_slice() {
                [] => format!("{name} (none)"),
                settings => format!("{name} ({})", settings.join(", ")),
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    for (key, _) in &layers.config {
        let Some((name, setting)) = key.split_once('.') else {
            return fail(format!(
                "--config {key}: a setting is MIDDLEWARE.SETTING=VALUE"
            ));
        };
        match declared.iter().find(|(declared, _)| declared == name) {
            Some((_, settings)) if settings.iter().any(|s| s == setting) => {}
            Some(_) => {
                return fail(format!(
                    "the {name} middleware has no setting `{key}` (the middleware given read: {})",
                    given()
                ));
            }
            None if undeclared => {}
            None => {
                return fail(format!(
                    "no middleware given reads `{key}` (the middleware given read: {})",
                    given()
                ));
            }
        }
    }
    Ok(())
}

/// The `NAME SETTING...` declarations in `bytes`' custom sections (its
/// nested modules included).
fn declarations(bytes: &[u8]) -> Vec<(String, Vec<String>)> {
    wasmparser::Parser::new(0)
        .parse_all(bytes)
        .map_while(Result::ok)
        .filter_map(|payload| match payload {
            wasmparser::Payload::CustomSection(section) if section.name() == DECLARATION => {
                Some(String::from_utf8_lossy(section.data()).into_owned())
            }
            _ => None,
        })
        .flat_map(|text| {
            text.lines()
                .filter_map(|line| {
                    let mut words = line.split_whitespace().map(str::to_owned);
                    words.next().map(|name| (name, words.collect()))
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Register `bytes` as package `package`.
fn register(
    graph: &mut CompositionGraph,
    package: &str,
    name: &str,
    bytes: &[u8],
) -> Result<PackageId, ComposeError> {
    let parsed = Package::from_bytes(package, None, bytes.to_vec(), graph.types_mut())
        .map_err(|e| ComposeError(format!("{name} is not a usable component: {e:#}")))?;
    graph
        .register_package(parsed)
        .map_err(|e| ComposeError(format!("{name}: {e}")))
}

/// Which side of a world.
enum Side {
    Imports,
    Exports,
}

/// The names a package imports or exports.
fn world(graph: &CompositionGraph, package: PackageId, side: Side) -> Vec<String> {
    let world = &graph.types()[graph[package].ty()];
    let names = match side {
        Side::Imports => &world.imports,
        Side::Exports => &world.exports,
    };
    names.keys().cloned().collect()
}

/// Export everything `node` (an instance of `package`) exports.
fn export_all(
    graph: &mut CompositionGraph,
    package: PackageId,
    node: NodeId,
) -> Result<(), ComposeError> {
    let exports: Vec<(String, ItemKind)> = graph.types()[graph[package].ty()]
        .exports
        .iter()
        .map(|(name, kind)| (name.clone(), *kind))
        .collect();
    for (name, _) in exports {
        let alias = graph
            .alias_instance_export(node, &name)
            .map_err(|e| ComposeError(format!("{name}: {e}")))?;
        graph
            .export(alias, &name)
            .map_err(|e| ComposeError(format!("{name}: {e}")))?;
    }
    Ok(())
}

/// `portalocker:locks/types@...`.
fn is_types(name: &str) -> bool {
    name.strip_prefix(LOCKS)
        .is_some_and(|rest| rest == "types" || rest.starts_with("types@"))
}

/// Whether two names are the same interface in any version.
fn same_interface(a: &str, b: &str) -> bool {
    let base = |name: &str| name.split('@').next().unwrap_or(name).to_owned();
    base(a) == base(b)
}

/// An error and its causes, in one line.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A component exporting `portalocker:locks/config` whose `entries` are
/// `settings`: a core module returns them from a data segment, lifted by
/// the canonical ABI (a list of pairs of strings).
///
/// # Errors
///
/// Settings too large for one component (gigabytes).
pub fn config_component(settings: &[(String, String)]) -> Result<Vec<u8>, ComposeError> {
    // Memory: [list pointer, list length] at 0, the list of (key pointer,
    // key length, value pointer, value length) at 8, then the strings.
    let too_large = || ComposeError("the settings are too large for a component".into());
    let word = |n: usize| {
        u32::try_from(n)
            .map(u32::to_le_bytes)
            .map_err(|_| too_large())
    };
    let list_at = 8;
    let mut strings_at = list_at + 16 * settings.len();
    let mut list = Vec::new();
    let mut strings = Vec::new();
    for (key, value) in settings {
        for text in [key, value] {
            list.extend_from_slice(&word(strings_at)?);
            list.extend_from_slice(&word(text.len())?);
            strings.extend_from_slice(text.as_bytes());
            strings_at += text.len();
        }
    }
    let mut data = Vec::new();
    data.extend_from_slice(&word(list_at)?);
    data.extend_from_slice(&word(settings.len())?);
    data.extend_from_slice(&list);
    data.extend_from_slice(&strings);
    word(data.len())?;
    let pages = data.len().div_ceil(65536).max(1);
    let escaped: String = data.iter().map(|b| format!("\\{b:02x}")).collect();
    let text = format!(
        r#"(component
  (core module $settings
    (memory (export "memory") {pages})
    (data (i32.const 0) "{escaped}")
    (func (export "entries") (result i32) (i32.const 0)))
  (core instance $settings (instantiate $settings))
  (type $entries (list (tuple string string)))
  (func $entries (result $entries)
    (canon lift (core func $settings "entries") (memory (core memory $settings "memory"))))
  (instance $config (export "entries" (func $entries)))
  (export "{CONFIG}" (instance $config)))"#
    );
    wat::parse_str(text)
        .map_err(|e| ComposeError(format!("the settings cannot be made a component: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_settings_component_validates_for_any_settings() {
        for settings in [
            vec![],
            vec![("namespace.prefix".to_owned(), "team-a.".to_owned())],
            vec![("k".to_owned(), "\"quoted\" \\ \u{e9}\0".to_owned()); 3000],
        ] {
            let bytes = config_component(&settings).unwrap();
            wasmtime::component::Component::new(&wasmtime::Engine::default(), &bytes).unwrap();
        }
    }

    fn component(text: &str) -> Vec<u8> {
        wat::parse_str(text).unwrap()
    }

    #[test]
    fn a_version_mismatch_names_both_versions() {
        let plugin =
            component(r#"(component (import "portalocker:locks/file-lock@0.1.0" (instance)))"#);
        let newer = component(
            r#"(component (instance $i) (export "portalocker:locks/file-lock@0.2.0" (instance $i)))"#,
        );
        let layers = Layers {
            middleware: vec![Part {
                name: "newer.wasm",
                bytes: &newer,
            }],
            ..Layers::default()
        };
        let err = compose(
            Part {
                name: "plugin.wasm",
                bytes: &plugin,
            },
            &layers,
        )
        .unwrap_err();
        assert_eq!(
            err.0,
            "newer.wasm exports portalocker:locks/file-lock@0.2.0, not a version compatible with \
             portalocker:locks/file-lock@0.1.0, which plugin.wasm imports"
        );
        // A compatible patch release is fine.
        let patched = component(
            r#"(component (instance $i) (export "portalocker:locks/file-lock@0.1.3" (instance $i)))"#,
        );
        let layers = Layers {
            provider: Some(Part {
                name: "patched.wasm",
                bytes: &patched,
            }),
            ..Layers::default()
        };
        compose(
            Part {
                name: "plugin.wasm",
                bytes: &plugin,
            },
            &layers,
        )
        .unwrap();
    }

    #[test]
    fn settings_nobody_reads_are_an_error() {
        let plugin =
            component(r#"(component (import "portalocker:locks/file-lock@0.1.0" (instance)))"#);
        let provider = component(
            r#"(component (instance $i) (export "portalocker:locks/file-lock@0.1.0" (instance $i)))"#,
        );
        let layers = Layers {
            provider: Some(Part {
                name: "p.wasm",
                bytes: &provider,
            }),
            config: vec![("trace.file".into(), "/x".into())],
            ..Layers::default()
        };
        let err = compose(
            Part {
                name: "plugin.wasm",
                bytes: &plugin,
            },
            &layers,
        )
        .unwrap_err();
        assert!(
            err.0.contains("no middleware given reads `trace.file`"),
            "{err}"
        );
    }

    #[test]
    fn names_are_matched_by_interface_and_version() {
        assert!(is_types("portalocker:locks/types@0.1.0"));
        assert!(!is_types("portalocker:locks/typeset@0.1.0"));
        assert!(same_interface(
            "portalocker:locks/file-lock@0.1.0",
            "portalocker:locks/file-lock@0.2.0"
        ));
    }
}
