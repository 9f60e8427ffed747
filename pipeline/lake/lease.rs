//! Who may change a lake in object storage, across machines: a lease.
//!
//! Object stores have no file locks, so the lease is one object (the key
//! `_lease.json` of the lake), changed only by conditional puts: created
//! create-only (S3 and Azure `If-None-Match: *`, GCS generation 0) and then
//! replaced only if it is still the version that was read (`If-Match`). Two
//! jobs that change it at once cannot both win: the loser reads it again and
//! decides again.
//!
//! ```json
//! {"generation": 7, "holders": [
//!   {"id": "20261205T020000Z-ingest-1a2b", "job": "ingest", "mode": "shared",
//!    "generation": 7, "expires_at": "2026-12-05T02:05:00Z"}]}
//! ```
//!
//! - **Who excludes whom.** Shared holders (ingests, one per shard, and
//!   rollups, one per date, which may run side by side) exclude exclusive
//!   ones; an exclusive holder (erasure, retention, compaction, a rebuild,
//!   a month's rollup, billing's jobs) excludes everyone. Shared holders of
//!   different jobs exclude each other, and two of one job do when their
//!   claims overlap ([`Claim::overlaps`]: shards that can hold the same VM,
//!   or the same date), since both would write the rows they share. A job
//!   refused is [`Error::Locked`], exit 3, naming the holder.
//! - **Expiry.** Every entry expires `ttl` after it was taken or last
//!   renewed. A holder renews well before that; an entry past its expiry
//!   (a killed or stalled holder) is dropped by the next job that takes the
//!   lease.
//! - **Fencing.** Every grant increments `generation`, and the holder keeps
//!   the generation it was granted. Before a commit, [`Lease::fence`] reads
//!   the lease again: a holder whose entry is gone or was granted again
//!   under another generation (it stalled past its expiry and another job
//!   took over) is refused, and so is one with less than `margin` left, so
//!   that a commit that passed the fence finishes before anyone can take
//!   the lease over. Commit records name the generation they were made
//!   under.
//!
//! Time is the caller's clock ([`Clock`]); the rule assumes the machines'
//! clocks agree to well within `margin`.
//!
//! A lake in a local folder keeps its file lock (`Lake::open`): a local
//! folder cannot replace an object conditionally.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::lake::store::{Conditional, Store, Version};
use crate::model::ctx::Clock;
use crate::model::error::{Error, Result};
use crate::model::shard::Shard;

/// The lease's key in the lake.
pub const LEASE_KEY: &str = "_lease.json";

/// How many times a job reads and decides again when another job changed
/// the lease between its read and its write. Each conflict means another
/// job made progress, so this bounds contention, not waiting.
const ATTEMPTS: u32 = 32;

/// What a holder may do alongside others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Side by side with other shared holders (ingest).
    Shared,
    /// Alone (erasure, retention, compaction, a rebuild).
    Exclusive,
}

/// What a job takes of a lake: all of it alone, or a part of the work
/// beside the jobs that do the other parts (a shard of an ingest's input, a
/// date of a rollup).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    pub mode: Mode,
    /// The part of the input an ingest reads; [`Shard::ALL`]: all of it.
    pub shard: Shard,
    /// The one day a rollup writes; none: any.
    pub date: Option<NaiveDate>,
}

impl Claim {
    /// The lake alone.
    pub const EXCLUSIVE: Claim = Claim {
        mode: Mode::Exclusive,
        shard: Shard::ALL,
        date: None,
    };

    /// An ingest of `shard`, beside the other shards' ingests.
    pub fn shard(shard: Shard) -> Claim {
        Claim {
            mode: Mode::Shared,
            shard,
            date: None,
        }
    }

    /// A rollup of `date` alone, beside the rollups of other dates.
    pub fn date(date: NaiveDate) -> Claim {
        Claim {
            mode: Mode::Shared,
            shard: Shard::ALL,
            date: Some(date),
        }
    }

    /// Whether two shared claims of one job can touch the same rows: their
    /// shards overlap ([`Shard::overlaps`]) and so do their dates (the
    /// same day, or either has none).
    pub fn overlaps(&self, other: &Claim) -> bool {
        self.shard.overlaps(&other.shard)
            && match (self.date, other.date) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }

