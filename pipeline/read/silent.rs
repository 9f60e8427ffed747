//! Silent VMs: a VM that sent events on some day of the week before a date
//! but nothing on the date itself. A silent VM under-bills (its CLIProxy log
//! shipping broke, or it was stopped), so the nightly job names each one.
//!
//! Only the `vm_id` and `customer_id` columns of the raw event tables
//! (`api_usage`, `api_requests`, `resource_usage`, `activity`) are read;
//! rejects do not count as a sign of life.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use arrow::array::Array;
use chrono::{Days, NaiveDate};
use serde::Serialize;

use crate::lake::Lake;
use crate::lake::tables::Table;
use crate::model::error::{Error, Result};

/// Days before the date that count as "the week before".
pub const LOOKBACK_DAYS: u64 = 7;

/// A VM with events in the week before a date and none on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SilentVm {
    pub vm_id: String,
    /// The customer its most recent events were attributed to; empty when
    /// none was.
    pub customer_id: String,
    /// The last day of the week with events.
    pub last_seen: NaiveDate,
    /// Days of the week before with at least one event.
    pub days_seen_last_week: u32,
    /// Events in the week before, all raw tables.
    pub rows_last_week: u64,
}

/// One VM's events on one day.
#[derive(Debug, Default)]
struct DaySeen {
    rows: u64,
    customer_id: Option<String>,
}

/// The VMs with events on `date` and the week before it, and those of the
/// week with none on `date`, sorted by `vm_id`.
pub fn silent_vms(lake: &Lake, date: NaiveDate) -> Result<Vec<SilentVm>> {
    let today = vms_on(lake, date)?;
    let mut week: BTreeMap<String, SilentVm> = BTreeMap::new();
    // Oldest first, so the last day seen and its customer win.
    for back in (1..=LOOKBACK_DAYS).rev() {
        let Some(day) = date.checked_sub_days(Days::new(back)) else {
            continue;
        };
        for (vm_id, seen) in vms_on(lake, day)? {
            if today.contains_key(&vm_id) {
                continue;
            }
            let v = week.entry(vm_id.clone()).or_insert_with(|| SilentVm {
                vm_id,
                customer_id: String::new(),
                last_seen: day,
                days_seen_last_week: 0,
                rows_last_week: 0,
            });
            v.last_seen = day;
            v.days_seen_last_week += 1;
            v.rows_last_week += seen.rows;
            if let Some(c) = seen.customer_id {
                v.customer_id = c;
            }
        }
    }
    Ok(week.into_values().collect())
}

/// A one-line attention message for a silent VM on `date`.
pub fn silent_vms_message(v: &SilentVm, date: NaiveDate) -> String {
    let customer = if v.customer_id.is_empty() {
        "no customer attributed".to_string()
    } else {
        format!("customer {}", v.customer_id)
    };
    format!(
        "silent VM {} ({customer}): no events on {date}, last seen {} ({} events on {} of the {LOOKBACK_DAYS} days before); \
         check the VM's CLIProxy log shipping, or whether the VM was stopped",
        v.vm_id, v.last_seen, v.rows_last_week, v.days_seen_last_week
    )
}

/// Events per VM on `date`, over the raw event tables.
fn vms_on(lake: &Lake, date: NaiveDate) -> Result<HashMap<String, DaySeen>> {
    let mut out: HashMap<String, DaySeen> = HashMap::new();
    for table in Table::EVENTS {
        for path in lake.partition_files(table, date)? {
            read_vms(lake, &path, &mut out)?;
        }
    }
    Ok(out)
}

