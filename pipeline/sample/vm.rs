//! One VM's directory: its plan, its streams, and the API, resource and command generators
//! run over them.

use std::fs;

use rand::Rng;

use super::api::Api;
use super::commands::Commands;
use super::plan::{Plan, ResFmt, UsageKind};
use super::registry::VmBase;
use super::resources::Resources;
use super::stream::{Stream, VmStreams};
use super::totals::{Table, Tally};
use super::{Ctx, SampleError, io_err};

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
