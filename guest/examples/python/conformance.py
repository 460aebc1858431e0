"""The conformance scenario, in Python (see guest/examples/README.md).

Arguments: LOCK DATA N SEMDIR [REDIS_NAME REDIS_DATA]. Holding one permit
of the two-slot semaphore `conformance` in SEMDIR, increment the number in
DATA N times, each under the file lock LOCK; with a Redis lock granted,
increment REDIS_DATA N times under the fenced Redis lock REDIS_NAME,
checking that the tokens grow. Prints `ok`.
"""

from wit_world import exports
from wit_world.imports import environment

from portalocker_guest import BoundedSemaphore, FileLock, RedisLock


def increment(path):
    try:
        with open(path) as file:
            value = int(file.read().strip() or 0)
    except FileNotFoundError:
        value = 0
    with open(path, "w") as file:
        file.write(str(value + 1))


class Run(exports.Run):
    def run(self) -> None:
        args = environment.get_arguments()[1:]
        lock, data, n, semdir = args[0], args[1], int(args[2]), args[3]
        with BoundedSemaphore(2, "conformance", semdir).acquire(timeout=60) as permit:
            assert permit.slot in (0, 1), permit.slot
            counter = FileLock(lock, timeout=60)
            for _ in range(n):
                with counter:
                    increment(data)
        if len(args) > 4:
            name, redis_data = args[4], args[5]
            redis = RedisLock(name, fencing=True)
            last = 0
            for _ in range(n):
                with redis.acquire(timeout=60) as held:
                    assert held.fencing_token > last, (held.fencing_token, last)
                    last = held.fencing_token
                    increment(redis_data)
        print("ok")
