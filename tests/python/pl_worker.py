"""The Python twin of lockworker, driving the real portalocker package.

Same commands and output as tests/src/bin/lockworker.rs.
"""

import os
import sys
import time

import portalocker


def wait_for_stdin_close():
    for _ in sys.stdin:
        pass


def read_counter(path):
    try:
        with open(path) as f:
            text = f.read().strip()
    except FileNotFoundError:
        return 0
    return int(text) if text else 0


def write_counter(path, value):
    with open(path, "w") as f:
        f.write(str(value))


def track_inside(track, delta):
    with portalocker.Lock(os.path.join(track, "track.lock"), timeout=60):
        inside = read_counter(os.path.join(track, "inside")) + delta
        assert inside >= 0, "more releases than holds"
        write_counter(os.path.join(track, "inside"), inside)
        if inside > read_counter(os.path.join(track, "peak")):
            write_counter(os.path.join(track, "peak"), inside)


def semaphore(directory, name, slots):
    return portalocker.NamedBoundedSemaphore(
        int(slots), name=name, directory=directory, timeout=120, check_interval=0.001
    )


def redis_lock(url, channel, *flags_and_options, **kwargs):
    import redis
    flags_and_options = [o for o in flags_and_options if not o.startswith("hold=")]
    flags = portalocker.LockFlags.SHARED if "shared" in flags_and_options else portalocker.LockFlags.EXCLUSIVE
    return portalocker.RedisLock(
        channel,
        connection=redis.Redis.from_url(url),
        flags=flags,
        fencing="fencing" in flags_and_options,
        interrupt_on_lost=False,
        **kwargs,
    )


