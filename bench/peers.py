#!/usr/bin/env python3
"""Peer implementations of meter's jobs, for the benchmark.

Run with the bench venv (stdlib + duckdb + polars + chdb only):

    python bench/peers.py duckdb-ingest --files GLOB --out DIR [--threads N]
    python bench/peers.py polars-ingest --files GLOB --out DIR [--threads N]
    python bench/peers.py chdb-ingest --files GLOB --out DIR [--threads N]
    python bench/peers.py sums --glob GLOB
    python bench/peers.py duckdb-rollup --lake DIR --pricing FILE --month YYYY-MM \
        --out DIR [--threads N]

Each subcommand prints exactly one JSON object on stdout and exits 0, or
prints `peers.py <subcommand>: error: ...` on stderr and exits 1. The timed
subcommands do the work only: no verification passes inside them.

* `duckdb-ingest` / `polars-ingest` / `chdb-ingest` read JSON usage lines (formats.md 1a) with
  an explicit schema and write Parquet (zstd) partitioned hive-style by the
  UTC date of `timestamp` (`DIR/date=YYYY-MM-DD/*.parquet`). Columns keep the
  raw field names (`cache_creation_tokens`, `user`, ...); `timestamp` is a
  UTC timestamp.
* `sums` adds up token columns of Parquet files, whichever naming they use
  (peers' raw `cache_creation_tokens`, meter's lake `cache_write_tokens`).
* `duckdb-rollup` does what `meter rollup --month` does (schemas/rollup.md)
  as DuckDB SQL over a meter lake, writing into `--out`:
  `priced/api_usage/date=D/`, `daily/<table>/date=D/`,
  `monthly/<table>/month=YYYY-MM/`. Pricing follows pipeline/model/pricing.rs
  exactly, in DECIMAL(38,18) (never DOUBLE): see `load_pricing` and
  `PRICED_SQL`.
"""

from __future__ import annotations

import argparse
import glob as globmod
import json
import os
import re
import sys
from datetime import date, datetime
from decimal import Decimal, InvalidOperation

# ------------------------------------------------------------------ common

# The JSON usage line fields (formats.md 1a) and their types.
USAGE_FIELDS = [
    ("timestamp", "ts"),
    ("path", "str"),
    ("status", "int"),
    ("model", "str"),
    ("input_tokens", "int"),
    ("output_tokens", "int"),
    ("request_id", "str"),
    ("provider", "str"),
    ("cache_read_tokens", "int"),
    ("cache_creation_tokens", "int"),
    ("reasoning_tokens", "int"),
    ("latency_ms", "int"),
    ("api_key", "str"),
    ("user", "str"),
]

# Token columns `sums` reports, in output order.
SUM_COLUMNS = [
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_creation_tokens",
    "reasoning_tokens",
    "cache_write_tokens",
]

EVENT_TABLES = ["api_usage", "api_requests", "resource_usage", "activity"]

MONEY = "DECIMAL(38,18)"
MONEY_SCALE = 18


class Failure(Exception):
    """A clear, user-facing failure."""


def emit(obj) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def sql_str(s: str) -> str:
    """A SQL string literal."""
    return "'" + str(s).replace("'", "''") + "'"


def sql_list(paths) -> str:
    return "[" + ", ".join(sql_str(p) for p in paths) + "]"


def duck(threads: int | None = None):
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET enable_progress_bar = false")
    con.execute("SET preserve_insertion_order = false")
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    return con


def need_files(pattern: str) -> None:
    """Fails clearly when a glob matches nothing (DuckDB's message is vague)."""
    if not globmod.glob(pattern, recursive=True):
        raise Failure(f"no files match {pattern!r}")


# ------------------------------------------------------------------ ingest


