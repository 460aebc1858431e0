//! The decisions of portalocker 4.2+'s acquire algorithm, as pure functions
//! over what an attempt saw (docs/redis-protocol.md §6.4-6.6): changing an
//! election rule is an edit here, with its table test.

use super::protocol::{Record, WireMode};

/// What a round's probe found.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Probe<'a> {
    /// Alone on the channel (the count was 1): nobody to ask.
    Alone,
    /// The probe was inconclusive (the count changed, someone was silent).
    Inconclusive,
    /// One record per subscriber, ours included.
    Records(&'a [Record]),
}

/// What one round of an attempt decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Round {
    /// A reader holds the lock.
    Held,
    /// A writer advertises `exclusive` and confirms; `elected` is what its
    /// record says (an election won, or the fast path).
    Promote {
        /// Whether the writer was elected.
        elected: bool,
    },
    /// An elected writer stays subscribed, `pending` and elected, waiting for
    /// readers to leave.
    StayElected,
    /// Leave the channel and try again later.
    GiveUp,
}

/// §6.2-6.5: the verdict of a round for a reader or a writer, `elected`
/// already or not, given what its probe found; `once` when the attempt may
/// not wait (then a writer never advertises an election it would not wait
/// out).
pub(crate) fn round(reader: bool, elected: bool, once: bool, probe: Probe<'_>, me: &str) -> Round {
    match (reader, probe) {
        (true, Probe::Alone) => Round::Held,
        (true, Probe::Records(records)) if reader_may_hold(records) => Round::Held,
        (true, _) => Round::GiveUp,
        (false, Probe::Alone) => Round::Promote { elected },
        (false, Probe::Inconclusive) if elected => Round::StayElected,
        (false, Probe::Inconclusive) => Round::GiveUp,
        (false, Probe::Records(records)) if elected => match incumbent_writer(records, me) {
            Incumbent::Forfeit => Round::GiveUp,
            Incumbent::Wait => Round::StayElected,
            Incumbent::Promote => Round::Promote { elected: true },
        },
        (false, Probe::Records(records)) => match fresh_writer(records, me) {
            Fresh::NotElected => Round::GiveUp,
            Fresh::Promote => Round::Promote { elected: true },
            Fresh::WaitForReaders if once => Round::GiveUp,
            Fresh::WaitForReaders => Round::StayElected,
        },
    }
}

/// Whether a reader may hold: every record (its own included) is shared.
pub(crate) fn reader_may_hold(records: &[Record]) -> bool {
    records
        .iter()
        .all(|r| r.mode == WireMode::Shared && !r.legacy)
}

/// A fresh writer's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fresh {
    /// Someone else wins or holds: give up this attempt.
    NotElected,
    /// Elected and no reader in the way: promote, then confirm.
    Promote,
    /// Elected but readers hold: stay subscribed as elected and wait.
    WaitForReaders,
}

/// §6.5, a contender not yet elected.
pub(crate) fn fresh_writer(records: &[Record], me: &str) -> Fresh {
    let exclusive = records.iter().any(|r| r.mode == WireMode::Exclusive);
    let other_incumbent = records
        .iter()
        .any(|r| r.id != me && r.elected == Some(true));
    let smallest_pending = records
        .iter()
        .filter(|r| r.mode == WireMode::Pending)
        .map(|r| r.id.as_str())
        .min();
    if exclusive || other_incumbent || smallest_pending != Some(me) {
        return Fresh::NotElected;
    }
    if records.iter().any(|r| r.mode == WireMode::Shared) {
        Fresh::WaitForReaders
    } else {
        Fresh::Promote
    }
}

/// An elected writer's verdict on a later probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Incumbent {
    /// Give up the election (and the subscription).
    Forfeit,
    /// Stay elected and subscribed; probe again later.
    Wait,
    /// Promote to exclusive, then confirm.
    Promote,
}

