//! The crash matrix's journal: what holders of one lock did, in the order
//! they did it, and the check that no two of them believed they held it at
//! once and no increment was lost.
//!
//! Every holder appends whole lines (one `write` each, `O_APPEND`) to one
//! journal file:
//!
//! ```text
//! E WHO TOKEN       entered: holds the lock exclusively (TOKEN: its fencing
//!                   token, 0 without one)
//! C VALUE WHO TOKEN committed an increment: VALUE is the journal's value
//!                   plus one, read from the journal under the lock (a
//!                   commit whose token is below one entered, a reader's
//!                   included, is rejected: the journal is a fenced
//!                   resource)
//! L WHO             leaving: about to release
//! S WHO [TOKEN]     entered shared (a reader), with its fencing token
//!                   when it drew one (ours do; Python's readers draw none)
//! T WHO             a reader leaving
//! X WHO             learned that its lock was lost, and wrote nothing
//! ```
//!
//! The counter is the journal itself, so an increment is one atomic append:
//! a holder killed before it leaves the value untouched, one killed after
//! has committed. A lost update shows as a value committed twice.

use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

/// Append `line` (and a newline) to the journal in one write.
///
/// # Errors
///
/// When the journal cannot be opened or written.
pub fn append(journal: &Path, line: &str) -> io::Result<()> {
    let mut file = OpenOptions::new().create(true).append(true).open(journal)?;
    file.write_all(format!("{line}\n").as_bytes())
}

/// The value of the journal's counter: the last increment committed with
/// a current token (0 when none). The journal is a fenced resource: a
/// commit whose token is below one already entered is rejected, as a
/// stale holder's write must be.
///
/// # Errors
///
/// When the journal cannot be read.
pub fn last_value(journal: &Path) -> io::Result<u64> {
    match fs::read_to_string(journal) {
        Ok(text) => Ok(value_of(&text)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(e),
    }
}

/// [`last_value`] of a journal's text.
#[must_use]
pub fn value_of(text: &str) -> u64 {
    let mut top = 0_u64;
    let mut value = 0_u64;
    for line in text.lines() {
        let words: Vec<&str> = line.split(' ').collect();
        match words.as_slice() {
            ["E" | "S", _, token] => top = top.max(token.parse().unwrap_or(0)),
            ["C", v, _, token] => {
                let token: u64 = token.parse().unwrap_or(0);
                if token == 0 || token >= top {
                    value = v.parse().unwrap_or(value);
                }
            }
            _ => {}
        }
    }
    value
}

/// What a journal shows.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Findings {
    /// Increments committed by a holder that held the lock.
    pub commits: u64,
    /// Writes by a holder whose lock had been taken over, carrying a token
    /// older than the new holder's: visible as stale (a fenced resource
    /// rejects them).
    pub fenced: u64,
    /// Holders that learned of their loss before writing.
    pub learned_loss: u64,
    /// Holders that entered and never left (killed while holding).
    pub abandoned: u64,
    /// Faulted holders whose lock another holder took (after their death,
    /// or once they were reaped or cut off).
    pub taken_over: u64,
    /// Faulted holders whose entry came after their successors' (stopped
    /// between the grant and their journal line, then reaped): its token
    /// is below theirs, so what it writes is fenced.
    pub late_entries: u64,
    /// Violations, each told in a sentence with its line number.
    pub violations: Vec<String>,
}

impl Findings {
    /// Add `other`'s figures and violations to these.
    pub fn merge(&mut self, other: Findings) {
        self.commits += other.commits;
        self.fenced += other.fenced;
        self.learned_loss += other.learned_loss;
        self.abandoned += other.abandoned;
        self.taken_over += other.taken_over;
        self.late_entries += other.late_entries;
        self.violations.extend(other.violations);
    }
}

impl fmt::Display for Findings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} commits, {} takeovers from faulted holders, {} late entries of reaped holders, \
             {} fenced stale writes, {} losses learned, {} abandoned holds, {} violations",
            self.commits,
            self.taken_over,
            self.late_entries,
            self.fenced,
            self.learned_loss,
            self.abandoned,
            self.violations.len()
        )
    }
}