    /// Whether a job `job` claiming `self` must wait for `holder`, a live
    /// job `holder_job` claiming `other`.
    pub fn blocked_by(&self, job: &str, other: &Claim, holder_job: &str) -> bool {
        self.mode == Mode::Exclusive
            || other.mode == Mode::Exclusive
            || job != holder_job
            || self.overlaps(other)
    }
}

/// The part a claim names, for messages: `shard 1/4`, `date 2026-11-03`,
/// both joined by a comma, or nothing for the whole lake.
impl std::fmt::Display for Claim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        if !self.shard.is_all() {
            parts.push(format!("shard {}", self.shard));
        }
        if let Some(date) = self.date {
            parts.push(format!("date {date}"));
        }
        f.write_str(&parts.join(", "))
    }
}

/// One holder's entry in the lease object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// The run id of the job that holds it.
    pub id: String,
    /// The job's name, for messages.
    pub job: String,
    pub mode: Mode,
    /// The generation the entry was granted under.
    pub generation: u64,
    pub expires_at: DateTime<Utc>,
    /// The machine and process that hold it: a holder on this machine
    /// whose process is gone (killed) holds nothing, whatever its expiry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// The part of the input a shared holder works on; none: all of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<Shard>,
    /// The one date a shared holder writes; none: any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date: Option<NaiveDate>,
}

impl Holder {
    /// What the holder claimed.
    pub fn claim(&self) -> Claim {
        Claim {
            mode: self.mode,
            shard: self.shard.unwrap_or(Shard::ALL),
            date: self.date,
        }
    }

    /// Whether the entry still holds at `now`: not expired, and not left
    /// by a process of this machine that no longer runs.
    fn holds(&self, now: DateTime<Utc>) -> bool {
        self.expires_at > now && !self.died_here()
    }

    fn died_here(&self) -> bool {
        match (&self.host, self.pid) {
            (Some(host), Some(pid)) => {
                *host == this_host() && pid != std::process::id() && !process_alive(pid)
            }
            _ => false,
        }
    }

    /// Whether `other` is the same grant: the same job's entry under the
    /// same generation.
    fn same_grant(&self, other: &Holder) -> bool {
        self.id == other.id && self.generation == other.generation
    }
}

/// The lease object's body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct State {
    /// Incremented by every grant.
    generation: u64,
    holders: Vec<Holder>,
    /// Commit records (keys in the lake) that passed the fence and whose
    /// files may not all be in place yet: the next job finishes them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    commits: Vec<String>,
}

impl State {
    /// The entries still live at `now`.
    fn live(&self, now: DateTime<Utc>) -> impl Iterator<Item = &Holder> {
        self.holders.iter().filter(move |h| h.holds(now))
    }

    /// A live holder that keeps `job` claiming `claim` out, if any.
    fn blocker(&self, job: &str, claim: Claim, now: DateTime<Utc>) -> Option<&Holder> {
        self.live(now)
            .find(|h| claim.blocked_by(job, &h.claim(), &h.job))
    }

    /// `holder`'s live entry under its generation, if it still holds.
    fn entry(&self, holder: &Holder, now: DateTime<Utc>) -> Option<&Holder> {
        self.live(now).find(|h| h.same_grant(holder))
    }
}

/// A held lease. Drop it with [`Lease::release`]; a holder that dies
/// without releasing holds until its entry expires.
#[derive(Debug)]
pub struct Lease {
    store: Arc<Store>,
    ttl: Duration,
    holder: Holder,
}

impl Lease {
    /// Takes the lease of the lake in `store` for `claim`, for `ttl`, or is
    /// refused with [`Error::Locked`] naming a live holder that keeps it
    /// out.
    pub fn acquire(
        store: &Arc<Store>,
        id: &str,
        job: &str,
        claim: Claim,
        ttl: Duration,
        clock: &dyn Clock,
    ) -> Result<Lease> {
        let ttl_chrono = chrono_ttl(ttl);
        let mut granted = None;
        change(store, |state| {
            let now = clock.now();
            if let Some(blocker) = state.blocker(job, claim, now) {
                return Err(locked(store, blocker));
            }
            state.holders.retain(|h| h.holds(now));
            state.generation += 1;
            let holder = Holder {
                id: id.to_string(),
                job: job.to_string(),
                mode: claim.mode,
                generation: state.generation,
                expires_at: now + ttl_chrono,
                host: Some(this_host()),
                pid: Some(std::process::id()),
                shard: (!claim.shard.is_all()).then_some(claim.shard),
                date: claim.date,
            };
            state.holders.push(holder.clone());
            granted = Some(holder);
            Ok(true)
        })?;
        let holder = granted.expect("a successful change granted the lease");
        Ok(Lease {
            store: store.clone(),
            ttl,
            holder,
        })
    }

