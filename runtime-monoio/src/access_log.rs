//! The access log: one line per request or tunnel, written to stdout, a file, or nowhere.
//!
//! Formats (`--access-log-format`): `text`, a timestamp (see [`wallclock`]) and the core's
//! [`AccessRecord`] `Display`; or `json`, one object a line written by `serde_json` (so every
//! string is escaped by a proven writer), with the fields of [`JsonLine`].
//!
//! Why a writer thread: the destination can stall. `ringway | slow-consumer`, or a log shipper
//! that hangs, leaves stdout a full pipe (64 KiB on Linux), and the next `write` to it blocks
//! until the reader reads again. Done on a worker thread, that `write` stops its event loop
//! and every client on it. So no worker ever writes: the blocking writes happen on one
//! dedicated thread, `ringway-log`, and a stalled destination costs lines, never service.
//!
//! Key components:
//! - [`AccessLog`], the cheap handle every worker writes through. [`AccessLog::write`] formats
//!   the line into a per-thread buffer. The buffer is handed to the writer as one batch of
//!   whole lines [`FLUSH_DELAY`] after its first line, at once when it reaches [`FLUSH_AT`]
//!   bytes, and when the worker exits ([`AccessLog::flush`]). Handing over is a `try_send` on
//!   a bounded channel: it never waits.
//! - [`Writer`], the writer thread, started by [`start`] after the signal mask is set and
//!   before the workers. It writes each batch in one `write_all` (then flushes stdout), in the
//!   order they arrived, so lines are never split or interleaved. A line reaches stdout within
//!   about 10 ms of its request ending, as before. [`Writer::finish`] drains it at exit.
//! - [`Destination`], opened before anything starts, so a bad `--access-log PATH` exits 2.
//!   `--access-log off` starts no thread and makes [`AccessLog::write`] return at once.
//!
//! Bounds: at most [`QUEUE_BATCHES`] batches in the channel and [`QUEUE_BYTES`] of lines
//! (counting the batch being written) wait for the writer, whichever is reached first. A batch
//! is at most [`FLUSH_AT`] plus one line (a line is at most ~64 KiB, the largest request
//! head), so the batch count alone would allow ~128 MiB; the byte budget caps it at 8 MiB
//! (allocator slack aside), which is the most a stalled log adds to the proxy's memory, plus
//! each worker's own buffer (under 128 KiB). 8 MiB is ~60,000 typical lines of ~140 bytes:
//! about three seconds of one busy worker at the ~18,000 requests/s measured in
//! `docs/benchmarks.md`, and longer at lighter load, where a worker hands over at most one
//! batch per 10 ms, so the 1024-batch bound allows ~10 s divided by the number of workers
//! logging. That rides out a hiccup of the consumer; a consumer that stays stalled costs
//! lines, not clients. Measured by `tests/tests/access_log_stall.rs` (debug build): with
//! stdout a pipe nobody reads, 1000 requests with ~16 KiB lines are all answered in ~2.7 s;
//! ~510 lines (8 MiB) wait and ~490 are dropped and reported. Before the writer thread, the
//! fourth of those requests never got an answer.
//!
//! Failure:
//! - Queue full: the batch is dropped and its lines are counted. When the writer has caught
//!   up (nothing queued), it says so on stderr, at most once per [`REPORT_EVERY`]:
//!   `ringway: access log fell behind, dropped N lines`, and once more at exit for drops not
//!   yet reported.
//! - A write error (a closed stdout, a full disk) is reported once on stderr; the batch's
//!   lines are dropped and the proxy keeps serving.
//! - At exit, [`Writer::finish`] waits for the writer to write everything queued until a
//!   deadline (the end of the shutdown grace period, at least [`EXIT_FLUSH_MIN`]). Past it,
//!   `main` reports how many lines were lost and exits anyway; if the writer was in the middle
//!   of a batch, the destination may end with part of a line.

use std::cell::{Cell, RefCell};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use ringway_core::AccessRecord;

use crate::cli::AccessLogTarget;
use crate::wallclock;