def cmd_duckdb_ingest(args) -> dict:
    need_files(args.files)
    types = {"ts": "TIMESTAMPTZ", "str": "VARCHAR", "int": "BIGINT"}
    columns = ", ".join(f"{sql_str(n)}: {sql_str(types[t])}" for n, t in USAGE_FIELDS)
    select = ", ".join(f'"{n}"' for n, _ in USAGE_FIELDS)
    con = duck(args.threads)
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    row = con.execute(
        f"""
        COPY (
            SELECT {select}, CAST("timestamp" AS DATE) AS date
            FROM read_json({sql_str(args.files)},
                           format = 'newline_delimited',
                           columns = {{{columns}}})
        ) TO {sql_str(out)} (FORMAT parquet, PARTITION_BY (date),
                             COMPRESSION zstd, OVERWRITE)
        """
    ).fetchall()[0]
    return {"rows": int(row[0])}


def cmd_polars_ingest(args) -> dict:
    need_files(args.files)
    if args.threads:
        os.environ["POLARS_MAX_THREADS"] = str(int(args.threads))
    import polars as pl

    types = {"ts": pl.String, "str": pl.String, "int": pl.Int64}
    schema = {n: types[t] for n, t in USAGE_FIELDS}
    lf = (
        pl.scan_ndjson(args.files, schema=schema)
        .with_columns(
            pl.col("timestamp").str.to_datetime(
                "%Y-%m-%dT%H:%M:%S%.fZ", time_unit="us", time_zone="UTC"
            )
        )
        .with_columns(pl.col("timestamp").dt.date().alias("date"))
    )
    written = []
    os.makedirs(args.out, exist_ok=True)
    lf.sink_parquet(
        pl.PartitionBy(args.out, key="date", include_key=False),
        compression="zstd",
        mkdir=True,
        engine="streaming",
        sinked_paths_callback=written.append,
    )
    if not written:
        return {}
    return {"rows": sum(p.num_rows for a in written for p in a.paths)}


def cmd_chdb_ingest(args) -> dict:
    """ClickHouse in-process (chDB): `file(..., 'JSONEachRow', schema)` into
    Parquet partitioned by date, as the ClickHouse documentation writes it.
    A `.gz` file is decompressed by chDB itself (compression from the name)."""
    need_files(args.files)
    import chdb

    types = {"ts": "Nullable(DateTime64(6, 'UTC'))", "str": "Nullable(String)", "int": "Nullable(Int64)"}
    schema = ", ".join(f"{n} {types[t]}" for n, t in USAGE_FIELDS)
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    settings = [
        "date_time_input_format = 'best_effort'",
        "output_format_parquet_compression_method = 'zstd'",
        "engine_file_truncate_on_insert = 1",
    ]
    if args.threads:
        settings.append(f"max_threads = {int(args.threads)}")
    select = ", ".join(f"`{n}`" for n, _ in USAGE_FIELDS)
    sql = (
        f"INSERT INTO TABLE FUNCTION file({sql_str(out + '/date={_partition_id}/data.parquet')}, 'Parquet') "
        f"PARTITION BY toDate(`timestamp`) "
        f"SELECT {select} FROM file({sql_str(os.path.abspath(args.files))}, 'JSONEachRow', {sql_str(schema)}) "
        f"SETTINGS {', '.join(settings)}"
    )
    chdb.query(sql)
    return {}


# -------------------------------------------------------------------- sums


