"""portalocker for Python plugins built with componentize-py.

The locks are the host's real operating-system locks (and its Redis lock):
they exclude other plugins, native programs and Python programs using
portalocker on the same files. This module reads like portalocker: locks
are context managers, contention raises `AlreadyLocked`, timeouts are
seconds.

    from portalocker_guest import FileLock, BoundedSemaphore

    with BoundedSemaphore(2, "runners", "/jobs").acquire(timeout=30):
        with FileLock("/jobs/journal.lock"):
            ...  # one plugin (or program) at a time

Build a plugin with `componentize-py -d guest/wit-command -w plugin-command
componentize APP -p guest/examples/python -o plugin.wasm` and run it with
`portalocker run`.
"""

from componentize_py_types import Err
from wit_world.imports import file_lock as _file
from wit_world.imports import redis_lock as _redis
from wit_world.imports import semaphore as _semaphore
from wit_world.imports import portalocker_locks_types as _types

__all__ = [
    "LockError", "AlreadyLocked", "AccessDenied", "InvalidArgument",
    "LimitExceeded", "Unsupported", "LockLost",
    "FileLock", "BoundedSemaphore", "RedisLock",
]


class LockError(Exception):
    """A lock call failed; `kind` is the interface's error case."""

    def __init__(self, kind, message=""):
        super().__init__(f"{kind}: {message}" if message else kind)
        self.kind = kind
        self.message = message


class AlreadyLocked(LockError):
    """Someone else holds it: a try found it held (`would-block`), or a
    bounded wait ran out (`timed-out`). portalocker's name for it."""


class AccessDenied(LockError):
    """Outside the granted directories, or a symlinked lock file."""


class InvalidArgument(LockError):
    """A bad path, name or slot count."""


class LimitExceeded(LockError):
    """More locks or a longer wait than the host allows."""


class Unsupported(LockError):
    """The host does not offer it (a Redis lock without a Redis grant)."""


class LockLost(LockError):
    """A Redis lock was lost (its holder was reaped or cut off)."""


_ERRORS = {
    _types.Error_WouldBlock: (AlreadyLocked, "would-block"),
    _types.Error_TimedOut: (AlreadyLocked, "timed-out"),
    _types.Error_AccessDenied: (AccessDenied, "access-denied"),
    _types.Error_InvalidArgument: (InvalidArgument, "invalid-argument"),
    _types.Error_LimitExceeded: (LimitExceeded, "limit-exceeded"),
    _types.Error_Unsupported: (Unsupported, "unsupported"),
    _types.Error_Lost: (LockLost, "lost"),
    _types.Error_Other: (LockError, "other"),
}


def _call(function, *args):
    """Call a lock import; its error as the matching exception."""
    try:
        return function(*args)
    except Err as err:
        cls, kind = _ERRORS.get(type(err.value), (LockError, "other"))
        raise cls(kind, getattr(err.value, "value", "")) from None


def _nanos(seconds):
    if seconds < 0:
        raise ValueError(f"a timeout cannot be negative: {seconds}")
    return int(seconds * 1_000_000_000)


def _mode(shared):
    return _types.LockMode.SHARED if shared else _types.LockMode.EXCLUSIVE


def _take(handle, shared, timeout, fail_when_locked):
    """One acquisition: a try, a bounded wait or a wait."""
    if fail_when_locked:
        return _call(handle.try_lock, _mode(shared))
    if timeout is None:
        return _call(handle.lock, _mode(shared))
    return _call(handle.lock_for, _mode(shared), _nanos(timeout))


class _Held:
    """A held lock or permit: a context manager that releases on exit, or
    call `release()`. Released at the latest when garbage-collected."""

    def __init__(self, guard, release):
        self._guard = guard
        self._release = release

    def release(self):
        """Release now (a second call does nothing)."""
        guard, self._guard = self._guard, None
        if guard is not None:
            _call(self._release, guard)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()
        return False


class FileLock:
    """A whole-file lock on the lock file at `path` (as the plugin sees it).

    `with FileLock(path):` holds it exclusively for the block; `acquire`
    takes it in any mode and returns the held lock.
    """

    def __init__(self, path, shared=False, timeout=None, fail_when_locked=False):
        self._lock = _call(_file.FileLock.open, path)
        self._options = (shared, timeout, fail_when_locked)
        self._held = []

    @property
    def path(self):
        return self._lock.path()

    def acquire(self, shared=None, timeout=None, fail_when_locked=None):
        """Take the lock (waiting, at most `timeout` seconds, or once with
        `fail_when_locked`); the held lock, a context manager."""
        default_shared, default_timeout, default_fail = self._options
        guard = _take(
            self._lock,
            default_shared if shared is None else shared,
            default_timeout if timeout is None else timeout,
            default_fail if fail_when_locked is None else fail_when_locked,
        )
        return _Held(guard, _file.FileLockGuard.release)

    def __enter__(self):
        self._held.append(self.acquire())
        return self

    def __exit__(self, *exc):
        self._held.pop().release()
        return False


class _Permit(_Held):
    """A semaphore permit: `slot` is its slot number."""

    def __init__(self, permit):
        super().__init__(permit, _semaphore.SemaphorePermit.release)
        self.slot = permit.slot()


class BoundedSemaphore:
    """portalocker's named bounded semaphore: `slots` holders at once, its
    slot files `NAME.00.lock`... in `directory` (shared with portalocker's
    `NamedBoundedSemaphore`)."""

    def __init__(self, slots, name, directory):
        self._semaphore = _call(_semaphore.Semaphore.open, name, slots, directory)

    def acquire(self, timeout=None, fail_when_locked=False):
        """Take a slot; the permit, a context manager."""
        if fail_when_locked:
            permit = _call(self._semaphore.try_acquire)
        elif timeout is None:
            permit = _call(self._semaphore.acquire)
        else:
            permit = _call(self._semaphore.acquire_for, _nanos(timeout))
        return _Permit(permit)


class _RedisHeld(_Held):
    """A held Redis lock: `fencing_token` (with fencing), `is_lost()`."""

    def __init__(self, guard):
        super().__init__(guard, _redis.RedisLockGuard.release)
        self.fencing_token = guard.fencing_token()

    def is_lost(self):
        return self._guard is None or self._guard.is_lost()


class RedisLock:
    """portalocker's Redis lock `name`, on the server (and in the
    namespace) the host chose; with `fencing`, each grant draws a token."""

    def __init__(self, name, fencing=False):
        self._lock = _call(_redis.RedisLock.open, name, fencing)

    def acquire(self, shared=False, timeout=None, fail_when_locked=False):
        """Take the lock; the held lock, a context manager."""
        return _RedisHeld(_take(self._lock, shared, timeout, fail_when_locked))
