//! One VM's directory: which formats it writes (its plan, cycled by VM index so small runs
//! cover all), its streams, and the API, resource and command generators run over them.

use std::fs;

use chrono_tz::Tz;
use rand::Rng;
use rand::rngs::SmallRng;

use super::api::Api;
use super::commands::Commands;
use super::registry::VmBase;
use super::resources::Resources;
use super::stream::Stream;
use super::totals::{Table, Tally};
use super::{Ctx, DAY, SampleError, UsageFormat, io_err};

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
    crlf_csv: bool,
    pub(super) tail_usage: bool,
    pub(super) tail_access: bool,
}

impl Plan {
    fn new(ctx: &Ctx, idx: usize, vm: &VmBase, rng: &mut SmallRng) -> Plan {
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

pub(super) struct VmStreams {
    pub(super) usage_a: Option<Stream>,
    pub(super) usage_b: Option<Stream>,
    pub(super) access: Stream,
    res: Vec<(ResFmt, Stream)>,
    commands: Stream,
}

pub(super) fn gen_vm(ctx: &Ctx, idx: usize, vm: &VmBase) -> Result<Tally, SampleError> {
    let root = ctx.out.join(&vm.id);
    let cli = root.join("cliproxy");
    let res_dir = root.join("resources");
    let cmd_dir = root.join("commands");
    for d in [&cli, &res_dir, &cmd_dir] {
        fs::create_dir_all(d).map_err(io_err(d))?;
    }
    let mut plan_rng = ctx.rng(idx, 0);
    let plan = Plan::new(ctx, idx, vm, &mut plan_rng);
    let (start, end) = (ctx.start, vm.end);

    let usage_range = |kind: UsageKind| match (plan.usage, kind) {
        (UsageKind::AThenB, UsageKind::A) => Some((start, plan.usage_switch)),
        (UsageKind::AThenB, _) => Some((plan.usage_switch, end)),
        (k, want) if k == want => Some((start, end)),
        _ => None,
    };
    let mut usage_a = usage_range(UsageKind::A).map(|r| {
        let mut s = Stream::new(ctx, &cli, ("usage", "log"), Table::ApiUsage, r);
        s.live = r.1 == end;
        s
    });
    let mut usage_b = usage_range(UsageKind::B)
        .map(|r| Stream::new(ctx, &cli, ("usage", "jsonl"), Table::ApiUsage, r));
    let access_name = if plan.clf.is_some() {
        ("access", "log")
    } else {
        ("main", "log")
    };
    let mut access = Stream::new(ctx, &cli, access_name, Table::ApiRequests, (start, end));
    for s in [usage_a.as_mut(), usage_b.as_mut(), Some(&mut access)]
        .into_iter()
        .flatten()
    {
        s.numbered = true;
    }
    let mut res = Vec::new();
    for &(fmt, a, b) in &plan.res {
        let (name, header) = match fmt {
            ResFmt::Csv => (
                ("metrics", "csv"),
                Some("timestamp,cpu_percent,memory_percent,disk_gb,network_in_mb,network_out_mb"),
            ),
            ResFmt::Jsonl => (("metrics", "jsonl"), None),
            ResFmt::Influx => (("telegraf", "influx"), None),
        };
        let mut s = Stream::new(ctx, &res_dir, name, Table::ResourceUsage, (a, b));
        s.header = header;
        s.live = b == end;
        if fmt == ResFmt::Csv && plan.crlf_csv {
            s.eol = "\r\n";
        }
        if !s.segs.is_empty() {
            res.push((fmt, s));
        }
    }
    let commands = Stream::new(
        ctx,
        &cmd_dir,
        ("history", "jsonl"),
        Table::Activity,
        (start, end),
    );
    let mut streams = VmStreams {
        usage_a,
        usage_b,
        access,
        res,
        commands,
    };

    if !ctx.clean {
        for s in streams.all_mut() {
            s.overlap = plan_rng.random_range(2..=5);
        }
        streams.pick_reship(idx);
    }

    let mut tally = Tally::default();
    Api::new(ctx, idx, vm, &plan).run(&mut streams, &mut tally)?;
    Resources::new(ctx, idx, vm, &plan).run(&mut streams.res, &mut tally)?;
    Commands::new(ctx, idx, vm).run(&mut streams.commands, &mut tally)?;
    Ok(tally)
}

impl VmStreams {
    fn all_mut(&mut self) -> impl Iterator<Item = &mut Stream> {
        self.usage_a
            .iter_mut()
            .chain(self.usage_b.iter_mut())
            .chain(std::iter::once(&mut self.access))
            .chain(self.res.iter_mut().map(|(_, s)| s))
            .chain(std::iter::once(&mut self.commands))
    }

    /// Ships the first segment of one stream twice (which stream varies by VM).
    fn pick_reship(&mut self, idx: usize) {
        let usage = self.usage_a.as_mut().or(self.usage_b.as_mut());
        let preferred: Option<&mut Stream> = match idx % 4 {
            0 => usage,
            1 => Some(&mut self.access),
            2 => self.res.first_mut().map(|(_, s)| s),
            _ => Some(&mut self.commands),
        };
        if let Some(s) = preferred.filter(|s| s.segs.len() >= 2) {
            s.reship = Some(0);
        } else if self.commands.segs.len() >= 2 {
            self.commands.reship = Some(0);
        }
    }
}
