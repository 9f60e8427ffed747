//! The one way jobs write to stdout and stderr. A reader that goes away
//! (`meter query ... | head -1`) ends the output quietly: no panic, no
//! message, and the job still ends with its own exit code. Any other failed
//! write to stdout (a full disk) is an error the job reports (exit 2), since
//! the output is then incomplete.

use std::fmt::Arguments;
use std::io::{ErrorKind, Write};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set once stdout's reader has gone: later output is dropped.
static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);
/// Set once stderr's reader has gone.
static STDERR_CLOSED: AtomicBool = AtomicBool::new(false);
/// The first write to stdout that failed for another reason than a closed pipe.
static STDOUT_FAILED: Mutex<Option<String>> = Mutex::new(None);

/// Writes to stdout (and flushes); a closed pipe ends stdout quietly.
pub fn stdout(args: Arguments) {
    if STDOUT_CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.flush()) {
        STDOUT_CLOSED.store(true, Ordering::Relaxed);
        if e.kind() != ErrorKind::BrokenPipe {
            let mut failed = STDOUT_FAILED.lock().unwrap_or_else(|p| p.into_inner());
            failed.get_or_insert_with(|| e.to_string());
        }
    }
}

/// Writes to stderr; a closed pipe ends stderr quietly, and so does any
/// other failure (there is nowhere left to say it).
pub fn stderr(args: Arguments) {
    if STDERR_CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut err = std::io::stderr().lock();
    if err.write_fmt(args).and_then(|()| err.flush()).is_err() {
        STDERR_CLOSED.store(true, Ordering::Relaxed);
    }
}

/// Why stdout could not be written, if it failed otherwise than by its
/// reader going away.
pub fn stdout_error() -> Option<String> {
    STDOUT_FAILED
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
}

/// `print!` through [`stdout`].
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => { $crate::out::stdout(format_args!($($arg)*)) };
}

/// `println!` through [`stdout`].
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => { $crate::out::stdout(format_args!("{}\n", format_args!($($arg)*))) };
}

/// `eprint!` through [`stderr`].
#[macro_export]
macro_rules! err {
    ($($arg:tt)*) => { $crate::out::stderr(format_args!($($arg)*)) };
}

/// `eprintln!` through [`stderr`].
#[macro_export]
macro_rules! errln {
    ($($arg:tt)*) => { $crate::out::stderr(format_args!("{}\n", format_args!($($arg)*))) };
}