    /// What this lease holds.
    pub fn holder(&self) -> &Holder {
        &self.holder
    }

    /// Extends the lease to `ttl` from now; an error if it was lost (it
    /// expired and another job took it over, or its entry is gone).
    pub fn renew(&mut self, clock: &dyn Clock) -> Result<()> {
        let ttl = chrono_ttl(self.ttl);
        let mut renewed = None;
        change(&self.store, |state| {
            let now = clock.now();
            let Some(entry) = (state.holders.iter_mut())
                .find(|h| h.same_grant(&self.holder) && h.expires_at > now)
            else {
                return Err(lost(&self.store, &self.holder));
            };
            entry.expires_at = now + ttl;
            renewed = Some(entry.expires_at);
            Ok(true)
        })?;
        self.holder.expires_at = renewed.expect("a successful change renewed the lease");
        Ok(())
    }

    /// Proves, from the lease object as it is now, that this lease still
    /// holds with at least `margin` left, and returns its generation (what
    /// a commit record names). A holder that fails must not commit.
    pub fn fence(&self, clock: &dyn Clock, margin: Duration) -> Result<u64> {
        let (state, _) = read(&self.store)?;
        self.check(&state, clock.now(), margin)?;
        Ok(self.holder.generation)
    }

    /// The commit point of a lake in object storage: records `record` (the
    /// key of a commit record already written) as committed, in the same
    /// conditional write that proves this lease still holds with `margin`
    /// left. A holder that lost the lease, even between its last read and
    /// this write, cannot: its record is never applied.
    pub fn commit(&self, clock: &dyn Clock, margin: Duration, record: &str) -> Result<u64> {
        change(&self.store, |state| {
            self.check(state, clock.now(), margin)?;
            state.commits.push(record.to_string());
            Ok(true)
        })?;
        Ok(self.holder.generation)
    }

    fn check(&self, state: &State, now: DateTime<Utc>, margin: Duration) -> Result<()> {
        let Some(entry) = state.entry(&self.holder, now) else {
            return Err(lost(&self.store, &self.holder));
        };
        if entry.expires_at - now < chrono_ttl(margin) {
            return Err(Error::Lake {
                path: PathBuf::from(self.store.object_url(LEASE_KEY)),
                message: format!(
                    "the lease of {} ({}) expires at {}, too soon to commit safely: renew it first",
                    self.holder.job, self.holder.id, entry.expires_at
                ),
            });
        }
        Ok(())
    }

    /// Gives the lease up. Releasing a lease that was already lost changes
    /// nothing (another holder's entry is never touched).
    pub fn release(self) -> Result<()> {
        change(&self.store, |state| {
            let before = state.holders.len();
            state.holders.retain(|h| !h.same_grant(&self.holder));
            Ok(state.holders.len() != before)
        })
    }
}

/// The commit records that passed the fence and may not be applied in
/// full yet (see [`Lease::commit`]).
pub fn pending_commits(store: &Store) -> Result<Vec<String>> {
    Ok(read(store)?.0.commits)
}

/// The live holders of the lease at `now`.
pub fn holders(store: &Store, now: DateTime<Utc>) -> Result<Vec<Holder>> {
    Ok(read(store)?.0.live(now).cloned().collect())
}

/// Forgets a commit record once every file it names is in place.
pub fn settle(store: &Store, record: &str) -> Result<()> {
    change(store, |state| {
        let before = state.commits.len();
        state.commits.retain(|r| r != record);
        Ok(state.commits.len() != before)
    })
}

