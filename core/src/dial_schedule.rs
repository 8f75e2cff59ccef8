//! The Happy Eyeballs v2 schedule (RFC 8305 §4–5) of one dial, as a pure state machine.
//!
//! Key components: [`DialSchedule`] holds the approved addresses of one dial in the order they
//! will be tried (families interleaved, starting with the family of the resolver's first
//! answer), which attempts are in flight, and when the next one may start: [`ATTEMPT_DELAY`]
//! after the previous one started, or at once when that one failed sooner. The first attempt
//! that connects wins; the [`Connection`](crate::Connection) then cancels the rest. The
//! schedule never reads a clock (`now` comes in) and allocates only when a dial has more
//! addresses than any before it on the same connection.
//!
//! Error handling: a result for an attempt that is not in flight (already failed, cancelled,
//! from an earlier dial) is refused (`false`/`None`), so a confused or late runtime cannot
//! change the outcome. The whole race's deadline belongs to the connection, not to this.

use alloc::vec::Vec;
use core::net::SocketAddr;
use core::time::Duration;

use crate::connection::DialError;
use crate::time::Instant;

/// How long an attempt gets to itself before the next address is tried alongside it (RFC 8305's
/// recommended "Connection Attempt Delay").
pub const ATTEMPT_DELAY: Duration = Duration::from_millis(250);

/// Names one connection attempt ([`Output::Connect`](crate::Output::Connect)): its result
/// ([`Connection::handle_dial`](crate::Connection::handle_dial)) and its cancellation
/// ([`Output::CancelConnect`](crate::Output::CancelConnect)) carry it, because several
/// attempts of one dial may be in flight at once. Unique on one connection (it wraps after
/// 2^32 attempts).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AttemptId(pub u32);

/// Where one address of the dial stands.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum State {
    NotStarted,
    InFlight,
    Failed,
    Cancelled,
    Won,
}

/// One dial's addresses and attempts (see the module docs).
#[derive(Debug, Default)]
pub struct DialSchedule {
    /// The addresses in the order they are tried, with where each stands.
    order: Vec<(SocketAddr, State)>,
    /// How many of `order` were started (they are a prefix).
    started: usize,
    /// The id of `order[0]`'s attempt; attempt `i` is `first_id + i`.
    first_id: u32,
    /// The id the next dial's first attempt gets.
    next_id: u32,
    /// When the latest attempt started.
    last_start: Option<Instant>,
    /// The latest failure, for the answer when every attempt failed.
    last_error: Option<DialError>,
}

impl DialSchedule {
    /// Forgets the previous dial and starts a new one with no address.
    pub fn clear(&mut self) {
        self.first_id = self.next_id;
        self.order.clear();
        self.started = 0;
        self.last_start = None;
        self.last_error = None;
    }

    /// Adds an approved address in the resolver's order (a duplicate is ignored). Call
    /// [`DialSchedule::interleave`] once all are in.
    pub fn push(&mut self, addr: SocketAddr) {
        debug_assert_eq!(self.started, 0, "addresses added after the race began");
        if !self.order.iter().any(|(a, _)| *a == addr) {
            self.order.push((addr, State::NotStarted));
        }
    }

    /// Whether the dial has no address at all.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Reorders the addresses so the families alternate, starting with the family of the
    /// first (RFC 8305 §4, "First Address Family Count" 1), keeping the resolver's order
    /// within each family: a black-holed family then costs one [`ATTEMPT_DELAY`], not the
    /// whole connect timeout.
    pub fn interleave(&mut self) {
        let Some(&(first, _)) = self.order.first() else {
            return;
        };
        let mut want_v4 = first.is_ipv4();
        for i in 0..self.order.len() {
            if self.order[i].0.is_ipv4() != want_v4 {
                match (i + 1..self.order.len()).find(|&j| self.order[j].0.is_ipv4() == want_v4) {
                    // Move it forward; the others keep their relative order.
                    Some(j) => self.order[i..=j].rotate_right(1),
                    // Only the other family is left: nothing more to interleave.
                    None => return,
                }
            }
            want_v4 = !want_v4;
        }
    }

