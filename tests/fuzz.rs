//! Fuzz-style tests, one per parser: real lines from formats.md, mutated at
//! random (byte flips, cuts, insertions, splices). No input may panic, and
//! every line must land in exactly one bucket.

use std::sync::Arc;

use meter::ingest::parse::{FileCtx, Parsed, SourceKind, parse_line};
use meter::model::registry::Registry;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

fn ctx(kind: SourceKind) -> FileCtx {
    FileCtx {
        rel: "vm-1/x".into(),
        vm_id: "vm-1".into(),
        customer_id: None,
        tz: "Europe/Berlin".parse().unwrap(),
        kind,
        registry: Arc::new(Registry::default()),
        csv_columns: None,
        feeds: None,
    }
}

const TOKENS: &[&[u8]] = &[
    b"\"",
    b"\\",
    b"{",
    b"}",
    b"[",
    b"]",
    b":",
    b",",
    b" | ",
    b"-1",
    b"1e400",
    b"null",
    b"\xff",
    b"\xc3",
    b"\n",
    b"=",
    b"i",
    b"\"\"",
    b"99999999999999999999",
];

fn mutate(rng: &mut SmallRng, seed: &[u8]) -> Vec<u8> {
    let mut line = seed.to_vec();
    for _ in 0..rng.random_range(1..6) {
        if line.is_empty() {
            line.extend_from_slice(TOKENS[rng.random_range(0..TOKENS.len())]);
            continue;
        }
        let at = rng.random_range(0..line.len());
        match rng.random_range(0..5) {
            0 => line[at] = rng.random(),
            1 => line.truncate(at),
            2 => {
                let tok = TOKENS[rng.random_range(0..TOKENS.len())];
                line.splice(at..at, tok.iter().copied());
            }
            3 => {
                let end = (at + rng.random_range(0..8)).min(line.len());
                line.drain(at..end);
            }
            _ => {
                let dup: Vec<u8> = line[at..].to_vec();
                line.extend_from_slice(&dup[..dup.len().min(32)]);
            }
        }
    }
    line.retain(|b| *b != b'\n');
    line
}

fn fuzz(kind: SourceKind, seeds: &[&str]) {
    let ctx = ctx(kind);
    let mut rng = SmallRng::seed_from_u64(0x6d65746572);
    let mut outcomes = [0usize; 3];
    for i in 0..20_000 {
        let seed = seeds[i % seeds.len()].as_bytes();
        let line = if i < seeds.len() {
            seed.to_vec()
        } else {
            mutate(&mut rng, seed)
        };
        let parsed = std::panic::catch_unwind(|| parse_line(&ctx, &line))
            .unwrap_or_else(|_| panic!("parser panicked on {:?}", String::from_utf8_lossy(&line)));
        let bucket = match parsed {
            Parsed::Usage(..)
            | Parsed::Request(..)
            | Parsed::Resource(..)
            | Parsed::Activity(..) => 0,
            Parsed::Reject(..) => 1,
            Parsed::Skip(..) => 2,
        };
        outcomes[bucket] += 1;
        if i < seeds.len() {
            assert_eq!(bucket, 0, "seed line is not a row: {}", seeds[i]);
        }
    }
    assert!(
        outcomes[0] > 0 && outcomes[1] > 0,
        "mutations reach both rows and rejects: {outcomes:?}"
    );
}

#[test]
fn usage_records_survive_mutation() {
    fuzz(
        SourceKind::Cliproxy,
        &[
            r#"{"timestamp":"2025-12-25T10:30:00Z","path":"/v1/messages","status":200,"model":"claude-3-sonnet-20240229","input_tokens":1500,"output_tokens":500}"#,
            r#"{"timestamp":"2026-01-05T10:07:49.123+01:00","latency_ms":2350,"tokens":{"input_tokens":5000,"output_tokens":800,"reasoning_tokens":200,"cached_tokens":3000},"failed":false,"provider":"gemini","model":"gemini-2.5-pro","request_id":"a1b2c3d4"}"#,
            r#"{"timestamp":"2026-01-05T10:07:49Z","token_breakdown":{"input":{"uncached_tokens":1000,"cache_read_tokens":3000,"cache_write_tokens":200},"output":{"total_tokens":500,"reasoning_tokens":120}},"provider":"codex","model":"gpt-5","failed":true,"fail":{"status_code":429}}"#,
        ],
    );
}

#[test]
fn access_lines_survive_mutation() {
    fuzz(
        SourceKind::Cliproxy,
        &[
            r#"[2026-01-05 10:07:49] [a1b2c3d4] [info ] [gin_logger.go:97] 200 |       23.559s |       127.0.0.1 | POST    "/v1/chat/completions""#,
            r#"[2025-11-24 10:07:40] [info] [gin_logger.go:58] [GIN] 2025/11/24 - 10:07:40 | 200 |           7ms | fd2b:6d4:c6af:cafe::185 | GET     "/v0/management/logs""#,
            r#"127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326"#,
            r#"10.0.0.1 - - [25/Dec/2025:10:30:00 +0000] "POST /v1/messages HTTP/1.1" 200 1234 "-" "anthropic-sdk/0.1.0 \"x\"""#,
        ],
    );
}

#[test]
fn resource_samples_survive_mutation() {
    fuzz(
        SourceKind::Resources,
        &[
            "cpu,cpu=cpu-total,host=loaner usage_active=17.616580305880305,usage_idle=82.3834196941197 1568760922000000000",
            "mem,host=loaner used_percent=15.95004011996231,total=20913917952i,used=3335778304i 1574712869000000000",
            "disk,fstype=hfs,mode=ro,path=/ free=398407520256i,total=499088621568i,used=100418957312i 1453832006274071563",
            "net,interface=eth0,host=HOST bytes_sent=451838509i,bytes_recv=3284081640i 1492834180000000000",
            "2026-10-01T00:05:00Z,12.5,40.25,18.2,0.5,0.25",
            r#"{"timestamp":"2026-10-01T00:05:00Z","cpu_percent":12.5,"memory_percent":40.25,"disk_gb":18.2,"network_in_mb":0.5,"network_out_mb":0.25}"#,
        ],
    );
}

#[test]
fn command_records_survive_mutation() {
    fuzz(
        SourceKind::Commands,
        &[
            r#"{"timestamp":"2026-10-01T09:00:00Z","user":"alice","activity_type":"command","command":"export OPENAI_API_KEY=sk-abc","pattern_name":null,"duration_seconds":0.25,"exit_code":0}"#,
            r#"{"timestamp":"2026-10-01T09:00:00+02:00","user":"bob","activity_type":"pattern","pattern_name":"deploy","duration_seconds":12,"exit_code":1}"#,
        ],
    );
}
