//! `X-Forwarded-For/-Proto/-Host` and `Forwarded` (RFC 7239), and who the client is.
//!
//! Incoming values are kept (and appended to) only when the TCP peer is in
//! `forwarding.trusted_networks`; from any other peer they are replaced by a new chain that
//! starts at the peer. Chamilo authenticates its SOAP web services with the *first*
//! `X-Forwarded-For` entry, so an untrusted client must never choose it.

use std::net::IpAddr;

use http::header::{HeaderMap, HeaderName, HeaderValue};
use ipnet::IpNet;

use super::headers::HopByHop;
use crate::http1::RequestHeadWriter;

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static FORWARDED: HeaderName = HeaderName::from_static("forwarded");

/// Whether a client-supplied header claims something about the client or the hop: the
/// forwarding headers themselves and the other client-address headers that applications (PHP
/// ones especially) read. An untrusted peer may set none of them.
fn is_forwarding_claim(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "x-forwarded-for"
            | "x-forwarded-proto"
            | "x-forwarded-host"
            | "forwarded"
            | "x-real-ip"
            | "client-ip"
            | "x-client-ip"
            | "x-cluster-client-ip"
            | "true-client-ip"
            | "x-forwarded-port"
            | "x-forwarded-server"
    )
}

/// Whether `ip` lies in one of `networks`.
pub fn is_trusted(ip: IpAddr, networks: &[IpNet]) -> bool {
    let ip = ip.to_canonical();
    networks.iter().any(|net| net.contains(&ip))
}

/// The address access rules judge: the TCP peer, or, when the peer is trusted, the first
/// address of `X-Forwarded-For` counted from the right that is not trusted (the entries to
/// its left were written by the client itself and prove nothing). `None` when the chain holds
/// something that is not an address before an untrusted one is found: such a request matches
/// no `allow` network.
pub fn client_ip(headers: &HeaderMap, peer: IpAddr, trusted: &[IpNet]) -> Option<IpAddr> {
    let peer = peer.to_canonical();
    if !is_trusted(peer, trusted) {
        return Some(peer);
    }
    let mut leftmost = peer;
    let values: Vec<&HeaderValue> = headers.get_all(&X_FORWARDED_FOR).iter().collect();
    for value in values.iter().rev() {
        let Ok(text) = value.to_str() else {
            return None;
        };
        for entry in text.rsplit(',') {
            let entry = entry.trim();
            if entry.is_empty() {
                continue;
            }
            let ip = parse_entry(entry)?.to_canonical();
            if !is_trusted(ip, trusted) {
                return Some(ip);
            }
            leftmost = ip;
        }
    }
    Some(leftmost)
}

/// Parses an `X-Forwarded-For` entry: a bare address, `[v6]`, or either with a port.
fn parse_entry(entry: &str) -> Option<IpAddr> {
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sa) = entry.parse::<std::net::SocketAddr>() {
        return Some(sa.ip());
    }
    entry
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .and_then(|inner| inner.parse().ok())
}

/// The forwarding fields the upstream gets for one request: which incoming fields pass, and
/// the fields the proxy writes.
///
/// This runs on every passed-through request, so it works on bytes: the values are written
/// straight into the request head, with no formatting machinery for the address and nothing
/// inserted into or removed from a `HeaderMap`.
#[derive(Debug)]
pub struct Forwarding<'a> {
    headers: &'a HeaderMap,
    hop: &'a HopByHop,
    peer: IpAddr,
    from_trusted: bool,
    proto: &'static str,
    host: Option<&'a HeaderValue>,
}

impl<'a> Forwarding<'a> {
    /// `headers` are the client's, of which `hop` will not pass (a client may name
    /// `X-Forwarded-For` in `Connection` to drop it, never to erase the proxy's own);
    /// `host` is the `Host` being forwarded.
    pub fn new(
        headers: &'a HeaderMap,
        hop: &'a HopByHop,
        peer: IpAddr,
        tls: bool,
        trusted: &[IpNet],
        host: Option<&'a HeaderValue>,
    ) -> Self {
        let peer = peer.to_canonical();
        Self {
            headers,
            hop,
            peer,
            from_trusted: is_trusted(peer, trusted),
            proto: if tls { "https" } else { "http" },
            host,
        }
    }