    /// Starts the next attempt if it is due at `now`: nothing started yet, the latest attempt
    /// failed already, or [`ATTEMPT_DELAY`] passed since it started. At most one per call.
    pub fn start_due(&mut self, now: Instant) -> Option<(AttemptId, SocketAddr)> {
        if !self.next_start().is_some_and(|t| t <= now) {
            return None;
        }
        let i = self.started;
        let (addr, state) = &mut self.order[i];
        *state = State::InFlight;
        self.started += 1;
        self.last_start = Some(now);
        self.next_id = self.first_id.wrapping_add(self.started as u32);
        Some((AttemptId(self.first_id.wrapping_add(i as u32)), *addr))
    }

    /// When the next attempt becomes due, if any address is left to try.
    pub fn next_start(&self) -> Option<Instant> {
        if self.started >= self.order.len() || self.has_winner() {
            return None;
        }
        match (self.last_start, self.started.checked_sub(1)) {
            (Some(t), Some(last)) if self.order[last].1 == State::InFlight => {
                Some(t + ATTEMPT_DELAY)
            }
            // Nothing started yet, or the latest attempt already failed: at once.
            (Some(t), _) => Some(t),
            (None, _) => Some(Instant::ZERO),
        }
    }

    /// The index of attempt `id` if it is in flight.
    fn in_flight_index(&self, id: AttemptId) -> Option<usize> {
        let i = id.0.wrapping_sub(self.first_id) as usize;
        (i < self.started && self.order[i].1 == State::InFlight).then_some(i)
    }

    /// Whether attempt `id` is in flight (its result is awaited).
    pub fn is_in_flight(&self, id: AttemptId) -> bool {
        self.in_flight_index(id).is_some()
    }

    /// Attempt `id` failed with `error`. False (and nothing changes) if it was not in flight.
    pub fn failed(&mut self, id: AttemptId, error: DialError) -> bool {
        let Some(i) = self.in_flight_index(id) else {
            return false;
        };
        self.order[i].1 = State::Failed;
        self.last_error = Some(error);
        true
    }

    /// Attempt `id` connected: it wins, and every other attempt in flight is marked cancelled
    /// and handed to `cancel` (for the connection's cancel outputs). The winner's address, or
    /// `None` (and nothing changes) if `id` was not in flight.
    pub fn won(&mut self, id: AttemptId, mut cancel: impl FnMut(AttemptId)) -> Option<SocketAddr> {
        let i = self.in_flight_index(id)?;
        self.order[i].1 = State::Won;
        for j in 0..self.started {
            if self.order[j].1 == State::InFlight {
                self.order[j].1 = State::Cancelled;
                cancel(AttemptId(self.first_id.wrapping_add(j as u32)));
            }
        }
        Some(self.order[i].0)
    }

    /// Whether an attempt won.
    fn has_winner(&self) -> bool {
        self.order[..self.started]
            .iter()
            .any(|(_, s)| *s == State::Won)
    }

    /// How many attempts are in flight.
    pub fn in_flight(&self) -> usize {
        self.order[..self.started]
            .iter()
            .filter(|(_, s)| *s == State::InFlight)
            .count()
    }

    /// Whether the dial has failed for good: every address was tried and none is in flight
    /// (and none won).
    pub fn is_exhausted(&self) -> bool {
        self.started == self.order.len()
            && self
                .order
                .iter()
                .all(|(_, s)| matches!(s, State::Failed | State::Cancelled))
    }

