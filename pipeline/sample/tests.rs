//! Whole-tree tests: determinism, the clean tree, and totals that match the files written.

use super::*;
use std::collections::{BTreeSet, HashMap};
use std::io::Read;

fn opts(out: &Path, clean: bool) -> SampleOptions {
    SampleOptions {
        out: out.to_path_buf(),
        customers: 3,
        days: 9,
        events_per_day: 60,
        seed: 7,
        clean,
        start: NaiveDate::from_ymd_opt(2026, 10, 20).expect("valid date"),
        usage_format: Default::default(),
        resource_interval_s: super::DEFAULT_RESOURCE_INTERVAL_S,
        contract_every: 0,
    }
}

/// Every file under `root`, sorted, with its decompressed content.
fn read_tree(root: &Path) -> Vec<(PathBuf, Vec<u8>, Vec<u8>)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in fs::read_dir(dir).expect("read dir") {
            let p = e.expect("dir entry").path();
            if p.is_dir() {
                walk(&p, out);
            } else {
                out.push(p);
            }
        }
    }
    let mut paths = Vec::new();
    walk(root, &mut paths);
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let raw = fs::read(&p).expect("read file");
            let text = if p.extension().is_some_and(|e| e == "gz") {
                let mut v = Vec::new();
                flate2::read::MultiGzDecoder::new(&raw[..])
                    .read_to_end(&mut v)
                    .expect("gunzip");
                v
            } else {
                raw.clone()
            };
            (
                p.strip_prefix(root).expect("under root").to_path_buf(),
                raw,
                text,
            )
        })
        .collect()
}

fn sum(totals: &SampleTotals) -> Expected {
    let mut e = Expected::default();
    for t in totals.tables.values() {
        e.rows += t.rows;
        e.duplicates += t.duplicates;
        e.rejects += t.rejects;
        e.skipped += t.skipped;
    }
    e
}

#[test]
fn same_seed_gives_identical_tree() {
    let (a, b) = (
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    );
    let ta = generate(&opts(a.path(), false)).expect("generate a");
    let tb = generate(&opts(b.path(), false)).expect("generate b");
    assert_eq!(ta, tb);
    let (fa, fb) = (read_tree(a.path()), read_tree(b.path()));
    assert_eq!(fa.len(), fb.len());
    for ((pa, ra, _), (pb, rb, _)) in fa.iter().zip(&fb) {
        assert_eq!(pa, pb);
        assert!(ra == rb, "{} differs", pa.display());
    }
    let c = tempfile::tempdir().expect("tempdir");
    let tc = generate(&SampleOptions {
        seed: 8,
        ..opts(c.path(), false)
    })
    .expect("generate c");
    assert_ne!(ta, tc, "another seed gives another tree");
}

#[test]
fn clean_tree_has_no_rejects_duplicates_or_gz() {
    let dir = tempfile::tempdir().expect("tempdir");
    let totals = generate(&opts(dir.path(), true)).expect("generate");
    for (name, e) in &totals.tables {
        assert_eq!((e.rejects, e.duplicates), (0, 0), "{name}");
        assert!(e.rows > 0, "{name} has rows");
    }
    assert!(
        totals.tables["resource_usage"].skipped > 0,
        "csv headers and per-core rows"
    );
    assert!(
        totals.tables["api_requests"].skipped > 0,
        "main-log banner lines"
    );
    let tree = read_tree(dir.path());
    assert!(
        tree.iter()
            .all(|(p, _, _)| p.extension().is_none_or(|e| e != "gz"))
    );
    assert!(
        !tree
            .iter()
            .any(|(p, _, _)| p.components().any(|c| c.as_os_str() == "reshipped"))
    );

    // Usage records parse, carry unique 8-hex request ids per VM, keep cached <= prompt
    // for OpenAI and Google, and use Z timestamps.
    let mut ids: HashMap<(String, String), usize> = HashMap::new();
    for (path, _, text) in &tree {
        let vm = path
            .components()
            .next()
            .expect("component")
            .as_os_str()
            .to_string_lossy()
            .to_string();
        if !path.to_string_lossy().contains("cliproxy") {
            continue;
        }
        for line in std::str::from_utf8(text)
            .expect("utf8")
            .lines()
            .filter(|l| l.starts_with('{'))
        {
            let v: serde_json::Value = serde_json::from_str(line).expect("clean json parses");
            assert!(
                v["timestamp"].as_str().expect("timestamp").ends_with('Z'),
                "{line}"
            );
            let provider = v["provider"].as_str().unwrap_or("");
            let (input, cached) = match v.get("tokens") {
                Some(t) => (
                    t["input_tokens"].as_u64().expect("u64"),
                    t["cached_tokens"].as_u64().expect("u64"),
                ),
                None => (
                    v["input_tokens"].as_u64().expect("u64"),
                    v.get("cache_read_tokens")
                        .and_then(|c| c.as_u64())
                        .unwrap_or(0),
                ),
            };
            let path_field = v
                .get("path")
                .or(v.get("endpoint"))
                .and_then(|p| p.as_str())
                .unwrap_or("");
            if provider != "claude" && provider != "anthropic" && path_field != "/v1/messages" {
                assert!(cached <= input, "{line}");
            }
            if let Some(rid) = v.get("request_id").and_then(|r| r.as_str()) {
                assert!(
                    rid.len() == 8
                        && rid
                            .bytes()
                            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
                );
                *ids.entry((vm.clone(), rid.to_string())).or_default() += 1;
            }
        }
    }
    assert!(!ids.is_empty());
    assert!(ids.values().all(|&n| n == 1), "request ids repeat");
}

