//! `--config FILE`: a TOML file whose keys are the long flag names with `_` for `-`,
//! translated into the equivalent command-line arguments.
//!
//! Why a translation rather than a second set of settings: the file is parsed by the very
//! same flag definitions (`cli::Args`), so every flag, including ones added later, works in
//! the file with no per-flag code, and a value means the same in both places. The rules:
//! `key = "v"` or `key = 5` is `--key v`, an array is the flag repeated, `key = true` is the
//! switch `--key` (`false` leaves it out).
//!
//! Failure: a TOML syntax error, a table, a nested array, a key that is no flag or a value
//! the flag refuses is an [`Error`] naming the key and its line; `cli` turns it into
//! `ringway: --config FILE: line N: key: ...` and exit 2.

use std::collections::BTreeMap;

use toml::{Spanned, Value};

/// Keys that make no sense in a file: they would recurse or end the process.
pub const NOT_IN_FILE: &[&str] = &["config", "check_config", "help", "version"];

/// One setting from the file as command-line arguments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The key as written (`connect_ports`).
    pub key: String,
    /// Its line, 1-based.
    pub line: usize,
    /// The flag (`--connect-ports`).
    pub flag: String,
    /// The arguments: the flag followed by its value, once per array element; just the flag
    /// for a switch; empty for `false`.
    pub args: Vec<String>,
}

/// What is wrong with the file, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    /// 1-based line, if known.
    pub line: Option<usize>,
    /// The key, if the problem belongs to one.
    pub key: Option<String>,
    /// One line saying what is wrong.
    pub message: String,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(line) = self.line {
            write!(f, "line {line}: ")?;
        }
        if let Some(key) = &self.key {
            write!(f, "{key}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// The 1-based line of byte offset `at` in `text`.
pub fn line_of(text: &str, at: usize) -> usize {
    text.as_bytes()[..at.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Translates `text` into entries, in the file's order. Checks the shape only; whether the
/// flag exists and accepts the value is for `cli` to check, entry by entry.
pub fn translate(text: &str) -> Result<Vec<Entry>, Error> {
    let table: BTreeMap<Spanned<String>, Spanned<Value>> =
        toml::from_str(text).map_err(|e| Error {
            line: e.span().map(|s| line_of(text, s.start)),
            key: None,
            message: e.message().trim().replace('\n', " "),
        })?;
    let mut entries = Vec::with_capacity(table.len());
    for (key, value) in table {
        let line = line_of(text, key.span().start);
        let name = key.get_ref().clone();
        let fail = |message: String| Error {
            line: Some(line),
            key: Some(name.clone()),
            message,
        };
        if NOT_IN_FILE.contains(&name.as_str()) {
            return Err(fail("not allowed in a config file".into()));
        }
        if name.contains('-') || name.is_empty() {
            return Err(fail(format!(
                "unknown key (keys are flag names with _ for -, e.g. {})",
                name.replace('-', "_")
            )));
        }
        let flag = format!("--{}", name.replace('_', "-"));
        let mut args = Vec::new();
        match value.get_ref() {
            Value::Boolean(true) => args.push(flag.clone()),
            Value::Boolean(false) => {}
            Value::Array(items) => {
                for item in items {
                    let v = scalar(item)
                        .ok_or_else(|| fail("array elements must be strings or numbers".into()))?;
                    args.push(flag.clone());
                    args.push(v);
                }
            }
            other => {
                let v = scalar(other)
                    .ok_or_else(|| fail("expected a string, number, boolean or array".into()))?;
                args.push(flag.clone());
                args.push(v);
            }
        }
        entries.push(Entry {
            key: name,
            line,
            flag,
            args,
        });
    }
    entries.sort_by_key(|e| e.line);
    Ok(entries)
}

/// A string or number as the text a flag would get.
fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Integer(i) => Some(i.to_string()),
        Value::Float(f) => Some(f.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(text: &str) -> Vec<Vec<String>> {
        translate(text)
            .unwrap()
            .into_iter()
            .map(|e| e.args)
            .collect()
    }

    #[test]
    fn keys_become_flags() {
        let text = "listen = [\"127.0.0.1:0\", \"[::1]:0\"]\nthreads = 2\n\
                    connect_ports = \"any\"\n# comment\nsome_switch = true\nother = false\n";
        assert_eq!(
            args(text),
            [
                vec!["--listen", "127.0.0.1:0", "--listen", "[::1]:0"],
                vec!["--threads", "2"],
                vec!["--connect-ports", "any"],
                vec!["--some-switch"],
                vec![],
            ]
        );
        let e = &translate(text).unwrap()[2];
        assert_eq!(
            (e.key.as_str(), e.line, e.flag.as_str()),
            ("connect_ports", 3, "--connect-ports")
        );
        assert_eq!(args(""), Vec::<Vec<String>>::new());
    }

    #[test]
    fn errors_name_the_key_and_line() {
        for (text, line, key, what) in [
            (
                "a = 1\n[table]\nx = 1\n",
                Some(2),
                Some("table"),
                "expected a string",
            ),
            ("a = 1\nb = [[1]]\n", Some(2), Some("b"), "array elements"),
            (
                "\n\nconfig = \"x\"\n",
                Some(3),
                Some("config"),
                "not allowed",
            ),
            (
                "connect-ports = \"any\"\n",
                Some(1),
                Some("connect-ports"),
                "connect_ports",
            ),
            ("a = 1\nthreads = \n", Some(2), None, ""),
            ("a = 1\na = 2\n", Some(2), None, "duplicate"),
        ] {
            let e = translate(text).unwrap_err();
            assert_eq!(e.line, line, "{text:?}: {e}");
            assert_eq!(e.key.as_deref(), key, "{text:?}: {e}");
            assert!(e.message.contains(what), "{text:?}: {e}");
            assert!(!e.to_string().contains('\n'), "one line: {e}");
        }
    }
}
