//! Resource samples into `resource_usage`: CSV and JSONL with the columns
//! `timestamp, cpu_percent, memory_percent, disk_gb, network_in_mb,
//! network_out_mb`, and Telegraf line protocol (`cpu` cpu-total, `mem`,
//! `disk`, `net`). Telegraf `net` byte counters are cumulative: the parser
//! returns the counters and ingest turns them into per-interval deltas.

use serde::Deserialize;

use super::json::{self, Scalar};
use super::time::{from_epoch, parse_iso};
use super::{FileCtx, NetCounter, Parsed, Reject, RejectReason, SkipReason};
use crate::lake::tables::{Id, ResourceRow, Str, Table};
use crate::model::ids;
use crate::model::time::Ts;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Col {
    Timestamp,
    Cpu,
    Memory,
    Disk,
    NetIn,
    NetOut,
    Other,
}

/// The column order of a resource CSV file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvColumns(pub Vec<Col>);

impl Default for CsvColumns {
    fn default() -> Self {
        CsvColumns(vec![
            Col::Timestamp,
            Col::Cpu,
            Col::Memory,
            Col::Disk,
            Col::NetIn,
            Col::NetOut,
        ])
    }
}

impl CsvColumns {
    /// Reads a header row; `None` when the line is data, not a header.
    pub fn from_header(line: &str) -> Option<CsvColumns> {
        let names: Vec<String> = line
            .split(',')
            .map(|f| f.trim().trim_matches('"').to_ascii_lowercase())
            .collect();
        if !names.iter().any(|n| n == "timestamp") {
            return None;
        }
        Some(CsvColumns(
            names
                .iter()
                .map(|n| match n.as_str() {
                    "timestamp" => Col::Timestamp,
                    "cpu_percent" => Col::Cpu,
                    "memory_percent" => Col::Memory,
                    "disk_gb" => Col::Disk,
                    "network_in_mb" => Col::NetIn,
                    "network_out_mb" => Col::NetOut,
                    _ => Col::Other,
                })
                .collect(),
        ))
    }
}

#[derive(Default)]
struct Sample {
    ts: Option<Ts>,
    cpu: Option<f64>,
    mem: Option<f64>,
    disk: Option<f64>,
    net_in: Option<f64>,
    net_out: Option<f64>,
}

fn sample_row<'p>(
    ctx: &FileCtx,
    text: &str,
    s: Sample,
    format: &'static str,
) -> Result<Parsed<'p>, Reject> {
    let ts = s.ts.ok_or_else(|| Reject::missing("timestamp"))?;
    for (field, v) in [
        ("cpu_percent", s.cpu),
        ("memory_percent", s.mem),
        ("disk_gb", s.disk),
        ("network_in_mb", s.net_in),
        ("network_out_mb", s.net_out),
    ] {
        if v.is_some_and(|v| v < 0.0) {
            return Err(Reject::value(field, "negative value").at(Some(ts)));
        }
    }
    Ok(Parsed::Resource(
        ResourceRow {
            event_id: Id(ids::line_base_id(
                "resource_usage",
                &ctx.vm_id,
                Some(ts.0),
                text.as_bytes(),
            )),
            ts,
            customer_id: ctx.customer_id.clone(),
            vm_id: ctx.vm_id.clone(),
            measurement: "sample".into(),
            cpu_percent: s.cpu,
            memory_percent: s.mem,
            disk_gb: s.disk,
            network_in_mb: s.net_in,
            network_out_mb: s.net_out,
            device: None,
            counter_reset: false,
            source_format: format.into(),
            source_file: ctx.rel.clone(),
            source_line: 0,
        },
        None,
    ))
}

