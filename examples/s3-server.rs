//! The tests' S3-protocol server (tests/s3_server.rs: s3s over a folder,
//! strict conditional writes) as a process, for the benchmark's object
//! storage runs (bench/bench.py):
//!
//!     cargo run --release --example s3-server -- <folder> [<dir> <prefix>]
//!
//! Serves the folder on a free port of 127.0.0.1 (`<folder>/<bucket>/<key>`
//! are the objects), first uploading the files of `<dir>` under `<prefix>`
//! through the S3 API when given, as a log shipper would. Then it prints the
//! variables that reach it as `NAME=value` lines, then `bucket=<name>` and
//! an empty line, and serves until its standard input closes. A line
//! `stats` on its standard input prints the requests served since the last
//! `stats`, as `<METHOD>=<count>` lines and an empty line.

use std::io::BufRead as _;
use std::path::Path;

#[allow(dead_code, unused_imports)]
#[path = "../tests/s3_server.rs"]
mod s3_server;

fn main() {
    let Some(root) = std::env::args_os().nth(1) else {
        eprintln!("usage: s3-server <folder>");
        std::process::exit(2);
    };
    let server = s3_server::start_s3_server(Path::new(&root));
    if let (Some(dir), Some(prefix)) = (std::env::args_os().nth(2), std::env::args().nth(3)) {
        let n = server.import(Path::new(&dir), &prefix);
        eprintln!("s3-server: imported {n} files under {prefix}");
        server.faults.lock().unwrap().log.clear();
    }
    for (name, value) in server.env() {
        println!("{name}={value}");
    }
    println!("bucket={}\n", server.bucket);
    // Until the benchmark closes our standard input (or exits).
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        if line.trim() == "stats" {
            let served = std::mem::take(&mut server.faults.lock().unwrap().log);
            let mut by_method = std::collections::BTreeMap::new();
            for s in served {
                *by_method.entry(s.method).or_insert(0u64) += 1;
            }
            for (method, n) in by_method {
                println!("{method}={n}");
            }
            println!();
        }
    }
    drop(server);
}