def journal_append(journal, line):
    """One line in one write (O_APPEND), as tests/src/journal.rs."""
    fd = os.open(journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def journal_last_value(journal):
    """The journal's value: the last commit with a current token (a fenced
    resource rejects older tokens), as tests/src/journal.rs."""
    try:
        with open(journal) as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return 0
    top, value = 0, 0
    for line in lines:
        words = line.split(" ")
        if words[0] == "E" and len(words) == 3:
            top = max(top, int(words[2]))
        elif words[0] == "C" and len(words) == 4:
            token = int(words[3])
            if token == 0 or token >= top:
                value = int(words[1])
    return value


def journal_commit(journal, who, hold, token=0):
    journal_append(journal, f"E {who} {token}")
    time.sleep(hold)
    value = journal_last_value(journal)
    journal_append(journal, f"C {value + 1} {who} {token}")
    journal_append(journal, f"L {who}")


def journal_round(journal, who, hold, kind, rest):
    """One hold for the crash matrix; the same as lockworker's `journal`."""
    if kind == "file":
        with portalocker.Lock(
            rest[0], timeout=300, check_interval=0.001, fail_when_locked=False
        ):
            journal_commit(journal, who, hold)
    elif kind == "read":
        flags = portalocker.LOCK_SH | portalocker.LOCK_NB
        with portalocker.Lock(
            rest[0], flags=flags, timeout=300, check_interval=0.001, fail_when_locked=False
        ):
            journal_append(journal, f"S {who}")
            time.sleep(hold)
            journal_append(journal, f"T {who}")
    elif kind == "temporary":
        with portalocker.TemporaryFileLock(
            rest[0], timeout=300, check_interval=0.001, fail_when_locked=False
        ):
            journal_commit(journal, who, hold)
    elif kind == "pid":
        while True:
            try:
                with portalocker.PidFileLock(rest[0]) as holder:
                    if holder is None:
                        journal_commit(journal, who, hold)
                        return
            except portalocker.AlreadyLocked:
                # Held, with the holder's PID unreadable for a moment (it
                # is being written or removed): 4.4.2 fails closed.
                pass
            time.sleep(0.001)
    elif kind == "sem":
        directory, name, slots = rest
        sem = portalocker.NamedBoundedSemaphore(
            int(slots), name=name, directory=directory, timeout=300, check_interval=0.001
        )
        lock = sem.acquire()
        slot = [str(p) for p in sem.get_filenames()].index(str(lock.filename))
        journal_commit(f"{os.path.splitext(journal)[0]}.{slot}", who, hold)
        sem.release()
    elif kind == "redis":
        url, channel = rest
        lock = redis_lock(url, channel, "fencing", timeout=300)
        lock.acquire()
        journal_commit(journal, who, hold, lock.fence_token or 0)
        lock.release()
    elif kind == "redis-read":
        url, channel = rest
        lock = redis_lock(url, channel, "shared", timeout=300)
        lock.acquire()
        journal_append(journal, f"S {who}")
        time.sleep(hold)
        journal_append(journal, f"T {who}")
        lock.release()
    else:
        sys.exit(f"unknown lock kind {kind!r}")


def main(argv):
    command, args = argv[0], argv[1:]
    if command == "version":
        print(portalocker.__version__)
    elif command == "hold":
        flags = portalocker.LOCK_EX
        if args[1:] == ["--shared"]:
            flags = portalocker.LOCK_SH
        with portalocker.Lock(args[0], flags=flags | portalocker.LOCK_NB, timeout=120):
            print("locked", flush=True)
            wait_for_stdin_close()
    elif command == "try":
        try:
            with portalocker.Lock(args[0], fail_when_locked=True, timeout=0):
                pass
        except portalocker.AlreadyLocked:
            sys.exit(3)
    elif command == "count":
        lock, data, n = args
        for _ in range(int(n)):
            with portalocker.Lock(lock, timeout=120, check_interval=0.001):
                write_counter(data, read_counter(data) + 1)
    elif command == "sem-hold":
        sem = semaphore(*args)
        lock = sem.acquire()
        slot = [str(p) for p in sem.get_filenames()].index(str(lock.filename))
        print(f"slot {slot}", flush=True)
        wait_for_stdin_close()
        sem.release()
    elif command == "sem-try":
        sem = semaphore(*args)
        sem.timeout = 0
        try:
            sem.acquire()
        except portalocker.AlreadyLocked:
            sys.exit(3)
        sem.release()
    elif command == "sem-count":
        directory, name, slots, n, track = args
        sem = semaphore(directory, name, slots)
        for _ in range(int(n)):
            sem.acquire()
            track_inside(track, 1)
            time.sleep(0.002)
            track_inside(track, -1)
            sem.release()
    elif command == "pid-hold":
        with portalocker.PidFileLock(args[0]) as holder:
            assert holder is None, f"held by {holder}"
            print("locked", flush=True)
            wait_for_stdin_close()
    elif command == "pid-try":
        with portalocker.PidFileLock(args[0]) as holder:
            print("acquired" if holder is None else f"held-by {holder}", flush=True)
    elif command == "redis-hold":
        url, channel, *options = args
        lock = redis_lock(url, channel, *options, timeout=60)
        lock.acquire()
        print("locked" if lock.fence_token is None else f"locked {lock.fence_token}", flush=True)
        wait_for_stdin_close()
        lock.release()
    elif command == "redis-try":
        url, channel, *options = args
        lock = redis_lock(url, channel, *options, timeout=0, fail_when_locked=True)
        try:
            lock.acquire()
        except portalocker.AlreadyLocked:
            sys.exit(3)
        for option in options:
            if option.startswith("hold="):
                time.sleep(int(option[5:]) / 1000)
        lock.release()
    elif command == "redis-wait":
        url, channel, timeout, hold, *options = args
        lock = redis_lock(url, channel, *options, timeout=float(timeout))
        started = time.monotonic()
        try:
            lock.acquire()
        except portalocker.AlreadyLocked:
            sys.exit(3)
        waited = int((time.monotonic() - started) * 1000)
        token = "" if lock.fence_token is None else f" {lock.fence_token}"
        print(f"got {waited}{token}", flush=True)
        time.sleep(int(hold) / 1000)
        print("held", flush=True)
        lock.release()
    elif command == "redis-loop":
        url, channel, hold, secs = args
        lock = redis_lock(url, channel, timeout=300)
        until = time.monotonic() + float(secs)
        sections = 0
        while time.monotonic() < until:
            lock.acquire()
            time.sleep(int(hold) / 1000)
            lock.release()
            sections += 1
        print(sections, flush=True)
    elif command == "redis-count":
        # Options: "fencing", and "tokens=PATH": each token must be above
        # the last one written there (by any fenced holder), then is written.
        url, channel, data, n, *options = args
        tokens = next((o[len("tokens="):] for o in options if o.startswith("tokens=")), None)
        flags = [o for o in options if not o.startswith("tokens=")]
        lock = redis_lock(url, channel, *flags, timeout=300)
        for _ in range(int(n)):
            lock.acquire()
            if tokens:
                token, last = lock.fence_token, read_counter(tokens)
                assert token is not None and token > last, f"token {token} after {last}"
                write_counter(tokens, token)
            write_counter(data, read_counter(data) + 1)
            lock.release()
    elif command == "journal":
        journal, who, n, hold_us, kind, *rest = args
        for _ in range(int(n)):
            journal_round(journal, who, int(hold_us) / 1e6, kind, rest)
    else:
        sys.exit(f"unknown command {argv!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