/// Check `text`. `faulted`: the holders a fault was injected into (killed,
/// stopped or cut off): only they may be taken over while they believed
/// they held.
#[must_use]
pub fn check(text: &str, faulted: &HashSet<String>) -> Findings {
    let mut findings = Findings::default();
    // The exclusive holder now, and whether it may have lost the lock
    // (faulted) without the journal showing it.
    let mut writer: Option<String> = None;
    let mut readers: BTreeSet<String> = BTreeSet::new();
    // Holders that entered, were taken over, and may still write (stale).
    let mut superseded: HashSet<String> = HashSet::new();
    // The highest token entered by anyone, and by a writer: a writer's
    // token is above every earlier one; a reader's only above every
    // earlier writer's (readers granted together draw in any order).
    let mut top_token = 0_u64;
    let mut top_writer = 0_u64;
    let mut value = 0_u64;
    for (number, line) in text.lines().enumerate() {
        let number = number + 1;
        let words: Vec<&str> = line.split(' ').collect();
        let mut violation = |what: String| {
            findings
                .violations
                .push(format!("line {number} `{line}`: {what}"))
        };
        // Whoever enters displaces the writer (and a writer the readers):
        // only a faulted holder may be displaced.
        let entering = match words.as_slice() {
            ["E", who, token] => Some((*who, true, token.parse().unwrap_or(0))),
            ["S", who, token] => Some((*who, false, token.parse().unwrap_or(0))),
            ["S", who] => Some((*who, false, 0)),
            _ => None,
        };
        if let Some((who, exclusive, token)) = entering {
            let floor = if exclusive { top_token } else { top_writer };
            if token != 0 && token <= floor {
                if faulted.contains(who) {
                    // Granted before its successors, stopped before it
                    // wrote this line, reaped meanwhile: it holds nothing,
                    // and its token is stale.
                    superseded.insert(who.to_owned());
                    findings.late_entries += 1;
                    continue;
                }
                violation(format!("token {token} is not above the last one, {floor}"));
            }
            top_token = top_token.max(token);
            if exclusive {
                top_writer = top_writer.max(token);
            }
            let mut displaced: Vec<String> = writer.take().into_iter().collect();
            if exclusive {
                displaced.extend(std::mem::take(&mut readers));
            }
            for old in displaced {
                if faulted.contains(&old) {
                    superseded.insert(old);
                    findings.taken_over += 1;
                } else {
                    violation(format!("{who} entered while {old} was inside"));
                }
            }
            superseded.remove(who);
        }
        match words.as_slice() {
            ["E", who, _] => {
                writer = Some((*who).to_owned());
            }
            ["S", who] | ["S", who, _] => {
                readers.insert((*who).to_owned());
            }
            ["T", who] => {
                if !readers.remove(*who) && !superseded.contains(*who) {
                    violation(format!("{who} left a read it never entered"));
                }
            }
            ["C", v, who, token] => {
                let v: u64 = v.parse().unwrap_or(0);
                let token: u64 = token.parse().unwrap_or(0);
                if writer.as_deref() == Some(*who) {
                    if v == value + 1 {
                        value = v;
                        findings.commits += 1;
                    } else {
                        violation(format!("committed {v} after {value}: an update was lost"));
                    }
                } else if superseded.contains(*who) && token != 0 && token < top_token {
                    findings.fenced += 1;
                } else {
                    violation(format!("{who} wrote without holding the lock"));
                }
            }
            ["L", who] => {
                if writer.as_deref() == Some(*who) {
                    writer = None;
                } else if !superseded.contains(*who) {
                    violation(format!("{who} left a lock it never entered"));
                }
            }
            ["X", who] => {
                if superseded.remove(*who)
                    || writer.as_deref() == Some(*who)
                    || readers.contains(*who)
                {
                    findings.learned_loss += 1;
                    if writer.as_deref() == Some(*who) {
                        writer = None;
                    }
                    readers.remove(*who);
                } else {
                    violation(format!("{who} reported a loss of a lock it did not hold"));
                }
            }
            _ => violation("not a journal line".to_owned()),
        }
    }
    findings.abandoned = u64::from(writer.is_some()) + readers.len() as u64;
    findings
}

#[cfg(test)]
mod tests {
    use super::*;

