// The conformance scenario, in JavaScript (see ../README.md).
//
// Arguments: LOCK DATA N SEMDIR [REDIS_NAME REDIS_DATA]. Holding one permit
// of the two-slot semaphore `conformance` in SEMDIR, increment the number
// in DATA N times, each under the file lock LOCK; with a Redis lock
// granted, increment REDIS_DATA N times under the fenced Redis lock
// REDIS_NAME, checking that the tokens grow. Prints `ok`.
import { getArguments } from 'wasi:cli/environment@0.2.12';
import { getDirectories } from 'wasi:filesystem/preopens@0.2.12';

import { BoundedSemaphore, FileLock, RedisLock, withLock } from './portalocker-guest.js';

/** The file at an absolute guest path, opened through its preopen. */
function openFile(path) {
  for (const [dir, at] of getDirectories()) {
    const prefix = at.endsWith('/') ? at : `${at}/`;
    if (path.startsWith(prefix)) {
      return dir.openAt({}, path.slice(prefix.length), { create: true }, { read: true, write: true });
    }
  }
  throw new Error(`${path} is in no granted directory`);
}

function increment(path) {
  const file = openFile(path);
  const [bytes] = file.read(64n, 0n);
  const value = Number(new TextDecoder().decode(bytes).trim() || '0');
  file.setSize(0n);
  file.write(new TextEncoder().encode(String(value + 1)), 0n);
}

export const run = {
  run() {
    const [, lock, data, n, semdir, redisName, redisData] = getArguments();
    {
      // `using`: released at the end of the block, however it is left.
      using permit = new BoundedSemaphore(2, 'conformance', semdir).acquire({ timeout: 60_000 });
      if (permit.slot !== 0 && permit.slot !== 1) throw new Error(`slot ${permit.slot}`);
      const counter = FileLock.open(lock);
      for (let i = 0; i < Number(n); i++) {
        using held = counter.lock({ timeout: 60_000 });
        increment(data);
      }
    }
    if (redisName !== undefined) {
      const redis = new RedisLock(redisName, { fencing: true });
      let last = 0n;
      for (let i = 0; i < Number(n); i++) {
        // `withLock`: the same with try ... finally, for engines without `using`.
        withLock(redis.lock({ timeout: 60_000 }), (held) => {
          if (!(held.fencingToken > last)) throw new Error(`token ${held.fencingToken} after ${last}`);
          last = held.fencingToken;
          increment(redisData);
        });
      }
    }
    console.log('ok');
  },
};
