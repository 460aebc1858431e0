// portalocker for JavaScript plugins built with componentize-js (jco).
//
// The locks are the host's real operating-system locks (and its Redis
// lock): they exclude other plugins, native programs and Python programs
// using portalocker on the same files. Held locks are disposable, so they
// release with `using` (StarlingMonkey has it), or `withLock` (a
// `try ... finally`):
//
//     import { FileLock } from './portalocker-guest.js';
//     const journal = FileLock.open('/jobs/journal.lock');
//     {
//       using held = journal.lock({ timeout: 30_000 });
//       // one holder at a time, until the end of the block
//     }
//
// Failures throw a `LockError` whose `kind` is the interface's error case
// (`would-block`, `timed-out`, `access-denied`, ...); `isContention()` is
// true for the first two. Timeouts are milliseconds.
import { FileLock as RawFileLock, FileLockGuard } from 'portalocker:locks/file-lock@0.1.0';
import { Semaphore as RawSemaphore, SemaphorePermit } from 'portalocker:locks/semaphore@0.1.0';
import { RedisLock as RawRedisLock, RedisLockGuard } from 'portalocker:locks/redis-lock@0.1.0';

/** A lock call failed. */
export class LockError extends Error {
  constructor(kind, detail) {
    super(detail ? `${kind}: ${detail}` : kind);
    this.name = 'LockError';
    /** The interface's error case. */
    this.kind = kind;
    /** Its message, if it has one. */
    this.detail = detail ?? '';
  }

  /** Someone else holds it (a try found it held, or a wait ran out). */
  isContention() {
    return this.kind === 'would-block' || this.kind === 'timed-out';
  }
}

/** Call a lock import; its error as a LockError. */
function call(fn) {
  try {
    return fn();
  } catch (e) {
    const payload = e && e.payload;
    if (payload && typeof payload.tag === 'string') {
      throw new LockError(payload.tag, payload.val);
    }
    throw e;
  }
}

function nanos(ms) {
  if (!(ms >= 0)) throw new RangeError(`a timeout must be a number of milliseconds >= 0: ${ms}`);
  return BigInt(Math.round(ms * 1e6));
}

/** A held lock or permit: `release()` (idempotent) or dispose it. */
class Held {
  #guard;
  #release;

  constructor(guard, release) {
    this.#guard = guard;
    this.#release = release;
  }

  get raw() {
    return this.#guard;
  }

  /** Release now; reports a failure (the lock is gone either way). */
  release() {
    const guard = this.#guard;
    this.#guard = undefined;
    if (guard !== undefined) call(() => this.#release(guard));
  }

  [Symbol.dispose]() {
    this.release();
  }
}

/** Run `body` holding `held`, releasing it however `body` ends. */
export function withLock(held, body) {
  try {
    return body(held);
  } finally {
    held.release();
  }
}

function take(handle, shared, { timeout, nonblocking } = {}) {
  const mode = shared ? 'shared' : 'exclusive';
  if (nonblocking) return call(() => handle.tryLock(mode));
  if (timeout === undefined) return call(() => handle.lock(mode));
  return call(() => handle.lockFor(mode, nanos(timeout)));
}

/** A whole-file lock on the lock file at a path the plugin sees. */
export class FileLock {
  #lock;

  constructor(lock) {
    this.#lock = lock;
  }

  static open(path) {
    return new FileLock(call(() => RawFileLock.open(path)));
  }

  get path() {
    return this.#lock.path();
  }

  /** Take it exclusively (`{ timeout: ms }` or `{ nonblocking: true }`). */
  lock(options) {
    return new Held(take(this.#lock, false, options), FileLockGuard.release);
  }

  /** Take it shared. */
  lockShared(options) {
    return new Held(take(this.#lock, true, options), FileLockGuard.release);
  }
}

/** A semaphore permit: `slot` is its slot number. */
class Permit extends Held {
  constructor(permit) {
    super(permit, SemaphorePermit.release);
    this.slot = permit.slot();
  }
}

/** portalocker's named bounded semaphore (slot files NAME.00.lock...). */
export class BoundedSemaphore {
  #semaphore;

  constructor(slots, name, directory) {
    this.#semaphore = call(() => RawSemaphore.open(name, slots, directory));
  }

  acquire({ timeout, nonblocking } = {}) {
    const s = this.#semaphore;
    if (nonblocking) return new Permit(call(() => s.tryAcquire()));
    if (timeout === undefined) return new Permit(call(() => s.acquire()));
    return new Permit(call(() => s.acquireFor(nanos(timeout))));
  }
}

/** A held Redis lock: `fencingToken` (a BigInt, with fencing), `isLost()`. */
class RedisHeld extends Held {
  constructor(guard) {
    super(guard, RedisLockGuard.release);
    this.fencingToken = guard.fencingToken();
  }

  isLost() {
    return this.raw === undefined || this.raw.isLost();
  }
}

/** portalocker's Redis lock on the server the host chose. */
export class RedisLock {
  #lock;

  constructor(name, { fencing = false } = {}) {
    this.#lock = call(() => RawRedisLock.open(name, fencing));
  }

  lock(options) {
    return new RedisHeld(take(this.#lock, false, options));
  }

  lockShared(options) {
    return new RedisHeld(take(this.#lock, true, options));
  }
}
