//! `SPEC...`, each `file:PATH`, `sem:NAME:DIR` or `redis:NAME`: open and
//! take each (one attempt), print `SPEC: ok` or `SPEC: ERROR`, then say
//! `held` and hold what was taken until a line arrives. Behind the
//! namespace middleware the same names land in the plugin's namespace.
use portalocker_guest::{FileLock, RedisLock, Semaphore};
use portalocker_test_programs::{args, wait_for_line};

fn main() {
    let mut held: Vec<Box<dyn std::any::Any>> = Vec::new();
    for spec in args() {
        let parts: Vec<&str> = spec.splitn(3, ':').collect();
        let taken: Result<Box<dyn std::any::Any>, _> = match parts.as_slice() {
            // A guard borrows its lock: the locks live as long as the
            // program.
            ["file", path] => FileLock::open(path).and_then(|lock| {
                let lock: &'static FileLock = Box::leak(Box::new(lock));
                lock.try_lock()
                    .map(|g| Box::new(g) as Box<dyn std::any::Any>)
            }),
            ["sem", name, dir] => Semaphore::open(name, 1, dir).and_then(|sem| {
                let sem: &'static Semaphore = Box::leak(Box::new(sem));
                sem.try_acquire()
                    .map(|p| Box::new(p) as Box<dyn std::any::Any>)
            }),
            ["redis", name] => RedisLock::open(name, false).and_then(|lock| {
                let lock: &'static RedisLock = Box::leak(Box::new(lock));
                lock.try_lock()
                    .map(|g| Box::new(g) as Box<dyn std::any::Any>)
            }),
            _ => panic!("bad spec {spec}"),
        };
        match taken {
            Ok(guard) => {
                println!("{spec}: ok");
                held.push(guard);
            }
            Err(e) => println!("{spec}: {e:?}"),
        }
    }
    println!("held");
    wait_for_line();
    drop(held);
}
