//! A TCP proxy on a free loopback port in front of a server, for faults no
//! server command can make: a partition that resets nothing (everything
//! stops flowing, every socket stays open) and a command held back on its
//! way to the server.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the proxy's threads share.
#[derive(Default)]
struct Shared {
    frozen: AtomicBool,
    stopped: AtomicBool,
    /// Client-to-server chunks holding this pattern wait this long.
    delay: Mutex<Option<(Vec<u8>, Duration)>>,
    delayed: AtomicUsize,
}

/// A running proxy; stopped when dropped.
pub struct Proxy {
    port: u16,
    shared: Arc<Shared>,
}

impl Proxy {
    /// Forward connections on a free loopback port to `127.0.0.1:target`.
    ///
    /// # Panics
    ///
    /// When no port can be bound.
    pub fn start(target: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port for the proxy");
        let port = listener.local_addr().expect("its address").port();
        let shared = Arc::new(Shared::default());
        let accepting = Arc::clone(&shared);
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        std::thread::spawn(move || {
            while !accepting.stopped.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                            continue;
                        };
                        forward(&client, &server, &accepting, true);
                        forward(&server, &client, &accepting, false);
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    Err(_) => return,
                }
            }
        });
        Self { port, shared }
    }

    /// Its URL, as a Redis URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Stop forwarding, both ways, on every connection; sockets stay open.
    pub fn freeze(&self) {
        self.shared.frozen.store(true, Ordering::SeqCst);
    }

    /// Forward again.
    pub fn thaw(&self) {
        self.shared.frozen.store(false, Ordering::SeqCst);
    }

    /// Hold every chunk from a client that contains `pattern` for `by`
    /// before passing it on.
    pub fn delay(&self, pattern: &[u8], by: Duration) {
        *self.shared.delay.lock().unwrap() = Some((pattern.to_vec(), by));
    }

    /// How many chunks were held back so far.
    pub fn delayed(&self) -> usize {
        self.shared.delayed.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stopped.store(true, Ordering::SeqCst);
    }
}

/// Copy `from` to `to` on a thread of its own until either side closes.
fn forward(from: &TcpStream, to: &TcpStream, shared: &Arc<Shared>, upstream: bool) {
    let (Ok(mut from), Ok(mut to)) = (from.try_clone(), to.try_clone()) else {
        return;
    };
    let shared = Arc::clone(shared);
    let _ = from.set_read_timeout(Some(Duration::from_millis(20)));
    std::thread::spawn(move || {
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            if shared.stopped.load(Ordering::SeqCst) {
                break;
            }
            if shared.frozen.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(2));
                continue;
            }
            let n = match from.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    continue;
                }
                Err(_) => break,
            };
            let chunk = &buffer[..n];
            if upstream {
                let delay = shared.delay.lock().unwrap().clone();
                if let Some((pattern, by)) = delay
                    && chunk.windows(pattern.len()).any(|w| w == pattern)
                {
                    shared.delayed.fetch_add(1, Ordering::SeqCst);
                    std::thread::sleep(by);
                }
            }
            if to.write_all(chunk).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    });
}
