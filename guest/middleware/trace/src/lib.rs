//! The trace middleware: composed in front of a plugin, it writes one JSON
//! line for every acquisition and every release the plugin makes, the
//! audit log an operator asks for:
//!
//! ```text
//! {"at":1764496800.123456,"event":"acquire","lock":"file-lock:/jobs/a.lock","mode":"exclusive","wait":"forever","waited_us":12.5,"outcome":"granted"}
//! {"at":1764496800.223456,"event":"release","lock":"file-lock:/jobs/a.lock","mode":"exclusive","held_us":100012.0,"ending":"released","outcome":"ok"}
//! ```
//!
//! `at` is when the wait or the hold ended, in seconds since the Unix epoch
//! (the wall clock is read at most once a second and carried forward by
//! the monotonic clock the times come from, so a line costs no extra
//! clock reading); `waited_us` and `held_us` are microseconds, rounded
//! down (a try does not wait: its `waited_us` is 0). `wait` is `forever`, `none` (a try) or the bound in microseconds;
//! `outcome` is `granted` or the error (`would-block`, `timed-out`,
//! `access-denied: ...`); a grant adds `slot` (semaphores) and `token`
//! (fenced Redis locks); `ending` is `released` or `dropped`.
//!
//! Settings: `trace.file`, a file to append to (a path the plugin's grants
//! reach); without it, lines go to the plugin's standard error. An audit
//! log is not optional: when the file cannot be opened, acquisitions are
//! refused; when a grant's line cannot be written, the grant is undone (the
//! lock released, the plugin told); when a release's line cannot be
//! written, an explicit release reports it. A plugin that exits, traps or
//! runs out of time while holding leaves no release line (the host still
//! releases the lock). The file is as safe as the directory it is in: a
//! plugin that may write there may edit its own trace, so keep an audit
//! trace on standard error (captured by whoever runs the plugin) or in a
//! directory the plugin cannot write.

mod line;
mod wall;

use std::sync::Mutex;

use line::Line;

use portalocker_middleware::{
    Config, Ending, Error, Grant, Hooks, LockMode, Request, Span, Target, Wait, middleware,
};

struct Trace;

impl Hooks for Trace {
    const NAME: &'static str = "trace";
    const SETTINGS: &'static [&'static str] = &["file"];
    const TIMED: bool = true;
    const SLOTS: bool = true;

    fn acquiring(_lock: &Target, _request: &Request) -> Result<(), Error> {
        sink().map(|_| ())
    }

    fn acquired(
        lock: &Target,
        request: &Request,
        waited: Span,
        outcome: Result<&Grant, &Error>,
    ) -> Result<(), Error> {
        let mut line = start("acquire", waited, lock, request.mode);
        line.raw(",\"wait\":");
        match request.wait {
            Wait::Forever => line.raw("\"forever\""),
            Wait::Never => line.raw("\"none\""),
            Wait::For(bound) => line.micros(bound),
        };
        line.raw(",\"waited_us\":").micros(waited.length);
        match outcome {
            Ok(grant) => {
                line.raw(",\"outcome\":\"granted\"");
                if let Some(slot) = grant.slot {
                    line.raw(",\"slot\":").number(u64::from(slot));
                }
                if let Some(token) = grant.fencing_token {
                    line.raw(",\"token\":").number(token);
                }
            }
            Err(error) => {
                line.raw(",\"outcome\":").string(&describe(error));
            }
        }
        emit(line)
    }

    fn released(
        lock: &Target,
        grant: &Grant,
        held: Span,
        ending: Ending,
        outcome: Result<(), &Error>,
    ) -> Result<(), Error> {
        let mut line = start("release", held, lock, grant.mode);
        line.raw(",\"held_us\":").micros(held.length);
        line.raw(match ending {
            Ending::Released => ",\"ending\":\"released\"",
            Ending::Dropped => ",\"ending\":\"dropped\"",
        });
        match outcome {
            Ok(()) => line.raw(",\"outcome\":\"ok\""),
            Err(error) => line.raw(",\"outcome\":").string(&describe(error)),
        };
        emit(line)
    }
}

middleware!(Trace);

