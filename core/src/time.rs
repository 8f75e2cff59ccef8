//! Time as a value.
//!
//! The core never reads a clock: every `handle_*` call takes `now`, and the core hands back
//! deadlines for the runtime to sleep on. [`Instant`] is a point on the runtime's own monotonic
//! timeline (any origin it likes, e.g. process start), so the core builds without `std` and a
//! test can jump straight to the next deadline.

use core::ops::{Add, Sub};
use core::time::Duration;

/// A point in time on the runtime's monotonic clock, measured from an origin the runtime chose.
///
/// Why not `std::time::Instant`: the core is `no_std`, and a plain duration makes simulated
/// clocks in tests and fuzzers trivial.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(Duration);

impl Instant {
    /// The origin of the timeline.
    pub const ZERO: Instant = Instant(Duration::ZERO);

    /// The instant `elapsed` after the runtime's chosen origin.
    pub const fn from_elapsed(elapsed: Duration) -> Self {
        Instant(elapsed)
    }

    /// How far this instant lies after the origin.
    pub const fn elapsed(self) -> Duration {
        self.0
    }

    /// Time from `earlier` to `self`, zero if `earlier` is later (a late or reordered wake).
    pub fn saturating_since(self, earlier: Instant) -> Duration {
        self.0.saturating_sub(earlier.0)
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, rhs: Duration) -> Instant {
        Instant(self.0.saturating_add(rhs))
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;
    fn sub(self, rhs: Instant) -> Duration {
        self.saturating_since(rhs)
    }
}