    fn faulted(names: &[&str]) -> HashSet<String> {
        names.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn a_clean_journal_counts_its_commits() {
        let text = "E a 0\nC 1 a 0\nL a\nE b 0\nC 2 b 0\nL b\n";
        let found = check(text, &faulted(&[]));
        assert_eq!(found.commits, 2);
        assert!(found.violations.is_empty(), "{found:?}");
    }

    #[test]
    fn overlaps_and_lost_updates_are_violations() {
        let overlap = check("E a 0\nE b 0\nC 1 b 0\nL b\n", &faulted(&[]));
        assert_eq!(overlap.violations.len(), 1, "{overlap:?}");
        let lost = check("E a 0\nC 1 a 0\nL a\nE b 0\nC 1 b 0\nL b\n", &faulted(&[]));
        assert_eq!(lost.violations.len(), 1, "{lost:?}");
        let stray = check("E a 0\nC 1 b 0\n", &faulted(&[]));
        assert_eq!(stray.violations.len(), 1, "{stray:?}");
        let reader = check("S r\nE w 0\n", &faulted(&[]));
        assert_eq!(reader.violations.len(), 1, "{reader:?}");
    }

    #[test]
    fn the_value_skips_writes_with_a_stale_token() {
        assert_eq!(value_of(""), 0);
        assert_eq!(value_of("E a 0\nC 1 a 0\nL a\n"), 1);
        assert_eq!(value_of("E a 1\nE b 2\nC 1 a 1\n"), 0);
        assert_eq!(value_of("E a 1\nE b 2\nC 1 a 1\nC 1 b 2\n"), 1);
    }

    #[test]
    fn a_faulted_holder_may_be_taken_over_but_not_write_fresh() {
        // Killed while holding: the next one enters.
        let killed = check("E a 0\nE b 0\nC 1 b 0\nL b\n", &faulted(&["a"]));
        assert!(killed.violations.is_empty(), "{killed:?}");
        assert_eq!(killed.commits, 1);
        // Cut off, taken over, then wrote with its old token: fenced.
        let stale = check("E a 1\nE b 2\nC 1 a 1\nC 1 b 2\nL b\n", &faulted(&["a"]));
        assert!(stale.violations.is_empty(), "{stale:?}");
        assert_eq!((stale.fenced, stale.commits), (1, 1));
        // Without a token the stale write is a violation.
        let blind = check("E a 0\nE b 0\nC 1 a 0\n", &faulted(&["a"]));
        assert_eq!(blind.violations.len(), 1, "{blind:?}");
        // Learned the loss and wrote nothing.
        let learned = check("E a 1\nE b 2\nX a\nL b\n", &faulted(&["a"]));
        assert!(learned.violations.is_empty(), "{learned:?}");
        assert_eq!(learned.learned_loss, 1);
    }

    #[test]
    fn a_reader_token_fences_a_writer_reaped_while_readers_took_over() {
        // Stopped, reaped, readers in, then it resumed and wrote once.
        let fenced = check("E w 3\nS r 4\nC 1 w 3\nT r\n", &faulted(&["w"]));
        assert!(fenced.violations.is_empty(), "{fenced:?}");
        assert_eq!((fenced.fenced, fenced.taken_over), (1, 1));
        assert_eq!(value_of("E w 3\nS r 4\nC 1 w 3\nT r\n"), 0);
        // A reader without a token (Python's) leaves the write unfenced.
        let blind = check("E w 3\nS r\nC 1 w 3\nT r\n", &faulted(&["w"]));
        assert_eq!(blind.violations.len(), 1, "{blind:?}");
        // Readers' tokens must be above every earlier writer's...
        let backwards = check("E w 3\nL w\nS r 2\nT r\n", &faulted(&[]));
        assert_eq!(backwards.violations.len(), 1, "{backwards:?}");
        // ...but readers granted together journal in any order.
        let together = check(
            "E w 3\nL w\nS a 5\nS b 4\nT a\nT b\nE w 6\nL w\n",
            &faulted(&[]),
        );
        assert!(together.violations.is_empty(), "{together:?}");
    }

    #[test]
    fn a_holder_stopped_before_its_entry_line_enters_late_and_stale() {
        // w drew 2, was stopped before journaling, reaped; v held with 3;
        // w resumed: its entry and its write are stale, and fenced.
        let text = "E v 3\nC 1 v 3\nL v\nE w 2\nC 2 w 2\nL w\n";
        let late = check(text, &faulted(&["w"]));
        assert!(late.violations.is_empty(), "{late:?}");
        assert_eq!((late.late_entries, late.fenced, late.commits), (1, 1, 1));
        assert_eq!(value_of(text), 1);
        // Unfaulted, the same journal is a violation.
        assert!(!check(text, &faulted(&[])).violations.is_empty());
        // A late reader, too.
        let reader = check("S r 2\nT r\nE v 3\nS q 1\nT q\nL v\n", &faulted(&["q"]));
        assert!(reader.violations.is_empty(), "{reader:?}");
        assert_eq!(reader.late_entries, 1);
    }
}
