//! The routing decision: forward, tunnel or refuse, as a value.
//!
//! [`decide`] is a pure function of the parsed head, the client's address and the policy, so it
//! can be tested (and fuzzed) on its own. Checks run in a fixed order: admission, forwarding
//! loop, then the target form: a denied client learns nothing about its request's validity.
//! Credentials are checked right after admission (407 before any other answer). A Host field
//! that is not `uri-host [":" port]` is refused (400) right after the target was found valid:
//! clients copy the target into Host, and a bad target is the more useful answer. A valid
//! absolute-form OPTIONS or TRACE whose `Max-Forwards` reached 0 is answered by the proxy
//! itself ([`Decision::Answer`]).

use core::net::IpAddr;

use crate::body::BodyKind;
use crate::final_recipient::LocalAnswer;
use crate::policy::Policy;
use crate::problem::Problem;
use crate::request::RequestHead;
use crate::target::{self, AbsoluteTarget, Authority};

/// What to do with a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision<'b> {
    /// Plain HTTP: dial the target's authority and send the rewritten head.
    Forward(AbsoluteTarget<'b>),
    /// CONNECT: dial the authority, answer 200, then relay bytes.
    Tunnel(Authority),
    /// Answer as the final recipient, without dialing (RFC 9110 §7.6.2).
    Answer(LocalAnswer),
    /// Answer with the problem's status and close.
    Reject(Problem),
}