    /// The latest failure, if any attempt failed.
    pub fn last_error(&self) -> Option<DialError> {
        self.last_error
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> Instant {
        Instant::from_elapsed(Duration::from_millis(1000 + ms))
    }

    fn sched(addrs: &[&str]) -> DialSchedule {
        let mut s = DialSchedule::default();
        s.clear();
        for a in addrs {
            s.push(a.parse().unwrap());
        }
        s.interleave();
        s
    }

    fn order(s: &DialSchedule) -> Vec<String> {
        s.order.iter().map(|(a, _)| a.to_string()).collect()
    }

    #[test]
    fn families_alternate_starting_with_the_first_answer() {
        let s = sched(&[
            "[::1]:80",
            "[::2]:80",
            "[::3]:80",
            "1.0.0.1:80",
            "1.0.0.2:80",
        ]);
        assert_eq!(
            order(&s),
            [
                "[::1]:80",
                "1.0.0.1:80",
                "[::2]:80",
                "1.0.0.2:80",
                "[::3]:80"
            ]
        );
        let s = sched(&["1.0.0.1:80", "1.0.0.2:80", "[::1]:80", "1.0.0.3:80"]);
        assert_eq!(
            order(&s),
            ["1.0.0.1:80", "[::1]:80", "1.0.0.2:80", "1.0.0.3:80"]
        );
        let s = sched(&["1.0.0.1:80", "1.0.0.1:80", "1.0.0.2:80"]);
        assert_eq!(
            order(&s),
            ["1.0.0.1:80", "1.0.0.2:80"],
            "duplicates dropped"
        );
        assert!(sched(&[]).is_empty());
    }

    #[test]
    fn next_attempt_after_the_delay_or_at_once_after_a_failure() {
        let mut s = sched(&["[::1]:80", "1.0.0.1:80", "[::2]:80"]);
        let (a, addr) = s.start_due(at(0)).unwrap();
        assert_eq!(addr, "[::1]:80".parse().unwrap());
        assert_eq!(s.start_due(at(0)), None, "one at a time");
        assert_eq!(s.next_start(), Some(at(250)));
        assert_eq!(s.start_due(at(249)), None);
        let (b, addr) = s.start_due(at(250)).unwrap();
        assert_eq!(addr, "1.0.0.1:80".parse().unwrap());
        assert_ne!(a, b);
        assert_eq!(s.next_start(), Some(at(500)));
        // The latest attempt fails sooner: the next starts at once.
        assert!(s.failed(b, DialError::Refused));
        assert!(!s.failed(b, DialError::Refused), "only once");
        assert_eq!(s.next_start(), Some(at(250)));
        let (c, _) = s.start_due(at(260)).unwrap();
        assert_eq!(s.next_start(), None, "nothing left");
        assert_eq!(s.in_flight(), 2);
        // The first one connects: it wins and the other in flight is cancelled.
        let mut cancelled = Vec::new();
        assert_eq!(
            s.won(a, |id| cancelled.push(id)),
            Some("[::1]:80".parse().unwrap())
        );
        assert_eq!(cancelled, [c]);
        assert!(!s.is_in_flight(c));
        assert_eq!(
            s.won(c, |_| panic!()),
            None,
            "a cancelled attempt cannot win"
        );
        assert!(!s.is_exhausted());
    }

    #[test]
    fn an_older_failure_does_not_hurry_the_next() {
        let mut s = sched(&["1.0.0.1:80", "1.0.0.2:80", "1.0.0.3:80"]);
        let (a, _) = s.start_due(at(0)).unwrap();
        s.start_due(at(250)).unwrap();
        assert!(s.failed(a, DialError::Timeout));
        assert_eq!(s.next_start(), Some(at(500)));
    }

    #[test]
    fn all_failed_is_exhausted_with_the_last_error() {
        let mut s = sched(&["1.0.0.1:80", "[::1]:80"]);
        let (a, _) = s.start_due(at(0)).unwrap();
        assert!(s.failed(a, DialError::Refused));
        let (b, _) = s.start_due(at(1)).unwrap();
        assert!(!s.is_exhausted());
        assert!(s.failed(b, DialError::Timeout));
        assert!(s.is_exhausted());
        assert_eq!(s.last_error(), Some(DialError::Timeout));
        assert_eq!(s.start_due(at(1000)), None);
    }

    #[test]
    fn ids_of_an_earlier_dial_are_refused() {
        let mut s = sched(&["1.0.0.1:80"]);
        let (old, _) = s.start_due(at(0)).unwrap();
        s.clear();
        s.push("1.0.0.2:80".parse().unwrap());
        let (new, _) = s.start_due(at(1)).unwrap();
        assert_ne!(old, new);
        assert!(!s.is_in_flight(old));
        assert!(!s.failed(old, DialError::Refused));
        assert!(s.is_in_flight(new));
    }
}
