"""The Python peers of the benchmark (bench/): portalocker 4.4.2, filelock
and redis-py running the same loops as the Rust workers.

Every mode speaks the workers' protocol (bench/src/procs.rs): print
``ready``, wait for a line on stdin, work, print ``done START END
[RESULT...]`` in CLOCK_MONOTONIC nanoseconds.

Modes:

- ``pairs PATH N``: N portalocker ``lock``/``unlock`` pairs on an open file
  (W1); result: ns per pair.
- ``open-cycles IMPL PATH N``: N times ``with Lock(path)`` (``portalocker``)
  or ``with FileLock(path)`` (``filelock``) (W2); result: ns per cycle.
- ``count LOCK DATA N INTERVAL``: N increments of DATA under
  ``portalocker.Lock`` polling every INTERVAL seconds (W3).
- ``handoff LOCK STAMPS ROUNDS ME INTERVAL HOLD_US``: strict alternation
  (W3b); result for ME=0: the handoff latencies' p50 p90 max in ns.
- ``semaphore DIR NAME SLOTS N``: N acquire/release of a
  ``BoundedSemaphore`` slot, each marked busy by an exclusive create (W4).
- ``fair DIR NAME SLOTS MILLIS HOLD_US``: acquire, hold, release until
  MILLIS passed (W4 fairness); result: ``count max_wait sum_wait`` in ns.
- ``redis-cycles IMPL URL NAME N``: N acquire + release of portalocker's
  ``RedisLock`` or redis-py's ``Lock`` (W5); result: ns per cycle.
- ``redis-count IMPL URL NAME DATA N``: N increments of DATA under the
  Redis lock (W6).
"""

import os
import sys
import time

import portalocker

now = time.monotonic_ns


def barrier():
    print("ready", flush=True)
    sys.stdin.readline()
    return now()


def done(start, *result):
    print("done", start, now(), *result, flush=True)


def increment(data):
    try:
        with open(data) as f:
            value = int(f.read().strip() or 0)
    except FileNotFoundError:
        value = 0
    with open(data, "w") as f:
        f.write(str(value + 1))


def pairs(path, n):
    n = int(n)
    fh = open(path, "a")
    flags = portalocker.LockFlags.EXCLUSIVE | portalocker.LockFlags.NON_BLOCKING
    start = barrier()
    t = time.perf_counter_ns()
    for _ in range(n):
        portalocker.lock(fh, flags)
        portalocker.unlock(fh)
    done(start, (time.perf_counter_ns() - t) // n)


def open_cycles(impl, path, n):
    n = int(n)
    if impl == "portalocker":
        make = lambda: portalocker.Lock(path, fail_when_locked=True)
    else:
        import filelock

        make = lambda: filelock.FileLock(path)
    start = barrier()
    t = time.perf_counter_ns()
    for _ in range(n):
        with make():
            pass
    done(start, (time.perf_counter_ns() - t) // n)


def count(lock, data, n, interval):
    lock = portalocker.Lock(
        lock, timeout=600, check_interval=float(interval), fail_when_locked=False
    )
    start = barrier()
    for _ in range(int(n)):
        with lock:
            increment(data)
    done(start)


def handoff(lock_path, stamps, rounds, me, interval, hold_us):
    """Parent and child alternate: the holder whose turn it is gives the
    turn away, lets the other block, stamps and releases; the other stamps
    its acquisition."""
    me, rounds, hold = int(me), int(rounds), int(hold_us) / 1e6
    lock = portalocker.Lock(
        lock_path, mode="a", timeout=600, check_interval=float(interval),
        fail_when_locked=False,
    )
    latencies = []
    start = barrier()
    turns = 0
    while turns < rounds:
        lock.acquire()
        acquired = now()
        with open(stamps, "rb") as f:
            buf = bytearray(f.read(16))
        turn, released = buf[0], int.from_bytes(buf[8:16], "little", signed=True)
        if turn != me:
            lock.release()
            time.sleep(0)
            continue
        if released and me == 0:
            latencies.append(acquired - released)
        turns += 1
        time.sleep(hold)
        buf[0] = 1 - me
        buf[8:16] = now().to_bytes(8, "little", signed=True)
        with open(stamps, "r+b") as f:
            f.write(buf)
        lock.release()
    latencies.sort()
    pick = lambda q: latencies[round((len(latencies) - 1) * q)] if latencies else 0
    done(start, pick(0.5), pick(0.9), pick(1.0))


def semaphore(directory, name, slots, n):
    slots = int(slots)
    sem = portalocker.BoundedSemaphore(
        slots, name=name, directory=directory, timeout=600
    )
    start = barrier()
    for _ in range(int(n)):
        lock = sem.acquire()
        slot = int(str(lock.filename).rsplit(".", 2)[-2])
        assert 0 <= slot < slots, slot
        busy = os.path.join(directory, f"{name}.busy.{slot}")
        fd = os.open(busy, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        os.close(fd)
        os.unlink(busy)
        sem.release()
    done(start)


def fair(directory, name, slots, millis, hold_us):
    sem = portalocker.BoundedSemaphore(
        int(slots), name=name, directory=directory, timeout=600
    )
    hold = int(hold_us) / 1e6
    start = barrier()
    until = start + int(millis) * 1_000_000
    count = max_wait = sum_wait = 0
    while now() < until:
        asked = now()
        sem.acquire()
        waited = now() - asked
        count, max_wait, sum_wait = count + 1, max(max_wait, waited), sum_wait + waited
        time.sleep(hold)
        sem.release()
    done(start, count, max_wait, sum_wait)


def redis_lock(impl, url, name):
    import redis

    conn = redis.Redis.from_url(url)
    if impl == "portalocker":
        return portalocker.RedisLock(
            name, connection=conn, timeout=600, interrupt_on_lost=False
        )
    # redis-py's Lock polls every `sleep` seconds; 1 ms is its fastest
    # sensible setting (its default is 0.1 s).
    return conn.lock(name, sleep=0.001, blocking_timeout=600)


def redis_cycles(impl, url, name, n):
    n = int(n)
    lock = redis_lock(impl, url, name)
    start = barrier()
    t = time.perf_counter_ns()
    for _ in range(n):
        lock.acquire()
        lock.release()
    done(start, (time.perf_counter_ns() - t) // n)


def redis_count(impl, url, name, data, n):
    lock = redis_lock(impl, url, name)
    start = barrier()
    for _ in range(int(n)):
        lock.acquire()
        increment(data)
        lock.release()
    done(start)


MODES = {
    "pairs": pairs,
    "open-cycles": open_cycles,
    "count": count,
    "handoff": handoff,
    "semaphore": semaphore,
    "fair": fair,
    "redis-cycles": redis_cycles,
    "redis-count": redis_count,
}

if __name__ == "__main__":
    MODES[sys.argv[1]](*sys.argv[2:])