/// How long a line may wait in the worker's buffer.
pub const FLUSH_DELAY: Duration = Duration::from_millis(10);
/// Buffered bytes that make the worker hand its batch over at once.
pub const FLUSH_AT: usize = 64 * 1024;
/// Most batches waiting for the writer thread (see the module docs for the choice).
pub const QUEUE_BATCHES: usize = 1024;
/// Most bytes of lines waiting for the writer thread, including the batch it is writing.
pub const QUEUE_BYTES: usize = 8 * 1024 * 1024;
/// Least time between two "dropped N lines" reports on stderr.
pub const REPORT_EVERY: Duration = Duration::from_secs(1);
/// Least time the writer gets at exit to write what is queued, even when draining the
/// connections used up the whole grace period.
pub const EXIT_FLUSH_MIN: Duration = Duration::from_secs(1);

/// Where the lines go, opened (but not yet written to) before any thread starts.
pub enum Destination {
    /// Nowhere: no writer thread, no buffering.
    Off,
    /// Standard output.
    Stdout,
    /// A file opened with `O_APPEND`, and its path (reopened on SIGHUP).
    File(File, PathBuf),
}

impl Destination {
    /// Opens `target`. Fails if the file cannot be opened for appending.
    pub fn open(target: &AccessLogTarget) -> anyhow::Result<Destination> {
        Ok(match target {
            AccessLogTarget::Off => Destination::Off,
            AccessLogTarget::Stdout => Destination::Stdout,
            AccessLogTarget::File(path) => {
                let file = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .with_context(|| format!("--access-log: cannot open {}", path.display()))?;
                Destination::File(file, path.clone())
            }
        })
    }
}

/// How each record becomes a line (`--access-log-format`).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Format {
    /// `TIMESTAMP CLIENT METHOD TARGET STATUS RX TX DURATION[ reason=WORD]`.
    Text,
    /// One JSON object a line (see [`JsonLine`]).
    Json,
}

impl std::str::FromStr for Format {
    type Err = &'static str;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(Format::Text),
            "json" => Ok(Format::Json),
            _ => Err("expected text or json"),
        }
    }
}

/// The JSON access-log line: field names and types are the interface log pipelines parse.
#[derive(serde::Serialize)]
struct JsonLine<'a> {
    /// RFC 3339, UTC, milliseconds: when the line was written (the exchange's end).
    ts: &'a str,
    /// `ip:port` (serde writes a `SocketAddr` as its `Display` in JSON).
    client: std::net::SocketAddr,
    /// The proxy-auth user, or null.
    user: Option<&'a str>,
    method: std::borrow::Cow<'a, str>,
    target: std::borrow::Cow<'a, str>,
    status: u16,
    rx: u64,
    tx: u64,
    /// Milliseconds with microsecond precision.
    duration_ms: f64,
    /// The `ip:port` dialed, or null.
    upstream: Option<std::net::SocketAddr>,
    reason: Option<&'a str>,
    /// Which hop carried the request (`"parent"` or `"direct"`); present only when a parent
    /// proxy is configured, as `via=` is on the text line.
    #[serde(skip_serializing_if = "Option::is_none")]
    via: Option<&'static str>,
    /// Present (true) only on exchanges inside an intercepted TLS tunnel, so other lines keep
    /// their shape.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    intercepted: bool,
}

/// Appends `record` to `out` as one line in `format`, stamped with `ts`.
pub fn format_line(out: &mut Vec<u8>, record: &AccessRecord, format: Format, ts: &str) {
    match format {
        Format::Text => {
            let _ = writeln!(out, "{ts} {record}");
        }
        Format::Json => {
            let line = JsonLine {
                ts,
                client: record.client,
                user: record.user.as_deref(),
                method: record.method_lossy(),
                target: record.target_lossy(),
                status: record.status,
                rx: record.rx,
                tx: record.tx,
                duration_ms: record.duration.as_micros() as f64 / 1000.0,
                upstream: record.upstream,
                reason: record.reason,
                via: record.via.map(|hop| hop.word()),
                intercepted: record.intercepted,
            };
            // Writing to a Vec cannot fail, and every field serializes.
            let _ = serde_json::to_writer(&mut *out, &line);
            out.push(b'\n');
        }
    }
}