/// Parses one line of a `resources/` file.
pub fn parse<'p>(ctx: &FileCtx, text: &str) -> Parsed<'p> {
    let first = text
        .trim_start()
        .as_bytes()
        .first()
        .copied()
        .unwrap_or(b' ');
    let result = if first == b'{' {
        parse_json(ctx, text).map_err(|r| r.format("jsonl"))
    } else if first.is_ascii_alphabetic() && text.contains('=') {
        parse_influx(ctx, text).map_err(|r| r.format("influx"))
    } else if first.is_ascii_alphabetic() && CsvColumns::from_header(text).is_some() {
        Ok(Parsed::Skip(Table::ResourceUsage, SkipReason::Header))
    } else {
        parse_csv(ctx, text).map_err(|r| r.format("csv"))
    };
    result.unwrap_or_else(|r| Parsed::Reject(Table::ResourceUsage, r))
}

fn parse_csv<'p>(ctx: &FileCtx, text: &str) -> Result<Parsed<'p>, Reject> {
    let default = CsvColumns::default();
    let cols = ctx.csv_columns.as_deref().unwrap_or(&default);
    let fields: Vec<&str> = text
        .split(',')
        .map(|f| f.trim().trim_matches('"'))
        .collect();
    if fields.len() != cols.0.len() {
        return Err(Reject::line(
            RejectReason::UnrecognizedLine,
            format!(
                "expected {} comma-separated columns, found {}",
                cols.0.len(),
                fields.len()
            ),
        ));
    }
    let mut s = Sample::default();
    // The timestamp first, so that a bad value is a dated reject.
    for (col, field) in cols.0.iter().zip(&fields) {
        if *col == Col::Timestamp {
            s.ts = Some(csv_ts(field, ctx)?);
        }
    }
    for (col, field) in cols.0.iter().zip(&fields) {
        let value = |name: &'static str| -> Result<Option<f64>, Reject> {
            if field.is_empty() {
                return Ok(None);
            }
            match field.parse::<f64>() {
                Ok(v) if v.is_finite() => Ok(Some(v)),
                _ => Err(Reject::value(name, format!("{field:?} is not a number")).at(s.ts)),
            }
        };
        match col {
            Col::Cpu => s.cpu = value("cpu_percent")?,
            Col::Memory => s.mem = value("memory_percent")?,
            Col::Disk => s.disk = value("disk_gb")?,
            Col::NetIn => s.net_in = value("network_in_mb")?,
            Col::NetOut => s.net_out = value("network_out_mb")?,
            Col::Timestamp | Col::Other => {}
        }
    }
    sample_row(ctx, text, s, "csv")
}

fn csv_ts(field: &str, ctx: &FileCtx) -> Result<Ts, Reject> {
    if let Some(ts) = parse_iso(field, ctx.tz) {
        return Ok(ts);
    }
    field
        .parse::<i64>()
        .ok()
        .and_then(from_epoch)
        .ok_or_else(|| Reject::timestamp("timestamp", format!("{field:?} is not a timestamp")))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct JsonSample<'a> {
    #[serde(borrow)]
    timestamp: Scalar<'a>,
    #[serde(borrow)]
    cpu_percent: Scalar<'a>,
    #[serde(borrow)]
    memory_percent: Scalar<'a>,
    #[serde(borrow)]
    disk_gb: Scalar<'a>,
    #[serde(borrow)]
    network_in_mb: Scalar<'a>,
    #[serde(borrow)]
    network_out_mb: Scalar<'a>,
}

fn parse_json<'p>(ctx: &FileCtx, text: &str) -> Result<Parsed<'p>, Reject> {
    let j: JsonSample = serde_json::from_str(text).map_err(|e| json::syntax_error(&e))?;
    let ts = json::timestamp("timestamp", &j.timestamp, ctx.tz)?;
    let dated = |r: Reject| r.at(Some(ts));
    let s = Sample {
        ts: Some(ts),
        cpu: json::number("cpu_percent", &j.cpu_percent).map_err(dated)?,
        mem: json::number("memory_percent", &j.memory_percent).map_err(dated)?,
        disk: json::number("disk_gb", &j.disk_gb).map_err(dated)?,
        net_in: json::number("network_in_mb", &j.network_in_mb).map_err(dated)?,
        net_out: json::number("network_out_mb", &j.network_out_mb).map_err(dated)?,
    };
    sample_row(ctx, text, s, "jsonl")
}

