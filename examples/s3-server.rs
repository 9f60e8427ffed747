//! The tests' S3-protocol server (tests/s3_server.rs: s3s over a folder,
//! strict conditional writes) as a process, for the benchmark's object
//! storage runs (bench/bench.py):
//!
//!     cargo run --release --example s3-server -- <folder>
//!
//! Serves the folder on a free port of 127.0.0.1 (`<folder>/<bucket>/<key>`
//! are the objects, so files placed there are objects), prints the
//! variables that reach it as `NAME=value` lines, then `bucket=<name>` and
//! an empty line, and serves until its standard input closes.

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
    for (name, value) in server.env() {
        println!("{name}={value}");
    }
    println!("bucket={}\n", server.bucket);
    // Until the benchmark closes our standard input (or exits).
    for line in std::io::stdin().lock().lines() {
        if line.is_err() {
            break;
        }
    }
    drop(server);
}
