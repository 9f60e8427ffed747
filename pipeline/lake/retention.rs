//! The retention stage: deletes the dated partitions of raw events, rejects
//! and priced events that are older than N whole months before the current
//! month, in one journaled lake commit (an interrupted run is finished by the
//! next open of the lake).
//!
//! ```text
//! deleted when dated before the cutoff:
//!   <lake>/<table>/date=YYYY-MM-DD/          api_usage, api_requests, resource_usage, activity, rejects
//!   <lake>/priced/<table>/date=YYYY-MM-DD/
//! kept:
//!   <lake>/daily/..., <lake>/monthly/...     the aggregates billing reads
//!   <lake>/_registry, _runs, _stripe, _lake.json, and anything that is not a
//!   `date=YYYY-MM-DD` directory of the tables above
//! ```
//! With `keep_months = 36` on 2026-11-22 the cutoff is 2023-11-01: every
//! partition dated 2023-10-31 or earlier goes. The out store (invoices,
//! manifests) is never touched.

use std::path::PathBuf;

use chrono::{Datelike, Months, NaiveDate};
use serde::Serialize;

use crate::lake::tables::Table;
use crate::lake::{Commit, Lake, idindex};
use crate::model::ctx::Ctx;
use crate::model::error::{Error, Result};

/// Whole months kept before the current one when `--keep-months` is not given.
pub const DEFAULT_KEEP_MONTHS: u32 = 36;

/// Where derived per-event tables (`priced/api_usage`, ...) live.
const PRICED: &str = "priced";
/// Aggregate roots, kept and counted.
const AGGREGATES: [&str; 2] = ["daily", "monthly"];

#[derive(Debug, Clone)]
pub struct RetentionOptions {
    pub lake: PathBuf,
    /// Whole months kept before the current one (at least 1).
    pub keep_months: u32,
    /// List what would be deleted; delete nothing.
    pub dry_run: bool,
}

/// What one table lost (or would lose, on a dry run) and kept.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TableRetention {
    /// The table's directory under the lake: `api_usage`, `rejects`,
    /// `priced/api_usage`.
    pub table: String,
    pub partitions_deleted: u64,
    pub files_deleted: u64,
    pub bytes_deleted: u64,
    /// The oldest and newest date deleted.
    pub first_date: Option<NaiveDate>,
    pub last_date: Option<NaiveDate>,
    /// Partitions dated on or after the cutoff.
    pub partitions_kept: u64,
}

/// The partitions of one aggregate table, all kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeptAggregates {
    /// `daily/api_usage`, `monthly/activity`, ...
    pub table: String,
    pub partitions: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct RetentionReport {
    pub job: &'static str,
    pub run_id: String,
    pub started_at: String,
    pub finished_at: String,
    pub lake: String,
    pub keep_months: u32,
    /// Partitions dated before this day are deleted.
    pub cutoff: NaiveDate,
    /// Nothing was deleted: the counts say what would have been.
    pub dry_run: bool,
    pub partitions_deleted: u64,
    pub files_deleted: u64,
    pub bytes_deleted: u64,
    pub tables: Vec<TableRetention>,
    pub aggregates_kept: Vec<KeptAggregates>,
    /// Every partition directory deleted (or that would be), relative to
    /// the lake, sorted.
    pub partitions: Vec<String>,
    pub attention: Vec<String>,
}

crate::model::report::stage_report!(RetentionReport);

impl RetentionReport {
    pub fn needs_attention(&self) -> bool {
        !self.attention.is_empty()
    }

    /// Aggregate partitions kept, all tables.
    pub fn aggregates_kept_total(&self) -> u64 {
        self.aggregates_kept.iter().map(|a| a.partitions).sum()
    }

    pub fn summary(&self) -> String {
        let verb = if self.dry_run {
            "would delete"
        } else {
            "deleted"
        };
        let mut s = format!(
            "retention {} keep {} months (before {}){}: {verb} {} partitions, {} files, {}\n",
            self.run_id,
            self.keep_months,
            self.cutoff,
            if self.dry_run { ", dry run" } else { "" },
            self.partitions_deleted,
            self.files_deleted,
            crate::model::report::human_bytes(self.bytes_deleted)
        );
        for t in &self.tables {
            if t.partitions_deleted == 0 && t.partitions_kept == 0 {
                continue;
            }
            let range = match (t.first_date, t.last_date) {
                (Some(a), Some(b)) => format!("  {a}..{b}"),
                _ => String::new(),
            };
            s.push_str(&format!(
                "  {:<24} {:>6} partitions {:>8} files {:>10}  kept {:>6}{range}\n",
                t.table,
                t.partitions_deleted,
                t.files_deleted,
                crate::model::report::human_bytes(t.bytes_deleted),
                t.partitions_kept
            ));
        }
        s.push_str(&format!(
            "  aggregates kept: {} partitions\n",
            self.aggregates_kept_total()
        ));
        for a in &self.attention {
            s.push_str(&format!("  attention: {a}\n"));
        }
        s
    }
}

