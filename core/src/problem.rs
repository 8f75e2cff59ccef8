//! Why an exchange failed, and what the client is told.
//!
//! Following h11, misbehaviour of a *peer* is never an `Err` handed to the runtime: it becomes a
//! [`Problem`], which carries the status code of the canned answer, a one-line explanation for
//! the response body and a short word for the access log. The variants are `Copy` so they cost
//! nothing to pass around and can be matched exhaustively in tests.

use bytes::{BufMut, Bytes, BytesMut};

use crate::egress::Reason;

/// Everything that can go wrong in a request, each with an exact status.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Problem {
    /// The request line or a header line is not valid HTTP/1.1 syntax.
    MalformedHead,
    /// A line ended in a bare LF, or a CR was not followed by LF.
    BareLineEnding,
    /// The request target was origin-form (`GET /path`): we are a proxy, not an origin.
    OriginFormTarget,
    /// The absolute-form URI could not be parsed (bad host, bad port, userinfo, fragment).
    BadTarget,
    /// An absolute-form target with a scheme other than `http`.
    UnsupportedScheme,
    /// CONNECT whose target is not `host:port`.
    BadConnectTarget,
    /// The head exceeded the configured size.
    HeadTooLarge,
    /// The head had more header fields than configured.
    TooManyHeaders,
    /// A version other than HTTP/1.0 and HTTP/1.1.
    UnsupportedVersion,
    /// Both Content-Length and Transfer-Encoding: the classic smuggling vector.
    ContentLengthWithTransferEncoding,
    /// More than one Content-Length field.
    DuplicateContentLength,
    /// A Content-Length that is not a plain decimal number.
    InvalidContentLength,
    /// A Transfer-Encoding whose final coding is not exactly `chunked`.
    BadTransferEncoding,
    /// Transfer-Encoding in an HTTP/1.0 request, which has no chunked framing.
    TransferEncodingInHttp10,
    /// More than one Host field.
    DuplicateHost,
    /// HTTP/1.1 request without a Host field.
    MissingHost,
    /// A Host field whose value is not `uri-host [ ":" port ]` (RFC 9112 §3.2).
    InvalidHost,
    /// A CONNECT or other request carried a body we refuse to frame.
    UnexpectedBody,
    /// The chunked request body had a malformed chunk size or framing.
    BadChunk,
    /// Our own pseudonym is already in `Via`: forwarding would loop.
    ForwardingLoop,
    /// The client address is not allowed to use this proxy.
    ClientDenied,
    /// Credentials are required and were missing or wrong.
    ProxyAuthRequired,
    /// CONNECT to a port the policy does not allow.
    ConnectPortDenied,
    /// The head did not arrive in full within the header timeout.
    HeaderTimeout,
    /// Name resolution of the upstream host failed.
    DnsFailed,
    /// The upstream refused or was unreachable.
    DialFailed,
    /// The upstream did not accept the connection within the connect timeout.
    DialTimeout,
    /// The upstream sent something that is not a valid HTTP/1.1 response head.
    BadResponse,
    /// The upstream closed or reset before sending a complete response head.
    UpstreamClosed,
    /// The upstream went silent for longer than the exchange timeout.
    UpstreamTimeout,
    /// Name resolution of the upstream host outlived its deadline.
    DnsTimeout,
    /// The parent proxy (`--upstream-proxy`) refused the connection or was unreachable.
    ParentDialFailed,
    /// The parent proxy did not accept the connection within the connect timeout.
    ParentDialTimeout,
    /// The client already holds `--max-connections-per-client` connections.
    ClientLimit,
    /// The proxy already holds `--max-connections` client connections.
    ConnectionLimit,
    /// Inside an intercepted tunnel: the request names another authority than the CONNECT
    /// the tunnel was opened for (`Host` or an absolute-form target). RFC 9110 §15.5.20:
    /// this connection cannot answer for that origin; the client should open another.
    MisdirectedRequest,
    /// Inside an intercepted tunnel: the origin's certificate is untrusted, expired or for
    /// another name, so the proxy will not send the request there.
    UpstreamTlsCertificate,
    /// Inside an intercepted tunnel: the TLS handshake with the origin failed otherwise
    /// (no common version or cipher, an alert, a malformed record).
    UpstreamTlsProtocol,
    /// The egress policy refuses the destination, for this reason. The answer names the
    /// destination and the flag that would allow it (see [`Problem::denial`]).
    Denied(Reason),
}

