#!/usr/bin/env python3
"""meter against DuckDB, polars and chDB, on the same input, in one run.

    python3 bench/bench.py [--lines 4000000] [--scale 4] [--runs 3] [--smoke]

(`just bench` builds the release binary and runs this.) Steps:

1. `meter sample --clean --usage-format lines` writes an input of about
   `--lines` JSON usage lines (formats.md 1a) plus the access logs, resource
   samples and command logs of the same VMs and days, and a second input
   `--scale` times larger for the memory curve. Hard links give three views
   of each: the usage files alone (what the peers read), the access logs
   alone, and the whole tree.
   The same usage lines are also written as one VM's single file in time
   order, plain and gzipped (the shape of one busy VM's log).
2. Runs alternate between tools, `--runs` times each, under GNU `time -v`
   (wall, CPU, peak RSS); the tables give medians:
   - ingest of the usage lines, in each shape: `meter ingest` into an empty
     lake, DuckDB `read_json` + `COPY ... PARTITION_BY (date)`, polars
     `scan_ndjson` + partitioned `sink_parquet`, chDB `INSERT INTO TABLE
     FUNCTION file(...) PARTITION BY toDate(timestamp)` (bench/peers.py);
   - `meter ingest` of the access logs and of the whole tree, and of the
     whole tree again into its own lake (every line a duplicate);
   - `meter rollup` of the month against the same pricing and aggregation
     in DuckDB SQL over the same lake;
   - `meter bill` of the month for each `--bill-customers` count of customers,
     and of the smallest with a contract for every `--bill-contract-every`th;
   - `meter ingest` of the whole 1x tree and `meter rollup` with `--input`
     and `--lake` on an S3-protocol server on 127.0.0.1 (the tests' server,
     `--s3-server`, sharing the machine), against the same runs on disk.
3. Every run's output is checked against what `meter sample` reported
   writing: rows and token sums for ingest, meter's own report (events
   priced and unpriced, exact cost) for the DuckDB rollup, one invoice per
   customer for billing. A wrong answer stops the benchmark.
4. The results go to BENCHMARKS.md (`--out`), with the machine, the
   versions and the exact commands.

The peers run from their own virtual environment
(~/.cache/meter-bench/venv), created here from PyPI with pinned versions.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import glob
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CACHE = Path.home() / ".cache" / "meter-bench"
VENV = CACHE / "venv"
PEERS = REPO / "bench" / "peers.py"
PINNED = ["duckdb==2.0.0", "polars==2.1.0", "chdb==4.4.0"]
MONTH = "2026-10"
START = "2026-10-01"
SEED = "42"
TIME = "/usr/bin/time"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lines", type=int, default=4_000_000, help="JSON usage lines of the base input")
    ap.add_argument("--scale", type=int, default=4, help="size of the second input, in base inputs")
    ap.add_argument("--runs", type=int, default=3, help="timed runs per tool and input")
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--customers", type=int, default=100)
    ap.add_argument("--bill-customers", type=int, nargs="+", default=[10_000, 100_000],
                    help="customers of each billing run")
    ap.add_argument("--bill-contract-every", type=int, default=10,
                    help="bill the smallest size again with a contract for every Nth customer (0: not)")
    ap.add_argument("--meter", type=Path, help="meter binary [default: the release build]")
    ap.add_argument("--s3-server", type=Path,
                    help="the tests' S3 server binary [default: the release build of examples/s3-server.rs]")
    ap.add_argument("--work", type=Path, default=CACHE / "work", help="inputs and outputs")
    ap.add_argument("--out", type=Path, help="results [default: BENCHMARKS.md, or the work folder with --smoke]")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, one run: checks the script works")
    ap.add_argument("--resume", action="store_true",
                    help="keep the stages a previous run with the same settings finished (work/results.json)")
    args = ap.parse_args()
    if args.smoke:
        args.lines, args.scale, args.runs = 20_000, 2, 1
        args.customers, args.bill_customers = 10, [200]
    target = Path(os.environ.get("CARGO_TARGET_DIR", Path.home() / ".cache" / "meter-target"))
    args.meter = (args.meter or target / "release" / "meter").resolve()
    args.s3_server = (args.s3_server or target / "release" / "examples" / "s3-server").resolve()
    if args.out is None:
        args.out = args.work / "BENCHMARKS.smoke.md" if args.smoke else REPO / "BENCHMARKS.md"
    if not args.meter.is_file():
        sys.exit(f"bench: no meter binary at {args.meter}: run `cargo build --release` (or pass --meter)")
    if not args.s3_server.is_file():
        sys.exit(f"bench: no S3 server at {args.s3_server}: run `cargo build --release --example s3-server`")
    if not Path(TIME).is_file():
        sys.exit(f"bench: GNU time is not at {TIME}: install Debian's `time` package")
    py = venv()
    Bench(args, py).run()
    return 0


def venv() -> Path:
    """The peers' interpreter, creating the environment on first use."""
    py = VENV / "bin" / "python"
    ok = py.is_file() and subprocess.run(
        [py, "-c", "import duckdb, polars, chdb; assert duckdb.__version__ == '2.0.0' and polars.__version__ == '2.1.0' "
                   "and chdb.__version__ == '4.4.0'"],
        capture_output=True,
    ).returncode == 0
    if not ok:
        log(f"installing {' '.join(PINNED)} into {VENV}")
        subprocess.run([sys.executable, "-m", "venv", "--clear", VENV], check=True)
        subprocess.run([py, "-m", "pip", "install", "--quiet", *PINNED], check=True)
    return py