/// Where the lines go: a WASI output stream (the plugin's stderr, or the
/// trace file opened to append), written with `blocking-write-and-flush`,
/// which a host may run on its own thread at once (Rust's `std::fs` writes
/// take the non-blocking path, which wasmtime hands to a blocking pool:
/// ten times slower per line).
struct Sink {
    stream: wasi::io::streams::OutputStream,
    /// Kept open as long as its stream.
    _file: Option<wasi::filesystem::types::Descriptor>,
}

/// The sink, opened on first use; an error when the trace file cannot be
/// opened.
fn sink() -> Result<&'static Mutex<Sink>, Error> {
    static SINK: std::sync::OnceLock<Result<Mutex<Sink>, Error>> = std::sync::OnceLock::new();
    SINK.get_or_init(|| {
        let config = Config::get();
        let sink = match config.value("trace.file") {
            None => Sink {
                stream: wasi::cli::stderr::get_stderr(),
                _file: None,
            },
            Some(path) => {
                let cannot = |why: String| {
                    Error::Other(format!("the trace middleware cannot open {path}: {why}"))
                };
                let (dir, relative) = granted(path)
                    .ok_or_else(|| cannot("it is in no directory granted to the plugin".into()))?;
                use wasi::filesystem::types::{DescriptorFlags, OpenFlags, PathFlags};
                let file = dir
                    .open_at(
                        PathFlags::empty(),
                        &relative,
                        OpenFlags::CREATE,
                        DescriptorFlags::WRITE,
                    )
                    .map_err(|e| cannot(format!("{e:?}")))?;
                let stream = file
                    .append_via_stream()
                    .map_err(|e| cannot(format!("{e:?}")))?;
                Sink {
                    stream,
                    _file: Some(file),
                }
            }
        };
        Ok(Mutex::new(sink))
    })
    .as_ref()
    .map_err(Clone::clone)
}

/// The granted directory holding the absolute `path`, and the path inside
/// it.
fn granted(path: &str) -> Option<(wasi::filesystem::types::Descriptor, String)> {
    let path = portalocker_middleware::plain(path);
    wasi::filesystem::preopens::get_directories()
        .into_iter()
        .filter_map(|(dir, at)| {
            let at = portalocker_middleware::plain(&at);
            let inside = if at == "/" {
                path.strip_prefix('/')
            } else {
                path.strip_prefix(&at)
                    .and_then(|rest| rest.strip_prefix('/'))
            }?;
            Some((at.len(), dir, inside.to_owned()))
        })
        .max_by_key(|(depth, _, _)| *depth)
        .map(|(_, dir, inside)| (dir, inside))
}

/// Write one line in one write (the file is opened to append, and lines
/// are kept under 4 KiB, so lines of plugins sharing a file do not
/// interleave).
///
/// # Errors
///
/// `other` when the line cannot be written: a grant is then undone, and an
/// explicit release reports it.
fn emit(line: Line) -> Result<(), Error> {
    let line = line.finish();
    let sink = sink()?;
    let sink = sink.lock().unwrap_or_else(|p| p.into_inner());
    sink.stream.blocking_write_and_flush(&line).map_err(|e| {
        Error::Other(format!(
            "the trace middleware cannot write its trace: {e:?}"
        ))
    })
}

/// The fields every line starts with: `at` is when `span` ended.
fn start(event: &str, span: Span, lock: &Target, mode: LockMode) -> Line {
    let at = wall::since_epoch(span.end);
    let mut line = Line::starting_at(at, lock.key().len().min(line::MAX_FIELD));
    line.raw(",\"event\":\"")
        .raw(event)
        .raw("\",\"lock\":")
        .string(lock.key())
        .raw(match mode {
            LockMode::Exclusive => ",\"mode\":\"exclusive\"",
            LockMode::Shared => ",\"mode\":\"shared\"",
        });
    line
}

/// The error as the trace shows it: its case, and its message if any.
fn describe(error: &Error) -> String {
    match error {
        Error::WouldBlock => "would-block".into(),
        Error::TimedOut => "timed-out".into(),
        Error::Lost => "lost".into(),
        Error::AccessDenied(why) => format!("access-denied: {why}"),
        Error::InvalidArgument(why) => format!("invalid-argument: {why}"),
        Error::LimitExceeded(why) => format!("limit-exceeded: {why}"),
        Error::Unsupported(why) => format!("unsupported: {why}"),
        Error::Other(why) => format!("other: {why}"),
    }
}