impl Problem {
    /// Every problem, for tests and tools that want to walk them all.
    pub const ALL: &'static [Problem] = &[
        Problem::MalformedHead,
        Problem::BareLineEnding,
        Problem::OriginFormTarget,
        Problem::BadTarget,
        Problem::UnsupportedScheme,
        Problem::BadConnectTarget,
        Problem::HeadTooLarge,
        Problem::TooManyHeaders,
        Problem::UnsupportedVersion,
        Problem::ContentLengthWithTransferEncoding,
        Problem::DuplicateContentLength,
        Problem::InvalidContentLength,
        Problem::BadTransferEncoding,
        Problem::TransferEncodingInHttp10,
        Problem::DuplicateHost,
        Problem::MissingHost,
        Problem::InvalidHost,
        Problem::UnexpectedBody,
        Problem::BadChunk,
        Problem::ForwardingLoop,
        Problem::ClientDenied,
        Problem::ProxyAuthRequired,
        Problem::ConnectPortDenied,
        Problem::HeaderTimeout,
        Problem::DnsFailed,
        Problem::DialFailed,
        Problem::DialTimeout,
        Problem::BadResponse,
        Problem::UpstreamClosed,
        Problem::UpstreamTimeout,
        Problem::DnsTimeout,
        Problem::ParentDialFailed,
        Problem::ParentDialTimeout,
        Problem::ClientLimit,
        Problem::ConnectionLimit,
        Problem::MisdirectedRequest,
        Problem::UpstreamTlsCertificate,
        Problem::UpstreamTlsProtocol,
        Problem::Denied(Reason::DestLoopback),
        Problem::Denied(Reason::DestUnspecified),
        Problem::Denied(Reason::DestLinkLocal),
        Problem::Denied(Reason::DestPrivate),
        Problem::Denied(Reason::DestMulticast),
        Problem::Denied(Reason::DestBroadcast),
        Problem::Denied(Reason::DestReserved),
        Problem::Denied(Reason::DestDocumentation),
        Problem::Denied(Reason::DestIpv4Embedded),
        Problem::Denied(Reason::DestDeniedRange),
        Problem::Denied(Reason::DestNotAllowed),
        Problem::Denied(Reason::DestDomain),
        Problem::Denied(Reason::DestSelf),
        Problem::Denied(Reason::DestOwnService),
    ];

    /// The status code of the canned answer.
    pub const fn status(self) -> u16 {
        use Problem::*;
        match self {
            MalformedHead
            | BareLineEnding
            | OriginFormTarget
            | BadTarget
            | UnsupportedScheme
            | BadConnectTarget
            | ContentLengthWithTransferEncoding
            | DuplicateContentLength
            | InvalidContentLength
            | BadTransferEncoding
            | TransferEncodingInHttp10
            | DuplicateHost
            | MissingHost
            | InvalidHost
            | UnexpectedBody
            | BadChunk => 400,
            ClientDenied | ConnectPortDenied => 403,
            // A request to the proxy's own listener would come straight back: a loop.
            Denied(Reason::DestSelf) => 508,
            Denied(_) => 403,
            ProxyAuthRequired => 407,
            HeaderTimeout => 408,
            MisdirectedRequest => 421,
            ClientLimit => 429,
            ConnectionLimit => 503,
            HeadTooLarge | TooManyHeaders => 431,
            ForwardingLoop => 508,
            DnsFailed | DialFailed | BadResponse | UpstreamClosed | ParentDialFailed => 502,
            UpstreamTlsCertificate | UpstreamTlsProtocol => 502,
            DialTimeout | UpstreamTimeout | DnsTimeout | ParentDialTimeout => 504,
            UnsupportedVersion => 505,
        }
    }

    /// One sentence for the response body, saying what a user can do about it.
    pub const fn message(self) -> &'static str {
        use Problem::*;
        match self {
            MalformedHead => "The request head is not valid HTTP/1.1.",
            BareLineEnding => "Lines of the request head must end in CRLF.",
            OriginFormTarget => {
                "This is a forward proxy: send an absolute URI (GET http://host/path) or CONNECT."
            }
            BadTarget => "The request URI is not a valid http:// URI.",
            UnsupportedScheme => "Only http:// URIs are forwarded; use CONNECT for https.",
            BadConnectTarget => "CONNECT needs a host:port target with a port from 1 to 65535.",
            HeadTooLarge => "The request head is too large.",
            TooManyHeaders => "The request has too many header fields.",
            UnsupportedVersion => "Only HTTP/1.0 and HTTP/1.1 are supported.",
            ContentLengthWithTransferEncoding => {
                "Content-Length and Transfer-Encoding must not both be present."
            }
            DuplicateContentLength => "Content-Length must appear at most once.",
            InvalidContentLength => "Content-Length must be a decimal number.",
            BadTransferEncoding => "Transfer-Encoding must be exactly chunked.",
            TransferEncodingInHttp10 => "HTTP/1.0 requests cannot use Transfer-Encoding.",
            DuplicateHost => "Host must appear exactly once.",
            MissingHost => "HTTP/1.1 requests need a Host header.",
            InvalidHost => "The Host header must be a host name or address with an optional port.",
            UnexpectedBody => "This request must not carry a body.",
            BadChunk => "The chunked request body is malformed.",
            ForwardingLoop => "The request already passed through this proxy.",
            ClientDenied => "Your address is not allowed to use this proxy.",
            ProxyAuthRequired => {
                "This proxy needs a user name and password (Proxy-Authorization: Basic)."
            }
            ConnectPortDenied => "CONNECT to this port is not allowed.",
            HeaderTimeout => "The request head did not arrive in time.",
            DnsFailed => "The upstream host name could not be resolved.",
            DialFailed => "The upstream server could not be reached.",
            DialTimeout => "The upstream server did not answer the connection in time.",
            BadResponse => "The upstream server sent an invalid response.",
            UpstreamClosed => "The upstream server closed the connection without a response.",
            UpstreamTimeout => "The upstream server did not respond in time.",
            DnsTimeout => "The upstream host name could not be resolved in time.",
            ParentDialFailed => "The parent proxy could not be reached.",
            ParentDialTimeout => "The parent proxy did not answer the connection in time.",
            ClientLimit => "Too many connections from your address; retry later.",
            ConnectionLimit => "The proxy is at its connection limit; retry later.",
            MisdirectedRequest => {
                "This connection was opened for another host: connect to that host separately."
            }
            UpstreamTlsCertificate => {
                "The upstream server's TLS certificate is not trusted (unknown issuer, expired, or for another name)."
            }
            UpstreamTlsProtocol => "The TLS handshake with the upstream server failed.",
            Denied(_) => "The destination is not allowed.",
        }
    }

    /// A short word for the access log's `reason=` field.
    pub const fn log_word(self) -> &'static str {
        use Problem::*;
        match self {
            MalformedHead => "malformed_head",
            BareLineEnding => "bare_line_ending",
            OriginFormTarget => "origin_form",
            BadTarget => "bad_target",
            UnsupportedScheme => "unsupported_scheme",
            BadConnectTarget => "bad_connect_target",
            HeadTooLarge => "head_too_large",
            TooManyHeaders => "too_many_headers",
            UnsupportedVersion => "unsupported_version",
            ContentLengthWithTransferEncoding => "cl_and_te",
            DuplicateContentLength => "duplicate_content_length",
            InvalidContentLength => "invalid_content_length",
            BadTransferEncoding => "bad_transfer_encoding",
            TransferEncodingInHttp10 => "te_in_http10",
            DuplicateHost => "duplicate_host",
            MissingHost => "missing_host",
            InvalidHost => "invalid_host",
            UnexpectedBody => "unexpected_body",
            BadChunk => "bad_chunk",
            ForwardingLoop => "forwarding_loop",
            ClientDenied => "client_denied",
            ProxyAuthRequired => "auth_required",
            ConnectPortDenied => "connect_port_denied",
            HeaderTimeout => "header_timeout",
            DnsFailed => "dns_failed",
            DialFailed => "dial_failed",
            DialTimeout => "dial_timeout",
            BadResponse => "bad_response",
            UpstreamClosed => "upstream_closed",
            UpstreamTimeout => "upstream_timeout",
            DnsTimeout => "dns_timeout",
            ParentDialFailed => "parent_dial_failed",
            ParentDialTimeout => "parent_dial_timeout",
            ClientLimit => "client_limit",
            ConnectionLimit => "connection_limit",
            MisdirectedRequest => "misdirected_request",
            UpstreamTlsCertificate => "tls_certificate_error",
            UpstreamTlsProtocol => "tls_protocol_error",
            Denied(reason) => reason.log_word(),
        }
    }

    /// The RFC 9209 error type for the `Proxy-Status` field of the canned answer, so a client
    /// (or an operator reading a capture) can tell the proxy's own answer from the origin's
    /// without parsing the body. Client-side syntax errors are `http_request_error` (RFC 9209
    /// §2.3.13: "malformed or otherwise invalid"); `http_protocol_error` is kept for what the
    /// next hop sent.
    pub const fn proxy_status_error(self) -> &'static str {
        use Problem::*;
        match self {
            MalformedHead
            | BareLineEnding
            | OriginFormTarget
            | BadTarget
            | UnsupportedScheme
            | BadConnectTarget
            | HeadTooLarge
            | TooManyHeaders
            | UnsupportedVersion
            | ContentLengthWithTransferEncoding
            | DuplicateContentLength
            | InvalidContentLength
            | BadTransferEncoding
            | TransferEncodingInHttp10
            | DuplicateHost
            | MissingHost
            | InvalidHost
            | UnexpectedBody
            | BadChunk
            | HeaderTimeout => "http_request_error",
            ClientDenied | ProxyAuthRequired | ConnectPortDenied => "http_request_denied",
            // RFC 9209 has no type for a misdirected request; the proxy refuses to send it.
            MisdirectedRequest => "http_request_denied",
            UpstreamTlsCertificate => "tls_certificate_error",
            UpstreamTlsProtocol => "tls_protocol_error",
            ForwardingLoop => "proxy_loop_detected",
            DnsFailed => "dns_error",
            DnsTimeout => "dns_timeout",
            DialFailed | ParentDialFailed => "connection_refused",
            DialTimeout | ParentDialTimeout => "connection_timeout",
            BadResponse => "http_protocol_error",
            UpstreamClosed => "connection_terminated",
            UpstreamTimeout => "http_response_timeout",
            ClientLimit | ConnectionLimit => "connection_limit_reached",
            Denied(Reason::DestSelf) => "proxy_loop_detected",
            Denied(reason) if reason.is_address_rule() => "destination_ip_prohibited",
            Denied(_) => "http_request_denied",
        }
    }

    /// The complete canned response: status line, `Proxy-Authenticate` (407) or `Retry-After`
    /// (429, 503), `Proxy-Status`, `Content-Type`, exact `Content-Length`,
    /// `Connection: close`, then the message. With `head_only` (answering a HEAD request)
    /// the body is left out but the length still describes it, as RFC 9110 §9.3.2 asks.
    pub fn response(self, head_only: bool) -> Bytes {
        self.response_with(self.message(), head_only)
    }

    /// The canned answer to a refused destination: like [`Problem::response`], with a body
    /// naming the destination (`subject`: the host, and the address when a name resolved to
    /// it), the rule, and the flag that would allow it: `destination 127.0.0.1 is loopback;
    /// allow it with --allow-range`. Built only on refusal, so its allocation is off the
    /// hot path.
    pub fn denial(reason: Reason, subject: &str, head_only: bool) -> Bytes {
        let mut message = alloc::string::String::with_capacity(80 + subject.len());
        message.push_str("destination ");
        message.push_str(subject);
        message.push_str(" is ");
        message.push_str(reason.what());
        match reason.remedy() {
            Some(flag) => {
                message.push_str("; allow it with ");
                message.push_str(flag);
            }
            None if matches!(reason, Reason::DestSelf | Reason::DestOwnService) => {
                message.push_str("; that is never allowed")
            }
            None => message.push_str("; remove that rule to allow it"),
        }
        Problem::Denied(reason).response_with(&message, head_only)
    }

    /// The canned answer to a parent proxy that could not be reached ([`Problem::ParentDialFailed`],
    /// [`Problem::ParentDialTimeout`]), naming it (`parent`, as configured) so that the
    /// operator knows which hop failed: `The parent proxy proxy.corp:3128 could not be
    /// reached.` Built only on failure, off the hot path.
    pub fn parent_failure(self, parent: &str, head_only: bool) -> Bytes {
        let message = self.message();
        let message = match message.strip_prefix("The parent proxy ") {
            Some(rest) => alloc::format!("The parent proxy {parent} {rest}"),
            None => alloc::string::String::from(message),
        };
        self.response_with(&message, head_only)
    }

    fn response_with(self, message: &str, head_only: bool) -> Bytes {
        let mut out = BytesMut::with_capacity(160 + message.len());
        out.put_slice(b"HTTP/1.1 ");
        put_decimal(&mut out, u64::from(self.status()));
        out.put_u8(b' ');
        out.put_slice(reason_phrase(self.status()).as_bytes());
        if self.status() == 407 {
            out.put_slice(b"\r\nProxy-Authenticate: Basic realm=\"ringway\"");
        }
        if matches!(self, Problem::ClientLimit | Problem::ConnectionLimit) {
            out.put_slice(b"\r\nRetry-After: 1");
        }
        out.put_slice(b"\r\nProxy-Status: ringway; error=");
        out.put_slice(self.proxy_status_error().as_bytes());
        out.put_slice(b"\r\nContent-Type: text/plain\r\nContent-Length: ");
        put_decimal(&mut out, message.len() as u64 + 1);
        out.put_slice(b"\r\nConnection: close\r\n\r\n");
        if !head_only {
            out.put_slice(message.as_bytes());
            out.put_u8(b'\n');
        }
        out.freeze()
    }
}

