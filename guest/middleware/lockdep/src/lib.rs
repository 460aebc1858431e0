//! The lockdep middleware: composed in front of a plugin, it learns the
//! order in which the plugin takes its locks and refuses an acquisition
//! that would invert a learned order, before it can deadlock.
//!
//! Taking B while holding A teaches "A before B". Later, taking A (or
//! anything that leads to A) while holding B could deadlock against
//! another instance of the same plugin that follows the first order, so it
//! is refused at once with `other("lockdep: ...")`, naming both locks and
//! where the order was learned, and nothing is taken. Like the Linux
//! kernel's lockdep, only waits can deadlock: a `try-lock` (or a
//! `lock-for` of zero) is never refused and teaches no order, though a lock
//! it took counts as held. A wait for a lock the plugin already holds is
//! refused too, unless both holds are shared: it would wait on itself (a
//! second semaphore permit is another slot, and allowed). Locks are told
//! apart by their interface and name, paths spelt plainly (`/jobs/./a.lock`
//! is `/jobs/a.lock`), in any mode (a shared hold blocks a writer just as
//! well). What it learns lasts as long as the plugin instance; it has no
//! settings.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet, VecDeque};

use portalocker_middleware::{
    Ending, Error, Grant, Hooks, Kind, LockMode, Request, Span, Target, middleware,
};

struct Lockdep;

/// What one plugin instance taught.
#[derive(Default)]
struct Learned {
    /// Every lock held now, once per hold, with its mode.
    held: Vec<(String, LockMode)>,
    /// `before[a]`: the locks taken (after a wait) while `a` was held, each
    /// with the acquisition that taught it (its number).
    before: HashMap<String, HashMap<String, u64>>,
    /// Acquisitions so far.
    count: u64,
}

thread_local! {
    static LEARNED: RefCell<Learned> = RefCell::new(Learned::default());
}

impl Hooks for Lockdep {
    const NAME: &'static str = "lockdep";
    const SETTINGS: &'static [&'static str] = &[];

    fn acquiring(lock: &Target, request: &Request) -> Result<(), Error> {
        if !request.wait.blocks() {
            return Ok(());
        }
        // A second permit of a semaphore held is another slot, not a wait
        // on ourselves; a second hold of a lock is, unless both share.
        let reentry = lock.kind != Kind::Semaphore;
        LEARNED.with_borrow(|learned| learned.check(lock.key(), request.mode, reentry))
    }

    fn acquired(
        lock: &Target,
        request: &Request,
        _: Span,
        outcome: Result<&Grant, &Error>,
    ) -> Result<(), Error> {
        if let Ok(grant) = outcome {
            LEARNED.with_borrow_mut(|learned| {
                learned.took(lock.key(), grant.mode, request.wait.blocks());
            });
        }
        Ok(())
    }

    fn released(
        lock: &Target,
        _: &Grant,
        _: Span,
        _: Ending,
        _: Result<(), &Error>,
    ) -> Result<(), Error> {
        LEARNED.with_borrow_mut(|learned| learned.let_go(lock.key()));
        Ok(())
    }
}

middleware!(Lockdep);

impl Learned {
    /// Refuse taking `next` in `mode` when it leads, through learned
    /// orders, to a lock held now; with `reentry`, also when it is held
    /// now and one of the two holds is exclusive (it would wait on
    /// itself).
    fn check(&self, next: &str, mode: LockMode, reentry: bool) -> Result<(), Error> {
        for (held, held_mode) in &self.held {
            if held == next {
                let shared = mode == LockMode::Shared && *held_mode == LockMode::Shared;
                if reentry && !shared {
                    return Err(Error::Other(format!(
                        "lockdep: taking {next} while holding it would wait on itself; refused before it can deadlock"
                    )));
                }
                continue;
            }
            if let Some(path) = self.path(next, held) {
                let taught = path
                    .windows(2)
                    .map(|pair| {
                        let n = self.before[&pair[0]][&pair[1]];
                        format!("{} before {} (acquisition {n})", pair[0], pair[1])
                    })
                    .collect::<Vec<_>>()
                    .join(", ");
                return Err(Error::Other(format!(
                    "lockdep: taking {next} while holding {held} inverts the order learned earlier \
                     ({taught}); refused before it can deadlock"
                )));
            }
        }
        Ok(())
    }

    /// A chain of learned orders from `from` to `to`, if there is one.
    fn path(&self, from: &str, to: &str) -> Option<Vec<String>> {
        let mut came_from: HashMap<&str, &str> = HashMap::new();
        let mut seen: HashSet<&str> = HashSet::from([from]);
        let mut queue = VecDeque::from([from]);
        while let Some(at) = queue.pop_front() {
            if at == to {
                let mut path = vec![to.to_owned()];
                let mut step = to;
                while let Some(previous) = came_from.get(step) {
                    path.push((*previous).to_owned());
                    step = previous;
                }
                path.reverse();
                return Some(path);
            }
            for next in self.before.get(at).into_iter().flat_map(HashMap::keys) {
                if seen.insert(next) {
                    came_from.insert(next, at);
                    queue.push_back(next);
                }
            }
        }
        None
    }

    /// `lock` was granted in `mode`: after a wait, everything held comes
    /// before it.
    fn took(&mut self, lock: &str, mode: LockMode, waited: bool) {
        self.count += 1;
        if waited {
            for (held, _) in &self.held {
                if held != lock {
                    self.before
                        .entry(held.clone())
                        .or_default()
                        .entry(lock.to_owned())
                        .or_insert(self.count);
                }
            }
        }
        self.held.push((lock.to_owned(), mode));
    }

    /// One hold of `lock` ended.
    fn let_go(&mut self, lock: &str) {
        if let Some(at) = self.held.iter().rposition(|(held, _)| held == lock) {
            self.held.remove(at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const X: LockMode = LockMode::Exclusive;

    #[test]
    fn an_inverted_order_is_refused_and_a_consistent_one_allowed() {
        let mut learned = Learned::default();
        learned.took("a", X, true);
        learned.took("b", X, true);
        learned.let_go("b");
        learned.let_go("a");
        // a then b again: fine.
        learned.took("a", X, true);
        assert!(learned.check("b", X, true).is_ok());
        learned.let_go("a");
        // b then a: refused.
        learned.took("b", X, true);
        let refused = learned.check("a", X, true).unwrap_err();
        assert!(
            matches!(&refused, Error::Other(m) if m.contains("taking a while holding b")),
            "{refused:?}"
        );
        // Through a chain: b before c learned, then c held, a wanted.
        learned.took("c", X, true);
        learned.let_go("b");
        assert!(learned.check("a", X, true).is_err());
    }

    #[test]
    fn waiting_on_a_lock_held_is_refused_unless_both_share() {
        let mut learned = Learned::default();
        learned.took("a", LockMode::Shared, true);
        assert!(learned.check("a", LockMode::Shared, true).is_ok());
        assert!(learned.check("a", X, true).is_err());
        // A semaphore's second permit is another slot.
        assert!(learned.check("a", X, false).is_ok());
    }

    #[test]
    fn tries_teach_no_order() {
        let mut learned = Learned::default();
        learned.took("a", X, true);
        learned.took("b", X, false);
        learned.let_go("b");
        learned.let_go("a");
        learned.took("b", X, true);
        assert!(learned.check("a", X, true).is_ok());
    }
}
