//! Which formats each VM writes: its usage format, main log or CLF flavour, resource
//! formats, optional fields and time zone handling, cycled by VM index so small runs cover all.

use chrono_tz::Tz;
use rand::Rng;
use rand::rngs::SmallRng;

use super::registry::VmBase;
use super::{Ctx, DAY, UsageFormat};

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum UsageKind {
    /// 1b only.
    B,
    /// 1a only.
    A,
    /// 1a until the switch, then 1b.
    AThenB,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum ClfFlavor {
    NginxCombined,
    ApacheCombined,
    ApacheCommon,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum ResFmt {
    Csv,
    Jsonl,
    Influx,
}

pub(super) struct Plan {
    pub(super) usage: UsageKind,
    pub(super) usage_switch: i64,
    /// None: 1c main.log; Some: 1d access.log.
    pub(super) clf: Option<ClfFlavor>,
    /// Main log in the older `[GIN]` form until this time.
    pub(super) upgrade_at: i64,
    /// 1b records carry `accounting_version` and `token_breakdown` from this time.
    pub(super) breakdown_since: i64,
    pub(super) profile: usize,
    /// Not clean and not UTC: timestamps with the local offset.
    pub(super) local_offsets: bool,
    pub(super) a_request_id: bool,
    pub(super) a_provider: bool,
    pub(super) a_latency: bool,
    pub(super) a_api_key: bool,
    pub(super) a_user: bool,
    pub(super) a_millis: bool,
    pub(super) gemini_exec: &'static str,
    pub(super) claude_oauth: bool,
    /// `(format, from, to)` of the VM's resource streams.
    pub(super) res: Vec<(ResFmt, i64, i64)>,
    pub(super) crlf_csv: bool,
    pub(super) tail_usage: bool,
    pub(super) tail_access: bool,
}

impl Plan {
    pub(super) fn new(ctx: &Ctx, idx: usize, vm: &VmBase, rng: &mut SmallRng) -> Plan {
        let (start, end) = (ctx.start, vm.end);
        let half = if ctx.days >= 2 {
            i64::from(ctx.days / 2) * DAY
        } else {
            DAY / 2
        };
        let mid = start + half;
        let never = i64::MAX;
        let usage = match ctx.usage_format {
            UsageFormat::Mixed => [UsageKind::B, UsageKind::A, UsageKind::AThenB][idx % 3],
            UsageFormat::Lines => UsageKind::A,
            UsageFormat::Records => UsageKind::B,
        };
        let clf = (idx % 2 == 1).then(|| {
            [
                ClfFlavor::NginxCombined,
                ClfFlavor::ApacheCombined,
                ClfFlavor::ApacheCommon,
            ][idx / 2 % 3]
        });
        let upgrade_at = if idx.is_multiple_of(4) {
            mid + 10 * 3_600
        } else {
            start
        };
        let breakdown_since = match idx % 4 {
            0 => upgrade_at,
            1 => never,
            _ => start,
        };
        let influx_len = if ctx.days >= 2 {
            i64::from((ctx.days / 15).max(1)) * DAY
        } else {
            DAY / 2
        };
        let switch = (start + influx_len).min(end);
        let res = match idx % 4 {
            0 => vec![(ResFmt::Influx, start, switch), (ResFmt::Csv, switch, end)],
            1 => vec![(ResFmt::Jsonl, start, end)],
            2 => vec![(ResFmt::Csv, start, end)],
            _ => vec![
                (ResFmt::Influx, start, switch),
                (ResFmt::Jsonl, switch, end),
            ],
        };
        Plan {
            usage,
            usage_switch: mid.min(end),
            clf,
            upgrade_at,
            breakdown_since,
            profile: idx % 4,
            local_offsets: !ctx.clean && vm.tz != Tz::UTC,
            a_request_id: rng.random_bool(0.6),
            a_provider: rng.random_bool(0.5),
            a_latency: rng.random_bool(0.5),
            a_api_key: rng.random_bool(0.8),
            a_user: rng.random_bool(0.5),
            a_millis: rng.random_bool(0.5),
            gemini_exec: if rng.random_bool(0.5) {
                "GeminiCLIExecutor"
            } else {
                "GeminiExecutor"
            },
            claude_oauth: rng.random_bool(0.5),
            res,
            crlf_csv: !ctx.clean && idx % 4 == 2,
            tail_usage: !ctx.clean && idx.is_multiple_of(2),
            tail_access: !ctx.clean && idx.is_multiple_of(4),
        }
    }
}