/// Starts the writer thread for `destination` (none for [`Destination::Off`]) and returns
/// the handle the workers write through. Call it after `shutdown::block_signals`, so the
/// thread inherits the signal mask, and before the workers start.
pub fn start(destination: Destination, format: Format) -> io::Result<(AccessLog, Option<Writer>)> {
    let (sink, path): (Box<dyn Write + Send>, _) = match destination {
        Destination::Off => return Ok((AccessLog::Off, None)),
        Destination::Stdout => (Box::new(io::stdout()), None),
        Destination::File(file, path) => (Box::new(file), Some(path)),
    };
    let limits = Limits {
        batches: QUEUE_BATCHES,
        bytes: QUEUE_BYTES,
    };
    let (log, writer) = spawn_writer(
        sink,
        path,
        Box::new(crate::diag::stderr_lines()),
        limits,
        format,
    )?;
    Ok((log, Some(writer)))
}

/// A cheap-to-clone handle every worker thread writes through.
#[derive(Clone)]
pub enum AccessLog {
    /// `--access-log off`: lines are not even formatted.
    Off,
    /// Lines go to the writer thread.
    On(Queue),
}

/// The workers' end of the channel to the writer thread.
#[derive(Clone)]
pub struct Queue {
    format: Format,
    sender: SyncSender<Message>,
    shared: Arc<Shared>,
}

thread_local! {
    static PENDING: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    static PENDING_LINES: Cell<u64> = const { Cell::new(0) };
    static SCHEDULED: Cell<bool> = const { Cell::new(false) };
}

impl AccessLog {
    /// Buffers one record as one line (see the module docs for when it is handed over). Must
    /// run on a monoio worker thread.
    pub fn write(&self, record: &AccessRecord) {
        let AccessLog::On(queue) = self else {
            return;
        };
        let full = PENDING.with(|pending| {
            let mut pending = pending.borrow_mut();
            format_line(
                &mut pending,
                record,
                queue.format,
                wallclock::now().as_str(),
            );
            pending.len() >= FLUSH_AT
        });
        PENDING_LINES.with(|n| n.set(n.get() + 1));
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

    /// Lines dropped so far because the writer fell behind (for the metrics).
    pub fn dropped_lines(&self) -> u64 {
        match self {
            AccessLog::Off => 0,
            AccessLog::On(q) => q.shared.dropped.load(Ordering::Relaxed),
        }
    }

    /// Hands this thread's buffered lines to the writer thread now, or drops and counts them
    /// if its queue is full. Never blocks.
    pub fn flush(&self) {
        SCHEDULED.with(|s| s.set(false));
        let text = PENDING.with(|pending| std::mem::take(&mut *pending.borrow_mut()));
        let lines = PENDING_LINES.with(|n| n.replace(0));
        if text.is_empty() {
            return;
        }
        if let AccessLog::On(queue) = self {
            queue.hand_over(Batch { text, lines });
        }
    }
}

impl Queue {
    /// Queues `batch` for the writer if it fits both bounds; otherwise drops and counts it.
    fn hand_over(&self, batch: Batch) {
        let shared = &*self.shared;
        let (bytes, lines) = (batch.text.len(), batch.lines);
        let before = shared.queued_bytes.fetch_add(bytes, Ordering::Relaxed);
        shared.queued_lines.fetch_add(lines, Ordering::Relaxed);
        let sent = if before + bytes > shared.limits.bytes {
            false
        } else {
            match self.sender.try_send(Message::Lines(batch)) {
                Ok(()) => true,
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
            }
        };
        if !sent {
            shared.queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
            shared.queued_lines.fetch_sub(lines, Ordering::Relaxed);
            shared.dropped.fetch_add(lines, Ordering::Relaxed);
        }
    }
}

/// The writer thread, owned by `main`.
pub struct Writer {
    sender: SyncSender<Message>,
    shared: Arc<Shared>,
    done: Receiver<()>,
    thread: JoinHandle<()>,
}

impl Writer {
    /// Asks the writer thread to reopen the access-log file (SIGHUP, after a log rotator
    /// renamed it). Never blocks: if the queue is full, the writer sees the request before
    /// its next batch.
    pub fn reopen(&self) {
        self.shared.reopen.store(true, Ordering::Relaxed);
        let _ = self.sender.try_send(Message::Reopen);
    }

