//! The `local` policy's counters: in this node's memory, shared by its proxy threads.
//!
//! Counters are sharded by identifier, each shard behind a short synchronous lock (never held
//! across an await), so one request checks and counts all its periods atomically. A shard
//! drops the counters of ended windows at most once a second, which bounds memory by the
//! identifiers active in the current windows.
use super::windows::Period;
use super::PerWindow;
use foldhash::fast::RandomState;
use hashbrown::HashTable;
use std::hash::BuildHasher;
use std::sync::Mutex;

const SHARDS: usize = 64;

/// A request count in one window of one period.
struct Count {
    period: Period,
    start: i64,
    end: i64,
    count: u64,
}

/// The counters of one subject: an instance's scope and an identifier, named
/// `route:service:identifier` as Kong names its counters.
struct Subject {
    name: Box<str>,
    /// Where the scope ends in `name`.
    scope_len: usize,
    counts: Vec<Count>,
}

impl Subject {
    fn new(scope: &str, identifier: &str) -> Subject {
        Subject {
            name: subject_name(scope, identifier).into(),
            scope_len: scope.len(),
            counts: Vec::new(),
        }
    }

    /// The scope and the identifier.
    fn parts(&self) -> (&str, &str) {
        (
            &self.name[..self.scope_len],
            &self.name[self.scope_len + 1..],
        )
    }
}

/// A subject's name, `route:service:identifier` as Kong names its counters (the Redis policy
/// prefixes its keys with it).
pub fn subject_name(scope: &str, identifier: &str) -> String {
    [scope, ":", identifier].concat()
}

#[derive(Default)]
struct Shard {
    /// Found by the hash of scope and identifier that chose the shard: a request hashes once
    /// and builds no name unless its subject is new.
    subjects: HashTable<Subject>,
    next_sweep: i64,
}

/// All local counters of this node; they outlive configuration snapshots.
pub struct Counters {
    shards: Vec<Mutex<Shard>>,
    /// Picks a subject's shard. foldhash, seeded per process: fast, and clients who choose
    /// their identifiers (IPs, header values) cannot aim them at one shard.
    hasher: RandomState,
}

impl Default for Counters {
    fn default() -> Counters {
        Counters {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: RandomState::default(),
        }
    }
}

/// One period's limit and the window the request falls in.
pub struct Window {
    pub period: Period,
    pub limit: u64,
    pub start: i64,
    pub end: i64,
}

impl Counters {
    /// Counts the request in every window unless one is already at its limit. Returns each
    /// window's usage before this request, and whether it was counted.
    pub fn check_and_count(
        &self,
        scope: &str,
        identifier: &str,
        windows: &[Window],
        now: i64,
    ) -> (PerWindow<u64>, bool) {
        let hash = self.hasher.hash_one((scope, identifier));
        // Bits the table does not use for its slots or tags pick the shard.
        let shard = &self.shards[(hash >> 32) as usize % SHARDS];
        let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
        if now >= shard.next_sweep {
            shard.subjects.retain(|s| {
                s.counts.retain(|c| c.end > now);
                !s.counts.is_empty()
            });
            shard.next_sweep = now + 1;
        }
        let subject = shard
            .subjects
            .entry(
                hash,
                |s| s.parts() == (scope, identifier),
                |s| self.hasher.hash_one(s.parts()),
            )
            .or_insert_with(|| Subject::new(scope, identifier))
            .into_mut();
        let counts = &mut subject.counts;
        counts.retain(|c| c.end > now);
        let usage: PerWindow<u64> = windows
            .iter()
            .map(|w| {
                counts
                    .iter()
                    .find(|c| c.period == w.period && c.start == w.start)
                    .map_or(0, |c| c.count)
            })
            .collect();
        let allowed = windows.iter().zip(&usage).all(|(w, used)| *used < w.limit);
        if allowed {
            for w in windows {
                match counts
                    .iter_mut()
                    .find(|c| c.period == w.period && c.start == w.start)
                {
                    Some(c) => c.count += 1,
                    None => counts.push(Count {
                        period: w.period,
                        start: w.start,
                        end: w.end,
                        count: 1,
                    }),
                }
            }
        }
        (usage, allowed)
    }

    /// Subjects with live counters, for tests of eviction.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap().subjects.len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn second(limit: u64, now: i64) -> Vec<Window> {
        vec![Window {
            period: Period::Second,
            limit,
            start: now,
            end: now + 1,
        }]
    }

    #[test]
    fn counts_up_to_the_limit_then_refuses() {
        let c = Counters::default();
        let got: Vec<(PerWindow<u64>, bool)> = (0..4)
            .map(|_| c.check_and_count("scope", "a", &second(3, 100), 100))
            .collect();
        assert_eq!(
            got.iter().map(|g| g.1).collect::<Vec<_>>(),
            [true, true, true, false]
        );
        assert_eq!(got[3].0.as_slice(), [3]);
        // Another identifier has its own counter; the next window starts from zero.
        assert!(c.check_and_count("scope", "b", &second(3, 100), 100).1);
        assert_eq!(
            c.check_and_count("scope", "a", &second(3, 101), 101),
            (smallvec::smallvec![0], true)
        );
    }

    #[test]
    fn a_refused_request_counts_in_no_window() {
        let c = Counters::default();
        let windows = |now| {
            vec![
                Window {
                    period: Period::Second,
                    limit: 10,
                    start: now,
                    end: now + 1,
                },
                Window {
                    period: Period::Minute,
                    limit: 2,
                    start: 0,
                    end: 60,
                },
            ]
        };
        assert!(c.check_and_count("scope", "a", &windows(1), 1).1);
        assert!(c.check_and_count("scope", "a", &windows(1), 1).1);
        assert_eq!(
            c.check_and_count("scope", "a", &windows(1), 1),
            (smallvec::smallvec![2, 2], false)
        );
        assert_eq!(
            c.check_and_count("scope", "a", &windows(2), 2),
            (smallvec::smallvec![0, 2], false)
        );
    }

    #[test]
    fn ended_windows_are_evicted() {
        let c = Counters::default();
        for i in 0..100 {
            c.check_and_count("scope", &format!("id{i}"), &second(5, 100), 100);
        }
        assert_eq!(c.len(), 100);
        for i in 0..SHARDS * 20 {
            c.check_and_count("scope", &format!("late{i}"), &second(5, 200), 200);
        }
        assert_eq!(c.len(), SHARDS * 20);
    }
}
