//! Diagnostics on stderr, each line in one `write(2)`.
//!
//! Why: std's `say!` is unbuffered and writes every formatting piece separately, so
//! whatever reads stderr (journald, a supervisor, a test waiting for a line) can see half a
//! line, and two threads' lines can interleave mid-line. [`say!`] formats the whole line
//! first and hands it to the kernel at once.

use std::fmt;
use std::io::{self, Write};

/// `say!`, but the line reaches stderr in one write.
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::diag::line(::std::format_args!($($arg)*))
    };
}

/// Writes `args` and a newline to stderr in one write; errors are ignored, as
/// `say!` would panic on them and nothing better can be done with a lost diagnostic.
pub fn line(args: fmt::Arguments<'_>) {
    let mut text = String::with_capacity(160);
    let _ = fmt::Write::write_fmt(&mut text, args);
    text.push('\n');
    let _ = io::stderr().write_all(text.as_bytes());
}

/// A writer for code that takes `impl Write` for its notices (the access-log writer
/// thread): each complete line goes out in one write, as with [`say!`].
pub fn stderr_lines() -> io::LineWriter<io::Stderr> {
    io::LineWriter::new(io::stderr())
}
