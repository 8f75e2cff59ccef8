//! Fresh P-256 leaf keys, made ahead of time by a background thread.
//!
//! Generating the key is half of minting a leaf (24-29 µs of ~55 µs here), and a first
//! visit waits for it inside the client's handshake. A thread at the lowest scheduling
//! priority (`SCHED_IDLE`: it runs only when the CPU has nothing else to do, so it never
//! delays a worker) keeps [`POOL_SIZE`] keys ready; a mint takes one, or generates its own
//! when the pool is empty (a burst of first visits) or was never started (tests, or
//! interception off). Every key is still fresh and random and serves exactly one leaf: a
//! key leaves the pool once, by move.
//!
//! Failure: a pool thread that cannot be spawned, or whose key generation fails, leaves the
//! pool empty and minting generates inline, as before the pool existed; the priority is best
//! effort (an error keeps the default priority).

use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::{Mutex, OnceLock};

use rcgen::{KeyPair, PKCS_ECDSA_P256_SHA256};

/// Keys kept ready: a burst of this many first visits mints without generating a key.
pub const POOL_SIZE: usize = 32;

static POOL: OnceLock<Mutex<Receiver<KeyPair>>> = OnceLock::new();

/// A new P-256 key pair, generated now.
pub fn generate() -> Result<KeyPair, rcgen::Error> {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
}

/// Starts the pool thread (once per process; later calls do nothing). Called when
/// interception is configured.
pub fn start_pool() {
    POOL.get_or_init(|| {
        let (tx, rx) = sync_channel::<KeyPair>(POOL_SIZE);
        let spawned = std::thread::Builder::new()
            .name("ringway-keys".into())
            .spawn(move || {
                lowest_priority();
                while let Ok(key) = generate() {
                    // Blocks while the pool is full; ends when the process does.
                    if tx.send(key).is_err() {
                        return;
                    }
                }
            });
        if let Err(e) = spawned {
            say!("ringway: leaf key pool not started ({e}); keys are made on demand");
        }
        Mutex::new(rx)
    });
}

/// A fresh key for one leaf: from the pool if one is ready, else generated now.
pub fn take() -> Result<KeyPair, rcgen::Error> {
    if let Some(pool) = POOL.get() {
        // A worker never waits for another: a busy lock is an empty pool.
        if let Ok(rx) = pool.try_lock() {
            if let Ok(key) = rx.try_recv() {
                return Ok(key);
            }
        }
    }
    generate()
}

/// The next pooled key, waiting up to `timeout` for the pool thread to make one (`None`:
/// the pool is not started, or made none in time). The tests' signal that the pool works.
#[cfg(test)]
pub fn wait_pooled(timeout: std::time::Duration) -> Option<KeyPair> {
    POOL.get()?.lock().ok()?.recv_timeout(timeout).ok()
}

/// `SCHED_IDLE` for the calling thread: it runs only when nothing else wants the CPU.
fn lowest_priority() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: plain system call on the calling thread (pid 0) with a valid parameter block.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
    if rc != 0 {
        say!(
            "ringway: leaf key pool keeps the default priority ({})",
            std::io::Error::last_os_error()
        );
    }
}
