//! Connection limits: whether a newly accepted client connection may be served.
//!
//! The runtime counts open client connections (it owns the sockets and the threads) and
//! reports the counts as a [`Load`]; the verdict is the core's, from the [`Config`]. A refused
//! connection is not reset: [`Connection::refuse`](crate::Connection::refuse) makes the core
//! answer its first request with `429` (per-client limit) or `503` (global limit), both with
//! `Retry-After: 1` and `Proxy-Status: ringway; error=connection_limit_reached`, then close,
//! so the client learns why and when to come back.

use crate::config::Config;
use crate::problem::Problem;

/// Open client connections when one was accepted, that one included.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Load {
    /// Over all worker threads.
    pub total: usize,
    /// From the new connection's client address, over all worker threads (0 when the runtime
    /// does not count per client because no per-client limit is set).
    pub from_client: usize,
}

impl Config {
    /// Whether a connection accepted under `load` may be served: `Err` names the problem its
    /// first request is answered with. The global cap wins: when both are exceeded the proxy
    /// as a whole is full, which is the more useful thing to tell.
    pub fn admit(&self, load: Load) -> Result<(), Problem> {
        if load.total > self.max_connections {
            return Err(Problem::ConnectionLimit);
        }
        if self.max_connections_per_client > 0 && load.from_client > self.max_connections_per_client
        {
            return Err(Problem::ClientLimit);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_refuse_the_connection_after_the_last_allowed_one() {
        let config = Config {
            max_connections: 10,
            max_connections_per_client: 2,
            ..Config::default()
        };
        let load = |total, from_client| Load { total, from_client };
        assert_eq!(config.admit(load(1, 1)), Ok(()));
        assert_eq!(config.admit(load(10, 2)), Ok(()));
        assert_eq!(config.admit(load(10, 3)), Err(Problem::ClientLimit));
        assert_eq!(config.admit(load(11, 1)), Err(Problem::ConnectionLimit));
        assert_eq!(config.admit(load(11, 3)), Err(Problem::ConnectionLimit));
        let unlimited = Config {
            max_connections_per_client: 0,
            ..config
        };
        assert_eq!(unlimited.admit(load(10, 5000)), Ok(()));
    }
}
