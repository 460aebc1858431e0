//! Helpers shared by the guest test programs.

use std::io::BufRead;

/// The program's arguments after its name.
pub fn args() -> Vec<String> {
    std::env::args().skip(1).collect()
}

/// Block until the host writes a line (or closes stdin).
pub fn wait_for_line() {
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
}

/// Assert that `result` failed with an error matching `pattern`.
#[macro_export]
macro_rules! assert_err {
    ($result:expr, $pattern:pat) => {
        match $result {
            Err($pattern) => {}
            Err(other) => panic!(
                "{}: expected {}, got {other:?}",
                stringify!($result),
                stringify!($pattern)
            ),
            Ok(_) => panic!(
                "{}: expected {}, got Ok",
                stringify!($result),
                stringify!($pattern)
            ),
        }
    };
}
