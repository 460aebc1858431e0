//! The wall-clock time of the kit's monotonic readings, so that a line's
//! `at` costs no reading of its own (each is a host call): the wall clock
//! is read at most once a second and carried forward by the monotonic
//! clock in between.

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long one reading of the wall clock serves. A step of the wall clock
/// (NTP, an operator) shows in the lines within this.
const SERVES: Duration = Duration::from_secs(1);

/// The time since the Unix epoch at `at` (read now when not given).
pub(crate) fn since_epoch(at: Option<Instant>) -> Duration {
    /// A monotonic instant and the wall-clock time read with it.
    static BASE: Mutex<Option<(Instant, Duration)>> = Mutex::new(None);
    let Some(at) = at else {
        return now();
    };
    let mut base = BASE.lock().unwrap_or_else(|p| p.into_inner());
    let (mono, wall) = match *base {
        Some((mono, wall)) if at.max(mono) - at.min(mono) < SERVES => (mono, wall),
        _ => {
            let read = (Instant::now(), now());
            *base = Some(read);
            read
        }
    };
    if at >= mono {
        wall + (at - mono)
    } else {
        wall.saturating_sub(mono - at)
    }
}

/// The wall clock, read.
fn now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_map_to_the_wall_clock_and_keep_their_distance() {
        let before = now();
        let first = Instant::now();
        let second = first + Duration::from_micros(1_500);
        let (a, b) = (since_epoch(Some(first)), since_epoch(Some(second)));
        let after = now();
        assert!(before <= a + Duration::from_millis(5), "{before:?} {a:?}");
        assert!(a <= after + Duration::from_millis(5), "{a:?} {after:?}");
        assert_eq!(b - a, Duration::from_micros(1_500));
        // An instant before the base is carried back, not clamped.
        let earlier = since_epoch(first.checked_sub(Duration::from_millis(2)));
        assert_eq!(a - earlier, Duration::from_millis(2));
    }
}