/// This machine's name, as holders record it.
fn this_host() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `buf.len()` bytes into `buf`.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return String::new();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// Whether a process with this id runs on this machine.
pub(crate) fn process_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: kill with signal 0 only checks that the process exists.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// Reads the lease object (an empty state when there is none).
fn read(store: &Store) -> Result<(State, Option<Version>)> {
    let Some((bytes, version)) = store.get_versioned(LEASE_KEY)? else {
        return Ok((State::default(), None));
    };
    let state = serde_json::from_slice(&bytes).map_err(|e| Error::Lake {
        path: PathBuf::from(store.object_url(LEASE_KEY)),
        message: format!(
            "the lease object is not valid JSON ({e}): if no job is running, delete it and run again"
        ),
    })?;
    Ok((state, Some(version)))
}

/// Reads the lease, lets `decide` change it (`Ok(false)`: nothing to
/// write), and writes it back only if nobody changed it in between;
/// otherwise reads and decides again.
fn change(store: &Store, mut decide: impl FnMut(&mut State) -> Result<bool>) -> Result<()> {
    for attempt in 0..ATTEMPTS {
        let (mut state, version) = read(store)?;
        if !decide(&mut state)? {
            return Ok(());
        }
        let bytes = serde_json::to_vec_pretty(&state).expect("the lease serializes");
        let written = match &version {
            None => store.put_if_absent(LEASE_KEY, bytes)?,
            Some(version) => store.put_if_version(LEASE_KEY, bytes, version)?,
        };
        match written {
            Conditional::Written(_) => return Ok(()),
            // Another job changed the lease: back off a little, then read
            // and decide again.
            Conditional::Conflict => {
                std::thread::sleep(Duration::from_millis(1 + u64::from(attempt % 8) * 3));
            }
        }
    }
    Err(Error::Lake {
        path: PathBuf::from(store.object_url(LEASE_KEY)),
        message: format!(
            "the lease changed under every one of {ATTEMPTS} attempts to update it: too many jobs are starting at once; run again"
        ),
    })
}

fn locked(store: &Store, holder: &Holder) -> Error {
    let mode = match holder.mode {
        Mode::Shared => "shared",
        Mode::Exclusive => "exclusive",
    };
    Error::Locked {
        path: PathBuf::from(store.url()),
        holder: match holder.claim().to_string() {
            part if part.is_empty() => format!(
                "{} {} ({mode}, until {})",
                holder.job, holder.id, holder.expires_at
            ),
            part => format!(
                "{} {} ({mode}, {part}, until {})",
                holder.job, holder.id, holder.expires_at
            ),
        },
    }
}

fn lost(store: &Store, holder: &Holder) -> Error {
    Error::Lake {
        path: PathBuf::from(store.object_url(LEASE_KEY)),
        message: format!(
            "the lease of {} ({}, generation {}) was lost: it expired and another job took the lake over; nothing more is committed under it",
            holder.job, holder.id, holder.generation
        ),
    }
}