/// The first day that is kept: the first of the month `keep_months` months
/// before `today`'s month. `keep_months = 0` would delete the current month
/// and is refused.
pub fn cutoff(today: NaiveDate, keep_months: u32) -> Result<NaiveDate> {
    if keep_months == 0 {
        return Err(Error::Usage(
            "--keep-months 0 would delete the current month: keep at least 1".into(),
        ));
    }
    today
        .with_day(1)
        .expect("day 1 exists")
        .checked_sub_months(Months::new(keep_months))
        .ok_or_else(|| {
            Error::Usage(format!(
                "--keep-months {keep_months} reaches before the first representable date"
            ))
        })
}

/// One `date=YYYY-MM-DD` directory and what it holds.
#[derive(Debug)]
struct Partition {
    rel: String,
    dir: PathBuf,
    /// Files (anything but a directory) and their sizes.
    files: Vec<(PathBuf, u64)>,
    /// Directories inside the partition: not ours to delete.
    subdirs: Vec<PathBuf>,
}

/// The tables retention applies to, as directories under the lake: the
/// lake's tables, then every `priced/<table>`.
fn retained_tables(lake: &Lake) -> Result<Vec<String>> {
    let mut out: Vec<String> = Table::ALL.iter().map(|t| t.name().to_string()).collect();
    out.extend(
        lake.dirs_in(&lake.root().join(PRICED))?
            .into_iter()
            .map(|name| format!("{PRICED}/{name}")),
    );
    Ok(out)
}

fn read_partition(lake: &Lake, rel: &str, date: NaiveDate) -> Result<Partition> {
    let dir = lake.dated_dir(rel, date);
    let files = lake.sized_files_in(&dir)?;
    let subdirs = lake
        .dirs_in(&dir)?
        .into_iter()
        .map(|name| dir.join(name))
        .collect();
    Ok(Partition {
        rel: format!("{rel}/date={date}"),
        dir,
        files,
        subdirs,
    })
}

