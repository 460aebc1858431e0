//! Rough figures for design §5 W5 and W6, ours next to portalocker's
//! `RedisLock` and redis-py's `Lock` in the same run, on a private loopback
//! `redis-server` (the full benchmark has its own issue):
//!
//! - W5: uncontended acquire + release, and raw `PING` for scale;
//! - W6: 2 processes x K increments of a counter file under the lock.
//!
//! `cargo run --release -p portalocker-tests --example redis_figures`
//! (needs the venv of scripts/setup.sh, or PORTALOCKER_PYTHON).

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use portalocker::redis::RedisLock;
use portalocker_tests::redis_server::RedisServer;

fn python() -> PathBuf {
    std::env::var_os("PORTALOCKER_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap())
                .join(".cache/portalocker-rs/venv/bin/python")
        })
}

fn py(code: &str, args: &[&str]) -> String {
    let output = Command::new(python())
        .arg("-c")
        .arg(code)
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

const PY_W5: &str = r#"
import sys, time, redis, portalocker
url, n = sys.argv[1], int(sys.argv[2])
conn = redis.Redis.from_url(url)
lock = portalocker.RedisLock("w5-py", connection=conn, interrupt_on_lost=False)
t = time.perf_counter()
for _ in range(n):
    lock.acquire(); lock.release()
pl = (time.perf_counter() - t) / n
rl = conn.lock("w5-redispy")
t = time.perf_counter()
for _ in range(n * 50):
    rl.acquire(); rl.release()
print(pl * 1e6, (time.perf_counter() - t) / (n * 50) * 1e6)
"#;

const PY_W6_REDISPY: &str = r#"
import sys, redis
url, data, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
conn = redis.Redis.from_url(url)
lock = conn.lock("w6-redispy", sleep=0.001, blocking_timeout=120)
for _ in range(n):
    with lock:
        try:
            v = int(open(data).read().strip() or 0)
        except FileNotFoundError:
            v = 0
        open(data, "w").write(str(v + 1))
"#;

fn main() {
    let server = RedisServer::start();
    let url = server.url();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let ping = runtime.block_on(async {
        let client = redis::Client::open(url.as_str()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let n = 2000;
        let started = Instant::now();
        for _ in 0..n {
            let _: String = redis::cmd("PING").query_async(&mut conn).await.unwrap();
        }
        started.elapsed() / n
    });
    let lock = RedisLock::open(&url, "w5-rs").unwrap();
    let n = 300;
    let started = Instant::now();
    for _ in 0..n {
        lock.acquire().unwrap().release().unwrap();
    }
    let ours = started.elapsed() / n;
    let figures = py(PY_W5, &[&url, "10"]);
    let mut parts = figures
        .split_whitespace()
        .map(|v| Duration::from_secs_f64(v.parse::<f64>().unwrap() / 1e6));
    let (portalocker, redispy) = (parts.next().unwrap(), parts.next().unwrap());
    println!(
        "W5 raw PING {ping:?}; ours {ours:?} ({:.1} PINGs); portalocker RedisLock {portalocker:?}; redis-py Lock {redispy:?}",
        ours.as_secs_f64() / ping.as_secs_f64()
    );
    println!(
        "W5 ratios: portalocker/ours {:.0}x, ours/redis-py {:.2}",
        portalocker.as_secs_f64() / ours.as_secs_f64(),
        ours.as_secs_f64() / redispy.as_secs_f64()
    );

    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let lockworker = exe.parent().unwrap().parent().unwrap().join("lockworker");
    let worker_py = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python/pl_worker.py");
    let k = 100;
    let rate = |name: &str, make: &dyn Fn(&str) -> Command| {
        let data = dir.path().join(name);
        let started = Instant::now();
        let mut children: Vec<_> = (0..2)
            .map(|_| make(data.to_str().unwrap()).spawn().unwrap())
            .collect();
        for child in &mut children {
            assert!(child.wait().unwrap().success());
        }
        let elapsed = started.elapsed();
        let count: u64 = std::fs::read_to_string(&data)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert_eq!(count, 2 * k);
        let rate = count as f64 / elapsed.as_secs_f64();
        println!(
            "W6 {name}: {count} increments by 2 processes in {elapsed:.2?}: {rate:.0} ops/s (exact)"
        );
        rate
    };
    let ours = rate("ours", &|data| {
        let mut c = Command::new(&lockworker);
        c.args(["redis-count", &url, "w6-rs", data, &k.to_string()]);
        c
    });
    let portalocker = rate("portalocker RedisLock", &|data| {
        let mut c = Command::new(python());
        c.arg(&worker_py)
            .args(["redis-count", &url, "w6-py", data, &k.to_string()]);
        c
    });
    let redispy = rate("redis-py Lock", &|data| {
        let mut c = Command::new(python());
        c.args(["-c", PY_W6_REDISPY, &url, data, &k.to_string()]);
        c
    });
    println!(
        "W6 ratios: ours/portalocker {:.0}x, ours/redis-py {:.2}",
        ours / portalocker,
        ours / redispy
    );
}