/// One parsed line of Telegraf line protocol.
#[derive(Debug, Clone, PartialEq)]
pub struct InfluxLine {
    pub measurement: String,
    pub tags: Vec<(String, String)>,
    pub fields: Vec<(String, FieldValue)>,
    pub timestamp: Option<i64>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    Float(f64),
    Int(i64),
    UInt(u64),
    Bool(bool),
    Str(String),
}

impl FieldValue {
    fn as_f64(&self) -> Option<f64> {
        match self {
            FieldValue::Float(f) => Some(*f),
            FieldValue::Int(i) => Some(*i as f64),
            FieldValue::UInt(u) => Some(*u as f64),
            _ => None,
        }
    }
    fn as_u64(&self) -> Option<u64> {
        match self {
            FieldValue::Int(i) => u64::try_from(*i).ok(),
            FieldValue::UInt(u) => Some(*u),
            FieldValue::Float(f) if *f >= 0.0 && f.fract() == 0.0 => Some(*f as u64),
            _ => None,
        }
    }
}

/// Splits `s` at the first byte in `stops` that is not escaped by `\` and not
/// inside double quotes (when `quotes`), unescaping `\x` to `x` outside quotes.
fn scan<'a>(s: &'a str, stops: &[u8], quotes: bool) -> (String, Option<u8>, &'a str) {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    let mut in_quotes = false;
    while i < b.len() {
        let c = b[i];
        if in_quotes {
            out.push(c);
            if c == b'\\' && i + 1 < b.len() {
                out.push(b[i + 1]);
                i += 2;
                continue;
            }
            if c == b'"' {
                in_quotes = false;
            }
        } else if c == b'\\' && i + 1 < b.len() {
            out.push(b[i + 1]);
            i += 2;
            continue;
        } else if quotes && c == b'"' {
            in_quotes = true;
            out.push(c);
        } else if stops.contains(&c) {
            return (
                String::from_utf8_lossy(&out).into_owned(),
                Some(c),
                &s[i + 1..],
            );
        } else {
            out.push(c);
        }
        i += 1;
    }
    (String::from_utf8_lossy(&out).into_owned(), None, "")
}

fn field_value(raw: &str) -> Option<FieldValue> {
    if let Some(inner) = raw.strip_prefix('"') {
        let inner = inner.strip_suffix('"')?;
        return Some(FieldValue::Str(
            inner.replace("\\\"", "\"").replace("\\\\", "\\"),
        ));
    }
    if let Some(i) = raw.strip_suffix('i') {
        return i.parse().ok().map(FieldValue::Int);
    }
    if let Some(u) = raw.strip_suffix('u') {
        return u.parse().ok().map(FieldValue::UInt);
    }
    match raw {
        "t" | "T" | "true" | "True" | "TRUE" => return Some(FieldValue::Bool(true)),
        "f" | "F" | "false" | "False" | "FALSE" => return Some(FieldValue::Bool(false)),
        _ => {}
    }
    raw.parse::<f64>()
        .ok()
        .filter(|f| f.is_finite())
        .map(FieldValue::Float)
}