/// Runs the stage: takes the lake lock, deletes (or lists, on a dry run)
/// the partitions dated before the cutoff and writes the run report.
pub fn run(ctx: &Ctx, opts: &RetentionOptions) -> Result<RetentionReport> {
    let started_at = ctx.clock.now();
    let cutoff = cutoff(started_at.date_naive(), opts.keep_months)?;
    Lake::require(&opts.lake)?;
    let lake = Lake::open(&opts.lake, &ctx.run_id)?;
    let root = lake.root().to_path_buf();
    let mut report = RetentionReport {
        job: "retention",
        run_id: ctx.run_id.clone(),
        started_at: started_at.to_rfc3339(),
        finished_at: String::new(),
        lake: opts.lake.display().to_string(),
        keep_months: opts.keep_months,
        cutoff,
        dry_run: opts.dry_run,
        partitions_deleted: 0,
        files_deleted: 0,
        bytes_deleted: 0,
        tables: Vec::new(),
        aggregates_kept: Vec::new(),
        partitions: Vec::new(),
        attention: Vec::new(),
    };

    let mut doomed: Vec<Partition> = Vec::new();
    for rel in retained_tables(&lake)? {
        let mut t = TableRetention {
            table: rel.clone(),
            ..Default::default()
        };
        // Event dates deleted without a daily aggregate: never rolled up.
        let mut unaggregated: Vec<NaiveDate> = Vec::new();
        let is_event_table = Table::EVENTS.iter().any(|e| e.name() == rel);
        for date in lake.dates_under(&rel)? {
            if date >= cutoff {
                t.partitions_kept += 1;
                continue;
            }
            let p = read_partition(&lake, &rel, date)?;
            t.partitions_deleted += 1;
            // Data files; their id indexes go with them.
            t.files_deleted += p
                .files
                .iter()
                .filter(|(f, _)| f.extension().is_none_or(|e| e != idindex::EXT))
                .count() as u64;
            t.bytes_deleted += p.files.iter().map(|(_, n)| n).sum::<u64>();
            t.first_date = Some(t.first_date.map_or(date, |d| d.min(date)));
            t.last_date = Some(t.last_date.map_or(date, |d| d.max(date)));
            if is_event_table
                && !p.files.is_empty()
                && lake
                    .parquet_files(&lake.dated_dir(&format!("daily/{rel}"), date))?
                    .is_empty()
            {
                unaggregated.push(date);
            }
            for sub in &p.subdirs {
                report.attention.push(format!(
                    "{} holds a directory retention does not delete ({}): remove it by hand",
                    p.rel,
                    sub.display()
                ));
            }
            doomed.push(p);
        }
        if let (Some(first), Some(last)) = (unaggregated.first(), unaggregated.last()) {
            let n = unaggregated.len();
            report.attention.push(if opts.dry_run {
                format!(
                    "{rel}: {n} partition(s) to delete, from {first} to {last}, have no daily \
                     aggregate (never rolled up): roll those months up first if their usage matters"
                )
            } else {
                format!(
                    "{rel}: {n} deleted partition(s), from {first} to {last}, had no daily \
                     aggregate (never rolled up): their usage is no longer in the lake"
                )
            });
        }
        report.partitions_deleted += t.partitions_deleted;
        report.files_deleted += t.files_deleted;
        report.bytes_deleted += t.bytes_deleted;
        report.tables.push(t);
    }
    report.partitions = doomed.iter().map(|p| p.rel.clone()).collect();
    report.partitions.sort();

    if !opts.dry_run {
        let commit = Commit {
            renames: Vec::new(),
            deletes: doomed
                .iter()
                .flat_map(|p| p.files.iter().map(|(f, _)| f.clone()))
                .collect(),
        };
        // Journaled: a crash in here is finished by the next `Lake::open`,
        // and the commit removes the partition directories it empties.
        lake.commit(&ctx.run_id, &commit)?;
        for p in &doomed {
            // A partition left empty (a recovered commit does not remove
            // directories) goes too; one that still holds something stays.
            if !lake.remove_empty_dir(&p.dir) && p.subdirs.is_empty() {
                report.attention.push(format!(
                    "{}: the partition directory could not be removed after its files were deleted",
                    p.rel
                ));
            }
        }
    }

    for kind in AGGREGATES {
        for name in lake.dirs_in(&root.join(kind))? {
            let rel = format!("{kind}/{name}");
            let n = lake
                .dirs_in(&root.join(&rel))?
                .iter()
                .filter(|d| d.starts_with("date=") || d.starts_with("month="))
                .count();
            report.aggregates_kept.push(KeptAggregates {
                table: rel,
                partitions: n as u64,
            });
        }
    }

    report.finished_at = ctx.clock.now().to_rfc3339();
    lake.write_report(
        &ctx.run_id,
        &serde_json::to_string_pretty(&report).expect("the report serializes"),
    )?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::path::Path;
    use std::sync::Arc;

    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::model::ctx::FixedClock;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn cutoff_is_the_first_of_the_month_n_months_back() {
        assert_eq!(cutoff(d("2026-11-22"), 36).unwrap(), d("2023-11-01"));
        assert_eq!(cutoff(d("2026-11-01"), 36).unwrap(), d("2023-11-01"));
        assert_eq!(cutoff(d("2026-11-30"), 36).unwrap(), d("2023-11-01"));
    }

    #[test]
    fn cutoff_crosses_the_year_in_january() {
        assert_eq!(cutoff(d("2026-01-15"), 1).unwrap(), d("2025-12-01"));
        assert_eq!(cutoff(d("2026-01-01"), 1).unwrap(), d("2025-12-01"));
        assert_eq!(cutoff(d("2026-01-31"), 13).unwrap(), d("2024-12-01"));
        assert_eq!(cutoff(d("2026-01-31"), 12).unwrap(), d("2025-01-01"));
    }

    #[test]
    fn one_month_keeps_only_the_previous_month() {
        // Short months and leap days do not shift the cutoff.
        assert_eq!(cutoff(d("2026-03-31"), 1).unwrap(), d("2026-02-01"));
        assert_eq!(cutoff(d("2024-02-29"), 1).unwrap(), d("2024-01-01"));
        assert_eq!(cutoff(d("2024-02-29"), 12).unwrap(), d("2023-02-01"));
        assert_eq!(cutoff(d("2026-12-31"), 1).unwrap(), d("2026-11-01"));
    }

    #[test]
    fn zero_and_absurd_month_counts_are_usage_errors() {
        assert!(matches!(cutoff(d("2026-11-22"), 0), Err(Error::Usage(_))));
        assert!(matches!(
            cutoff(d("2026-11-22"), u32::MAX),
            Err(Error::Usage(_))
        ));
    }

    fn touch(path: &Path, bytes: &[u8]) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, bytes).unwrap();
    }

    fn ctx(run: &str) -> Ctx {
        Ctx::with_run_id(
            Arc::new(FixedClock(
                Utc.with_ymd_and_hms(2026, 11, 22, 3, 0, 0).unwrap(),
            )),
            run,
        )
    }

    /// Retention deletes files without reading them, so placeholder bytes
    /// are enough to check which partitions go at the month boundary.
    #[test]
    fn the_boundary_day_is_kept_and_the_day_before_goes() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        drop(Lake::open(root, "init").unwrap());
        let old = [
            "api_usage/date=2023-10-31/part-a-0000.parquet",
            "rejects/date=2023-10-31/part-a-0000.parquet",
            "priced/api_usage/date=2023-10-31/part-a.parquet",
        ];
        let kept = [
            "api_usage/date=2023-11-01/part-a-0000.parquet",
            "api_usage/date=2023-1-5/part-a-0000.parquet",
            "api_usage/notes.txt",
            "daily/api_usage/date=2023-10-31/part-a.parquet",
            "monthly/api_usage/month=2023-10/part-a.parquet",
            "_registry/customers.csv",
            "_stripe/2023-10.json",
        ];
        for f in old.iter().chain(&kept) {
            touch(&root.join(f), b"12345");
        }
        let opts = RetentionOptions {
            lake: root.to_path_buf(),
            keep_months: 36,
            dry_run: true,
        };
        let dry = run(&ctx("dry"), &opts).unwrap();
        assert_eq!(dry.cutoff, d("2023-11-01"));
        assert_eq!(
            dry.partitions,
            vec![
                "api_usage/date=2023-10-31",
                "priced/api_usage/date=2023-10-31",
                "rejects/date=2023-10-31"
            ]
        );
        assert_eq!((dry.files_deleted, dry.bytes_deleted), (3, 15));
        assert!(old.iter().all(|f| root.join(f).exists()));
        assert!(!dry.needs_attention(), "{:?}", dry.attention);

        let real = run(
            &ctx("real"),
            &RetentionOptions {
                dry_run: false,
                ..opts
            },
        )
        .unwrap();
        assert_eq!(real.partitions, dry.partitions);
        for f in old {
            let dir = root.join(f).parent().unwrap().to_path_buf();
            assert!(!dir.exists(), "{}", dir.display());
        }
        for f in kept {
            assert!(root.join(f).exists(), "{f}");
        }
        assert_eq!(real.aggregates_kept_total(), 2);
        let api = real.tables.iter().find(|t| t.table == "api_usage").unwrap();
        assert_eq!(api.partitions_kept, 1);
        assert!(root.join("_runs/real.json").exists());
    }

    #[test]
    fn deleting_raw_events_that_were_never_rolled_up_needs_attention() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        drop(Lake::open(root, "init").unwrap());
        touch(&root.join("activity/date=2023-01-02/part-a.parquet"), b"x");
        touch(&root.join("activity/date=2023-01-03/part-a.parquet"), b"x");
        touch(
            &root.join("daily/activity/date=2023-01-03/part-a.parquet"),
            b"x",
        );
        let report = run(
            &ctx("r"),
            &RetentionOptions {
                lake: root.to_path_buf(),
                keep_months: 36,
                dry_run: true,
            },
        )
        .unwrap();
        assert!(report.needs_attention());
        assert!(
            report.attention[0]
                .starts_with("activity: 1 partition(s) to delete, from 2023-01-02 to 2023-01-02"),
            "{:?}",
            report.attention
        );
    }

    #[test]
    fn a_directory_that_is_not_a_lake_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let err = run(
            &ctx("r"),
            &RetentionOptions {
                lake: tmp.path().join("typo"),
                keep_months: 36,
                dry_run: true,
            },
        )
        .unwrap_err();
        assert!(matches!(err, Error::NotALake { .. }), "{err}");
        assert!(err.to_string().contains("typo"), "{err}");
        assert!(!tmp.path().join("typo").exists());
    }
}
