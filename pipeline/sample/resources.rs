//! Resource samples every 5 minutes (or `--resource-interval`): CSV (`metrics.csv`), JSONL (`metrics.jsonl`) and
//! Telegraf line protocol (`telegraf.influx`, with counter resets and skipped rows).

use std::fmt::Write as _;

use rand::Rng;
use rand::rngs::SmallRng;
use rand_distr::StandardNormal;

use super::api::DIURNAL;
use super::plan::{Plan, ResFmt};
use super::registry::VmBase;
use super::stream::Stream;
use super::time::{Frac, TzOff, civil, w_rfc3339};
use super::totals::{Bucket, Tally};
use super::{Ctx, SampleError, lognormal, uniform};

struct Iface {
    name: &'static str,
    rx: u64,
    tx: u64,
    prx: u64,
    ptx: u64,
}

pub(super) struct Resources<'a> {
    ctx: &'a Ctx,
    vm: &'a VmBase,
    plan: &'a Plan,
    rng: SmallRng,
    tz: TzOff,
    buf: String,
    line: String,
    cores: u32,
    mem_total: u64,
    disk_total: u64,
    disk_used_gb: f64,
    mem_pct: f64,
    base_cpu: f64,
    ifaces: Vec<Iface>,
    quirk: usize,
}