/// Parses `measurement[,tag=v...] field=v[,field=v...] [timestamp]`.
pub fn parse_line_protocol(text: &str) -> Result<InfluxLine, Reject> {
    // The series (measurement and tags, with their escapes) ends at the
    // first unescaped space.
    let (series_raw, rest) = split_unescaped(text.trim(), b' ');
    let Some(rest) = rest else {
        return Err(Reject::line(
            RejectReason::UnrecognizedLine,
            "line protocol needs a field set after the measurement",
        ));
    };
    let mut parts = split_all_unescaped(series_raw, b',').into_iter();
    let measurement = unescape(parts.next().unwrap_or_default());
    if measurement.is_empty() {
        return Err(Reject::missing("measurement"));
    }
    let mut tags = Vec::new();
    for p in parts {
        let (k, v) = split_unescaped(p, b'=');
        let v =
            v.ok_or_else(|| Reject::value("tags", format!("tag {:?} has no value", unescape(k))))?;
        tags.push((unescape(k), unescape(v)));
    }
    let rest = rest.trim_start();
    let mut fields = Vec::new();
    let mut remaining = rest;
    loop {
        let (key, stop, after) = scan(remaining, b"=", false);
        if stop.is_none() || key.is_empty() {
            return Err(Reject::value("fields", "expected key=value"));
        }
        let (value, stop, after) = scan(after, b", ", true);
        let v = field_value(&value).ok_or_else(|| {
            Reject::value("fields", format!("field {key:?} has a bad value {value:?}"))
        })?;
        fields.push((key, v));
        remaining = after;
        match stop {
            Some(b',') => continue,
            _ => break,
        }
    }
    let ts_text = remaining.trim();
    let timestamp = if ts_text.is_empty() {
        None
    } else {
        Some(ts_text.parse::<i64>().map_err(|_| {
            Reject::timestamp(
                "timestamp",
                format!("{ts_text:?} is not an integer timestamp"),
            )
        })?)
    };
    Ok(InfluxLine {
        measurement,
        tags,
        fields,
        timestamp,
    })
}

fn split_unescaped(s: &str, sep: u8) -> (&str, Option<&str>) {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' {
            i += 2;
            continue;
        }
        if b[i] == sep {
            return (&s[..i], Some(&s[i + 1..]));
        }
        i += 1;
    }
    (s, None)
}

fn split_all_unescaped(mut s: &str, sep: u8) -> Vec<&str> {
    let mut out = Vec::new();
    loop {
        let (head, tail) = split_unescaped(s, sep);
        out.push(head);
        match tail {
            Some(t) => s = t,
            None => return out,
        }
    }
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn parse_influx<'p>(ctx: &FileCtx, text: &str) -> Result<Parsed<'p>, Reject> {
    let line = parse_line_protocol(text)?;
    let ts = match line.timestamp {
        Some(t) => from_epoch(t)
            .ok_or_else(|| Reject::timestamp("timestamp", format!("{t} is not a Unix time")))?,
        None => {
            return Err(Reject::new(
                RejectReason::MissingField,
                Some("timestamp"),
                "missing (meter needs the sample time)",
            ));
        }
    };
    let dated = |r: Reject| r.at(Some(ts));
    let tag = |k: &str| {
        line.tags
            .iter()
            .find(|(t, _)| t == k)
            .map(|(_, v)| v.as_str())
    };
    let field = |k: &str| line.fields.iter().find(|(f, _)| f == k).map(|(_, v)| v);
    let number = |k: &'static str| -> Result<Option<f64>, Reject> {
        match field(k) {
            None => Ok(None),
            Some(v) => v.as_f64().map(Some).ok_or_else(|| {
                dated(Reject::value(
                    k_static(k),
                    format!("field {k} is not numeric"),
                ))
            }),
        }
    };
    let mut row = ResourceRow {
        event_id: Id(ids::line_base_id(
            "resource_usage",
            &ctx.vm_id,
            Some(ts.0),
            text.as_bytes(),
        )),
        ts,
        customer_id: ctx.customer_id.clone(),
        vm_id: ctx.vm_id.clone(),
        measurement: Str::from(""),
        cpu_percent: None,
        memory_percent: None,
        disk_gb: None,
        network_in_mb: None,
        network_out_mb: None,
        device: None,
        counter_reset: false,
        source_format: "influx".into(),
        source_file: ctx.rel.clone(),
        source_line: 0,
    };
    let mut counter = None;
    match line.measurement.as_str() {
        "cpu" => {
            if tag("cpu").is_some_and(|c| c != "cpu-total") {
                return Ok(Parsed::Skip(Table::ResourceUsage, SkipReason::PerCoreCpu));
            }
            row.cpu_percent = match number("usage_active")? {
                Some(a) => Some(a),
                None => number("usage_idle")?.map(|idle| 100.0 - idle),
            };
            if row.cpu_percent.is_none() {
                return Err(dated(Reject::new(
                    RejectReason::MissingField,
                    Some("usage_active"),
                    "cpu line has neither usage_active nor usage_idle",
                )));
            }
        }
        "mem" => {
            row.memory_percent = number("used_percent")?;
            if row.memory_percent.is_none() {
                return Err(dated(Reject::new(
                    RejectReason::MissingField,
                    Some("used_percent"),
                    "mem line has no used_percent",
                )));
            }
        }
        "disk" => {
            row.disk_gb = number("used")?.map(|b| b / 1e9);
            if row.disk_gb.is_none() {
                return Err(dated(Reject::new(
                    RejectReason::MissingField,
                    Some("used"),
                    "disk line has no used bytes",
                )));
            }
            row.device = tag("path").map(Str::from);
        }
        "net" => {
            let recv = field("bytes_recv").map(|v| {
                v.as_u64()
                    .ok_or_else(|| dated(Reject::value("bytes_recv", "not a counter")))
            });
            let sent = field("bytes_sent").map(|v| {
                v.as_u64()
                    .ok_or_else(|| dated(Reject::value("bytes_sent", "not a counter")))
            });
            if recv.is_none() && sent.is_none() {
                // e.g. `net,interface=all` protocol statistics.
                return Ok(Parsed::Skip(
                    Table::ResourceUsage,
                    SkipReason::UnusedMeasurement,
                ));
            }
            let interface: Str = tag("interface").unwrap_or("").into();
            row.device = Some(interface.clone());
            counter = Some(NetCounter {
                interface,
                bytes_recv: recv.transpose()?,
                bytes_sent: sent.transpose()?,
            });
        }
        _ => {
            return Ok(Parsed::Skip(
                Table::ResourceUsage,
                SkipReason::UnusedMeasurement,
            ));
        }
    }
    row.measurement = line.measurement.as_str().into();
    Ok(Parsed::Resource(row, counter))
}

