//! The lockdep middleware: composed in front of a plugin, it learns the
//! order in which the plugin takes its locks and refuses an acquisition
//! that would invert a learned order, before it can deadlock.
//!
//! Taking B while holding A teaches "A before B". Later, taking A (or
//! anything that leads to A) while holding B could deadlock against
//! another instance of the same plugin that follows the first order, so it
//! is refused at once with `other("lockdep: ...")`, naming both locks and
//! where the order was learned, and nothing is taken. Like the Linux
//! kernel's lockdep, only waits can deadlock: a `try-lock` is never
//! refused (it adds no order), though a lock it took counts as held.
//! Locks are told apart by their interface and name, in any mode (a
//! shared hold blocks a writer just as well). What it learns lasts as long
//! as the plugin instance; it has no settings.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};

use portalocker_middleware::{Config, Ending, Error, Grant, Hooks, Request, Target, middleware};

struct Lockdep;

/// What one plugin instance taught.
#[derive(Default)]
struct Learned {
    /// Every lock held now, once per hold.
    held: Vec<String>,
    /// `before[a]`: the locks taken while `a` was held, each with the
    /// acquisition that taught it (its number).
    before: HashMap<String, HashMap<String, u64>>,
    /// Acquisitions so far.
    count: u64,
}

thread_local! {
    static LEARNED: RefCell<Learned> = RefCell::new(Learned::default());
}

impl Hooks for Lockdep {
    fn acquiring(lock: &Target, request: &Request) -> Result<(), Error> {
        if let Some(key) = Config::get().unknown("lockdep.", &[]).first() {
            return Err(Error::InvalidArgument(format!(
                "the lockdep middleware has no settings (got `{key}`)"
            )));
        }
        if !request.wait.blocks() {
            return Ok(());
        }
        LEARNED.with_borrow(|learned| learned.check(&lock.key()))
    }

    fn acquired(
        lock: &Target,
        request: &Request,
        _: std::time::Duration,
        outcome: Result<&Grant, &Error>,
    ) {
        if outcome.is_err() {
            return;
        }
        LEARNED.with_borrow_mut(|learned| learned.took(lock.key(), request.wait.blocks()));
    }

    fn released(
        lock: &Target,
        _: &Grant,
        _: std::time::Duration,
        _: Ending,
        _: Result<(), &Error>,
    ) {
        LEARNED.with_borrow_mut(|learned| learned.let_go(&lock.key()));
    }
}

middleware!(Lockdep);

impl Learned {
    /// Refuse taking `next` when it leads, through learned orders, to a
    /// lock held now.
    fn check(&self, next: &str) -> Result<(), Error> {
        for held in &self.held {
            if held == next {
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
        let mut queue = std::collections::VecDeque::from([from]);
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

    /// `lock` was granted: after a wait, everything held comes before it.
    fn took(&mut self, lock: String, waited: bool) {
        self.count += 1;
        if waited {
            for held in &self.held {
                if *held != lock {
                    self.before
                        .entry(held.clone())
                        .or_default()
                        .entry(lock.clone())
                        .or_insert(self.count);
                }
            }
        }
        self.held.push(lock);
    }

    /// One hold of `lock` ended.
    fn let_go(&mut self, lock: &str) {
        if let Some(at) = self.held.iter().rposition(|held| held == lock) {
            self.held.remove(at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_inverted_order_is_refused_and_a_consistent_one_allowed() {
        let mut learned = Learned::default();
        learned.took("a".into(), true);
        learned.took("b".into(), true);
        learned.let_go("b");
        learned.let_go("a");
        // a then b again: fine.
        learned.took("a".into(), true);
        assert!(learned.check("b").is_ok());
        learned.let_go("a");
        // b then a: refused.
        learned.took("b".into(), true);
        let refused = learned.check("a").unwrap_err();
        assert!(
            matches!(&refused, Error::Other(m) if m.contains("taking a while holding b")),
            "{refused:?}"
        );
        // Through a chain: b before c learned, then c held, a wanted.
        learned.took("c".into(), true);
        learned.let_go("b");
        assert!(learned.check("a").is_err());
    }
}