/// The standard reason phrase for the statuses the proxy itself produces.
pub const fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        421 => "Misdirected Request",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        502 => "Bad Gateway",
        504 => "Gateway Timeout",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        508 => "Loop Detected",
        _ => "Error",
    }
}

/// Appends `n` in decimal without going through `core::fmt` (cheap, allocation-free).
pub(crate) fn put_decimal(out: &mut BytesMut, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.put_slice(&digits[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canned_response_is_exact() {
        let r = Problem::DialFailed.response(false);
        assert_eq!(
            &r[..],
            &b"HTTP/1.1 502 Bad Gateway\r\nProxy-Status: ringway; error=connection_refused\r\nContent-Type: text/plain\r\nContent-Length: 42\r\nConnection: close\r\n\r\nThe upstream server could not be reached.\n"[..]
        );
        let h = Problem::DialFailed.response(true);
        assert!(h.ends_with(b"Connection: close\r\n\r\n"));
    }

    #[test]
    fn content_length_matches_body_for_every_problem() {
        for &p in Problem::ALL {
            let r = p.response(false);
            let text = core::str::from_utf8(&r).unwrap();
            let (head, body) = text.split_once("\r\n\r\n").unwrap();
            assert!(head.starts_with(&alloc::format!("HTTP/1.1 {} ", p.status())));
            assert!(head.contains(&alloc::format!("Content-Length: {}", body.len())));
            assert!(!p.log_word().contains(' '));
        }
        let mut words: alloc::vec::Vec<_> = Problem::ALL.iter().map(|p| p.log_word()).collect();
        words.sort_unstable();
        words.dedup();
        assert_eq!(
            words.len(),
            Problem::ALL.len(),
            "each problem once, each with its own word"
        );
    }

    #[test]
    fn interception_answers_are_exact() {
        let r = Problem::UpstreamTlsCertificate.response(false);
        assert_eq!(
            &r[..],
            &b"HTTP/1.1 502 Bad Gateway\r\nProxy-Status: ringway; error=tls_certificate_error\r\nContent-Type: text/plain\r\nContent-Length: 101\r\nConnection: close\r\n\r\nThe upstream server's TLS certificate is not trusted (unknown issuer, expired, or for another name).\n"[..]
        );
        assert!(Problem::UpstreamTlsProtocol.response(false).starts_with(
            b"HTTP/1.1 502 Bad Gateway\r\nProxy-Status: ringway; error=tls_protocol_error\r\n"
        ));
        assert!(Problem::MisdirectedRequest
            .response(false)
            .starts_with(b"HTTP/1.1 421 Misdirected Request\r\nProxy-Status: ringway; error=http_request_denied\r\n"));
    }

    #[test]
    fn decimal() {
        let mut b = BytesMut::new();
        put_decimal(&mut b, 0);
        b.put_u8(b' ');
        put_decimal(&mut b, u64::MAX);
        assert_eq!(&b[..], b"0 18446744073709551615");
    }
}
