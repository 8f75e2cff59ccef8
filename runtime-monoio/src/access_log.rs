//! The access log: one line per request or tunnel, formatted by the core's
//! [`AccessRecord`] `Display`, written to stdout, a file, or nowhere.
//!
//! Lines are formatted into a per-thread buffer, not written one by one: a `write` per
//! request is a blocking syscall on the event loop. The buffer goes out in one `write` (whole
//! lines only, so threads never interleave within a line) [`FLUSH_DELAY`] after its first
//! line, at once when it reaches [`FLUSH_AT`] bytes, and when the worker exits (call
//! [`AccessLog::flush`]). So a line is on stdout within about 10 ms of its request ending.
//!
//! Failure: a write error (a closed stdout, a full disk) is reported once on stderr and the
//! lines are dropped; the proxy keeps serving.

use std::cell::{Cell, RefCell};
use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

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

/// How long a line may wait in the thread's buffer.
pub const FLUSH_DELAY: Duration = Duration::from_millis(10);
/// Buffered bytes that trigger an immediate write.
pub const FLUSH_AT: usize = 64 * 1024;

thread_local! {
    static PENDING: RefCell<String> = const { RefCell::new(String::new()) };
    static SCHEDULED: Cell<bool> = const { Cell::new(false) };
}

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

    /// Buffers one record as one line (see the module docs for when it is written). Must
    /// run on a monoio worker thread.
    pub fn write(&self, record: &AccessRecord) {
        if matches!(self, AccessLog::Off) {
            return;
        }
        let full = PENDING.with(|pending| {
            let mut pending = pending.borrow_mut();
            let _ = writeln!(pending, "{record}");
            pending.len() >= FLUSH_AT
        });
        if full {
            self.flush();
        } else if !SCHEDULED.with(|s| s.replace(true)) {
            let log = self.clone();
            monoio::spawn(async move {
                monoio::time::sleep(FLUSH_DELAY).await;
                log.flush();
            });
        }
    }

    /// Writes this thread's buffered lines now.
    pub fn flush(&self) {
        SCHEDULED.with(|s| s.set(false));
        let lines = PENDING.with(|pending| std::mem::take(&mut *pending.borrow_mut()));
        if lines.is_empty() {
            return;
        }
        let result = match self {
            AccessLog::Off => return,
            AccessLog::Stdout => {
                let mut out = io::stdout().lock();
                out.write_all(lines.as_bytes()).and_then(|()| out.flush())
            }
            AccessLog::File(file) => (&**file).write_all(lines.as_bytes()),
        };
        if let Err(e) = result {
            if !WARNED.swap(true, Ordering::Relaxed) {
                eprintln!("ringway: access log write failed, dropping lines: {e}");
            }
        }
    }
}