    /// Whether the client's field `name` is passed on as it is. `X-Forwarded-For` and
    /// `Forwarded` never are (the proxy writes them whole); the other claims about the
    /// client pass only from a trusted peer. Neither do an untrusted peer's names with `_`:
    /// PHP turns `_` and `-` into the same `$_SERVER` key, so `X_Forwarded_For` would stand in
    /// for the `X-Forwarded-For` the proxy wrote (nginx drops them by default too).
    pub fn passes(&self, name: &HeaderName) -> bool {
        if *name == X_FORWARDED_FOR || *name == FORWARDED {
            return false;
        }
        self.from_trusted || !(is_forwarding_claim(name) || name.as_str().contains('_'))
    }

    /// Whether a trusted peer's `name` fields reach the upstream (and so are kept or
    /// extended rather than replaced).
    fn incoming(&self, name: &HeaderName) -> bool {
        self.from_trusted && self.hop.passes(name) && self.headers.contains_key(name)
    }

    /// Writes the proxy's forwarding fields.
    pub fn write(&self, head: &mut RequestHeadWriter) {
        // X-Forwarded-For: a trusted peer's chain, then the peer.
        head.field_with(X_FORWARDED_FOR.as_str().as_bytes(), |value| {
            if self.incoming(&X_FORWARDED_FOR) && join_fields(value, self.headers, &X_FORWARDED_FOR)
            {
                value.extend_from_slice(b", ");
            }
            push_ip(value, self.peer);
        });
        if !self.incoming(&X_FORWARDED_PROTO) {
            head.field(X_FORWARDED_PROTO.as_str().as_bytes(), self.proto.as_bytes());
        }
        if let Some(host) = self.host.filter(|_| !self.incoming(&X_FORWARDED_HOST)) {
            head.field(X_FORWARDED_HOST.as_str().as_bytes(), host.as_bytes());
        }
        // Forwarded: a trusted peer's elements, then ours.
        head.field_with(FORWARDED.as_str().as_bytes(), |value| {
            if self.incoming(&FORWARDED) && join_fields(value, self.headers, &FORWARDED) {
                value.extend_from_slice(b", ");
            }
            match self.peer {
                IpAddr::V4(_) => {
                    value.extend_from_slice(b"for=");
                    push_ip(value, self.peer);
                }
                IpAddr::V6(_) => {
                    value.extend_from_slice(b"for=\"[");
                    push_ip(value, self.peer);
                    value.extend_from_slice(b"]\"");
                }
            }
            if let Some(host) = self.host.and_then(|h| h.to_str().ok()) {
                value.extend_from_slice(b";host=");
                push_token_or_quoted(value, host);
            }
            value.extend_from_slice(b";proto=");
            value.extend_from_slice(self.proto.as_bytes());
        });
    }
}

/// Appends the non-empty fields of `name`, joined with `, `; tells whether there were any.
fn join_fields(out: &mut Vec<u8>, headers: &HeaderMap, name: &HeaderName) -> bool {
    let mut any = false;
    for value in headers.get_all(name) {
        let part = value.as_bytes().trim_ascii();
        if part.is_empty() {
            continue;
        }
        if any {
            out.extend_from_slice(b", ");
        }
        out.extend_from_slice(part);
        any = true;
    }
    any
}

/// The textual form of `ip` (IPv4 dotted decimal written by hand: it is on every request).
fn push_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                if octet >= 100 {
                    out.push(b'0' + octet / 100);
                }
                if octet >= 10 {
                    out.push(b'0' + octet / 10 % 10);
                }
                out.push(b'0' + octet % 10);
            }
        }
        IpAddr::V6(v6) => {
            use std::io::Write as _;
            let _ = write!(out, "{v6}");
        }
    }
}