#[test]
fn totals_match_the_files_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let totals = generate(&opts(dir.path(), false)).expect("generate");
    let tree = read_tree(dir.path());
    assert_eq!(totals.files, tree.len() as u64);
    assert_eq!(
        totals.bytes,
        tree.iter().map(|(_, raw, _)| raw.len() as u64).sum::<u64>()
    );
    let newlines = |t: &[u8]| t.iter().filter(|&&b| b == b'\n').count() as u64;
    assert_eq!(
        totals.lines,
        tree.iter().map(|(_, _, t)| newlines(t)).sum::<u64>()
    );

    // Every line of a VM file (plus unterminated last lines) is in exactly one bucket.
    let vm_files: Vec<_> = tree
        .iter()
        .filter(|(p, _, _)| p.components().count() > 1)
        .collect();
    let unterminated = vm_files
        .iter()
        .filter(|(_, _, t)| t.last().is_some_and(|&b| b != b'\n'))
        .count() as u64;
    assert!(unterminated > 0, "not clean writes cut-off live files");
    let all = sum(&totals);
    assert_eq!(
        all.rows + all.duplicates + all.rejects + all.skipped,
        vm_files.iter().map(|(_, _, t)| newlines(t)).sum::<u64>() + unterminated
    );
    for (name, e) in &totals.tables {
        assert!(
            e.rows > 0 && e.duplicates > 0 && e.rejects > 0,
            "{name}: {e:?}"
        );
    }
    assert!(
        tree.iter()
            .any(|(p, _, _)| p.extension().is_some_and(|e| e == "gz"))
    );

    // Duplicates are exactly the lines that also occur in another file of the same VM
    // (CSV headers aside).
    let mut files_per_line: HashMap<(String, &[u8]), BTreeSet<&Path>> = HashMap::new();
    for (path, _, text) in &vm_files {
        let vm = path
            .components()
            .next()
            .expect("component")
            .as_os_str()
            .to_string_lossy()
            .to_string();
        for line in text.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.starts_with(b"timestamp,cpu_percent") {
                continue;
            }
            files_per_line
                .entry((vm.clone(), line))
                .or_default()
                .insert(path.as_path());
        }
    }
    let copies: u64 = files_per_line.values().map(|f| f.len() as u64 - 1).sum();
    assert_eq!(copies, all.duplicates);
}

#[test]
fn refuses_a_non_empty_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(dir.path().join("x"), "x").expect("write");
    assert!(matches!(
        generate(&opts(dir.path(), false)),
        Err(SampleError::NotEmpty { .. })
    ));
}

#[test]
fn a_resource_interval_that_does_not_fit_a_day_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    for every in [0, 59, 7, 3601, 7200, 420 * 2 + 1] {
        let err = generate(&SampleOptions {
            resource_interval_s: every,
            ..opts(&tmp.path().join(format!("t{every}")), true)
        })
        .unwrap_err();
        assert!(
            err.to_string().contains(&format!("not {every}")),
            "{every}: {err}"
        );
    }
}

#[test]
fn contract_every_gives_every_nth_customer_a_sound_contract() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("t");
    generate(&SampleOptions {
        customers: 14,
        days: 2,
        events_per_day: 2,
        contract_every: 3,
        ..opts(&out, true)
    })
    .unwrap();
    let path = out.join("contracts.toml");
    let text = fs::read_to_string(&path).unwrap();
    let (contracts, problems) = crate::model::contracts::Contracts::parse(&text, &path).unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    // The sample's three, then customers 5, 8, 11 and 14 in turn: credit,
    // terms changing into tiers, a discount, credit.
    fn ids<'a>(ids: impl Iterator<Item = &'a str>) -> BTreeSet<&'a str> {
        ids.collect()
    }
    assert_eq!(
        ids(contracts.credits.iter().map(|c| &*c.customer_id)),
        ids(["cust_0002", "cust_0005", "cust_0014"].into_iter())
    );
    assert_eq!(
        ids(contracts.terms.iter().map(|t| &*t.customer_id)),
        ids(["cust_0003", "cust_0005", "cust_0008", "cust_0014"].into_iter())
    );
    assert_eq!(
        ids(contracts.discounts.iter().map(|d| &*d.customer_id)),
        ids(["cust_0015", "cust_0011"].into_iter())
    );
    assert_eq!(contracts.terms.len(), 6);
}