fn k_static(k: &str) -> &'static str {
    match k {
        "usage_active" => "usage_active",
        "usage_idle" => "usage_idle",
        "used_percent" => "used_percent",
        "used" => "used",
        _ => "fields",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::parse::test_util::{ctx, ts};
    use crate::ingest::parse::{SourceKind, parse_line};

    fn parse(line: &str) -> Parsed<'static> {
        // Leaked: a parsed line may borrow from its context and its text.
        let ctx: &'static FileCtx = Box::leak(Box::new(ctx(SourceKind::Resources)));
        let line: &'static str = Box::leak(line.to_owned().into_boxed_str());
        parse_line(ctx, line.as_bytes())
    }

    fn resource(line: &str) -> (ResourceRow, Option<NetCounter>) {
        match parse(line) {
            Parsed::Resource(r, c) => (r, c),
            other => panic!("expected a resource row, got {other:?}"),
        }
    }

    #[test]
    fn telegraf_lines_from_formats_md() {
        let (r, _) = resource(
            "cpu,cpu=cpu-total,host=loaner usage_active=17.616580305880305,usage_idle=82.3834196941197,usage_system=4.145077721691784,usage_user=11.398963731636465 1568760922000000000",
        );
        assert_eq!(
            (r.ts, r.cpu_percent, &*r.measurement),
            (ts("2019-09-17T22:55:22Z"), Some(17.616580305880305), "cpu")
        );
        let (r, _) = resource(
            "mem,host=loaner used_percent=15.95004011996231,total=20913917952i,used=3335778304i 1574712869000000000",
        );
        assert_eq!(r.memory_percent, Some(15.95004011996231));
        let (r, _) = resource(
            "disk,fstype=hfs,mode=ro,path=/ free=398407520256i,total=499088621568i,used=100418957312i,used_percent=20.131039916242397 1453832006274071563",
        );
        assert_eq!(
            (r.disk_gb, r.device.as_deref()),
            (Some(100.418957312), Some("/"))
        );
        assert_eq!(r.ts, Ts(1453832006274071));
        let (r, c) = resource(
            "net,interface=eth0,host=HOST bytes_sent=451838509i,bytes_recv=3284081640i,packets_sent=2663590i,packets_recv=3585442i 1492834180000000000",
        );
        assert_eq!(
            c,
            Some(NetCounter {
                interface: "eth0".into(),
                bytes_recv: Some(3284081640),
                bytes_sent: Some(451838509)
            })
        );
        assert_eq!((r.device.as_deref(), r.network_in_mb), (Some("eth0"), None));
    }

    #[test]
    fn telegraf_skips_and_rejects() {
        assert_eq!(
            parse("cpu,cpu=cpu0,host=h usage_active=3 1568760922000000000"),
            Parsed::Skip(Table::ResourceUsage, SkipReason::PerCoreCpu)
        );
        assert_eq!(
            parse("system,host=h load1=0.5,uptime=100i 1568760922000000000"),
            Parsed::Skip(Table::ResourceUsage, SkipReason::UnusedMeasurement)
        );
        for bad in [
            "mem,host=h used_percent= 1568760922000000000",
            "mem,host=h used_percent=1",
            "mem,host=h used_percent=x 1568760922000000000",
            "mem,host used_percent=1 1",
        ] {
            assert!(
                matches!(parse(bad), Parsed::Reject(Table::ResourceUsage, _)),
                "{bad}"
            );
        }
        let line = parse_line_protocol(r#"weather,location=us\,midwest,sea\ level=0 temperature=82,note="a \"q\" b",ok=t 1465839830100400200"#).unwrap();
        assert_eq!(
            line.tags,
            vec![
                ("location".into(), "us,midwest".into()),
                ("sea level".into(), "0".into())
            ]
        );
        assert_eq!(
            line.fields[1],
            ("note".into(), FieldValue::Str(r#"a "q" b"#.into()))
        );
        assert_eq!(line.fields[2], ("ok".into(), FieldValue::Bool(true)));
    }

    #[test]
    fn csv_and_jsonl_samples() {
        assert_eq!(
            parse("timestamp,cpu_percent,memory_percent,disk_gb,network_in_mb,network_out_mb"),
            Parsed::Skip(Table::ResourceUsage, SkipReason::Header)
        );
        let (r, _) = resource("2026-10-01T00:05:00Z,12.5,40.25,18.2,0.5,0.25");
        assert_eq!(
            (
                r.cpu_percent,
                r.memory_percent,
                r.disk_gb,
                r.network_in_mb,
                r.network_out_mb
            ),
            (Some(12.5), Some(40.25), Some(18.2), Some(0.5), Some(0.25))
        );
        assert_eq!(&*r.source_format, "csv");
        let (r, _) = resource(
            r#"{"timestamp":"2026-10-01T02:05:00+02:00","cpu_percent":12.5,"memory_percent":40,"disk_gb":18.2,"network_in_mb":0.5,"network_out_mb":0.25}"#,
        );
        assert_eq!(
            (r.ts, r.memory_percent),
            (ts("2026-10-01T00:05:00Z"), Some(40.0))
        );
        let field = |line: &str| match parse(line) {
            Parsed::Reject(_, r) => r.field,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            field("2026-10-01T00:05:00Z,abc,40.25,18.2,0.5,0.25"),
            Some("cpu_percent")
        );
        assert_eq!(field("2026-10-01T00:05:00Z,1,2"), None);
        assert_eq!(field("yesterday,1,2,3,4,5"), Some("timestamp"));
        assert_eq!(
            field(r#"{"timestamp":"2026-10-01T00:05:00Z","cpu_percent":"hot"}"#),
            Some("cpu_percent")
        );
        assert_eq!(
            field("2026-10-01T00:05:00Z,-1,40.25,18.2,0.5,0.25"),
            Some("cpu_percent")
        );
    }
}