/// RFC 7230 `token` or, when a character needs it (`:` of a port), a quoted-string.
fn push_token_or_quoted(out: &mut Vec<u8>, value: &str) {
    let is_tchar = |b: u8| {
        b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            )
    };
    if !value.is_empty() && value.bytes().all(is_tchar) {
        out.extend_from_slice(value.as_bytes());
        return;
    }
    out.push(b'"');
    for b in value.bytes() {
        if b == b'"' || b == b'\\' {
            out.push(b'\\');
        }
        out.push(b);
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http1::RequestFraming;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// The fields the upstream gets when only forwarding is applied to `h`.
    fn forwarded_fields(
        h: &HeaderMap,
        peer: IpAddr,
        tls: bool,
        trusted: &[IpNet],
        host: Option<&HeaderValue>,
    ) -> HeaderMap {
        let hop = HopByHop::scan(h);
        let fwd = Forwarding::new(h, &hop, peer, tls, trusted, host);
        let mut head = RequestHeadWriter::new(&http::Method::GET, "/", h.len());
        for (name, value) in h {
            if hop.passes(name) && fwd.passes(name) {
                head.field(name.as_str().as_bytes(), value.as_bytes());
            }
        }
        fwd.write(&mut head);
        crate::http1::request::tests::request_fields(&head.finish(RequestFraming::Empty))
    }

    fn spoofed() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("6.6.6.6"));
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        h.insert("x-forwarded-host", HeaderValue::from_static("evil.example"));
        h.insert("forwarded", HeaderValue::from_static("for=6.6.6.6"));
        h.insert("x-real-ip", HeaderValue::from_static("6.6.6.6"));
        h
    }

    #[test]
    fn untrusted_peer_starts_a_new_chain() {
        let host = HeaderValue::from_static("chamilo.example:8443");
        let h = forwarded_fields(
            &spoofed(),
            ip("203.0.113.9"),
            false,
            &nets(&["10.0.0.0/8"]),
            Some(&host),
        );
        assert_eq!(h["x-forwarded-for"], "203.0.113.9");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "chamilo.example:8443");
        assert_eq!(
            h["forwarded"],
            "for=203.0.113.9;host=\"chamilo.example:8443\";proto=http"
        );
        assert!(h.get("x-real-ip").is_none());
        for name in [
            "x-forwarded-for",
            "x-forwarded-proto",
            "x-forwarded-host",
            "forwarded",
        ] {
            assert_eq!(h.get_all(name).iter().count(), 1, "{name}");
        }
    }

    #[test]
    fn trusted_peer_chain_is_appended() {
        let mut h = spoofed();
        h.append("x-forwarded-for", HeaderValue::from_static("7.7.7.7"));
        let host = HeaderValue::from_static("chamilo.example");
        let h = forwarded_fields(
            &h,
            ip("10.1.2.3"),
            true,
            &nets(&["10.0.0.0/8"]),
            Some(&host),
        );
        assert_eq!(h["x-forwarded-for"], "6.6.6.6, 7.7.7.7, 10.1.2.3");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "evil.example");
        assert_eq!(
            h["forwarded"],
            "for=6.6.6.6, for=10.1.2.3;host=chamilo.example;proto=https"
        );
        assert_eq!(h["x-real-ip"], "6.6.6.6");
    }

    #[test]
    fn a_trusted_chain_named_in_connection_is_dropped_and_replaced() {
        let mut h = spoofed();
        h.insert(
            "connection",
            HeaderValue::from_static("X-Forwarded-For, X-Forwarded-Host"),
        );
        let host = HeaderValue::from_static("chamilo.example");
        let h = forwarded_fields(
            &h,
            ip("10.1.2.3"),
            false,
            &nets(&["10.0.0.0/8"]),
            Some(&host),
        );
        assert_eq!(h["x-forwarded-for"], "10.1.2.3");
        assert_eq!(h["x-forwarded-host"], "chamilo.example");
        // Not named: a trusted peer's value stays.
        assert_eq!(h["x-forwarded-proto"], "https");
    }

    #[test]
    fn addresses_are_written_like_display() {
        for text in [
            "0.0.0.0",
            "9.10.99.100",
            "255.255.255.255",
            "127.0.0.1",
            "10.200.3.45",
            "2001:db8::1",
            "::1",
        ] {
            let mut out = Vec::new();
            push_ip(&mut out, ip(text));
            assert_eq!(String::from_utf8(out).unwrap(), ip(text).to_string());
        }
        for octet in 0..=255u8 {
            let addr = IpAddr::from([octet, 0, octet, 7]);
            let mut out = Vec::new();
            push_ip(&mut out, addr);
            assert_eq!(String::from_utf8(out).unwrap(), addr.to_string());
        }
    }

    #[test]
    fn ipv6_and_mapped_peers() {
        let h = forwarded_fields(&HeaderMap::new(), ip("2001:db8::1"), true, &[], None);
        assert_eq!(h["x-forwarded-for"], "2001:db8::1");
        assert_eq!(h["forwarded"], "for=\"[2001:db8::1]\";proto=https");

        let h = forwarded_fields(&HeaderMap::new(), ip("::ffff:127.0.0.1"), false, &[], None);
        assert_eq!(h["x-forwarded-for"], "127.0.0.1");
        assert!(is_trusted(ip("::ffff:127.0.0.1"), &nets(&["127.0.0.0/8"])));
    }

    #[test]
    fn non_utf8_forwarded_values_do_not_panic() {
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_bytes(b"\xff1.2.3.4").unwrap(),
        );
        let host = HeaderValue::from_bytes(b"h\xe9st").unwrap();
        let h = forwarded_fields(
            &h,
            ip("10.0.0.1"),
            false,
            &nets(&["10.0.0.0/8"]),
            Some(&host),
        );
        assert_eq!(h["x-forwarded-for"].as_bytes(), b"\xff1.2.3.4, 10.0.0.1");
        assert_eq!(h["forwarded"], "for=10.0.0.1;proto=http");
        assert_eq!(client_ip(&h, ip("10.0.0.1"), &nets(&["10.0.0.0/8"])), None);
    }

    #[test]
    fn client_ip_walks_the_chain_from_the_right() {
        let trusted = nets(&["10.0.0.0/8", "127.0.0.1/32"]);
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("1.1.1.1, 198.51.100.7, 10.0.0.5"),
        );
        // Untrusted peer: the header means nothing.
        assert_eq!(
            client_ip(&h, ip("192.0.2.1"), &trusted),
            Some(ip("192.0.2.1"))
        );
        // Trusted peer: skip trusted hops, stop at the first untrusted one.
        assert_eq!(
            client_ip(&h, ip("127.0.0.1"), &trusted),
            Some(ip("198.51.100.7"))
        );
        // Garbage before any untrusted address: unknown.
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("1.1.1.1, nonsense, 10.0.0.5"),
        );
        assert_eq!(client_ip(&h, ip("127.0.0.1"), &trusted), None);
        // Garbage to the left of the first untrusted address is irrelevant.
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("nonsense, [2001:db8::2]:443"),
        );
        assert_eq!(
            client_ip(&h, ip("127.0.0.1"), &trusted),
            Some(ip("2001:db8::2"))
        );
        // All trusted: the leftmost.
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("10.9.9.9, 10.0.0.5"),
        );
        assert_eq!(
            client_ip(&h, ip("127.0.0.1"), &trusted),
            Some(ip("10.9.9.9"))
        );
        // No header: the peer.
        assert_eq!(
            client_ip(&HeaderMap::new(), ip("127.0.0.1"), &trusted),
            Some(ip("127.0.0.1"))
        );
    }
}