fn chrono_ttl(ttl: Duration) -> chrono::Duration {
    chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use proptest::prelude::*;

    use super::*;
    use crate::model::ctx::ManualClock;

    fn clock() -> ManualClock {
        ManualClock::new(Utc.with_ymd_and_hms(2026, 12, 5, 2, 0, 0).unwrap())
    }

    /// Moves `clock` on by `secs` seconds.
    fn wait(clock: &ManualClock, secs: i64) {
        clock.advance(chrono::Duration::seconds(secs));
    }

    const TTL: Duration = Duration::from_secs(60);
    const MARGIN: Duration = Duration::from_secs(10);

    fn take(store: &Arc<Store>, id: &str, mode: Mode, clock: &ManualClock) -> Result<Lease> {
        let claim = match mode {
            Mode::Exclusive => Claim::EXCLUSIVE,
            Mode::Shared => Claim::shard(Shard::ALL),
        };
        Lease::acquire(store, id, id, claim, TTL, clock)
    }

    fn state(store: &Store) -> State {
        read(store).unwrap().0
    }

    #[test]
    fn an_exclusive_holder_keeps_everyone_out() {
        let store = Arc::new(Store::in_memory().unwrap());
        let clock = clock();
        let erase = take(&store, "erase", Mode::Exclusive, &clock).unwrap();
        for mode in [Mode::Exclusive, Mode::Shared] {
            let err = take(&store, "other", mode, &clock).unwrap_err();
            let Error::Locked { path, holder } = &err else {
                panic!("{err}");
            };
            assert_eq!(path, &PathBuf::from("memory://"));
            assert_eq!(
                holder,
                "erase erase (exclusive, until 2026-12-05 02:01:00 UTC)"
            );
        }
        erase.release().unwrap();
        take(&store, "compact", Mode::Exclusive, &clock).unwrap();
    }

    #[test]
    fn shared_holders_run_side_by_side_and_keep_exclusive_jobs_out() {
        let store = Arc::new(Store::in_memory().unwrap());
        let clock = clock();
        let shared = |id: &str, index| {
            let shard = Shard { index, count: 2 };
            Lease::acquire(&store, id, "ingest", Claim::shard(shard), TTL, &clock)
        };
        let a = shared("ingest-0", 0).unwrap();
        let b = shared("ingest-1", 1).unwrap();
        assert_eq!((a.holder().generation, b.holder().generation), (1, 2));
        let err = take(&store, "erase", Mode::Exclusive, &clock).unwrap_err();
        assert!(matches!(err, Error::Locked { .. }), "{err}");
        a.release().unwrap();
        let err = take(&store, "erase", Mode::Exclusive, &clock).unwrap_err();
        assert!(err.to_string().contains("ingest-1"), "{err}");
        b.release().unwrap();
        assert!(state(&store).holders.is_empty());
        take(&store, "erase", Mode::Exclusive, &clock).unwrap();
    }

    #[test]
    fn rollups_of_different_dates_run_side_by_side_and_one_of_the_same_date_is_refused() {
        let store = Arc::new(Store::in_memory().unwrap());
        let clock = clock();
        let day = |d: u32| NaiveDate::from_ymd_opt(2026, 11, d).unwrap();
        let rollup =
            |id: &str, d| Lease::acquire(&store, id, "rollup", Claim::date(day(d)), TTL, &clock);
        let a = rollup("a", 3).unwrap();
        let b = rollup("b", 4).unwrap();
        assert_eq!(state(&store).holders[0].date, Some(day(3)));
        let err = rollup("c", 4).unwrap_err();
        assert!(matches!(err, Error::Locked { .. }), "{err}");
        assert!(err.to_string().contains("date 2026-11-04"), "{err}");
        // A month's rollup, an ingest and an erasure wait for both.
        for (job, claim) in [
            ("rollup", Claim::EXCLUSIVE),
            ("ingest", Claim::shard(Shard::ALL)),
            ("erase", Claim::EXCLUSIVE),
        ] {
            let err = Lease::acquire(&store, "x", job, claim, TTL, &clock).unwrap_err();
            assert!(matches!(err, Error::Locked { .. }), "{job}: {err}");
        }
        b.release().unwrap();
        rollup("c", 4).unwrap();
        a.release().unwrap();
    }

    #[test]
    fn claims_overlap_when_both_their_shards_and_their_dates_do() {
        let day = |d: u32| Some(NaiveDate::from_ymd_opt(2026, 11, d).unwrap());
        let claim = |index, count, date| Claim {
            mode: Mode::Shared,
            shard: Shard { index, count },
            date,
        };
        assert!(claim(0, 2, day(3)).overlaps(&claim(0, 2, day(3))));
        assert!(claim(0, 2, None).overlaps(&claim(0, 2, day(3))));
        assert!(claim(0, 1, day(3)).overlaps(&claim(1, 2, None)));
        assert!(!claim(0, 2, day(3)).overlaps(&claim(1, 2, day(3))));
        assert!(!claim(0, 1, day(3)).overlaps(&claim(0, 1, day(4))));
        for a in [claim(0, 2, day(3)), claim(1, 2, None), claim(0, 1, day(4))] {
            for b in [claim(0, 2, day(3)), claim(1, 2, None), claim(0, 1, day(4))] {
                assert_eq!(a.overlaps(&b), b.overlaps(&a), "{a:?} {b:?}");
                assert!(Claim::EXCLUSIVE.blocked_by("x", &a, "x"));
                assert!(a.blocked_by("ingest", &b, "rollup"));
                assert_eq!(a.blocked_by("x", &b, "x"), a.overlaps(&b));
            }
        }
    }

    #[test]
    fn shards_of_one_split_run_side_by_side_and_overlapping_ones_are_refused() {
        let store = Arc::new(Store::in_memory().unwrap());
        let clock = clock();
        let shard = |i, n| Shard { index: i, count: n };
        let ingest =
            |id: &str, s: Shard| Lease::acquire(&store, id, "ingest", Claim::shard(s), TTL, &clock);
        let a = ingest("a", shard(0, 2)).unwrap();
        let b = ingest("b", shard(1, 2)).unwrap();
        for (id, s) in [("c", shard(1, 2)), ("d", shard(0, 4)), ("e", Shard::ALL)] {
            let err = ingest(id, s).unwrap_err();
            assert!(matches!(err, Error::Locked { .. }), "{id}: {err}");
            assert!(err.to_string().contains("ingest"), "{err}");
        }
        // Another job's shared holder is another kind of work: refused too.
        let other = Lease::acquire(
            &store,
            "r",
            "rollup",
            Claim::shard(shard(1, 2)),
            TTL,
            &clock,
        );
        assert!(other.is_err());
        b.release().unwrap();
        let c = ingest("c", shard(1, 2)).unwrap();
        assert_eq!(state(&store).holders[1].shard, Some(shard(1, 2)));
        a.release().unwrap();
        c.release().unwrap();
        ingest("e", Shard::ALL).unwrap();
    }

    #[test]
    fn a_stalled_holder_is_taken_over_after_expiry_and_cannot_commit_or_renew() {
        let store = Arc::new(Store::in_memory().unwrap());
        let clock = clock();
        let mut stalled = take(&store, "compact", Mode::Exclusive, &clock).unwrap();
        assert_eq!(stalled.fence(&clock, MARGIN).unwrap(), 1);
        wait(&clock, 59);
        assert!(take(&store, "erase", Mode::Exclusive, &clock).is_err());
        wait(&clock, 2);
        let erase = take(&store, "erase", Mode::Exclusive, &clock).unwrap();
        assert_eq!(erase.holder().generation, 2);
        let err = stalled.fence(&clock, MARGIN).unwrap_err();
        assert!(err.to_string().contains("was lost"), "{err}");
        assert!(stalled.renew(&clock).is_err());
        // Its release leaves the new holder's entry alone.
        stalled.release().unwrap();
        assert_eq!(state(&store).holders, vec![erase.holder().clone()]);
        assert_eq!(erase.fence(&clock, MARGIN).unwrap(), 2);
    }

    #[test]
    fn a_commit_point_is_refused_to_a_holder_taken_over_and_recorded_for_one_that_holds() {
        let store = Arc::new(Store::in_memory().unwrap());
        let clock = clock();
        let stalled = take(&store, "compact", Mode::Exclusive, &clock).unwrap();
        assert_eq!(
            stalled.commit(&clock, MARGIN, "_commits/a.json").unwrap(),
            1
        );
        assert_eq!(pending_commits(&store).unwrap(), ["_commits/a.json"]);
        settle(&store, "_commits/a.json").unwrap();
        assert!(pending_commits(&store).unwrap().is_empty());
        // Too close to its expiry: refused, nothing recorded.
        wait(&clock, 55);
        assert!(stalled.commit(&clock, MARGIN, "_commits/b.json").is_err());
        // Taken over after expiry: its late commit is refused.
        wait(&clock, 10);
        let erase = take(&store, "erase", Mode::Exclusive, &clock).unwrap();
        let err = stalled
            .commit(&clock, MARGIN, "_commits/c.json")
            .unwrap_err();
        assert!(err.to_string().contains("was lost"), "{err}");
        assert!(pending_commits(&store).unwrap().is_empty());
        assert_eq!(erase.commit(&clock, MARGIN, "_commits/d.json").unwrap(), 2);
        assert_eq!(pending_commits(&store).unwrap(), ["_commits/d.json"]);
    }

    #[test]
    fn renewing_keeps_the_lease_and_the_fence_wants_a_margin() {
        let store = Arc::new(Store::in_memory().unwrap());
        let clock = clock();
        let mut lease = take(&store, "ingest", Mode::Shared, &clock).unwrap();
        wait(&clock, 45);
        lease.renew(&clock).unwrap();
        wait(&clock, 45);
        // 90 s after it was taken, 15 s before the renewed expiry.
        assert!(take(&store, "erase", Mode::Exclusive, &clock).is_err());
        assert_eq!(lease.fence(&clock, MARGIN).unwrap(), 1);
        wait(&clock, 6);
        let err = lease.fence(&clock, MARGIN).unwrap_err();
        assert!(err.to_string().contains("too soon to commit"), "{err}");
        lease.renew(&clock).unwrap();
        assert_eq!(lease.fence(&clock, MARGIN).unwrap(), 1);
    }

    #[test]
    fn racing_jobs_get_one_exclusive_lease() {
        let store = Arc::new(Store::in_memory().unwrap());
        let clock = clock();
        let start = std::sync::Barrier::new(8);
        let won: Vec<bool> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|i| {
                    let (store, clock, start) = (&store, &clock, &start);
                    s.spawn(move || {
                        let id = format!("job-{i}");
                        start.wait();
                        match Lease::acquire(store, &id, "erase", Claim::EXCLUSIVE, TTL, clock) {
                            Ok(lease) => {
                                // Hold it, so that nobody after us wins.
                                std::mem::forget(lease);
                                true
                            }
                            Err(Error::Locked { .. }) => false,
                            Err(e) => panic!("{e}"),
                        }
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(won.iter().filter(|w| **w).count(), 1, "{won:?}");
        assert_eq!(state(&store).holders.len(), 1);
    }

    #[test]
    fn a_change_between_a_read_and_its_write_is_read_again_not_overwritten() {
        let store = Arc::new(Store::in_memory().unwrap());
        let clock = clock();
        let mut reads = 0;
        let err = change(&store, |state| {
            reads += 1;
            if reads == 1 {
                // Another job takes the lease after this read, before the
                // write below.
                std::mem::forget(take(&store, "other", Mode::Exclusive, &clock).unwrap());
            }
            if let Some(blocker) = state.blocker("erase", Claim::EXCLUSIVE, clock.now()) {
                return Err(locked(&store, blocker));
            }
            state.generation += 1;
            Ok(true)
        })
        .unwrap_err();
        assert_eq!(reads, 2);
        assert!(err.to_string().contains("other"), "{err}");
        assert_eq!(state(&store).holders.len(), 1);
    }

    #[test]
    fn a_corrupt_lease_object_is_an_error_naming_it() {
        let store = Arc::new(Store::in_memory().unwrap());
        let clock = clock();
        store.put(LEASE_KEY, b"{not json".to_vec()).unwrap();
        let err = take(&store, "erase", Mode::Exclusive, &clock).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("memory://_lease.json"), "{text}");
    }

    #[derive(Debug, Clone)]
    enum Op {
        Take(usize, Mode),
        Renew(usize),
        Release(usize),
        Wait(i64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (
                0..4usize,
                prop_oneof![Just(Mode::Shared), Just(Mode::Exclusive)]
            )
                .prop_map(|(j, m)| Op::Take(j, m)),
            (0..4usize).prop_map(Op::Renew),
            (0..4usize).prop_map(Op::Release),
            (1..40i64).prop_map(Op::Wait),
        ]
    }

    proptest! {
        /// Whatever four jobs do, in any order and at any pace: at no
        /// moment do two jobs pass the fence unless both are shared, and a
        /// job passes the fence only while it is the holder of record.
        #[test]
        fn never_an_exclusive_holder_beside_another(ops in prop::collection::vec(op(), 1..60)) {
            let store = Arc::new(Store::in_memory().unwrap());
            let clock = clock();
            let mut leases: Vec<Option<Lease>> = (0..4).map(|_| None).collect();
            for op in ops {
                match op {
                    Op::Take(j, mode) => {
                        if leases[j].is_none() {
                            leases[j] = take(&store, &format!("job-{j}"), mode, &clock).ok();
                        }
                    }
                    Op::Renew(j) => {
                        if let Some(lease) = leases[j].as_mut() && lease.renew(&clock).is_err() {
                            leases[j] = None;
                        }
                    }
                    Op::Release(j) => {
                        if let Some(lease) = leases[j].take() {
                            lease.release().unwrap();
                        }
                    }
                    Op::Wait(secs) => wait(&clock, secs),
                }
                let fenced: Vec<Mode> = leases
                    .iter()
                    .flatten()
                    .filter(|l| l.fence(&clock, Duration::ZERO).is_ok())
                    .map(|l| l.holder().mode)
                    .collect();
                prop_assert!(
                    fenced.len() <= 1 || fenced.iter().all(|m| *m == Mode::Shared),
                    "{fenced:?}"
                );
            }
        }
    }
}
