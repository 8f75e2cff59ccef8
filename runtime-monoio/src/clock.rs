//! The process clock: the core's [`ringway_core::Instant`] is time since process start.
//!
//! One `std::time::Instant` taken at start-up is the origin for every thread, so deadlines
//! the core hands back convert straight into monoio timer instants. Cannot fail.

use std::sync::OnceLock;

static START: OnceLock<std::time::Instant> = OnceLock::new();

fn start() -> std::time::Instant {
    *START.get_or_init(std::time::Instant::now)
}

/// Fixes the origin (call once, early in `main`).
pub fn init() {
    start();
}

/// Now, on the core's timeline.
pub fn now() -> ringway_core::Instant {
    ringway_core::Instant::from_elapsed(start().elapsed())
}

/// A core deadline as a monoio timer instant.
pub fn to_monoio(at: ringway_core::Instant) -> monoio::time::Instant {
    monoio::time::Instant::from_std(start() + at.elapsed())
}