impl<'a> Resources<'a> {
    pub(super) fn new(ctx: &'a Ctx, idx: usize, vm: &'a VmBase, plan: &'a Plan) -> Resources<'a> {
        let mut rng = ctx.rng(idx, 2);
        let cores = [2, 4][rng.random_range(0..2)];
        let mem_gib = [4u64, 8, 16][rng.random_range(0..3)];
        let disk_gb = [40u64, 80, 160][rng.random_range(0..3)];
        let mut ifaces = vec![Iface {
            name: "eth0",
            rx: 0,
            tx: 0,
            prx: 0,
            ptx: 0,
        }];
        if rng.random_bool(0.5) {
            ifaces.push(Iface {
                name: "docker0",
                rx: 0,
                tx: 0,
                prx: 0,
                ptx: 0,
            });
        }
        for i in &mut ifaces {
            i.rx = rng.random_range(1_000_000..5_000_000_000);
            i.tx = rng.random_range(1_000_000..2_000_000_000);
            i.prx = i.rx / 900;
            i.ptx = i.tx / 700;
        }
        Resources {
            ctx,
            vm,
            plan,
            tz: TzOff::new(vm.tz),
            buf: String::with_capacity(2_048),
            line: String::with_capacity(512),
            cores,
            mem_total: mem_gib << 30,
            disk_total: disk_gb * 1_000_000_000,
            disk_used_gb: disk_gb as f64 * uniform(&mut rng, 0.2, 0.5),
            mem_pct: uniform(&mut rng, 25.0, 55.0),
            base_cpu: uniform(&mut rng, 8.0, 35.0),
            ifaces,
            quirk: 0,
            rng,
        }
    }

    pub(super) fn run(
        mut self,
        streams: &mut [(ResFmt, Stream)],
        tally: &mut Tally,
    ) -> Result<(), SampleError> {
        let every = self.ctx.resource_interval_s;
        // Counter reset (reboot) half-way through each Telegraf range, when not clean.
        let resets: Vec<i64> = self
            .plan
            .res
            .iter()
            .filter(|(f, a, b)| *f == ResFmt::Influx && a < b && !self.ctx.clean)
            .map(|(_, a, b)| a + (b - a) / 2 / every * every)
            .collect();
        if streams.is_empty() {
            return Ok(());
        }
        let mut t = self.ctx.start;
        let mut si = 0;
        while t < self.vm.end {
            while si + 1 < streams.len() && t >= streams[si].1.segs.last().map_or(i64::MIN, |s| s.1)
            {
                si += 1;
            }
            let (fmt, stream) = &mut streams[si];
            stream.at(t, tally)?;
            self.step(t, resets.contains(&t));
            match fmt {
                ResFmt::Csv | ResFmt::Jsonl => self.simple(stream, t, *fmt == ResFmt::Csv)?,
                ResFmt::Influx => self.influx(stream, t)?,
            }
            t += every;
        }
        for (_, s) in streams.iter_mut() {
            s.finish(tally, None)?;
        }
        Ok(())
    }

    fn local_hour(&mut self, t: i64) -> usize {
        civil(t + i64::from(self.tz.at(t))).h as usize
    }

    fn step(&mut self, t: i64, reset: bool) {
        let z: f64 = self.rng.sample(StandardNormal);
        self.mem_pct = (self.mem_pct + 0.6 * z + (40.0 - self.mem_pct) * 0.01).clamp(12.0, 92.0);
        self.disk_used_gb += uniform(&mut self.rng, 0.0, 0.004);
        if self.local_hour(t) == 3 && t % 3_600 == 0 {
            self.disk_used_gb = (self.disk_used_gb - uniform(&mut self.rng, 0.3, 1.5)).max(5.0);
        }
        if reset {
            for i in &mut self.ifaces {
                i.rx = self.rng.random_range(10_000..900_000);
                i.tx = self.rng.random_range(10_000..500_000);
                i.prx = i.rx / 900;
                i.ptx = i.tx / 700;
            }
        }
    }

    fn cpu(&mut self, t: i64) -> f64 {
        let h = self.local_hour(t);
        let z: f64 = self.rng.sample(StandardNormal);
        (self.base_cpu * (0.3 + 0.7 * DIURNAL[h] / 1.4) * (1.0 + 0.35 * z)).clamp(0.5, 99.0)
    }

    fn net_mb(&mut self, t: i64) -> (f64, f64) {
        let h = self.local_hour(t);
        let d = 0.3 + DIURNAL[h];
        (
            lognormal(&mut self.rng, 2.0 * d, 0.8),
            lognormal(&mut self.rng, 0.8 * d, 0.8),
        )
    }

    /// CSV or JSONL sample: `timestamp,cpu_percent,memory_percent,disk_gb,network_in_mb,network_out_mb`.
    fn simple(&mut self, s: &mut Stream, t: i64, csv: bool) -> Result<(), SampleError> {
        let cpu = self.cpu(t);
        let (rx, tx) = self.net_mb(t);
        let off = self.plan.local_offsets.then(|| self.tz.at(t));
        let corrupt = s.corrupt(&mut self.rng);
        let q = if corrupt {
            self.quirk += 1;
            self.quirk % 2
        } else {
            usize::MAX
        };
        let b = &mut self.buf;
        b.clear();
        if csv {
            w_rfc3339(b, t, 0, Frac::None, off);
            if q == 0 {
                b.push_str(",n/a");
            } else {
                let _ = write!(b, ",{cpu:.2}");
            }
            let _ = write!(b, ",{:.2},{:.2},{rx:.3}", self.mem_pct, self.disk_used_gb);
            if q != 1 {
                let _ = write!(b, ",{tx:.3}");
            }
        } else {
            b.push_str("{\"timestamp\":\"");
            w_rfc3339(b, t, 0, Frac::None, off);
            if q == 0 {
                b.push_str("\",\"cpu_percent\":\"n/a\"");
            } else {
                let _ = write!(b, "\",\"cpu_percent\":{cpu:.2}");
            }
            let _ = write!(
                b,
                ",\"memory_percent\":{:.2},\"disk_gb\":{:.2},\"network_in_mb\":{rx:.3},\"network_out_mb\":{tx:.3}}}",
                self.mem_pct, self.disk_used_gb
            );
            if q == 1 {
                let cut = self.rng.random_range(b.len() / 3..b.len() - 1);
                b.truncate(cut);
            }
        }
        s.emit(
            &self.buf,
            if corrupt { Bucket::Reject } else { Bucket::Row },
        )
    }

    /// One Telegraf interval: cpu-total, per-core cpu (skipped), disk, mem, net per
    /// interface, system (skipped). A broken line replaces the cpu-total or mem row.
    fn influx(&mut self, s: &mut Stream, t: i64) -> Result<(), SampleError> {
        let ns = t * 1_000_000_000;
        let cpu = self.cpu(t);
        let (rx_mb, tx_mb) = self.net_mb(t);
        let broken = if s.corrupt(&mut self.rng) {
            self.quirk += 1;
            Some(self.quirk % 2)
        } else {
            None
        };
        let host = &self.vm.id;
        let line = &mut self.line;

        line.clear();
        let (iowait, system) = (cpu * 0.04, cpu * 0.26);
        let _ = write!(
            line,
            "cpu,cpu=cpu-total,host={host} usage_active={cpu:.2},usage_idle={:.2},usage_iowait={iowait:.2},\
             usage_system={system:.2},usage_user={:.2} {ns}",
            100.0 - cpu,
            cpu - iowait - system,
        );
        emit_influx(&mut self.rng, s, line, broken == Some(0))?;
        for core in 0..self.cores {
            let c = (cpu * uniform(&mut self.rng, 0.6, 1.4)).min(100.0);
            line.clear();
            let _ = write!(
                line,
                "cpu,cpu=cpu{core},host={host} usage_active={c:.2},usage_idle={:.2},usage_iowait={:.2},\
                 usage_system={:.2},usage_user={:.2} {ns}",
                100.0 - c,
                c * 0.04,
                c * 0.26,
                c * 0.70,
            );
            s.emit(line, Bucket::Skipped)?;
        }
        let used = (self.disk_used_gb * 1e9) as u64;
        line.clear();
        let _ = write!(
            line,
            "disk,device=sda1,fstype=ext4,host={host},mode=rw,path=/ free={}i,total={}i,used={used}i,\
             used_percent={:.4} {ns}",
            self.disk_total.saturating_sub(used),
            self.disk_total,
            used as f64 * 100.0 / self.disk_total as f64,
        );
        s.emit(line, Bucket::Row)?;
        let mem_used = (self.mem_total as f64 * self.mem_pct / 100.0) as u64;
        line.clear();
        let _ = write!(
            line,
            "mem,host={host} available={}i,available_percent={:.4},total={}i,used={mem_used}i,\
             used_percent={:.4} {ns}",
            self.mem_total - mem_used,
            100.0 - self.mem_pct,
            self.mem_total,
            self.mem_pct,
        );
        emit_influx(&mut self.rng, s, line, broken == Some(1))?;
        for (k, i) in self.ifaces.iter_mut().enumerate() {
            let share = if k == 0 { 1.0 } else { 0.15 };
            let (drx, dtx) = ((rx_mb * share * 1e6) as u64, (tx_mb * share * 1e6) as u64);
            i.rx += drx;
            i.tx += dtx;
            i.prx += drx / 900 + 1;
            i.ptx += dtx / 700 + 1;
            line.clear();
            let _ = write!(
                line,
                "net,host={host},interface={} bytes_recv={}i,bytes_sent={}i,err_in=0i,err_out=0i,\
                 packets_recv={}i,packets_sent={}i {ns}",
                i.name, i.rx, i.tx, i.prx, i.ptx
            );
            s.emit(line, Bucket::Row)?;
        }
        line.clear();
        let load = cpu / 100.0 * f64::from(self.cores);
        let _ = write!(
            line,
            "system,host={host} load1={load:.2},load15={:.2},load5={:.2},n_cpus={}i,n_users=1i {ns}",
            load * 0.8,
            load * 0.9,
            self.cores,
        );
        s.emit(line, Bucket::Skipped)
    }
}

/// Emits a used Telegraf line, or (when `broken`) the line cut right after one of its
/// field `=` signs so that it no longer parses.
fn emit_influx(
    rng: &mut SmallRng,
    s: &mut Stream,
    line: &mut String,
    broken: bool,
) -> Result<(), SampleError> {
    if !broken {
        return s.emit(line, Bucket::Row);
    }
    let fields_at = line.find(' ').expect("influx line has a field set");
    let eqs: Vec<usize> = line[fields_at..]
        .match_indices('=')
        .map(|(i, _)| fields_at + i)
        .collect();
    let cut = eqs[rng.random_range(0..eqs.len())] + 1;
    line.truncate(cut);
    s.emit(line, Bucket::Reject)
}
