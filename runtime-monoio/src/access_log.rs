//! The access log: one line per request or tunnel, formatted by the core's
//! [`AccessRecord`] `Display`, written to stdout, a file, or nowhere.
//!
//! Each line is formatted into one buffer and written with a single `write` so lines from
//! different threads never interleave. Failure: a write error (a closed stdout, a full disk)
//! is reported once on stderr and the line is dropped; the proxy keeps serving.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context;
use ringway_core::AccessRecord;

use crate::cli::AccessLogTarget;

/// A cheap-to-clone handle every worker thread writes through.
#[derive(Clone)]
pub enum AccessLog {
    /// Lines are dropped.
    Off,
    /// Lines go to stdout, flushed after each one (scripts read them as they come).
    Stdout,
    /// Lines are appended to a file opened with `O_APPEND`.
    File(Arc<File>),
}

static WARNED: AtomicBool = AtomicBool::new(false);

impl AccessLog {
    /// Opens the destination. Fails if the file cannot be opened for appending.
    pub fn open(target: &AccessLogTarget) -> anyhow::Result<AccessLog> {
        Ok(match target {
            AccessLogTarget::Off => AccessLog::Off,
            AccessLogTarget::Stdout => AccessLog::Stdout,
            AccessLogTarget::File(path) => {
                let file = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .with_context(|| format!("--access-log: cannot open {}", path.display()))?;
                AccessLog::File(Arc::new(file))
            }
        })
    }

    /// Writes one record as one line.
    pub fn write(&self, record: &AccessRecord) {
        let result = match self {
            AccessLog::Off => return,
            AccessLog::Stdout => {
                let line = format!("{record}\n");
                let mut out = io::stdout().lock();
                out.write_all(line.as_bytes()).and_then(|()| out.flush())
            }
            AccessLog::File(file) => (&**file).write_all(format!("{record}\n").as_bytes()),
        };
        if let Err(e) = result {
            if !WARNED.swap(true, Ordering::Relaxed) {
                eprintln!("ringway: access log write failed, dropping lines: {e}");
            }
        }
    }
}