/// Adds one Parquet file's `vm_id` (and `customer_id`) column to `out`.
fn read_vms(lake: &Lake, path: &Path, out: &mut HashMap<String, DaySeen>) -> Result<()> {
    lake.read_text_columns(path, &["vm_id", "customer_id"], |cols| {
        let vms = cols[0].ok_or_else(|| Error::Lake {
            path: path.to_path_buf(),
            message: "no vm_id column".into(),
        })?;
        let customers = cols[1];
        for i in 0..vms.len() {
            if !vms.is_valid(i) {
                continue;
            }
            let vm = vms.value(i);
            let seen = match out.get_mut(vm) {
                Some(s) => s,
                None => out.entry(vm.to_string()).or_default(),
            };
            seen.rows += 1;
            if seen.customer_id.is_none()
                && let Some(c) = customers.filter(|c| c.is_valid(i)).map(|c| c.value(i))
                && !c.is_empty()
            {
                seen.customer_id = Some(c.to_string());
            }
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use std::fmt::Write as _;
    use std::sync::Arc;

    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::ingest::{self, IngestOptions};
    use crate::model::ctx::{Ctx, FixedClock};

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn usage_line(day: NaiveDate, n: u32) -> String {
        format!(
            "{{\"timestamp\":\"{day}T10:{n:02}:00Z\",\"model\":\"gpt-4o\",\"provider\":\"openai\",\"input_tokens\":{n},\"output_tokens\":2}}\n"
        )
    }

    /// A raw tree for 2026-10-01..=2026-10-10, ingested:
    /// - vm-a (c1) sends every day;
    /// - vm-b (c1) sends every day but 10-05 and 10-10, plus one command on 10-08;
    /// - vm-c (registered to nobody) sends on 10-03 only, the first day of
    ///   10-10's week;
    /// - vm-d (c2) sends on 10-02 only, before 10-10's week;
    /// - vm-new (c2) sends on 10-10 only.
    fn lake() -> (tempfile::TempDir, Lake) {
        let tmp = tempfile::tempdir().unwrap();
        let input = tmp.path().join("input");
        let days: Vec<NaiveDate> = d("2026-10-01").iter_days().take(10).collect();
        let sends: [(&str, Vec<NaiveDate>); 5] = [
            ("vm-a", days.clone()),
            (
                "vm-b",
                days.iter()
                    .copied()
                    .filter(|d| ![5, 10].contains(&chrono::Datelike::day(d)))
                    .collect(),
            ),
            ("vm-c", vec![d("2026-10-03")]),
            ("vm-d", vec![d("2026-10-02")]),
            ("vm-new", vec![d("2026-10-10")]),
        ];
        for (vm, dates) in &sends {
            let mut text = String::new();
            for (i, day) in dates.iter().enumerate() {
                text.push_str(&usage_line(*day, i as u32));
            }
            let dir = input.join(vm).join("cliproxy");
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("usage.jsonl"), text).unwrap();
        }
        let commands = input.join("vm-b/commands");
        std::fs::create_dir_all(&commands).unwrap();
        std::fs::write(
            commands.join("history.jsonl"),
            "{\"timestamp\":\"2026-10-08T12:00:00Z\",\"user\":\"deploy\",\"activity_type\":\"command\",\"command\":\"htop\",\"pattern_name\":null,\"duration_seconds\":5.0,\"exit_code\":0}\n",
        )
        .unwrap();
        let mut customers = String::from(
            "customer_id,name,email,tier,vm_ids,currency,stripe_customer_id,status,created_at\n",
        );
        writeln!(
            customers,
            "c1,Acme,a@x,pro,vm-a;vm-b,EUR,cus_1,active,2026-01-01"
        )
        .unwrap();
        writeln!(
            customers,
            "c2,Globex,g@x,pro,vm-d;vm-new,EUR,cus_2,active,2026-01-01"
        )
        .unwrap();
        std::fs::write(input.join("customers.csv"), customers).unwrap();

        let lake_dir = tmp.path().join("lake");
        let ctx = Ctx::with_run_id(
            Arc::new(FixedClock(
                Utc.with_ymd_and_hms(2026, 10, 11, 3, 0, 0).unwrap(),
            )),
            "ingest",
        );
        let report = ingest::run(
            &ctx,
            &IngestOptions {
                input,
                lake: lake_dir.clone(),
                since: None,
                until: None,
                rebuild: false,
                max_reject_rate: 0.01,
                shard: crate::model::shard::Shard::ALL,
            },
        )
        .unwrap();
        assert_eq!(report.totals.rejects, 0, "{}", report.summary());
        assert_eq!(report.totals.rows, 10 + 8 + 1 + 1 + 1 + 1);
        let lake = Lake::open(&lake_dir, "silent").unwrap();
        (tmp, lake)
    }

    #[test]
    fn a_vm_that_stops_sending_is_silent_and_a_new_one_is_not() {
        let (_tmp, lake) = lake();
        let silent = silent_vms(&lake, d("2026-10-10")).unwrap();
        assert_eq!(
            silent,
            vec![
                SilentVm {
                    vm_id: "vm-b".into(),
                    customer_id: "c1".into(),
                    last_seen: d("2026-10-09"),
                    // 10-03..=10-09 without 10-05; the command adds a row.
                    days_seen_last_week: 6,
                    rows_last_week: 7,
                },
                SilentVm {
                    vm_id: "vm-c".into(),
                    customer_id: String::new(),
                    last_seen: d("2026-10-03"),
                    days_seen_last_week: 1,
                    rows_last_week: 1,
                },
            ]
        );
        let message = silent_vms_message(&silent[0], d("2026-10-10"));
        assert_eq!(
            message,
            "silent VM vm-b (customer c1): no events on 2026-10-10, last seen 2026-10-09 \
             (7 events on 6 of the 7 days before); check the VM's CLIProxy log shipping, \
             or whether the VM was stopped"
        );
        assert!(
            silent_vms_message(&silent[1], d("2026-10-10")).contains("(no customer attributed)")
        );
    }

    #[test]
    fn a_day_without_any_data_reports_every_vm_of_the_week() {
        let (_tmp, lake) = lake();
        let silent = silent_vms(&lake, d("2026-10-11")).unwrap();
        let ids: Vec<&str> = silent.iter().map(|v| v.vm_id.as_str()).collect();
        // 10-04..=10-10: vm-c (10-03) and vm-d (10-02) are older than the week.
        assert_eq!(ids, vec!["vm-a", "vm-b", "vm-new"]);
        let a = &silent[0];
        assert_eq!(
            (a.last_seen, a.days_seen_last_week, a.rows_last_week),
            (d("2026-10-10"), 7, 7)
        );
        assert_eq!(silent[2].customer_id, "c2");
    }

    #[test]
    fn nothing_is_silent_when_every_vm_sends_or_the_lake_is_empty() {
        let (_tmp, lake) = lake();
        // On 10-02 vm-a and vm-b sent, and only they sent on 10-01.
        assert_eq!(silent_vms(&lake, d("2026-10-02")).unwrap(), Vec::new());
        assert_eq!(silent_vms(&lake, d("2026-09-01")).unwrap(), Vec::new());
    }
}