/// Decides what to do with `req` from a client at `client`.
pub fn decide<'b>(req: &RequestHead<'_, 'b>, client: IpAddr, policy: &Policy) -> Decision<'b> {
    if !policy.admits(client) {
        return Decision::Reject(Problem::ClientDenied);
    }
    if !policy.authorizes(req.proxy_authorization) {
        return Decision::Reject(Problem::ProxyAuthRequired);
    }
    if req.looped {
        return Decision::Reject(Problem::ForwardingLoop);
    }
    if req.is_connect() {
        let authority = match target::parse_authority_form(req.target) {
            Ok(a) => a,
            Err(p) => return Decision::Reject(p),
        };
        if !req.host_valid {
            return Decision::Reject(Problem::InvalidHost);
        }
        if !policy.connect_ports.allows(authority.port()) {
            return Decision::Reject(Problem::ConnectPortDenied);
        }
        if req.body != BodyKind::None {
            return Decision::Reject(Problem::UnexpectedBody);
        }
        return Decision::Tunnel(authority);
    }
    match req.target.first() {
        Some(b'/') | Some(b'*') => Decision::Reject(Problem::OriginFormTarget),
        _ => match target::parse_absolute(req.target) {
            Ok(_) if !req.host_valid => Decision::Reject(Problem::InvalidHost),
            Ok(_) if req.max_forwards_reached() => Decision::Answer(if req.method == "TRACE" {
                LocalAnswer::Trace
            } else {
                LocalAnswer::Options
            }),
            Ok(t) => Decision::Forward(t),
            Err(p) => Decision::Reject(p),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::PortRule;
    use crate::request::{header_slots, parse};

    fn route(head: &str, client: &str, policy: &Policy) -> Result<&'static str, Problem> {
        let mut slots = header_slots();
        let req = parse(head.as_bytes(), &mut slots, 100, "ringway")?;
        match decide(&req, client.parse().unwrap(), policy) {
            Decision::Forward(_) => Ok("forward"),
            Decision::Tunnel(_) => Ok("tunnel"),
            Decision::Answer(LocalAnswer::Options) => Ok("answer options"),
            Decision::Answer(LocalAnswer::Trace) => Ok("answer trace"),
            Decision::Reject(p) => Err(p),
        }
    }

    #[test]
    fn decisions() {
        let p = Policy::default();
        assert_eq!(
            route("GET http://h/ HTTP/1.1\r\nHost: h\r\n\r\n", "127.0.0.1", &p),
            Ok("forward")
        );
        assert_eq!(
            route("CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n", "::1", &p),
            Ok("tunnel")
        );
        assert_eq!(
            route("CONNECT h:8443 HTTP/1.1\r\nHost: h\r\n\r\n", "::1", &p),
            Err(Problem::ConnectPortDenied)
        );
        assert_eq!(
            route("CONNECT h HTTP/1.1\r\nHost: h\r\n\r\n", "::1", &p),
            Err(Problem::BadConnectTarget)
        );
        assert_eq!(
            route(
                "CONNECT http://h:443/ HTTP/1.1\r\nHost: h\r\n\r\n",
                "::1",
                &p
            ),
            Err(Problem::BadConnectTarget)
        );
        assert_eq!(
            route(
                "CONNECT h:443 HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\n",
                "::1",
                &p
            ),
            Err(Problem::UnexpectedBody)
        );
        assert_eq!(
            route("GET / HTTP/1.1\r\nHost: h\r\n\r\n", "127.0.0.1", &p),
            Err(Problem::OriginFormTarget)
        );
        assert_eq!(
            route("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", "127.0.0.1", &p),
            Err(Problem::OriginFormTarget)
        );
        assert_eq!(
            route(
                "GET https://h/ HTTP/1.1\r\nHost: h\r\n\r\n",
                "127.0.0.1",
                &p
            ),
            Err(Problem::UnsupportedScheme)
        );
        assert_eq!(
            route("GET http://h/ HTTP/1.1\r\nHost: h\r\n\r\n", "10.1.2.3", &p),
            Err(Problem::ClientDenied)
        );
        assert_eq!(
            route("GET / HTTP/1.1\r\nHost: h\r\n\r\n", "10.1.2.3", &p),
            Err(Problem::ClientDenied)
        );
        assert_eq!(
            route(
                "GET http://h/ HTTP/1.1\r\nHost: h\r\nVia: 1.1 ringway\r\n\r\n",
                "127.0.0.1",
                &p
            ),
            Err(Problem::ForwardingLoop)
        );
        for (head, want) in [
            (
                "OPTIONS http://h HTTP/1.1\r\nHost: h\r\nMax-Forwards: 0\r\n\r\n",
                Ok("answer options"),
            ),
            (
                "OPTIONS http://h/x HTTP/1.1\r\nHost: h\r\nMax-Forwards: 000\r\n\r\n",
                Ok("answer options"),
            ),
            (
                "TRACE http://h/ HTTP/1.1\r\nHost: h\r\nMax-Forwards: 0\r\n\r\n",
                Ok("answer trace"),
            ),
            (
                "OPTIONS http://h HTTP/1.1\r\nHost: h\r\nMax-Forwards: 1\r\n\r\n",
                Ok("forward"),
            ),
            (
                "GET http://h/ HTTP/1.1\r\nHost: h\r\nMax-Forwards: 0\r\n\r\n",
                Ok("forward"),
            ),
            (
                "GET http://h/ HTTP/1.1\r\nHost: h\r\nMax-Forwards: x\r\n\r\n",
                Ok("forward"),
            ),
            (
                "options http://h HTTP/1.1\r\nHost: h\r\nMax-Forwards: 0\r\n\r\n",
                Ok("forward"),
            ),
            (
                "OPTIONS * HTTP/1.1\r\nHost: h\r\nMax-Forwards: 0\r\n\r\n",
                Err(Problem::OriginFormTarget),
            ),
            (
                "TRACE http://h/ HTTP/1.1\r\nHost: h\r\nMax-Forwards: 0\r\nMax-Forwards: 0\r\n\r\n",
                Err(Problem::MalformedHead),
            ),
            (
                "TRACE http://h/ HTTP/1.1\r\nHost: h\r\nMax-Forwards: -1\r\n\r\n",
                Err(Problem::MalformedHead),
            ),
            (
                "TRACE http://h/ HTTP/1.1\r\nHost: h\r\nMax-Forwards: 0x\r\n\r\n",
                Err(Problem::MalformedHead),
            ),
            // An invalid Host is refused once the target is known to be valid.
            (
                "GET http://h/ HTTP/1.1\r\nHost: user@h\r\n\r\n",
                Err(Problem::InvalidHost),
            ),
            (
                "OPTIONS http://h/ HTTP/1.1\r\nHost: h h\r\nMax-Forwards: 0\r\n\r\n",
                Err(Problem::InvalidHost),
            ),
            (
                "CONNECT h:443 HTTP/1.1\r\nHost: h:x\r\n\r\n",
                Err(Problem::InvalidHost),
            ),
            (
                "CONNECT h:x HTTP/1.1\r\nHost: h:x\r\n\r\n",
                Err(Problem::BadConnectTarget),
            ),
            (
                "GET http://u@h/ HTTP/1.1\r\nHost: u@h\r\n\r\n",
                Err(Problem::BadTarget),
            ),
            (
                "GET / HTTP/1.1\r\nHost: u@h\r\n\r\n",
                Err(Problem::OriginFormTarget),
            ),
        ] {
            assert_eq!(route(head, "127.0.0.1", &p), want, "{head:?}");
        }
        assert_eq!(
            route(
                "TRACE http://h/ HTTP/1.1\r\nHost: h\r\nMax-Forwards: 0\r\n\r\n",
                "10.1.2.3",
                &p
            ),
            Err(Problem::ClientDenied),
            "admission comes first"
        );
        let any = Policy {
            connect_ports: PortRule::Any,
            ..Policy::default()
        };
        assert_eq!(
            route(
                "CONNECT [::1]:8443 HTTP/1.1\r\nHost: h\r\n\r\n",
                "127.0.0.1",
                &any
            ),
            Ok("tunnel")
        );
    }
}