/// §6.5, a writer already elected in this acquire.
pub(crate) fn incumbent_writer(records: &[Record], me: &str) -> Incumbent {
    let others = || records.iter().filter(|r| r.id != me);
    let forfeit = others().any(|r| {
        r.mode == WireMode::Exclusive
            || (r.elected == Some(true) && r.id.as_str() < me)
            || (r.mode == WireMode::Pending && r.elected.is_none() && r.id.as_str() < me)
    });
    if forfeit {
        return Incumbent::Forfeit;
    }
    let readers = others().any(|r| r.mode == WireMode::Shared);
    let hold_off = others()
        .any(|r| r.mode == WireMode::Pending && r.elected == Some(false) && r.id.as_str() < me);
    if readers || hold_off {
        Incumbent::Wait
    } else {
        Incumbent::Promote
    }
}

/// The verdict of a confirm probe after promoting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Confirm {
    /// Nobody contests: the lock is ours.
    Confirmed,
    /// Someone has a better claim: back to pending and retry.
    Demote,
    /// Ask again.
    Inconclusive,
}

/// §6.6 step 3.
pub(crate) fn confirm(records: &[Record], me: &str) -> Confirm {
    let mut inconclusive = false;
    for r in records.iter().filter(|r| r.id != me) {
        let smaller = r.id.as_str() < me;
        match r.mode {
            WireMode::Shared => return Confirm::Demote,
            WireMode::Exclusive if r.legacy || r.elected.is_none() || smaller => {
                return Confirm::Demote;
            }
            WireMode::Pending if smaller && r.elected.is_none() => return Confirm::Demote,
            WireMode::Pending if smaller => inconclusive = true,
            _ => {}
        }
    }
    if inconclusive {
        Confirm::Inconclusive
    } else {
        Confirm::Confirmed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: &str, mode: WireMode, elected: Option<bool>) -> Record {
        Record {
            id: id.into(),
            mode,
            elected,
            legacy: false,
        }
    }

    use WireMode::{Exclusive as X, Pending as P, Shared as S};

    #[test]
    fn rounds() {
        let me = "m";
        let alone = Probe::Alone;
        let unsure = Probe::Inconclusive;
        let readers = [rec("m", P, Some(false)), rec("r", S, Some(false))];
        let holder = [rec("m", P, Some(false)), rec("z", X, Some(false))];
        let rival = [rec("m", P, Some(false)), rec("z", P, Some(false))];
        let shared = [rec("m", S, Some(false)), rec("r", S, Some(false))];
        let writer = [rec("m", S, Some(false)), rec("a", P, Some(false))];
        let r = Probe::Records;
        // (reader, elected, once, probe) -> verdict
        let table = [
            (true, false, false, alone, Round::Held),
            (true, false, false, r(&shared), Round::Held),
            (true, false, false, r(&writer), Round::GiveUp),
            (true, false, false, unsure, Round::GiveUp),
            (
                false,
                false,
                false,
                alone,
                Round::Promote { elected: false },
            ),
            (false, true, false, alone, Round::Promote { elected: true }),
            (false, false, false, unsure, Round::GiveUp),
            (false, true, false, unsure, Round::StayElected),
            (false, false, false, r(&holder), Round::GiveUp),
            (
                false,
                false,
                false,
                r(&rival),
                Round::Promote { elected: true },
            ),
            (false, false, false, r(&readers), Round::StayElected),
            (false, false, true, r(&readers), Round::GiveUp),
            (false, true, false, r(&readers), Round::StayElected),
            (false, true, false, r(&holder), Round::GiveUp),
            (
                false,
                true,
                false,
                r(&rival),
                Round::Promote { elected: true },
            ),
        ];
        for (reader, elected, once, probe, verdict) in table {
            assert_eq!(
                round(reader, elected, once, probe, me),
                verdict,
                "reader {reader}, elected {elected}, once {once}, {probe:?}"
            );
        }
    }

    #[test]
    fn readers_hold_only_among_readers() {
        assert!(reader_may_hold(&[
            rec("b", S, Some(false)),
            rec("a", S, None)
        ]));
        assert!(!reader_may_hold(&[
            rec("b", S, Some(false)),
            rec("a", P, Some(false))
        ]));
        assert!(!reader_may_hold(&[
            rec("b", S, Some(false)),
            rec("a", X, Some(false))
        ]));
    }

    #[test]
    fn the_smallest_pending_writer_is_elected() {
        let two = [rec("a", P, Some(false)), rec("b", P, Some(false))];
        assert_eq!(fresh_writer(&two, "a"), Fresh::Promote);
        assert_eq!(fresh_writer(&two, "b"), Fresh::NotElected);
        let held = [rec("a", P, Some(false)), rec("z", X, Some(false))];
        assert_eq!(fresh_writer(&held, "a"), Fresh::NotElected);
        let readers = [rec("a", P, Some(false)), rec("r", S, Some(false))];
        assert_eq!(fresh_writer(&readers, "a"), Fresh::WaitForReaders);
        // Defer to an advertised incumbent even with a smaller id.
        let incumbent = [rec("a", P, Some(false)), rec("m", P, Some(true))];
        assert_eq!(fresh_writer(&incumbent, "a"), Fresh::NotElected);
    }

    #[test]
    fn incumbents_forfeit_wait_or_promote() {
        assert_eq!(
            incumbent_writer(&[rec("m", P, Some(true)), rec("z", X, Some(false))], "m"),
            Incumbent::Forfeit
        );
        assert_eq!(
            incumbent_writer(&[rec("m", P, Some(true)), rec("a", P, Some(true))], "m"),
            Incumbent::Forfeit
        );
        assert_eq!(
            incumbent_writer(&[rec("m", P, Some(true)), rec("a", P, None)], "m"),
            Incumbent::Forfeit
        );
        assert_eq!(
            incumbent_writer(&[rec("m", P, Some(true)), rec("r", S, Some(false))], "m"),
            Incumbent::Wait
        );
        assert_eq!(
            incumbent_writer(&[rec("m", P, Some(true)), rec("a", P, Some(false))], "m"),
            Incumbent::Wait
        );
        assert_eq!(
            incumbent_writer(&[rec("m", P, Some(true)), rec("z", P, Some(false))], "m"),
            Incumbent::Promote
        );
        assert_eq!(
            incumbent_writer(&[rec("m", P, Some(true))], "m"),
            Incumbent::Promote
        );
    }

    #[test]
    fn confirm_rules() {
        assert_eq!(
            confirm(&[rec("m", X, Some(false))], "m"),
            Confirm::Confirmed
        );
        assert_eq!(
            confirm(&[rec("m", X, Some(false)), rec("r", S, Some(false))], "m"),
            Confirm::Demote
        );
        assert_eq!(
            confirm(&[rec("m", X, Some(false)), rec("z", X, None)], "m"),
            Confirm::Demote
        );
        assert_eq!(
            confirm(&[rec("m", X, Some(false)), rec("a", X, Some(true))], "m"),
            Confirm::Demote
        );
        assert_eq!(
            confirm(&[rec("m", X, Some(false)), rec("z", X, Some(false))], "m"),
            Confirm::Confirmed
        );
        assert_eq!(
            confirm(&[rec("m", X, Some(false)), rec("a", P, None)], "m"),
            Confirm::Demote
        );
        assert_eq!(
            confirm(&[rec("m", X, Some(false)), rec("a", P, Some(false))], "m"),
            Confirm::Inconclusive
        );
        assert_eq!(
            confirm(&[rec("m", X, Some(false)), rec("z", P, Some(false))], "m"),
            Confirm::Confirmed
        );
        let mut legacy = rec("legacy-1", X, None);
        legacy.legacy = true;
        assert_eq!(
            confirm(&[rec("m", X, Some(false)), legacy], "m"),
            Confirm::Demote
        );
    }
}
