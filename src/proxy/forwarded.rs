//! `X-Forwarded-For/-Proto/-Host` and `Forwarded` (RFC 7239), and who the client is.
//!
//! Incoming values are kept (and appended to) only when the TCP peer is in
//! `forwarding.trusted_networks`; from any other peer they are replaced by a new chain that
//! starts at the peer. Chamilo authenticates its SOAP web services with the *first*
//! `X-Forwarded-For` entry, so an untrusted client must never choose it.

use std::fmt::Write as _;
use std::net::IpAddr;

use http::header::{HeaderMap, HeaderName, HeaderValue};
use ipnet::IpNet;

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static FORWARDED: HeaderName = HeaderName::from_static("forwarded");

/// Other client-address headers that applications (PHP ones especially) read; an untrusted
/// peer may not set them.
const SPOOFABLE: [HeaderName; 7] = [
    HeaderName::from_static("x-real-ip"),
    HeaderName::from_static("client-ip"),
    HeaderName::from_static("x-client-ip"),
    HeaderName::from_static("x-cluster-client-ip"),
    HeaderName::from_static("true-client-ip"),
    HeaderName::from_static("x-forwarded-port"),
    HeaderName::from_static("x-forwarded-server"),
];

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

/// Sets the forwarding headers for the upstream. `host` is the `Host` being forwarded.
/// Call after hop-by-hop headers are gone, so `Connection` cannot erase what is added here.
pub fn apply(
    headers: &mut HeaderMap,
    peer: IpAddr,
    tls: bool,
    trusted: &[IpNet],
    host: Option<&HeaderValue>,
) {
    let peer = peer.to_canonical();
    let proto = if tls { "https" } else { "http" };
    let from_trusted = is_trusted(peer, trusted);

    if !from_trusted {
        headers.remove(&X_FORWARDED_FOR);
        headers.remove(&X_FORWARDED_PROTO);
        headers.remove(&X_FORWARDED_HOST);
        headers.remove(&FORWARDED);
        for name in &SPOOFABLE {
            headers.remove(name);
        }
    }

    // X-Forwarded-For: existing fields (trusted peer only, all removed otherwise) joined, then
    // the peer.
    let peer_text = peer.to_string();
    let mut chain: Vec<u8> = Vec::with_capacity(peer_text.len() + 64);
    for value in headers.get_all(&X_FORWARDED_FOR) {
        let part = value.as_bytes().trim_ascii();
        if part.is_empty() {
            continue;
        }
        if !chain.is_empty() {
            chain.extend_from_slice(b", ");
        }
        chain.extend_from_slice(part);
    }
    if !chain.is_empty() {
        chain.extend_from_slice(b", ");
    }
    chain.extend_from_slice(peer_text.as_bytes());
    if let Ok(value) = HeaderValue::from_bytes(&chain) {
        headers.insert(&X_FORWARDED_FOR, value);
    }

    if !headers.contains_key(&X_FORWARDED_PROTO) {
        headers.insert(&X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    }
    if let Some(host) = host {
        if !headers.contains_key(&X_FORWARDED_HOST) {
            headers.insert(&X_FORWARDED_HOST, host.clone());
        }
    }

    // Forwarded: append our element to whatever a trusted peer sent.
    let mut element = String::with_capacity(64);
    match peer {
        IpAddr::V4(_) => {
            let _ = write!(element, "for={peer_text}");
        }
        IpAddr::V6(_) => {
            let _ = write!(element, "for=\"[{peer_text}]\"");
        }
    }
    if let Some(host) = host.and_then(|h| h.to_str().ok()) {
        element.push_str(";host=");
        push_token_or_quoted(&mut element, host);
    }
    element.push_str(";proto=");
    element.push_str(proto);

    let mut forwarded: Vec<u8> = Vec::new();
    for value in headers.get_all(&FORWARDED) {
        let part = value.as_bytes().trim_ascii();
        if part.is_empty() {
            continue;
        }
        if !forwarded.is_empty() {
            forwarded.extend_from_slice(b", ");
        }
        forwarded.extend_from_slice(part);
    }
    if !forwarded.is_empty() {
        forwarded.extend_from_slice(b", ");
    }
    forwarded.extend_from_slice(element.as_bytes());
    if let Ok(value) = HeaderValue::from_bytes(&forwarded) {
        headers.insert(&FORWARDED, value);
    }
}

/// RFC 7230 `token` or, when a character needs it (`:` of a port), a quoted-string.
fn push_token_or_quoted(out: &mut String, value: &str) {
    let is_tchar = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if !value.is_empty() && value.chars().all(is_tchar) {
        out.push_str(value);
        return;
    }
    out.push('"');
    for c in value.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
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
        let mut h = spoofed();
        let host = HeaderValue::from_static("chamilo.example:8443");
        apply(
            &mut h,
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
    }

    #[test]
    fn trusted_peer_chain_is_appended() {
        let mut h = spoofed();
        h.append("x-forwarded-for", HeaderValue::from_static("7.7.7.7"));
        let host = HeaderValue::from_static("chamilo.example");
        apply(
            &mut h,
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
    fn ipv6_and_mapped_peers() {
        let mut h = HeaderMap::new();
        apply(&mut h, ip("2001:db8::1"), true, &[], None);
        assert_eq!(h["x-forwarded-for"], "2001:db8::1");
        assert_eq!(h["forwarded"], "for=\"[2001:db8::1]\";proto=https");

        let mut h = HeaderMap::new();
        apply(&mut h, ip("::ffff:127.0.0.1"), false, &[], None);
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
        apply(
            &mut h,
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
