//! The cache of compiled plugins.
//!
//! Loading a compiled plugin runs its native code unchecked, so an entry is
//! trusted only as far as the cache is: entries are named by a SHA-256
//! digest of this program's version, the engine's settings and the plugin's
//! bytes (no two plugins share a name), the directory is created `0700` and
//! refused when it is not ours or others may write to it, an entry is
//! published atomically (written aside, then linked into place) and
//! refused unless it is a regular file of ours that nobody else may write,
//! and its payload is checked against the digest stored with it before it is
//! loaded.

use std::fs::File;
use std::hash::Hasher;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// What every entry starts with, before the payload's digest.
const MAGIC: &[u8; 8] = b"PLCWASM1";

/// `$PORTALOCKER_CACHE_DIR`, else `$XDG_CACHE_HOME/portalocker/plugins`,
/// else `~/.cache/portalocker/plugins`.
pub fn default_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("PORTALOCKER_CACHE_DIR") {
        return Some(PathBuf::from(dir));
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))?;
    Some(base.join("portalocker/plugins"))
}

/// A cache directory checked for use.
#[derive(Debug)]
pub struct Cache {
    dir: PathBuf,
}

impl Cache {
    /// Create `dir` (`0700`) if missing and check that it is a directory of
    /// ours that nobody else may write to.
    ///
    /// # Errors
    ///
    /// Why the directory cannot be trusted or made.
    pub fn open(dir: &Path) -> io::Result<Self> {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            builder.mode(0o700);
        }
        builder.create(dir)?;
        let meta = std::fs::symlink_metadata(dir)?;
        if !meta.is_dir() {
            return Err(io::Error::other("it is not a directory (a symlink?)"));
        }
        check_private(&meta)?;
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }

    /// The entry of `plugin` for `engine`.
    pub fn entry(&self, engine: &Engine, plugin: &[u8]) -> PathBuf {
        let mut key = Sha256::new();
        key.update(b"portalocker-cwasm\0");
        key.update(env!("CARGO_PKG_VERSION").as_bytes());
        key.update(b"\0");
        let mut engine_hash = DigestHasher(Sha256::new());
        std::hash::Hash::hash(&engine.precompile_compatibility_hash(), &mut engine_hash);
        key.update(engine_hash.0.finalize());
        key.update(plugin);
        self.dir.join(format!("{}.cwasm", hex(&key.finalize())))
    }

    /// The compiled plugin at `entry`, if it is there and checks out.
    /// A corrupt entry is removed.
    pub fn load(&self, engine: &Engine, entry: &Path) -> Option<Component> {
        let payload = match read_entry(entry) {
            Ok(payload) => payload?,
            Err(_) => {
                let _ = std::fs::remove_file(entry);
                return None;
            }
        };
        // SAFETY: `payload` is what this program serialised with an engine
        // of the same settings (the entry's name says so), read from a
        // private directory and a file only we may write, and it matches
        // the digest stored with it.
        match unsafe { Component::deserialize(engine, &payload) } {
            Ok(component) => Some(component),
            Err(_) => {
                let _ = std::fs::remove_file(entry);
                None
            }
        }
    }

    /// Publish `serialized` at `entry` (best effort: a cache that cannot be
    /// written only costs speed).
    pub fn store(&self, entry: &Path, serialized: &[u8]) {
        let _ = portalocker::open_atomic(entry, |file| {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
            }
            file.write_all(MAGIC)?;
            file.write_all(&Sha256::digest(serialized))?;
            file.write_all(serialized)
        });
    }
}

/// The payload of `entry`: `Ok(None)` when there is none; `Err` when it is
/// not a private regular file or its digest does not match.
fn read_entry(entry: &Path) -> io::Result<Option<Vec<u8>>> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    }
    let mut file: File = match options.open(entry) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    check_private(&meta)?;
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.read_to_end(&mut bytes)?;
    let (header, payload) = bytes
        .split_at_checked(MAGIC.len() + 32)
        .ok_or_else(truncated)?;
    let (magic, digest) = header.split_at(MAGIC.len());
    if magic != MAGIC || digest != Sha256::digest(payload).as_slice() {
        return Err(truncated());
    }
    Ok(Some(payload.to_vec()))
}

fn truncated() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        "a corrupt or truncated cache entry",
    )
}

/// Refuse a file or directory that is not ours or that others may write.
fn check_private(meta: &std::fs::Metadata) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        // SAFETY: geteuid has no preconditions.
        let me = unsafe { libc::geteuid() };
        if meta.uid() != me {
            return Err(io::Error::other(format!(
                "it belongs to user {}, not to us ({me})",
                meta.uid()
            )));
        }
        if meta.mode() & 0o022 != 0 {
            return Err(io::Error::other(format!(
                "others may write to it (mode {:o})",
                meta.mode() & 0o777
            )));
        }
    }
    #[cfg(not(unix))]
    let _ = meta;
    Ok(())
}

/// Feeds a `Hash` implementation into SHA-256.
struct DigestHasher(Sha256);

impl Hasher for DigestHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finish(&self) -> u64 {
        0
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}
