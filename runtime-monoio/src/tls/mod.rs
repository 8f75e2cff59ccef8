//! TLS for interception and for the HTTPS proxy listener: the CA, minted leaves, their
//! cache, and TLS sessions without sockets. Issue 12.
//!
//! ## Key components
//! - [`ca`]: `ringway ca-init`, loading `--ca-cert`/`--ca-key` (rcgen, x509-parser).
//! - [`leaf`]: minting the certificate the client sees (rcgen).
//! - [`cache`]: the bounded LRU of leaves, one mint per host however many ask at once.
//! - [`adapter`]: everything that touches rustls (sessions driven from byte slices, configs,
//!   upstream verification, the key log), so a rustls upgrade is one file.
//!
//! What to intercept is decided in the core (`ringway_core::client_hello`,
//! `ringway_core::intercept`); this module only carries it out.
//!
//! ## Error handling
//! Start-up problems are one-line `String`/[`ca::CaError`] messages for exit status 2; a peer's
//! TLS failure is an [`adapter::TlsFailure`] value the connection turns into an answer. Key
//! material never reaches a log line, a panic or a `Debug` output.

pub mod adapter;
pub mod ca;
pub mod cache;
pub mod leaf;
#[cfg(test)]
mod tests;