def cmd_sums(args) -> dict:
    need_files(args.glob)
    con = duck()
    src = (
        f"read_parquet({sql_str(args.glob)}, hive_partitioning = false, "
        f"union_by_name = true)"
    )
    present = {r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {src}").fetchall()}
    cols = [c for c in SUM_COLUMNS if c in present]
    exprs = ["count(*)"] + [f'coalesce(sum("{c}"), 0)' for c in cols]
    row = con.execute(f"SELECT {', '.join(exprs)} FROM {src}").fetchall()[0]
    out = {"rows": int(row[0])}
    for c, v in zip(cols, row[1:]):
        out[c] = int(v)
    return out


# ----------------------------------------------------------------- pricing

# Rust's `char::is_whitespace` (Unicode White_Space), which `str::trim` drops.
RUST_WS = (
    "\u0009\u000a\u000b\u000c\u000d\u0020\u0085\u00a0\u1680"
    "\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)
ASCII_LOWER = str.maketrans(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz"
)


def normalize_model(raw: str) -> str:
    """pricing.rs `normalize_model`: trim, ASCII lower-case, drop a
    `models/` prefix, then drop everything up to the first `/`."""
    m = raw.strip(RUST_WS).translate(ASCII_LOWER)
    if m.startswith("models/"):
        m = m[len("models/"):]
    if "/" in m:
        m = m.split("/", 1)[1]
    return m


RATE_KINDS = ["input", "cache_read", "cache_write", "output", "reasoning"]


def _price(value, where: str) -> Decimal | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise Failure(f"{where}: prices are decimal strings, got {value!r}")
    try:
        d = Decimal(value.strip())
    except InvalidOperation:
        raise Failure(f"{where}: {value!r} is not a decimal number") from None
    if not d.is_finite() or (d < 0):
        raise Failure(f"{where}: {value!r} is not a non-negative price")
    return d


def _per_token(rate: Decimal | None, where: str) -> str | None:
    """A per-1M price as an exact per-token DECIMAL(38,18) literal: cost is
    then sum(tokens x rate) with no division (a DuckDB decimal division
    would go through DOUBLE)."""
    if rate is None:
        return None
    per = rate.scaleb(-6)
    if per != per.quantize(Decimal(1).scaleb(-MONEY_SCALE)):
        raise Failure(
            f"{where}: {rate} per 1M tokens has more than {MONEY_SCALE} decimal "
            "places per token; refusing to round"
        )
    return format(per.quantize(Decimal(1).scaleb(-MONEY_SCALE)), "f")


def load_pricing(path: str):
    """pricing.toml -> (currency, matchers, bands).

    matchers: (exact {name: key}, prefixes [(prefix, key)] longest first,
    {key: first effective_from}).
    bands: one row per (entry, tier range): key, entry dates [from, to),
    context range (lo, hi], per-token rates (None where the model has no
    such price), the tier threshold (None for base rates). The reasoning rate
    is already resolved: tier reasoning, else base reasoning, else the
    (tier-overlaid) output rate, as `Rates::overlay` then
    `rates.reasoning.or(rates.output)` in `Pricing::price`.
    """
    import tomllib

    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except OSError as e:
        raise Failure(f"cannot read pricing {path}: {e}") from None
    except tomllib.TOMLDecodeError as e:
        raise Failure(f"{path}: {e}") from None
    currency = str(doc.get("currency", "")).strip().upper()
    if not currency:
        raise Failure(f"{path}: no currency")
    by_key: dict[str, list] = {}
    matchers: dict[str, tuple] = {}
    for i, m in enumerate(doc.get("models", [])):
        key = m.get("key", "")
        at = f"{path}: models[{i}] ({key})"
        if not str(key).strip():
            raise Failure(f"{path}: models[{i}].key is empty")
        try:
            eff = datetime.strptime(m["effective_from"], "%Y-%m-%d").date()
        except (KeyError, TypeError, ValueError):
            raise Failure(f"{at}.effective_from: not a YYYY-MM-DD date") from None
        base = {k: _price(m.get(k), f"{at}.{k}") for k in RATE_KINDS}
        if base["input"] is None or base["output"] is None:
            raise Failure(f"{at}: input and output prices are required")
        tiers = []
        for j, t in enumerate(m.get("tiers", [])):
            above = t.get("above_input_tokens")
            if not isinstance(above, int) or above <= 0:
                raise Failure(f"{at}.tiers[{j}].above_input_tokens: must be above 0")
            tiers.append(
                (above, {k: _price(t.get(k), f"{at}.tiers[{j}].{k}") for k in RATE_KINDS})
            )
        tiers.sort(key=lambda t: t[0])
        names = sorted({normalize_model(n) for n in m.get("names", [])})
        patterns = [p.strip(RUST_WS).translate(ASCII_LOWER) for p in m.get("patterns", [])]
        for p in patterns:
            if p.count("*") != 1 or not p.endswith("*") or len(p) < 2:
                raise Failure(f"{at}.patterns: {p!r}: a pattern is a prefix followed by one `*`")
        if key not in by_key:
            by_key[key] = []
            matchers[key] = (names, patterns)
        if any(e[0] == eff for e in by_key[key]):
            raise Failure(f"{at}: overlapping effective dates: {key} already has prices from {eff}")
        by_key[key].append((eff, base, tiers))
    exact: dict[str, str] = {}
    prefixes: list[tuple[str, str]] = []
    for key, (names, patterns) in matchers.items():
        for n in names:
            if exact.get(n, key) != key:
                raise Failure(f"{path}: {n!r} is a name of {exact[n]} and {key}")
            exact[n] = key
        prefixes.extend((p[:-1], key) for p in patterns)
    prefixes.sort(key=lambda pk: (-len(pk[0]), pk[0]))
    first_from: dict[str, date] = {}
    bands = []
    far = date(9999, 12, 31)
    for key, entries in by_key.items():
        entries.sort(key=lambda e: e[0])
        first_from[key] = entries[0][0]
        for n, (eff, base, tiers) in enumerate(entries):
            until = entries[n + 1][0] if n + 1 < len(entries) else far
            thresholds = [None] + [t[0] for t in tiers]
            overlays = [{}] + [t[1] for t in tiers]
            for b, (tier, over) in enumerate(zip(thresholds, overlays)):
                rates = {k: over.get(k) if over.get(k) is not None else base[k] for k in RATE_KINDS}
                # reasoning: tier, else base reasoning, else the overlaid output
                if rates["reasoning"] is None:
                    rates["reasoning"] = rates["output"]
                lo = -1 if tier is None else tier
                hi = thresholds[b + 1] if b + 1 < len(thresholds) else 2**63 - 1
                where = f"{path}: {key} from {eff}"
                bands.append(
                    (key, eff, until, lo, hi, tier)
                    + tuple(_per_token(rates[k], f"{where} {k}") for k in RATE_KINDS)
                )
    return currency, (exact, prefixes, first_from), bands


def model_key(raw: str, exact, prefixes) -> str | None:
    name = normalize_model(raw)
    if name in exact:
        return exact[name]
    for prefix, key in prefixes:
        if name.startswith(prefix):
            return key
    return None


# ------------------------------------------------------------------ rollup

# Prices the month's api_usage events. {events}: the deduplicated events
# (`unique_events`); {cols}: the api_usage columns in lake order.
#   _i/_cr/_cw/_o: token counts, negatives as 0 (pricing.rs reads u64)
#   _r: min(reasoning, output)
#   band: the entry in force on the UTC date of ts whose context range
#         (lo, hi] holds input + cache_read + cache_write
PRICED_SQL = """
WITH ev AS (
    {events}
), x AS (
    SELECT ev.*, mm.key AS _key, mm.first_from AS _first,
           greatest(input_tokens, 0) AS _i,
           greatest(cache_read_tokens, 0) AS _cr,
           greatest(cache_write_tokens, 0) AS _cw,
           greatest(output_tokens, 0) AS _o,
           least(greatest(reasoning_tokens, 0), greatest(output_tokens, 0)) AS _r,
           CAST(ts AS DATE) AS _day
    FROM ev LEFT JOIN model_map mm ON ev.model = mm.model
), y AS (
    SELECT x.*, b.key AS _bkey, b.effective_from AS _from, b.tier AS _tier,
           b.r_input, b.r_cache_read, b.r_cache_write, b.r_output, b.r_reasoning
    FROM x LEFT JOIN bands b
      ON b.key = x._key
     AND x._day >= b.effective_from AND x._day < b.until
     AND x._i + x._cr + x._cw > b.lo AND x._i + x._cr + x._cw <= b.hi
), z AS (
    SELECT y.*,
        CASE
            WHEN _key IS NULL THEN 'no price matches the model'
            WHEN _bkey IS NULL THEN _key || ' has no price before ' || strftime(_first, '%Y-%m-%d')
            WHEN _i > 0 AND r_input IS NULL THEN _key || ' has no input price but the event has such tokens'
            WHEN _cr > 0 AND r_cache_read IS NULL THEN _key || ' has no cache_read price but the event has such tokens'
            WHEN _cw > 0 AND r_cache_write IS NULL THEN _key || ' has no cache_write price but the event has such tokens'
            WHEN _o - _r > 0 AND r_output IS NULL THEN _key || ' has no output price but the event has such tokens'
            WHEN _r > 0 AND r_reasoning IS NULL THEN _key || ' has no reasoning price but the event has such tokens'
        END AS _why
    FROM y
)
SELECT {cols},
    CASE WHEN _why IS NULL THEN CAST(
          _i * coalesce(r_input, 0::{money})
        + _cr * coalesce(r_cache_read, 0::{money})
        + _cw * coalesce(r_cache_write, 0::{money})
        + (_o - _r) * coalesce(r_output, 0::{money})
        + _r * coalesce(r_reasoning, 0::{money}) AS {money}) END AS cost,
    {currency} AS currency,
    _why IS NULL AS priced,
    CASE WHEN _why IS NULL THEN _key END AS price_key,
    CASE WHEN _why IS NULL THEN _from END AS price_effective_from,
    CASE WHEN _why IS NULL THEN _tier END AS price_tier,
    _why AS unpriced_reason,
    date
FROM z
"""


def _stats(column: str) -> str:
    """`<c>_sum, <c>_count, <c>_max` as the rollup stores them (a sum of
    nothing is 0, as polars sums)."""
    return (
        f"coalesce(sum({column}), 0) AS {column}_sum, "
        f"count({column}) AS {column}_count, max({column}) AS {column}_max"
    )


def _sum_i64(column: str) -> str:
    return f"CAST(coalesce(sum({column}), 0) AS BIGINT) AS {column}"


# Per table: keys, daily measures (SQL over deduplicated events `ev`), the
# measures that add up and those that combine by maximum (rollup.md).
SPECS = {
    "api_usage": {
        "keys": ["customer_id", "vm_id", "user_id", "provider", "model"],
        "daily": [
            "count(*) AS requests",
            "CAST(coalesce(sum(CAST(failed AS BIGINT)), 0) AS BIGINT) AS failed",
            _sum_i64("input_tokens"),
            _sum_i64("cache_read_tokens"),
            _sum_i64("cache_write_tokens"),
            _sum_i64("output_tokens"),
            _sum_i64("reasoning_tokens"),
            f"coalesce(sum(cost), 0::{MONEY}) AS cost",
            "CAST(coalesce(sum(CAST(NOT priced AS BIGINT)), 0) AS BIGINT) AS unpriced_requests",
            "CAST(coalesce(sum(CASE WHEN NOT priced THEN input_tokens + cache_read_tokens"
            " + cache_write_tokens + output_tokens END), 0) AS BIGINT) AS unpriced_tokens",
            "CAST(coalesce(sum(latency_ms), 0) AS BIGINT) AS latency_ms_sum",
            "count(latency_ms) AS latency_ms_count",
            "max(latency_ms) AS latency_ms_max",
        ],
        "columns": [
            "customer_id", "vm_id", "user_id", "provider", "model", "failed",
            "input_tokens", "cache_read_tokens", "cache_write_tokens",
            "output_tokens", "reasoning_tokens", "cost", "priced", "latency_ms",
        ],
        "sums": [
            "requests", "failed", "input_tokens", "cache_read_tokens",
            "cache_write_tokens", "output_tokens", "reasoning_tokens", "cost",
            "unpriced_requests", "unpriced_tokens", "latency_ms_sum", "latency_ms_count",
        ],
        "maxes": ["latency_ms_max"],
    },
    "api_requests": {
        "keys": ["customer_id", "vm_id", "provider", "path", "status_class"],
        "daily": [
            "count(*) AS requests",
            _sum_i64("bytes"),
            "CAST(coalesce(sum(latency_us), 0) AS BIGINT) AS latency_us_sum",
            "count(latency_us) AS latency_us_count",
            "max(latency_us) AS latency_us_max",
        ],
        "columns": ["customer_id", "vm_id", "provider", "path",
                    "CAST(status // 100 * 100 AS INTEGER) AS status_class",
                    "bytes", "latency_us"],
        "sums": ["requests", "bytes", "latency_us_sum", "latency_us_count"],
        "maxes": ["latency_us_max"],
    },
    "resource_usage": {
        "keys": ["customer_id", "vm_id"],
        "daily": [
            _stats("cpu_percent"),
            _stats("memory_percent"),
            "max(disk_gb) AS disk_gb_max",
            "coalesce(sum(network_in_mb), 0) AS network_in_mb",
            "coalesce(sum(network_out_mb), 0) AS network_out_mb",
        ],
        "columns": ["customer_id", "vm_id", "ts", "measurement", "cpu_percent",
                    "memory_percent", "disk_gb", "network_in_mb", "network_out_mb"],
        "sums": [
            "samples", "compute_seconds", "cpu_percent_sum", "cpu_percent_count",
            "memory_percent_sum", "memory_percent_count", "network_in_mb", "network_out_mb",
        ],
        "maxes": ["cpu_percent_max", "memory_percent_max", "disk_gb_max"],
    },
    "activity": {
        "keys": ["customer_id", "vm_id", "user_id", "activity_type", "pattern_name"],
        "daily": [
            "count(*) AS count",
            "CAST(coalesce(sum(CAST(exit_code IS NOT NULL AND exit_code <> 0 AS BIGINT)), 0)"
            " AS BIGINT) AS failures",
            _stats("duration_seconds"),
        ],
        "columns": ["customer_id", "vm_id", "user_id", "activity_type",
                    "pattern_name", "duration_seconds", "exit_code"],
        "sums": ["count", "failures", "duration_seconds_sum", "duration_seconds_count"],
        "maxes": ["duration_seconds_max"],
    },
}

# Measures that are not BIGINT when summed over days.
MONEY_SUMS = {"cost": MONEY}
FLOAT_SUMS = {
    "cpu_percent_sum", "memory_percent_sum", "network_in_mb", "network_out_mb",
    "duration_seconds_sum",
}

# Compute time per (date, VM): distinct sample times of rows measured as
# `sample` or `cpu`; interval = median (lower) of the gaps between
# consecutive times in whole seconds, ignoring gaps of 0 s and over 3600 s;
# 300 s when there is none.
COMPUTE_SQL = """
SELECT date, vm_id, count(*) AS samples,
       count(*) * coalesce(quantile_disc(gap, 0.5) FILTER (WHERE gap > 0 AND gap <= 3600), 300)
           AS compute_seconds
FROM (
    SELECT date, vm_id, t,
           (t - lag(t) OVER (PARTITION BY date, vm_id ORDER BY t)) // 1000000 AS gap
    FROM (SELECT DISTINCT date, vm_id, epoch_us(ts) AS t FROM ev
          WHERE measurement IN ('sample', 'cpu'))
)
GROUP BY date, vm_id
"""


def unique_events(files: list[str], columns: str | None = None) -> str:
    """SQL for a table's events, each `event_id` once per day (the hive
    `date` of its partition), keeping the first occurrence in file order
    (files sorted by name, then row order) as meter does. Duplicates are
    found on narrow columns and anti-joined away, so the wide rows keep their
    scan order (cheaper to write than a DISTINCT ON's hash order)."""
    src = (
        f"read_parquet({sql_list(files)}, hive_partitioning = true, "
        "filename = true, file_row_number = true)"
    )
    select = columns or "* EXCLUDE (filename, file_row_number)"
    return (
        f"SELECT {select} FROM {src} ANTI JOIN ("
        f"SELECT filename, file_row_number FROM {src} "
        "QUALIFY row_number() OVER (PARTITION BY date, event_id "
        "ORDER BY filename, file_row_number) > 1"
        ") USING (filename, file_row_number)"
    )


def month_files(lake: str, table: str, month: str) -> list[str]:
    pattern = os.path.join(lake, table, f"date={month}-[0-3][0-9]", "*.parquet")
    return sorted(globmod.glob(pattern))


def copy_partitioned(con, query: str, out: str, by: str) -> int:
    os.makedirs(out, exist_ok=True)
    row = con.execute(
        f"COPY ({query}) TO {sql_str(out)} "
        f"(FORMAT parquet, PARTITION_BY ({by}), COMPRESSION zstd, OVERWRITE)"
    ).fetchall()[0]
    return int(row[0])


def cmd_duckdb_rollup(args) -> dict:
    if not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", args.month):
        raise Failure(f"--month {args.month!r} is not YYYY-MM")
    lake = os.path.abspath(args.lake)
    if not os.path.isdir(lake):
        raise Failure(f"--lake {args.lake}: no such directory")
    out = os.path.abspath(args.out)
    currency, (exact, prefixes, first_from), bands = load_pricing(args.pricing)
    con = duck(args.threads)

    con.execute(
        f"""CREATE TEMP TABLE bands (key VARCHAR, effective_from DATE, until DATE,
            lo BIGINT, hi BIGINT, tier BIGINT, r_input {MONEY}, r_cache_read {MONEY},
            r_cache_write {MONEY}, r_output {MONEY}, r_reasoning {MONEY})"""
    )
    con.executemany(
        "INSERT INTO bands VALUES (?, ?, ?, ?, ?, ?, "
        + ", ".join([f"CAST(? AS {MONEY})"] * 5) + ")",
        bands,
    )

    files = {t: month_files(lake, t, args.month) for t in EVENT_TABLES}
    daily_rows = {t: 0 for t in EVENT_TABLES}
    monthly_rows = {t: 0 for t in EVENT_TABLES}

    # priced/api_usage
    con.execute("CREATE TEMP TABLE model_map (model VARCHAR, key VARCHAR, first_from DATE)")
    if files["api_usage"]:
        usage = f"read_parquet({sql_list(files['api_usage'])}, hive_partitioning = true)"
        # Raw model name -> model key, as pricing.rs `model_index` matches
        # (exact names, then prefix patterns), for the names the month has.
        models = [r[0] for r in con.execute(
            f"SELECT DISTINCT model FROM {usage} WHERE model IS NOT NULL"
        ).fetchall()]
        rows = []
        for m in models:
            k = model_key(m, exact, prefixes)
            if k is not None:
                rows.append((m, k, first_from[k]))
        if rows:
            con.executemany("INSERT INTO model_map VALUES (?, ?, ?)", rows)
        cols = [
            r[0]
            for r in con.execute(f"DESCRIBE SELECT * FROM {usage}").fetchall()
            if r[0] != "date"
        ]
        priced = PRICED_SQL.format(
            events=unique_events(files["api_usage"]),
            cols=", ".join(f'"{c}"' for c in cols),
            money=MONEY,
            currency=sql_str(currency),
        )
        priced_dir = os.path.join(out, "priced", "api_usage")
        copy_partitioned(con, priced, priced_dir, "date")
        # Daily api_usage from the priced events, as meter reads them back.
        priced_src = (
            f"read_parquet({sql_str(os.path.join(priced_dir, '*', '*.parquet'))}, "
            "hive_partitioning = true)"
        )

    # daily/<table>, monthly/<table>
    for table in EVENT_TABLES:
        if not files[table]:
            continue
        spec = SPECS[table]
        keys = ", ".join(spec["keys"])
        cols = ", ".join(spec["columns"])
        if table == "api_usage":  # priced events are already unique per day
            ev = f"SELECT date, {cols} FROM {priced_src}"
        else:
            ev = unique_events(files[table], f"date, {cols}")
        con.execute(f"CREATE OR REPLACE TEMP VIEW ev AS {ev}")
        agg = f"SELECT date, {keys}, {', '.join(spec['daily'])} FROM ev GROUP BY date, {keys}"
        measures = spec["sums"] + spec["maxes"]
        if table == "resource_usage":
            agg = (
                f"SELECT a.date, {', '.join('a.' + k for k in spec['keys'])}, "
                "coalesce(c.samples, 0) AS samples, "
                "CAST(coalesce(c.compute_seconds, 0) AS BIGINT) AS compute_seconds, "
                + ", ".join(f"a.{m}" for m in measures if m not in ("samples", "compute_seconds"))
                + f" FROM ({agg}) a LEFT JOIN ({COMPUTE_SQL}) c"
                " ON a.date = c.date AND a.vm_id = c.vm_id"
            )
        con.execute(
            f"CREATE TEMP TABLE daily_{table} AS "
            f"SELECT date, {keys}, {', '.join(measures)} FROM ({agg})"
        )
        daily_rows[table] = copy_partitioned(
            con, f"SELECT * FROM daily_{table}", os.path.join(out, "daily", table), "date"
        )
        sums = ", ".join(
            f"CAST(sum({m}) AS {MONEY_SUMS.get(m, 'DOUBLE' if m in FLOAT_SUMS else 'BIGINT')})"
            f" AS {m}"
            for m in spec["sums"]
        )
        maxes = ", ".join(f"max({m}) AS {m}" for m in spec["maxes"])
        monthly_rows[table] = copy_partitioned(
            con,
            f"SELECT {keys}, {sums}, {maxes}, {sql_str(args.month)} AS month "
            f"FROM daily_{table} GROUP BY {keys}",
            os.path.join(out, "monthly", table),
            "month",
        )

    priced_n, unpriced_n, cost = 0, 0, Decimal(0)
    if files["api_usage"]:
        row = con.execute(
            "SELECT CAST(coalesce(sum(requests - unpriced_requests), 0) AS BIGINT), "
            "CAST(coalesce(sum(unpriced_requests), 0) AS BIGINT), "
            f"coalesce(sum(cost), 0::{MONEY}) FROM daily_api_usage"
        ).fetchall()[0]
        priced_n, unpriced_n, cost = int(row[0]), int(row[1]), Decimal(row[2])
    return {
        "events_priced": priced_n,
        "events_unpriced": unpriced_n,
        "cost": decimal_str(cost),
        "daily_rows": daily_rows,
        "monthly_rows": monthly_rows,
    }


def decimal_str(d: Decimal) -> str:
    """Exact, plain notation, no trailing zeros ("988.02026936", "0")."""
    d = d.normalize()
    return format(d, "f") if d != 0 else "0"


# -------------------------------------------------------------------- main


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="peers.py", description="DuckDB and polars peers of meter's jobs (benchmark)."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("duckdb-ingest", help="JSON usage lines -> Parquet by date, with DuckDB")
    p.add_argument("--files", required=True, help="glob of JSON usage line files")
    p.add_argument("--out", required=True, help="output directory (date=YYYY-MM-DD/)")
    p.add_argument("--threads", type=int, help="DuckDB threads")
    p.set_defaults(run=cmd_duckdb_ingest)

    p = sub.add_parser("polars-ingest", help="JSON usage lines -> Parquet by date, with polars")
    p.add_argument("--files", required=True, help="glob of JSON usage line files")
    p.add_argument("--out", required=True, help="output directory (date=YYYY-MM-DD/)")
    p.add_argument("--threads", type=int, help="POLARS_MAX_THREADS")
    p.set_defaults(run=cmd_polars_ingest)

    p = sub.add_parser("chdb-ingest", help="JSON usage lines -> Parquet by date, with chDB (ClickHouse)")
    p.add_argument("--files", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--threads", type=int)
    p.set_defaults(run=cmd_chdb_ingest)

    p = sub.add_parser("sums", help="row count and token sums of Parquet files")
    p.add_argument("--glob", required=True, help="glob of Parquet files")
    p.set_defaults(run=cmd_sums)

    p = sub.add_parser("duckdb-rollup", help="meter rollup --month as DuckDB SQL")
    p.add_argument("--lake", required=True, help="meter lake directory")
    p.add_argument("--pricing", required=True, help="pricing.toml")
    p.add_argument("--month", required=True, help="YYYY-MM")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--threads", type=int, help="DuckDB threads")
    p.set_defaults(run=cmd_duckdb_rollup)

    args = parser.parse_args(argv)
    try:
        result = args.run(args)
    except Failure as e:
        print(f"peers.py {args.command}: error: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # duckdb / polars errors: say which step failed
        print(f"peers.py {args.command}: error: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    emit(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