    /// Call once every worker has exited (and flushed): waits until the writer has written
    /// every line queued so far and reported drops, then ends the thread. Gives up at
    /// `deadline` and returns how many lines were lost (dropped and not yet reported, or
    /// queued and not written); `None` when everything went out.
    pub fn finish(self, deadline: Instant) -> Option<u64> {
        // The queue may be full while the writer is stalled: retry until it has room.
        loop {
            match self.sender.try_send(Message::Finish) {
                Ok(()) | Err(TrySendError::Disconnected(_)) => break,
                Err(TrySendError::Full(_)) if Instant::now() >= deadline => {
                    return Some(self.shared.lost());
                }
                Err(TrySendError::Full(_)) => std::thread::sleep(FLUSH_DELAY),
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match self.done.recv_timeout(left) {
            // Disconnected: the thread ended without saying so (it panicked).
            Ok(()) | Err(RecvTimeoutError::Disconnected) => {
                let _ = self.thread.join();
                None
            }
            Err(RecvTimeoutError::Timeout) => Some(self.shared.lost()),
        }
    }
}

/// Both bounds on what waits for the writer thread.
#[derive(Copy, Clone, Debug)]
struct Limits {
    batches: usize,
    bytes: usize,
}

/// Whole lines from one worker, handed over together.
struct Batch {
    text: Vec<u8>,
    lines: u64,
}

enum Message {
    Lines(Batch),
    /// Look at [`Shared::reopen`] now (it is also looked at before every batch).
    Reopen,
    /// Everything before this has been sent: write it, report, and end.
    Finish,
}

/// Counters shared by the workers, the writer thread and `main`. Relaxed: they are tallies;
/// the final reads happen after joins and channel hand-offs that order them.
struct Shared {
    limits: Limits,
    /// Bytes of lines queued or being written.
    queued_bytes: AtomicUsize,
    /// Lines queued or being written.
    queued_lines: AtomicU64,
    /// Lines dropped because the queue was full, ever.
    dropped: AtomicU64,
    /// Of those, lines already reported on stderr.
    reported: AtomicU64,
    /// Whether a write error was reported.
    warned: AtomicBool,
    /// SIGHUP asked for the file to be reopened.
    reopen: AtomicBool,
}

impl Shared {
    /// Lines nobody will see: dropped and not reported, plus queued and not written.
    fn lost(&self) -> u64 {
        let unreported =
            self.dropped.load(Ordering::Relaxed) - self.reported.load(Ordering::Relaxed);
        unreported + self.queued_lines.load(Ordering::Relaxed)
    }
}

/// Starts the writer thread over `sink`, with `notices` for what it says (stderr).
fn spawn_writer(
    sink: Box<dyn Write + Send>,
    path: Option<PathBuf>,
    notices: Box<dyn Write + Send>,
    limits: Limits,
    format: Format,
) -> io::Result<(AccessLog, Writer)> {
    let (sender, receiver) = mpsc::sync_channel(limits.batches);
    let shared = Arc::new(Shared {
        limits,
        queued_bytes: AtomicUsize::new(0),
        queued_lines: AtomicU64::new(0),
        dropped: AtomicU64::new(0),
        reported: AtomicU64::new(0),
        warned: AtomicBool::new(false),
        reopen: AtomicBool::new(false),
    });
    let (done_tx, done) = mpsc::channel();
    let mut writer = WriterLoop {
        receiver,
        sink,
        path,
        notices,
        shared: Arc::clone(&shared),
        reports: DropReports::default(),
    };
    let thread = std::thread::Builder::new()
        .name("ringway-log".into())
        .spawn(move || {
            writer.run();
            let _ = done_tx.send(());
        })?;
    let queue = Queue {
        format,
        sender: sender.clone(),
        shared: Arc::clone(&shared),
    };
    let writer = Writer {
        sender,
        shared,
        done,
        thread,
    };
    Ok((AccessLog::On(queue), writer))
}

/// The writer thread's state.
struct WriterLoop {
    receiver: Receiver<Message>,
    sink: Box<dyn Write + Send>,
    /// The file's path, to reopen it; `None` for stdout.
    path: Option<PathBuf>,
    notices: Box<dyn Write + Send>,
    shared: Arc<Shared>,
    reports: DropReports,
}

impl WriterLoop {
    /// Writes batches as they come until [`Message::Finish`] (or every sender is gone), then
    /// reports the drops not reported yet.
    fn run(&mut self) {
        loop {
            let message = match self.receiver.try_recv() {
                Ok(m) => m,
                Err(TryRecvError::Disconnected) => break,
                Err(TryRecvError::Empty) => {
                    // Caught up: the moment to say what was dropped while behind.
                    let wait = self.report_drops(Instant::now());
                    let next = match wait {
                        None => self.receiver.recv().ok(),
                        Some(wait) => match self.receiver.recv_timeout(wait) {
                            Ok(m) => Some(m),
                            Err(RecvTimeoutError::Timeout) => continue,
                            Err(RecvTimeoutError::Disconnected) => None,
                        },
                    };
                    match next {
                        Some(m) => m,
                        None => break,
                    }
                }
            };
            if self.shared.reopen.swap(false, Ordering::Relaxed) {
                self.reopen();
            }
            match message {
                Message::Lines(batch) => self.write(batch),
                Message::Reopen => {}
                Message::Finish => break,
            }
        }
        self.report_now(Instant::now());
    }

    /// Opens the file again (a log rotator has renamed it): later lines go to the new file;
    /// if it cannot be opened, they keep going to the old one.
    fn reopen(&mut self) {
        let Some(path) = &self.path else {
            let _ = writeln!(
                self.notices,
                "ringway: SIGHUP: the access log goes to stdout; nothing to reopen"
            );
            return;
        };
        let _ = self.sink.flush();
        match OpenOptions::new().create(true).append(true).open(path) {
            Ok(file) => {
                self.sink = Box::new(file);
                let _ = writeln!(
                    self.notices,
                    "ringway: SIGHUP: reopened the access log {}",
                    path.display()
                );
            }
            Err(e) => {
                let _ = writeln!(
                    self.notices,
                    "ringway: SIGHUP: cannot reopen the access log {}: {e}; still writing to the old file",
                    path.display()
                );
            }
        }
    }

    fn write(&mut self, batch: Batch) {
        let result = self
            .sink
            .write_all(&batch.text)
            .and_then(|()| self.sink.flush());
        let shared = &*self.shared;
        shared
            .queued_bytes
            .fetch_sub(batch.text.len(), Ordering::Relaxed);
        shared
            .queued_lines
            .fetch_sub(batch.lines, Ordering::Relaxed);
        if let Err(e) = result {
            if !shared.warned.swap(true, Ordering::Relaxed) {
                let _ = writeln!(
                    self.notices,
                    "ringway: access log write failed, dropping lines: {e}"
                );
            }
        }
    }

    /// Reports unreported drops if [`REPORT_EVERY`] allows; otherwise returns how long until
    /// it does (`None`: nothing to report).
    fn report_drops(&mut self, now: Instant) -> Option<Duration> {
        let unreported = self.unreported();
        match self.reports.due(unreported, now) {
            Due::Nothing => None,
            Due::Now => {
                self.report(unreported, now);
                None
            }
            Due::In(wait) => Some(wait),
        }
    }

    /// Reports unreported drops regardless of the rate limit (at exit).
    fn report_now(&mut self, now: Instant) {
        let unreported = self.unreported();
        if unreported > 0 {
            self.report(unreported, now);
        }
    }

    fn unreported(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed) - self.shared.reported.load(Ordering::Relaxed)
    }

    fn report(&mut self, lines: u64, now: Instant) {
        let _ = writeln!(
            self.notices,
            "ringway: access log fell behind, dropped {lines} lines"
        );
        self.shared.reported.fetch_add(lines, Ordering::Relaxed);
        self.reports.last = Some(now);
    }
}

/// The rate limit on drop reports.
#[derive(Default)]
struct DropReports {
    last: Option<Instant>,
}

/// Whether a drop report is due.
#[derive(Debug, PartialEq, Eq)]
enum Due {
    Nothing,
    Now,
    In(Duration),
}

impl DropReports {
    fn due(&self, unreported: u64, now: Instant) -> Due {
        if unreported == 0 {
            return Due::Nothing;
        }
        match self.last {
            Some(last) if now.saturating_duration_since(last) < REPORT_EVERY => {
                Due::In(REPORT_EVERY - now.saturating_duration_since(last))
            }
            _ => Due::Now,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Condvar, Mutex};

    /// A sink that blocks every write until opened, then appends to a shared buffer: a pipe
    /// whose reader stalls and later resumes.
    #[derive(Clone, Default)]
    struct Gate {
        state: Arc<(Mutex<GateState>, Condvar)>,
    }

    #[derive(Default)]
    struct GateState {
        open: bool,
        written: Vec<u8>,
    }

    impl Gate {
        fn open(&self) {
            self.state.0.lock().unwrap().open = true;
            self.state.1.notify_all();
        }

        fn text(&self) -> String {
            String::from_utf8(self.state.0.lock().unwrap().written.clone()).unwrap()
        }
    }

    impl Write for Gate {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let (lock, cv) = &*self.state;
            let mut state = cv.wait_while(lock.lock().unwrap(), |s| !s.open).unwrap();
            state.written.extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// Stderr as the writer thread sees it.
    #[derive(Clone, Default)]
    struct Notices(Arc<Mutex<Vec<u8>>>);

    impl Notices {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    impl Write for Notices {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn queue(log: &AccessLog) -> &Queue {
        match log {
            AccessLog::On(q) => q,
            AccessLog::Off => panic!("log is off"),
        }
    }

    fn batch(text: &str) -> Batch {
        Batch {
            text: text.as_bytes().to_vec(),
            lines: text.matches('\n').count() as u64,
        }
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(10)
    }

    #[test]
    fn stalled_sink_drops_and_counts_then_reports_once_caught_up() {
        let gate = Gate::default();
        let notices = Notices::default();
        let limits = Limits {
            batches: 2,
            bytes: 1 << 20,
        };
        let (log, writer) = spawn_writer(
            Box::new(gate.clone()),
            None,
            Box::new(notices.clone()),
            limits,
            Format::Text,
        )
        .unwrap();
        let q = queue(&log);
        // Never blocks: at most one batch in the stalled write and two queued, the rest are
        // dropped.
        for i in 0..10 {
            q.hand_over(batch(&format!("line {i}\n")));
        }
        let dropped = q.shared.dropped.load(Ordering::Relaxed);
        assert!((7..=8).contains(&dropped), "dropped {dropped}");
        gate.open();
        assert_eq!(writer.finish(soon()), None);
        let written = gate.text();
        assert_eq!(written.lines().count() as u64 + dropped, 10, "{written}");
        assert!(written.starts_with("line 0\nline 1\n"), "{written}");
        assert_eq!(
            notices.text(),
            format!("ringway: access log fell behind, dropped {dropped} lines\n")
        );
    }

    #[test]
    fn byte_budget_counts_the_batch_being_written() {
        let gate = Gate::default();
        let limits = Limits {
            batches: 100,
            bytes: 16,
        };
        let (log, writer) = spawn_writer(
            Box::new(gate.clone()),
            None,
            Box::new(Notices::default()),
            limits,
            Format::Text,
        )
        .unwrap();
        let q = queue(&log);
        q.hand_over(batch("0123456789\n")); // 11 bytes: fits
        q.hand_over(batch("abcdef\n")); // 18 in all: dropped
        q.hand_over(batch("abcd\n")); // 16 in all: fits
        assert_eq!(q.shared.dropped.load(Ordering::Relaxed), 1);
        gate.open();
        assert_eq!(writer.finish(soon()), None);
        assert_eq!(gate.text(), "0123456789\nabcd\n");
    }

    #[test]
    fn finish_gives_up_at_the_deadline_and_counts_what_is_lost() {
        let gate = Gate::default();
        let limits = Limits {
            batches: 1,
            bytes: 1 << 20,
        };
        let (log, writer) = spawn_writer(
            Box::new(gate.clone()),
            None,
            Box::new(Notices::default()),
            limits,
            Format::Text,
        )
        .unwrap();
        let q = queue(&log);
        for _ in 0..5 {
            q.hand_over(batch("a\nb\n"));
        }
        let started = Instant::now();
        let lost = writer.finish(Instant::now() + Duration::from_millis(100));
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(lost, Some(10));
        gate.open(); // Lets the thread end.
    }

    #[test]
    fn write_error_is_reported_once() {
        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::from(io::ErrorKind::BrokenPipe))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let notices = Notices::default();
        let limits = Limits {
            batches: 8,
            bytes: 1 << 20,
        };
        let (log, writer) = spawn_writer(
            Box::new(Broken),
            None,
            Box::new(notices.clone()),
            limits,
            Format::Text,
        )
        .unwrap();
        queue(&log).hand_over(batch("a\n"));
        queue(&log).hand_over(batch("b\n"));
        assert_eq!(writer.finish(soon()), None);
        let text = notices.text();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.starts_with("ringway: access log write failed, dropping lines: "));
    }

    fn record(target: &'static [u8]) -> AccessRecord {
        AccessRecord {
            client: "127.0.0.1:50312".parse().unwrap(),
            method: bytes::Bytes::from_static(b"GET"),
            target: bytes::Bytes::from_static(target),
            status: 200,
            rx: 78,
            tx: 1234,
            duration: Duration::from_micros(532),
            reason: None,
            user: None,
            upstream: None,
            via: None,
            intercepted: false,
        }
    }

    #[test]
    fn text_line_starts_with_the_timestamp() {
        let mut out = Vec::new();
        let ts = "2026-12-01T17:25:18.123Z";
        format_line(&mut out, &record(b"http://h/a"), Format::Text, ts);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "2026-12-01T17:25:18.123Z 127.0.0.1:50312 GET http://h/a 200 78 1234 0.532ms\n"
        );
    }

    #[test]
    fn json_line_has_every_field_escaped() {
        let mut r = record(b"http://h/\"q\\\n\xff");
        r.user = Some("al\"ice".into());
        r.reason = Some("upstream_closed");
        r.upstream = Some("127.0.0.1:8080".parse().unwrap());
        let mut out = Vec::new();
        format_line(&mut out, &r, Format::Json, "2026-12-01T17:25:18.123Z");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            concat!(
                r#"{"ts":"2026-12-01T17:25:18.123Z","client":"127.0.0.1:50312","user":"al\"ice","#,
                r#""method":"GET","target":"http://h/\"q\\\n�","status":200,"rx":78,"#,
                r#""tx":1234,"duration_ms":0.532,"upstream":"127.0.0.1:8080","#,
                r#""reason":"upstream_closed"}"#,
                "\n"
            )
        );
        let mut out = Vec::new();
        format_line(&mut out, &record(b""), Format::Json, "t");
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains(r#""user":null,"method":"GET","target":"","#)
                && text.ends_with("\"upstream\":null,\"reason\":null}\n"),
            "{text}"
        );
        // With a parent proxy configured, the hop is named, on both formats.
        let mut r = record(b"http://h/");
        r.via = Some(ringway_core::Hop::Parent);
        let mut out = Vec::new();
        format_line(&mut out, &r, Format::Json, "t");
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.ends_with("\"reason\":null,\"via\":\"parent\"}\n"),
            "{text}"
        );
        let mut out = Vec::new();
        format_line(&mut out, &r, Format::Text, "t");
        assert!(String::from_utf8(out)
            .unwrap()
            .ends_with(" 0.532ms via=parent\n"));
        let mut inside = record(b"https://origin.test:443/");
        inside.intercepted = true;
        let mut out = Vec::new();
        format_line(&mut out, &inside, Format::Json, "t");
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.ends_with("\"reason\":null,\"intercepted\":true}\n"),
            "{text}"
        );
        let mut out = Vec::new();
        format_line(&mut out, &inside, Format::Text, "t");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "t 127.0.0.1:50312 GET https://origin.test:443/ 200 78 1234 0.532ms intercepted=1\n"
        );
    }

    #[test]
    fn drop_reports_at_most_once_per_second() {
        let t0 = Instant::now();
        let mut r = DropReports::default();
        assert_eq!(r.due(0, t0), Due::Nothing);
        assert_eq!(r.due(5, t0), Due::Now);
        r.last = Some(t0);
        let later = t0 + Duration::from_millis(300);
        assert_eq!(r.due(3, later), Due::In(Duration::from_millis(700)));
        assert_eq!(r.due(0, later), Due::Nothing);
        assert_eq!(r.due(3, t0 + REPORT_EVERY), Due::Now);
    }
}
