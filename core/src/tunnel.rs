//! Tunnel byte accounting and half-close, as pure state.
//!
//! Once a CONNECT (or a `101 Switching Protocols`) turns a connection into a tunnel, the runtime
//! copies bytes itself (it may use splice or whatever its platform offers) and tells the
//! [`TunnelMeter`] what it moved and when a side reached EOF. The meter answers with what to
//! shut down: EOF from one side means shutting the write side towards the other, while the
//! other direction keeps flowing; when both directions are done the tunnel closes, exactly once.

use crate::time::Instant;

/// One of the two directions bytes flow in.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// From the client towards the upstream.
    ClientToUpstream,
    /// From the upstream towards the client.
    UpstreamToClient,
}

impl Direction {
    fn index(self) -> usize {
        match self {
            Direction::ClientToUpstream => 0,
            Direction::UpstreamToClient => 1,
        }
    }
}

/// What the meter asks of the runtime after an EOF.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum TunnelStep {
    /// Shut down the write side of the destination of this direction; keep the other flowing.
    ShutdownWrite(Direction),
    /// Both directions are done: close both sockets.
    Close,
    /// Nothing new (a repeated EOF report).
    Nothing,
}

/// Counts bytes each way and tracks which directions have ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TunnelMeter {
    bytes: [u64; 2],
    ended: [bool; 2],
    last_activity: Instant,
    closed: bool,
}

impl TunnelMeter {
    /// A meter for a tunnel that opened at `now`.
    pub fn new(now: Instant) -> TunnelMeter {
        TunnelMeter {
            bytes: [0; 2],
            ended: [false; 2],
            last_activity: now,
            closed: false,
        }
    }

    /// Records `n` bytes moved in `direction`. Returns false, counting nothing, if that
    /// direction already ended or the tunnel closed: bytes after EOF are a runtime bug.
    pub fn record(&mut self, now: Instant, direction: Direction, n: u64) -> bool {
        let i = direction.index();
        if self.ended[i] || self.closed {
            return false;
        }
        self.bytes[i] = self.bytes[i].saturating_add(n);
        if n > 0 && now > self.last_activity {
            self.last_activity = now;
        }
        true
    }

    /// Records that the source of `direction` reached EOF.
    pub fn end(&mut self, now: Instant, direction: Direction) -> TunnelStep {
        let i = direction.index();
        if self.ended[i] || self.closed {
            return TunnelStep::Nothing;
        }
        self.ended[i] = true;
        if now > self.last_activity {
            self.last_activity = now;
        }
        if self.ended == [true, true] {
            self.closed = true;
            TunnelStep::Close
        } else {
            TunnelStep::ShutdownWrite(direction)
        }
    }

    /// Marks the tunnel closed for any other reason (error, idle timeout). Returns whether it
    /// was open, so the caller closes exactly once.
    pub fn close(&mut self) -> bool {
        !core::mem::replace(&mut self.closed, true)
    }

    /// Bytes moved in `direction` so far: the tunnel's `RX`/`TX` in the access log, and what a
    /// runtime's metrics can read while the tunnel is still open.
    pub fn bytes(&self, direction: Direction) -> u64 {
        self.bytes[direction.index()]
    }

    /// Whether `direction` has ended (its source sent EOF). A runtime reads the source of a
    /// direction only while it has not: step 4 of the run loop in the crate docs.
    pub fn has_ended(&self, direction: Direction) -> bool {
        self.ended[direction.index()]
    }

    /// Whether the tunnel is closed (both directions ended, or an error or idle timeout ended
    /// it): no byte may be relayed after this.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// When the tunnel counts as idle, given the idle timeout: the last byte or EOF plus
    /// `idle`, which is what [`Connection::poll_timeout`](crate::Connection::poll_timeout)
    /// returns in a tunnel.
    pub fn idle_deadline(&self, idle: core::time::Duration) -> Instant {
        self.last_activity + idle
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::time::Duration;
    use Direction::*;

    #[test]
    fn half_close_each_way_then_close_once() {
        let t0 = Instant::ZERO;
        let mut m = TunnelMeter::new(t0);
        assert!(m.record(t0, ClientToUpstream, 517));
        assert!(m.record(t0, UpstreamToClient, 3000));
        assert_eq!(
            m.end(t0, ClientToUpstream),
            TunnelStep::ShutdownWrite(ClientToUpstream)
        );
        assert!(
            !m.record(t0, ClientToUpstream, 1),
            "nothing counted after EOF"
        );
        assert_eq!(m.end(t0, ClientToUpstream), TunnelStep::Nothing);
        assert!(m.record(t0, UpstreamToClient, 21));
        assert_eq!(m.end(t0, UpstreamToClient), TunnelStep::Close);
        assert_eq!(
            (m.bytes(ClientToUpstream), m.bytes(UpstreamToClient)),
            (517, 3021)
        );
        assert!(!m.close(), "already closed by the second EOF");
        assert_eq!(m.end(t0, UpstreamToClient), TunnelStep::Nothing);
    }

    #[test]
    fn idle_deadline_moves_with_traffic() {
        let mut m = TunnelMeter::new(Instant::ZERO);
        let idle = Duration::from_secs(300);
        assert_eq!(m.idle_deadline(idle), Instant::ZERO + idle);
        let t = Instant::from_elapsed(Duration::from_secs(10));
        m.record(t, UpstreamToClient, 1);
        assert_eq!(m.idle_deadline(idle), t + idle);
        m.record(Instant::ZERO, UpstreamToClient, 1);
        assert_eq!(
            m.idle_deadline(idle),
            t + idle,
            "a stale time never moves the deadline back"
        );
        assert!(m.close());
        assert!(!m.close());
    }
}