def log(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


class Failed(Exception):
    pass


def timed(cmd: list, ok_codes=(0,), env: dict | None = None) -> dict:
    """Runs `cmd` under GNU time -v; wall and CPU seconds, peak RSS in KiB."""
    proc = subprocess.run([TIME, "-v", *map(str, cmd)], capture_output=True, text=True,
                          env=None if env is None else {**os.environ, **env})
    if proc.returncode not in ok_codes:
        raise Failed(f"{' '.join(map(str, cmd))} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    m = {}
    for line in proc.stderr.splitlines():
        key, _, value = line.strip().rpartition(": ")
        m[key] = value
    wall = m["Elapsed (wall clock) time (h:mm:ss or m:ss)"].split(":")
    seconds = sum(float(x) * 60**i for i, x in enumerate(reversed(wall)))
    return {
        "wall": seconds,
        "cpu": float(m["User time (seconds)"]) + float(m["System time (seconds)"]),
        "rss_kib": int(m["Maximum resident set size (kbytes)"]),
        "code": proc.returncode,
        "stdout": proc.stdout,
    }


def timed_all(cmds: list[list], env: dict | None = None) -> dict:
    """Runs `cmds` at once, each under GNU time -v: the wall time until the
    last ends, the sum of their CPU seconds and the largest peak RSS."""
    start = time.monotonic()
    procs = [subprocess.Popen([TIME, "-v", *map(str, c)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=None if env is None else {**os.environ, **env}) for c in cmds]
    outs = [p.communicate() for p in procs]
    wall = time.monotonic() - start
    cpu, rss = 0.0, 0
    for cmd, p, (_, err) in zip(cmds, procs, outs):
        if p.returncode != 0:
            raise Failed(f"{' '.join(map(str, cmd))} exited {p.returncode}:\n{err[-3000:]}")
        m = {}
        for line in err.splitlines():
            key, _, value = line.strip().rpartition(": ")
            m[key] = value
        cpu += float(m["User time (seconds)"]) + float(m["System time (seconds)"])
        rss = max(rss, int(m["Maximum resident set size (kbytes)"]))
    return {"wall": wall, "cpu": cpu, "rss_kib": rss, "code": 0, "stdout": ""}


def run_json(cmd: list) -> dict:
    out = subprocess.run(list(map(str, cmd)), capture_output=True, text=True)
    if out.returncode != 0:
        raise Failed(f"{' '.join(map(str, cmd))} exited {out.returncode}:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def tree_size(paths: list[Path]) -> int:
    return sum(p.stat().st_size for p in paths)


def link_tree(src: Path, dst: Path, patterns: list[str]) -> list[Path]:
    """Hard-links the files of `src` matching `patterns` (and the registry) into `dst`."""
    if dst.exists():
        shutil.rmtree(dst)
    files = []
    for pattern in patterns:
        for f in sorted(src.glob(pattern)):
            rel = f.relative_to(src)
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            os.link(f, dst / rel)
            files.append(dst / rel)
    for name in ("customers.csv", "users.csv"):
        os.link(src / name, dst / name)
    return files


def median(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


class S3Server:
    """The tests' S3-protocol server (`examples/s3-server.rs`) over the folder
    `root`, with the tree `src` uploaded under `input/` through the S3 API (so
    that the server knows every object's ETag, as a real store does)."""

    def __init__(self, exe: Path, root: Path, src: Path):
        self.proc = subprocess.Popen([exe, root, src, "input"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        # `NAME=value` lines, then a blank one: the environment to reach it.
        self.env = self.lines()
        self.bucket = self.env.pop("bucket")

    def lines(self) -> dict:
        out = {}
        for line in self.proc.stdout:
            line = line.strip()
            if not line:
                break
            k, _, v = line.partition("=")
            out[k] = v
        return out

    def requests(self) -> int:
        """The requests served since the last call."""
        self.proc.stdin.write("stats\n")
        self.proc.stdin.flush()
        return sum(int(v) for v in self.lines().values())

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


class Bench:
    def __init__(self, args, py: Path):
        self.a = args
        self.py = py
        self.work = args.work
        self.results: dict = {"inputs": {}, "ingest": {}, "shapes": {}, "rollup": {}, "nightly": {}, "bill": {},
                              "s3": {}, "shards": {}}
        self.month_days: dict = {}
        self.commands: list[str] = []

    def meter(self, *args) -> list:
        return [self.a.meter, *args]

    def peer(self, *args) -> list:
        return [self.py, PEERS, *args]

    def note(self, cmd: list) -> None:
        text = " ".join(str(c) for c in cmd)
        for old, new in ((str(self.work), "$WORK"), (str(self.a.meter), "meter"), (str(self.py), "python"), (str(REPO) + "/", "")):
            text = text.replace(old, new)
        if text not in self.commands:
            self.commands.append(text)

    # ------------------------------------------------------------ inputs

    def generate(self, name: str, lines: int, customers: int, days: int, shapes: bool = True,
                 events: int | None = None, resource_interval: int = 300, contract_every: int = 0) -> dict:
        """A clean input of about `lines` usage lines (or `events` calls per VM and day), with its three views."""
        root = self.work / name
        stamp = root / "totals.json"
        want = {"lines": lines, "customers": customers, "days": days, "events": events,
                "resource_interval": resource_interval, "meter": str(self.a.meter)}
        if contract_every:
            want["contract_every"] = contract_every
        if stamp.is_file() and json.loads(stamp.read_text()).get("want") == want:
            totals = json.loads(stamp.read_text())["totals"]
        else:
            if root.exists():
                shutil.rmtree(root)
            root.mkdir(parents=True)
            if events is None:
                # Usage lines per VM and day, from a one-day probe of the same customers.
                probe = run_json(self.meter("sample", "--out", root / "probe", "--clean", "--usage-format", "lines",
                                            "--customers", customers, "--days", 1, "--events-per-day", 100,
                                            "--seed", SEED, "--start", START, "--json"))
                shutil.rmtree(root / "probe")
                per_event = probe["tables"]["api_usage"]["rows"] / 100
                events = max(1, round(lines / (per_event * days)))
            cmd = self.meter("sample", "--out", root / "full", "--clean", "--usage-format", "lines",
                             "--customers", customers, "--days", days, "--events-per-day", events,
                             "--resource-interval", resource_interval, "--seed", SEED, "--start", START, "--json")
            if contract_every:
                cmd[-1:-1] = ["--contract-every", contract_every]
            log(f"generating {name}: {customers} customers, {days} days, {events} calls per VM and day")
            totals = run_json(cmd)
            totals["command"] = " ".join(map(str, cmd))
            stamp.write_text(json.dumps({"want": want, "totals": totals}))
        full = root / "full"
        views = {
            "usage": link_tree(full, root / "usage", ["*/cliproxy/usage-*.log"]),
            "access": link_tree(full, root / "access", ["*/cliproxy/access-*.log", "*/cliproxy/main-*.log"]),
        }
        one, one_gz = self.one_file(root, views["usage"]) if shapes else (None, None)
        info = {
            "root": root,
            "totals": totals,
            "usage_bytes": tree_size(views["usage"]),
            "usage_files": len(views["usage"]),
            "access_bytes": tree_size(views["access"]),
            "full_bytes": totals["bytes"],
            "usage_lines": totals["tables"]["api_usage"]["rows"],
            "access_lines": sum(totals["tables"]["api_requests"][k] for k in ("rows", "skipped")),
            "full_lines": totals["lines"],
            "one": one,
            "one_gz": one_gz,
        }
        if one_gz:
            info["one_gz_bytes"] = one_gz.stat().st_size
        self.results["inputs"][name] = {k: v for k, v in info.items() if k not in ("root", "one", "one_gz")}
        return info

    def one_file(self, root: Path, usage: list[Path]) -> tuple[Path, Path]:
        """Every usage line of the input as one VM's single file, in time
        order (the shape of one busy VM's log), plain and gzipped (level 6,
        logrotate's): `root/one/<vm>/cliproxy/usage.jsonl[.gz]`. The VM is
        the input's first, so its customer is known."""
        vm = usage[0].relative_to(root / "usage").parts[0]
        paths = []
        for view, name in (("one", "usage.jsonl"), ("one-gz", "usage.jsonl.gz")):
            path = root / view / vm / "cliproxy" / name
            paths.append(path)
            if path.is_file():
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            for reg in ("customers.csv", "users.csv"):
                shutil.copy(root / "full" / reg, root / view / reg)
            tmp = path.with_name(name + ".tmp")
            if view == "one":
                log(f"writing {path}: {len(usage)} usage files as one, sorted by time")
                # Every 1a line starts with its timestamp, so byte order is time order.
                subprocess.run(["sort", "-S", "1G", "-T", self.work, "-o", tmp, *usage], check=True,
                               env={**os.environ, "LC_ALL": "C"})
            else:
                log(f"writing {path}")
                with open(tmp, "wb") as out:
                    subprocess.run(["gzip", "-6", "-c", paths[0]], stdout=out, check=True)
            tmp.rename(path)
        return paths[0], paths[1]

    # ------------------------------------------------------------ checks

    def sums(self, pattern: str) -> dict:
        return run_json(self.peer("sums", "--glob", pattern))

    def check_tokens(self, tool: str, got: dict, totals: dict) -> None:
        # meter's lake applies the inclusion rules and names the cache write
        # column its own way; the peers keep the raw 1a fields.
        t, cache_write = (totals["lake_tokens"], "cache_write_tokens") if tool == "meter" \
            else (totals["tokens_1a"], "cache_creation_tokens")
        want = {"rows": totals["tables"]["api_usage"]["rows"], "input_tokens": t["input"],
                "cache_read_tokens": t["cache_read"], cache_write: t["cache_write"],
                "output_tokens": t["output"], "reasoning_tokens": t["reasoning"]}
        wrong = {k: (got.get(k), v) for k, v in want.items() if got.get(k) != v}
        if wrong:
            raise Failed(f"{tool}: output differs from what meter sample wrote (got, want): {wrong}")

    # ------------------------------------------------------------ stages

    def ingest(self, name: str, inp: dict) -> None:
        root = inp["root"]
        usage_glob = str(root / "usage" / "*" / "cliproxy" / "usage-*.log")
        out = self.work / "out"
        tools = {
            "meter": (self.meter("ingest", "--input", root / "usage", "--lake", out / "meter"), out / "meter"),
            "duckdb": (self.peer("duckdb-ingest", "--files", usage_glob, "--out", out / "duckdb"), out / "duckdb"),
            "polars": (self.peer("polars-ingest", "--files", usage_glob, "--out", out / "polars"), out / "polars"),
            "chdb": (self.peer("chdb-ingest", "--files", usage_glob, "--out", out / "chdb"), out / "chdb"),
        }
        self.results["ingest"][name] = self.alternate(name, tools, inp["totals"])

        # meter alone: the access logs, then the whole tree (which the rollup reads).
        extra = {
            "access": (self.meter("ingest", "--input", root / "access", "--lake", out / "access"), out / "access"),
            "full": (self.meter("ingest", "--input", root / "full", "--lake", root / "lake"), root / "lake"),
        }
        for view, (cmd, dest) in extra.items():
            rs = []
            for i in range(self.a.runs):
                shutil.rmtree(dest, ignore_errors=True)
                self.note(cmd)
                r = timed(cmd)
                report = json.loads(sorted((dest / "_runs").glob("*.json"))[-1].read_text())
                expected = inp["totals"]["tables"]
                tables = expected if view == "full" else ["api_requests"]
                for table in tables:
                    got, want = report["tables"].get(table, {"rows": 0})["rows"], expected[table]["rows"]
                    if got != want:
                        raise Failed(f"meter ingest ({view}): {table} rows {got}, sample wrote {want}")
                rs.append(r)
                log(f"ingest {name} meter/{view} run {i + 1}: {r['wall']:.2f} s, {r['rss_kib'] / 1024:.0f} MiB")
                if view != "full" or i + 1 < self.a.runs:
                    shutil.rmtree(dest, ignore_errors=True)
            self.results["ingest"][name][f"meter/{view}"] = strip(rs)

        # The whole tree again into the lake that holds it: every line a duplicate.
        lake = root / "lake"
        cmd = self.meter("ingest", "--input", root / "full", "--lake", lake)
        rs = []
        for i in range(self.a.runs):
            self.note(cmd)
            r = timed(cmd, ok_codes=(0, 1))
            report = json.loads(sorted((lake / "_runs").glob("*.json"))[-1].read_text())
            for table, want in inp["totals"]["tables"].items():
                got = report["tables"].get(table, {"rows": 0, "duplicates": 0})
                if got["rows"] != 0 or got["duplicates"] != want["rows"]:
                    raise Failed(f"meter ingest again: {table} stored {got['rows']} and found {got['duplicates']} "
                                 f"duplicates of {want['rows']} rows")
            rs.append(r)
            log(f"ingest {name} meter/again run {i + 1}: {r['wall']:.2f} s, {r['rss_kib'] / 1024:.0f} MiB")
        self.results["ingest"][name]["meter/again"] = strip(rs)

    def alternate(self, label: str, tools: dict, totals: dict) -> dict:
        """`--runs` rounds of every tool's ingest (command, output folder),
        each output checked against what meter sample wrote before its time
        counts; the runs per tool."""
        runs: dict = {t: [] for t in tools}
        for i in range(self.a.runs):
            for tool, (cmd, dest) in tools.items():
                shutil.rmtree(dest, ignore_errors=True)
                self.note(cmd)
                r = timed(cmd)
                pattern = str(dest / "api_usage" / "*" / "*.parquet") if tool == "meter" else str(dest / "*" / "*.parquet")
                self.check_tokens(tool, self.sums(pattern), totals)
                runs[tool].append(r)
                log(f"ingest {label} {tool} run {i + 1}: {r['wall']:.2f} s, {r['rss_kib'] / 1024:.0f} MiB")
                shutil.rmtree(dest, ignore_errors=True)
        return {t: strip(v) for t, v in runs.items()}

    def shapes(self, name: str, inp: dict) -> None:
        """The same usage lines as one VM's single file, plain and gzipped,
        through every tool."""
        out = self.work / "out"
        res = {}
        for shape, path in (("one file", inp["one"]), ("one file .gz", inp["one_gz"])):
            tree = path.parent.parent.parent
            tools = {
                "meter": (self.meter("ingest", "--input", tree, "--lake", out / "meter"), out / "meter"),
                "duckdb": (self.peer("duckdb-ingest", "--files", path, "--out", out / "duckdb"), out / "duckdb"),
                "polars": (self.peer("polars-ingest", "--files", path, "--out", out / "polars"), out / "polars"),
                "chdb": (self.peer("chdb-ingest", "--files", path, "--out", out / "chdb"), out / "chdb"),
            }
            res[shape] = self.alternate(f"{name} {shape}", tools, inp["totals"])
        self.results["shapes"][name] = res

    def rollup(self, name: str, inp: dict) -> None:
        lake = inp["root"] / "lake"
        out = self.work / "out" / "duckdb-rollup"
        meter_cmd = self.meter("rollup", "--lake", lake, "--month", MONTH, "--pricing", REPO / "pricing.toml")
        duck_cmd = self.peer("duckdb-rollup", "--lake", lake, "--pricing", REPO / "pricing.toml",
                             "--month", MONTH, "--out", out)
        runs: dict = {"meter": [], "duckdb": []}
        for i in range(self.a.runs):
            for d in ("priced", "daily", "monthly"):
                shutil.rmtree(lake / d, ignore_errors=True)
            self.note(meter_cmd)
            r = timed(meter_cmd, ok_codes=(0, 1))
            reports = [json.loads(p.read_text()) for p in (lake / "_runs").glob("*.json")]
            mine = max((x for x in reports if x.get("job") == "rollup"), key=lambda x: x["started_at"])
            runs["meter"].append(r)
            shutil.rmtree(out, ignore_errors=True)
            self.note(duck_cmd)
            d = timed(duck_cmd)
            theirs = json.loads(d["stdout"].strip().splitlines()[-1])
            for key in ("events_priced", "events_unpriced"):
                if mine[key] != theirs[key]:
                    raise Failed(f"rollup {key}: meter {mine[key]}, duckdb {theirs[key]}")
            if Decimal(str(mine["cost"])) != Decimal(theirs["cost"]):
                raise Failed(f"rollup cost: meter {mine['cost']}, duckdb {theirs['cost']}")
            runs["duckdb"].append(d)
            log(f"rollup {name} run {i + 1}: meter {r['wall']:.2f} s, duckdb {d['wall']:.2f} s")
        shutil.rmtree(out, ignore_errors=True)
        # One day again, as the nightly does it: the month's middle day, its
        # priced events and daily aggregates replaced.
        middle = sorted(d["date"] for d in mine["days"])[len(mine["days"]) // 2]
        day_cmd = self.meter("rollup", "--lake", lake, "--date", middle, "--pricing", REPO / "pricing.toml")
        day_runs = []
        for i in range(self.a.runs):
            self.note(day_cmd)
            r = timed(day_cmd, ok_codes=(0, 1))
            reports = [json.loads(p.read_text()) for p in (lake / "_runs").glob("*.json")]
            day = max((x for x in reports if x.get("job") == "rollup"), key=lambda x: x["started_at"])
            want = next(d for d in mine["days"] if d["date"] == middle)
            if (day["events_priced"], Decimal(str(day["cost"]))) != (want["priced"], Decimal(str(want["cost"]))):
                raise Failed(f"rollup of {middle}: {day['events_priced']} events, cost {day['cost']}; "
                             f"the month's run priced {want['priced']}, cost {want['cost']}")
            day_runs.append(r)
            log(f"rollup {name} of {middle} run {i + 1}: {r['wall']:.2f} s")
        events = mine["events_priced"] + mine["events_unpriced"]
        self.month_days[name] = {d["date"]: d for d in mine["days"]}
        self.results["rollup"][name] = {
            "events": events,
            "cost": str(mine["cost"]),
            "days": len(mine["days"]),
            "day": {"date": middle, "events": want["events_read"], "meter": strip(day_runs)},
            **{t: strip(v) for t, v in runs.items()},
        }

    def nightly(self, name: str, inp: dict) -> None:
        """`meter nightly` of one day end to end: the ingest of the day's
        files, the rollup of the day, its Stripe meter events, the limit
        alerts (the month so far billed from the daily aggregates), silent
        VMs and the compaction of the finished days.

        The input rotates weekly (files named after their first day), so on
        the last day D of a week a VM's files of that week hold D and the six
        days before it, which the lake already has: the nightly reads the
        whole week's files and writes D. The lake is the whole tree ingested
        up to D - 1 and rolled up, copied afresh before each run (untimed).
        Checked: D's events and exact cost equal the month's rollup of D.
        """
        weeks = self.a.days // 7
        if weeks == 0:
            log(f"nightly {name}: fewer than 7 days, no whole week to run on")
            return
        week = (weeks + 1) // 2  # a week in the middle of the month
        first = dt.date.fromisoformat(START) + dt.timedelta(days=7 * (week - 1))
        day = first + dt.timedelta(days=6)
        root = inp["root"]
        view = root / "nightly-input"
        files = link_tree(root / "full", view, [f"*/*/*-{first}.*"])
        size = tree_size(files)
        template, lake, out = root / "nightly-lake", self.work / "nightly-lake", self.work / "out" / "nightly"
        shutil.rmtree(template, ignore_errors=True)
        r = subprocess.run(self.meter("ingest", "--input", root / "full", "--lake", template,
                                      "--until", str(day - dt.timedelta(days=1))), capture_output=True)
        if r.returncode not in (0, 1):
            raise Failed(f"ingest of the nightly's lake exited {r.returncode}: {r.stderr.decode()[-2000:]}")
        r = subprocess.run(self.meter("rollup", "--lake", template, "--month", MONTH, "--pricing", REPO / "pricing.toml"),
                           capture_output=True)
        if r.returncode not in (0, 1):
            raise Failed(f"rollup of the nightly's lake exited {r.returncode}: {r.stderr.decode()[-2000:]}")
        cmd = self.meter("nightly", "--date", str(day), "--input", view, "--lake", lake, "--out", out,
                         "--pricing", REPO / "pricing.toml")
        want = self.month_days[name][str(day)]
        runs = []
        try:
            for i in range(self.a.runs):
                for d in (lake, out):
                    shutil.rmtree(d, ignore_errors=True)
                shutil.copytree(template, lake)
                self.note(cmd)
                r = timed(cmd, ok_codes=(0, 1))
                reports = [json.loads(p.read_text()) for p in (lake / "_runs").glob("*.json")]
                roll = max((x for x in reports if x.get("job") == "rollup"), key=lambda x: x["started_at"])
                got = {d["date"]: d for d in roll["days"]}
                if set(got) != {str(day)}:
                    raise Failed(f"nightly of {day} rolled up {sorted(got)}")
                if (got[str(day)]["priced"], Decimal(str(got[str(day)]["cost"]))) != \
                        (want["priced"], Decimal(str(want["cost"]))):
                    raise Failed(f"nightly of {day}: {got[str(day)]['priced']} events, cost {got[str(day)]['cost']}; "
                                 f"the month's rollup priced {want['priced']}, cost {want['cost']}")
                events = out / "stripe" / "daily" / str(day) / "meter_events.jsonl"
                if not events.is_file():
                    raise Failed(f"nightly of {day} wrote no {events}")
                runs.append(r)
                log(f"nightly {name} of {day} run {i + 1}: {r['wall']:.2f} s")
        finally:
            for d in (lake, out, template, view):
                shutil.rmtree(d, ignore_errors=True)
        self.results["nightly"][name] = {
            "date": str(day), "files": len(files), "bytes": size,
            "events": want["events_read"], "meter": strip(runs),
        }

    def object_storage(self, name: str, inp: dict) -> None:
        """The whole-tree ingest and the rollup with the input and the lake on S3.

        The server serves a folder on the same disk, so what differs from the
        disk runs is the S3 protocol (listings, ranged GETs in 1 MiB blocks,
        uploads, the commit records and the lease), not the bytes.
        """
        root = self.work / "s3"
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        server = S3Server(self.a.s3_server, root, inp["root"] / "full")
        requests = server.requests
        try:
            env, data, url = server.env, root / server.bucket, f"s3://{server.bucket}"
            ingest = self.meter("ingest", "--input", f"{url}/input", "--lake", f"{url}/lake")
            rollup = self.meter("rollup", "--lake", f"{url}/lake", "--month", MONTH, "--pricing", REPO / "pricing.toml")
            want = self.results["rollup"][name]
            runs: dict = {"ingest": [], "rollup": []}
            for i in range(self.a.runs):
                shutil.rmtree(data / "lake", ignore_errors=True)
                self.note(ingest)
                r = timed(ingest, env=env)
                r["requests"] = requests()
                report = json.loads(sorted((data / "lake" / "_runs").glob("*.json"))[-1].read_text())
                for table, t in inp["totals"]["tables"].items():
                    got = report["tables"].get(table, {"rows": 0})["rows"]
                    if got != t["rows"]:
                        raise Failed(f"meter ingest on S3: {table} rows {got}, sample wrote {t['rows']}")
                runs["ingest"].append(r)
                self.note(rollup)
                r = timed(rollup, ok_codes=(0, 1), env=env)
                r["requests"] = requests()
                reports = [json.loads(p.read_text()) for p in (data / "lake" / "_runs").glob("*.json")]
                mine = max((x for x in reports if x.get("job") == "rollup"), key=lambda x: x["started_at"])
                if Decimal(str(mine["cost"])) != Decimal(want["cost"]) or \
                        mine["events_priced"] + mine["events_unpriced"] != want["events"]:
                    raise Failed(f"rollup on S3: cost {mine['cost']}, local {want['cost']}")
                runs["rollup"].append(r)
                log(f"S3 {name} run {i + 1}: ingest {runs['ingest'][-1]['wall']:.2f} s, rollup {r['wall']:.2f} s")
            self.results["s3"][name] = {k: strip(v) for k, v in runs.items()}
        finally:
            server.close()
            shutil.rmtree(root, ignore_errors=True)

    def shards(self, name: str, inp: dict) -> None:
        """The whole tree ingested into a lake on S3 by 1, 2 and 4 shard
        processes started at once (`meter ingest --shard I/N`): the wall time
        until the last shard ends and the CPU seconds of all of them. On 2
        cores the shards share the machine, so the curve shows the cost of
        splitting (listing, leases, more and smaller files), not the gain of
        N machines; each shard's work is 1/N of the input.
        """
        root = self.work / "s3-shards"
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        server = S3Server(self.a.s3_server, root, inp["root"] / "full")
        try:
            env, data, url = server.env, root / server.bucket, f"s3://{server.bucket}"
            results = {}
            for n in (1, 2, 4):
                cmds = [self.meter("ingest", "--input", f"{url}/input", "--lake", f"{url}/lake", "--shard", f"{i}/{n}")
                        for i in range(n)]
                runs = []
                for i in range(self.a.runs):
                    shutil.rmtree(data / "lake", ignore_errors=True)
                    self.note(self.meter("ingest", "--input", f"{url}/input", "--lake", f"{url}/lake", "--shard", f"I/{n}"))
                    r = timed_all(cmds, env=env)
                    reports = [json.loads(p.read_text()) for p in (data / "lake" / "_runs").glob("*.json")]
                    if len(reports) != n:
                        raise Failed(f"{n} shards wrote {len(reports)} run reports")
                    for table, t in inp["totals"]["tables"].items():
                        got = sum(x["tables"].get(table, {"rows": 0})["rows"] for x in reports)
                        if got != t["rows"]:
                            raise Failed(f"meter ingest in {n} shards on S3: {table} rows {got}, sample wrote {t['rows']}")
                    runs.append(r)
                    log(f"S3 {name} ingest in {n} shard(s), run {i + 1}: {r['wall']:.2f} s wall, {r['cpu']:.2f} s CPU")
                results[str(n)] = strip(runs)
            self.results["shards"] = {"input": name, "runs": results}
        finally:
            server.close()
            shutil.rmtree(root, ignore_errors=True)

    def bill(self) -> None:
        for n in self.a.bill_customers:
            if str(n) not in self.results["bill"]:
                self.bill_of(n)
                self.save()
        # The smallest size again with a contract for every Nth customer.
        every = self.a.bill_contract_every
        n = min(self.a.bill_customers)
        if every and f"{n} contracts" not in self.results["bill"]:
            self.bill_of(n, every)
            self.save()

    def bill_of(self, n: int, contract_every: int = 0) -> None:
        # One day of usage for every VM: the month's invoices need every
        # customer, not a month of resource samples. A sample an hour (the
        # same compute hours as every 5 minutes) keeps 100,000 customers'
        # tree at a few GB instead of 19.
        name = f"bill-{n}" + (f"-contracts-{contract_every}" if contract_every else "")
        inp = self.generate(name, n, n, 1, shapes=False, events=1, resource_interval=3600,
                            contract_every=contract_every)
        lake = inp["root"] / "lake"
        if not (lake / "monthly").is_dir():
            subprocess.run(self.meter("ingest", "--input", inp["root"] / "full", "--lake", lake),
                           check=True, capture_output=True)
            r = subprocess.run(self.meter("rollup", "--lake", lake, "--month", MONTH, "--pricing", REPO / "pricing.toml"),
                               capture_output=True)
            if r.returncode not in (0, 1):
                raise Failed(f"rollup for billing exited {r.returncode}: {r.stderr.decode()[-2000:]}")
        out = self.work / "out" / "bill"
        cmd = self.meter("bill", "--lake", lake, "--month", MONTH, "--out", out, "--pricing", REPO / "pricing.toml")
        customers = sum(1 for _ in open(inp["root"] / "full" / "customers.csv")) - 1
        runs = []
        for i in range(self.a.runs):
            shutil.rmtree(out, ignore_errors=True)
            # ext4 skips inodes deleted in the last 5 s (305 s while their
            # table is unwritten) when it creates files: writing 100,000
            # invoices right after deleting the last run's took up to 3x as
            # long (perf: ext4_create). Start each run from a synced disk.
            os.sync()
            time.sleep(6)
            self.note(cmd)
            r = timed(cmd, ok_codes=(0, 1))
            # Not invoices: the summary and the prepaid credit balances.
            invoices = [p for p in (out / "invoices" / MONTH / "rev-1").glob("*.csv")
                        if p.name not in ("summary.csv", "credits.csv")]
            # Customers who left before the month have no invoice.
            if not (0.9 * customers <= len(invoices) <= customers):
                raise Failed(f"bill: {len(invoices)} invoices for {customers} customers")
            contracted = self.check_contracts(inp["root"] / "full" / "contracts.toml",
                                              out / "invoices" / MONTH / "rev-1" / "summary.csv")
            runs.append(r)
            log(f"bill {n} customers run {i + 1}: {r['wall']:.2f} s, {len(invoices)} invoices")
        shutil.rmtree(out, ignore_errors=True)
        key = f"{n} contracts" if contract_every else str(n)
        self.results["bill"][key] = {"customers": customers, "invoices": len(invoices), "contracts": contracted,
                                     "meter": strip(runs)}

    @staticmethod
    def check_contracts(contracts: Path, summary: Path) -> int:
        """The customers with a contract, each invoiced one checked to have the lines of its terms: a
        commitment true-up, prepaid credit applied, a discount."""
        if not contracts.is_file():
            return 0
        need: dict[str, set] = {}
        for table, body in re.findall(r'^\[\[(\w+)\]\]\n((?:[^\[\n].*\n?|\n(?!\[))*)', contracts.read_text(), re.M):
            cid = re.search(r'^customer_id = "([^"]+)"', body, re.M).group(1)
            column = {"credits": "credit", "discounts": "discounts"}.get(table)
            if table == "terms" and "commitment" in body:
                column = "commitment"
            need.setdefault(cid, set()).update([column] if column else [])
        invoiced = 0
        with open(summary, newline="") as f:
            for row in csv.DictReader(f):
                want = need.get(row["customer_id"])
                if want is None:
                    continue
                invoiced += 1
                missing = [c for c in want if row[c].strip("-0.") == ""]
                if missing:
                    raise Failed(f"bill: {row['customer_id']} has no {', '.join(missing)} on its invoice")
        if invoiced < 0.9 * len(need):
            raise Failed(f"bill: {invoiced} of {len(need)} contract customers invoiced")
        return len(need)

    def settings(self) -> dict:
        a = self.a
        return {"lines": a.lines, "scale": a.scale, "runs": a.runs, "days": a.days, "customers": a.customers,
                "bill_customers": a.bill_customers, "bill_contract_every": a.bill_contract_every,
                "meter": str(a.meter)}

    def save(self) -> None:
        state = {"settings": self.settings(), "results": self.results, "commands": self.commands}
        (self.work / "results.json").write_text(json.dumps(state, indent=1, default=str))

    def run(self) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        saved = self.work / "results.json"
        if self.a.resume and saved.is_file():
            state = json.loads(saved.read_text())
            if state.get("settings") == self.settings():
                self.results, self.commands = state["results"], state["commands"]
                log(f"resuming: {', '.join(k + ' ' + ','.join(v) for k, v in self.results.items() if v and k != 'commits')} done")
        # Which commit measured each stage: a resumed run keeps earlier
        # stages, and the report says so.
        commits = self.results.setdefault("commits", {})
        head = git_head()

        def stamp(*stages: str) -> None:
            for stage in stages:
                if self.results.get(stage):
                    commits.setdefault(stage, head)
        sizes = [("1x", self.a.lines), (f"{self.a.scale}x", self.a.lines * self.a.scale)]
        for name, lines in sizes:
            if name in self.results["rollup"]:
                continue
            inp = self.generate(name, lines, self.a.customers * (1 if name == "1x" else self.a.scale), self.a.days)
            if name not in self.results["shapes"]:
                self.ingest(name, inp)
                self.save()
                self.shapes(name, inp)
                self.save()
            self.rollup(name, inp)
            self.nightly(name, inp)
            if name == "1x":
                self.object_storage(name, inp)
            elif not self.results.get("shards"):
                self.shards(name, inp)
            # The lake is only the rollup's input: free the disk for the next size.
            shutil.rmtree(inp["root"] / "lake", ignore_errors=True)
            stamp("ingest", "shapes", "rollup", "nightly", "s3", "shards")
            self.save()
        self.bill()
        stamp("bill")
        self.save()
        write_report(self.a, self.py, self.results, self.commands)
        log(f"results written to {self.a.out}")


def git_head() -> str:
    return subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True).stdout.strip() or "?"


def strip(runs: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "stdout"} for r in runs]


# ---------------------------------------------------------------- report


def versions(py: Path, meter: Path) -> dict:
    def out(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True).stdout.strip()
        except OSError:
            return "?"
    peers = out([py, "-c", "import duckdb, polars, chdb, sys; "
                          "print(duckdb.__version__, polars.__version__, sys.version.split()[0], chdb.__version__)"]).split()
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = int(Path("/proc/meminfo").read_text().split()[1]) // (1024 * 1024)
    return {
        "meter": out([meter, "--version"]).removeprefix("meter ") + " (" + git_head() + ")",
        "rustc": out(["rustc", "--version"]),
        "duckdb": peers[0] if peers else "?",
        "polars": peers[1] if len(peers) > 1 else "?",
        "python": peers[2] if len(peers) > 2 else "?",
        "chdb": peers[3] if len(peers) > 3 else "?",
        "cores": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": mem,
        "kernel": platform.release(),
    }


PEER_ORDER = ("meter", "duckdb", "polars", "chdb")


def ingest_shapes(res: dict) -> dict:
    """Per input size and shape, the JSON ingest runs of every tool."""
    out = {}
    for name, tools in res["ingest"].items():
        out[name] = {"files": {t: tools[t] for t in PEER_ORDER if t in tools}, **res.get("shapes", {}).get(name, {})}
    return out


def mb(n: float) -> str:
    return f"{n / 1e6:,.0f}"


def write_report(a, py: Path, res: dict, commands: list[str]) -> None:
    v = versions(py, a.meter)
    L = []
    w = L.append
    w("# Benchmarks\n")
    w(f"Written by `bench/bench.py` ({'smoke run, ' if a.smoke else ''}{a.runs} runs per tool and input, "
      f"alternating; medians) on {dt.date.today()}.\n")
    commits = res.get("commits", {})
    if len(set(commits.values())) > 1:
        # A resumed run: say which commit measured which stage.
        by: dict = {}
        for stage, commit in commits.items():
            by.setdefault(commit, []).append(stage)
        v["meter"] += "; stages measured at " + "; ".join(f"{c}: {', '.join(s)}" for c, s in by.items())
    w(f"Machine: {v['cores']} cores ({v['cpu']}), {v['memory_gib']} GiB, Linux {v['kernel']}. "
      f"meter {v['meter']}, {v['rustc']}, release profile. DuckDB {v['duckdb']}, polars {v['polars']} and chDB {v['chdb']} "
      f"(PyPI, Python {v['python']}), all threads. Inputs are read from the page cache (every tool alike); "
      "outputs go to the same disk. Wall and CPU (user + system) seconds and peak RSS are GNU `time -v`'s.\n")
    w("## Inputs\n")
    w("| input | usage files | usage lines | usage MB | access MB | whole tree MB | whole tree lines |")
    w("|---|---:|---:|---:|---:|---:|---:|")
    for name, i in res["inputs"].items():
        if name.startswith("bill"):
            continue
        w(f"| {name} | {i['usage_files']:,} | {i['usage_lines']:,} | {mb(i['usage_bytes'])} | {mb(i['access_bytes'])} "
          f"| {mb(i['full_bytes'])} | {i['full_lines']:,} |")
    w("")
    w("## Ingest of JSON usage lines\n")
    w("Same files for every tool. meter checks, dedups and accounts for every line; the peers only convert "
      "(DuckDB `read_json` + `COPY ... PARTITION_BY`, polars `scan_ndjson` + partitioned `sink_parquet`, chDB "
      "`INSERT INTO TABLE FUNCTION file(...) PARTITION BY toDate(timestamp)`; zstd Parquet; bench/peers.py). "
      "Shapes: the sample's files (one per VM and day), and the same lines as one VM's single file in time "
      "order, plain and gzipped.\n")
    w("| input | shape | tool | wall s | CPU s | MB/s | lines/s | peak RSS MiB | meter's throughput vs this |")
    w("|---|---|---|---:|---:|---:|---:|---:|---:|")
    for name, shapes in ingest_shapes(res).items():
        i = res["inputs"][name]
        for shape, tools in shapes.items():
            mw = median(tools["meter"], "wall")
            for tool in PEER_ORDER:
                runs = tools[tool]
                wall = median(runs, "wall")
                w(f"| {name} | {shape} | {tool} | {wall:.2f} | {median(runs, 'cpu'):.2f} | {mb(i['usage_bytes'] / wall)} "
                  f"| {i['usage_lines'] / wall:,.0f} | {median(runs, 'rss_kib') / 1024:,.0f} | {wall / mw:.2f}x |")
    w("")
    w("MB/s is of the plain JSON bytes for every shape (the .gz file is smaller: "
      + ", ".join(f"{mb(i['one_gz_bytes'])} MB at {n}" for n, i in res["inputs"].items() if "one_gz_bytes" in i) + ").\n")
    w("## meter ingest of the other views\n")
    w("| input | view | lines | wall s | CPU s | MB/s | lines/s | peak RSS MiB |")
    w("|---|---|---:|---:|---:|---:|---:|---:|")
    for name, tools in res["ingest"].items():
        i = res["inputs"][name]
        for view, (nbytes, lines) in {"usage": (i["usage_bytes"], i["usage_lines"]),
                                      "access": (i["access_bytes"], i["access_lines"]),
                                      "full": (i["full_bytes"], i["full_lines"])}.items():
            runs = tools["meter" if view == "usage" else f"meter/{view}"]
            wall = median(runs, "wall")
            w(f"| {name} | {view} | {lines:,} | {wall:.2f} | {median(runs, 'cpu'):.2f} | {mb(nbytes / wall)} "
              f"| {lines / wall:,.0f} | {median(runs, 'rss_kib') / 1024:,.0f} |")
    w("")
    w("## A second ingest of the same input\n")
    w("The whole tree again into the lake that holds it: every line is found a duplicate and nothing is written.\n")
    w("| input | first wall s | again wall s | again CPU s | again peak RSS MiB | first vs again |")
    w("|---|---:|---:|---:|---:|---:|")
    for name, tools in res["ingest"].items():
        if "meter/again" not in tools:
            continue
        first, again = median(tools["meter/full"], "wall"), median(tools["meter/again"], "wall")
        w(f"| {name} | {first:.2f} | {again:.2f} | {median(tools['meter/again'], 'cpu'):.2f} | "
          f"{median(tools['meter/again'], 'rss_kib') / 1024:,.0f} | {first / again:.2f}x |")
    w("")
    w("## Rollup of the month\n")
    w("Pricing every api_usage event from pricing.toml in exact decimals and the daily and monthly aggregates "
      "of the four tables, from the whole-tree lake. Both tools agree on events priced, unpriced and the exact cost.\n")
    w("| input | events | days | cost USD | tool | wall s | CPU s | peak RSS MiB | vs meter |")
    w("|---|---:|---:|---:|---|---:|---:|---:|---:|")
    for name, r in res["rollup"].items():
        mw = median(r["meter"], "wall")
        for tool in ("meter", "duckdb"):
            wall = median(r[tool], "wall")
            w(f"| {name} | {r['events']:,} | {r['days']} | {r['cost']} | {tool} | {wall:.2f} | "
              f"{median(r[tool], 'cpu'):.2f} | {median(r[tool], 'rss_kib') / 1024:,.0f} | {wall / mw:.2f}x |")
    w("")
    w("One day of the same lake rolled up again (`meter rollup --date`, what the nightly runs): its events priced "
      "and its daily aggregates replaced; checked against the month's run for that day (events priced, exact cost).\n")
    w("| input | date | events | wall s | CPU s | peak RSS MiB |")
    w("|---|---|---:|---:|---:|---:|")
    for name, r in res["rollup"].items():
        if "day" in r:
            d = r["day"]
            w(f"| {name} | {d['date']} | {d['events']:,} | {median(d['meter'], 'wall'):.2f} | "
              f"{median(d['meter'], 'cpu'):.2f} | {median(d['meter'], 'rss_kib') / 1024:,.0f} |")
    w("")
    if res.get("nightly"):
        w("## Nightly of one day\n")
        w("`meter nightly` of one day end to end: the ingest of the files that hold the day (the input rotates weekly: "
          "the week's files up to that day, six days of which the lake already has), the rollup of the day, its Stripe "
          "meter events, the limit alerts (the month so far billed from the daily aggregates), silent VMs and the "
          "compaction of the finished days. The lake holds the month up to the day before, rolled up; checked: the "
          "day's events and exact cost equal the month's rollup of that day.\n")
        w("| input | date | files | MB | events of the day | wall s | CPU s | peak RSS MiB |")
        w("|---|---|---:|---:|---:|---:|---:|---:|")
        for name, n in res["nightly"].items():
            w(f"| {name} | {n['date']} | {n['files']:,} | {mb(n['bytes'])} | {n['events']:,} | "
              f"{median(n['meter'], 'wall'):.2f} | {median(n['meter'], 'cpu'):.2f} | "
              f"{median(n['meter'], 'rss_kib') / 1024:,.0f} |")
        w("")
    w("## Billing\n")
    w("`meter bill` of the month from its monthly rollup: every customer's invoice (fee prorated by active days, "
      "API lines under the allowance, compute hours, FX), summary.csv, the Stripe meter events and the manifest, "
      "written as a revision. The input has one day of usage for each of the customers' VMs.\n")
    w("With contracts: every Nth customer (`meter sample --contract-every N`) has one, the kinds in turn: a "
      "commitment paid from prepaid credit, a commitment whose terms change on the 12th into graduated token "
      "tiers, 10% off the invoice; each invoice checked to have the lines of its terms.\n")
    w("| customers | with contracts | invoices | wall s | CPU s | peak RSS MiB |")
    w("|---:|---:|---:|---:|---:|---:|")
    for b in res["bill"].values():
        w(f"| {b['customers']:,} | {b.get('contracts', 0):,} | {b['invoices']:,} | {median(b['meter'], 'wall'):.2f} | "
          f"{median(b['meter'], 'cpu'):.2f} | {median(b['meter'], 'rss_kib') / 1024:,.0f} |")
    w("")
    if res.get("s3"):
        w("## Object storage\n")
        w("`--input` and `--lake` on S3: the tests' S3-protocol server (s3s over a folder, `examples/s3-server.rs`) "
          "on 127.0.0.1, on the same 2 cores and disk; the input is uploaded to it first. Same checks as on disk: every table's rows, "
          "and the rollup's events and exact cost.\n")
        w("| input | job | disk wall s | S3 wall s | S3 CPU s | S3 requests | disk peak RSS MiB | S3 peak RSS MiB | S3 vs disk |")
        w("|---|---|---:|---:|---:|---:|---:|---:|---:|")
        for name, r in res["s3"].items():
            disk = {"ingest": res["ingest"][name]["meter/full"], "rollup": res["rollup"][name]["meter"]}
            for job in ("ingest", "rollup"):
                dw, sw = median(disk[job], "wall"), median(r[job], "wall")
                w(f"| {name} | {job} | {dw:.2f} | {sw:.2f} | {median(r[job], 'cpu'):.2f} | {median(r[job], 'requests'):,.0f} | "
                  f"{median(disk[job], 'rss_kib') / 1024:,.0f} | {median(r[job], 'rss_kib') / 1024:,.0f} | {sw / dw:.2f}x |")
        w("")
    if res.get("shards"):
        sh = res["shards"]
        i = res["inputs"][sh["input"]]
        w("## One ingest split into shards\n")
        w(f"The {sh['input']} input's whole tree ({mb(i['full_bytes'])} MB) ingested into a lake on the S3 test server by N "
          "`meter ingest --shard I/N` processes started at once (I = 0..N-1), on the same 2 cores. Wall: until the last shard "
          "ends; CPU: the sum over the shards. Checked: the shards' reports add up to every table's rows.\n")
        w("| shards | wall s | CPU s (sum) | largest peak RSS MiB | wall vs 1 |")
        w("|---:|---:|---:|---:|---:|")
        one = median(sh["runs"]["1"], "wall")
        for n, runs in sh["runs"].items():
            w(f"| {n} | {median(runs, 'wall'):.2f} | {median(runs, 'cpu'):.2f} | {median(runs, 'rss_kib') / 1024:,.0f} | "
              f"{median(runs, 'wall') / one:.2f}x |")
        w("")
    w("## Against the targets\n")
    w("Issue 19's ingest targets (throughput against the fastest peer on the same files, for every shape and size; "
      "memory on every shape), then issue 20's rollup and billing targets.\n")
    shapes = ingest_shapes(res)
    names = list(shapes)
    base, big = names[0], names[-1]
    rows = []
    for name, by_shape in shapes.items():
        for shape, tools in by_shape.items():
            mw = median(tools["meter"], "wall")
            peer, pw = min(((t, median(tools[t], "wall")) for t in PEER_ORDER[1:] if t in tools), key=lambda x: x[1])
            rows.append((f"JSON {name} {shape}: >= 2x the fastest peer (3x the aim)",
                         f"{pw / mw:.2f}x ({peer} {pw:.2f} s, meter {mw:.2f} s)", pw / mw >= 2))
    for shape in shapes[base]:
        r1 = median(shapes[base][shape]["meter"], "rss_kib") / 1024
        r4 = median(shapes[big][shape]["meter"], "rss_kib") / 1024
        rows.append((f"peak RSS {shape}: <= 300 MiB, {big} within 20% of {base}",
                     f"{r1:.0f} MiB, {r4:.0f} MiB ({r4 / r1 - 1:+.0%})", max(r1, r4) <= 300 and abs(r4 / r1 - 1) <= 0.2))
    for name in names:
        ing = res["ingest"][name]
        i = res["inputs"][name]
        json_rate = i["usage_bytes"] / median(ing["meter"], "wall")
        access_rate = i["access_bytes"] / median(ing["meter/access"], "wall")
        rows.append((f"access logs {name}: at least the JSON rate per byte", f"{mb(access_rate)} vs {mb(json_rate)} MB/s",
                     access_rate >= json_rate))
        full_rate = i["full_bytes"] / median(ing["meter/full"], "wall")
        rows.append((f"whole tree {name}: >= 2x 87 MB/s (174 MB/s)", f"{mb(full_rate)} MB/s", full_rate >= 174e6))
        if "meter/again" in ing:
            ratio = median(ing["meter/full"], "wall") / median(ing["meter/again"], "wall")
            rows.append((f"second ingest {name}: >= 3x faster than the first", f"{ratio:.2f}x", ratio >= 3))
    # Issue 20: the month's rollup at least 2x faster than the DuckDB SQL,
    # at most 1 GiB at the larger size; billing 10,000 customers in 3 s,
    # 100,000 in 30 s and 1 GiB.
    for name in names:
        roll = res["rollup"][name]
        rm, rd = median(roll["meter"], "wall"), median(roll["duckdb"], "wall")
        rows.append((f"rollup of the month {name}: >= 2x faster than DuckDB's SQL",
                     f"{rd / rm:.2f}x ({rm:.2f} s vs {rd:.2f} s)", rd / rm >= 2))
    rss = median(res["rollup"][big]["meter"], "rss_kib") / 1024
    rows.append((f"rollup of the month {big}: peak RSS <= 1 GiB", f"{rss:,.0f} MiB", rss <= 1024))
    limits = {10_000: (3, None), 100_000: (30, 1024)}
    for b in res["bill"].values():
        bw, brss = median(b["meter"], "wall"), median(b["meter"], "rss_kib") / 1024
        # A run of another size is held to the limits of the nearest listed one.
        size = min(limits, key=lambda k: abs(k - b["customers"]))
        wall_limit, rss_limit = limits[size]
        with_contracts = f" ({b['contracts']:,} with contracts)" if b.get("contracts") else ""
        target = (f"billing {b['customers']:,} customers{with_contracts}: <= {wall_limit} s"
                  + (f" and {rss_limit:,} MiB" if rss_limit else ""))
        ok = bw <= wall_limit and (rss_limit is None or brss <= rss_limit)
        rows.append((target, f"{bw:.2f} s, {brss:,.0f} MiB", ok))
    w("| target | measured | met |")
    w("|---|---|---|")
    for t, m, ok in rows:
        w(f"| {t} | {m} | {'yes' if ok else '**no**'} |")
    w("")
    w("## Commands\n")
    w("`$WORK` is the work folder (`--work`). Inputs:\n")
    w("```")
    for name, i in res["inputs"].items():
        w(i["totals"]["command"].replace(str(a.work), "$WORK").replace(str(a.meter), "meter"))
    w("```\n")
    w("Timed, each under `/usr/bin/time -v`:\n")
    w("```")
    L.extend(commands)
    w("```\n")
    w("Reproduce: `just bench` (or `cargo build --release && cargo build --release --example s3-server && python3 bench/bench.py`).\n")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text("\n".join(L))


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Failed as e:
        print(f"bench: FAILED: {e}", file=sys.stderr)
        sys.exit(2)
