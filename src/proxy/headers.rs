//! Hop-by-hop headers (RFC 9110 §7.6.1), removed in both directions.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Whether `name` is one of the headers that describe one connection, never the message, and
/// so never cross the proxy.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    *name == header::CONNECTION
        || *name == header::TE
        || *name == header::TRAILER
        || *name == header::TRANSFER_ENCODING
        || *name == header::UPGRADE
        || *name == header::PROXY_AUTHENTICATE
        || *name == header::PROXY_AUTHORIZATION
        || matches!(name.as_str(), "keep-alive" | "proxy-connection")
}

/// The hop-by-hop fields of one message: the standard set and those its `Connection` names.
#[derive(Debug, Default)]
pub struct HopByHop {
    /// Names found by [`is_hop_by_hop`] or in `Connection` (usually none, or `connection`
    /// and `keep-alive`).
    named: Vec<HeaderName>,
    /// The `Upgrade` value when `Connection` asks for an upgrade.
    pub upgrade: Option<HeaderValue>,
}

impl HopByHop {
    /// Reads `Connection` (first) and finds the fields that must not cross the proxy.
    ///
    /// Runs on every request and response: one scan of the names present finds what to drop
    /// (usually nothing), instead of a hash lookup per hop-by-hop name.
    pub fn scan(headers: &HeaderMap) -> Self {
        let mut named: Vec<HeaderName> = Vec::new();
        for name in headers.keys() {
            if is_hop_by_hop(name) {
                named.push(name.clone());
            }
        }
        if named.is_empty() {
            return Self::default();
        }
        let mut upgrade_requested = false;
        for value in headers.get_all(header::CONNECTION) {
            // Work on bytes: a value that is not UTF-8 may still name headers in its other tokens.
            for token in value.as_bytes().split(|b| *b == b',') {
                let token = token.trim_ascii();
                if token.eq_ignore_ascii_case(b"upgrade") {
                    upgrade_requested = true;
                }
                // `Host` is a property of the message; a client naming it would only break routing.
                if let Ok(name) = HeaderName::from_bytes(token) {
                    if name != header::HOST {
                        named.push(name);
                    }
                }
            }
        }
        let upgrade = if upgrade_requested {
            headers.get(header::UPGRADE).cloned()
        } else {
            None
        };
        Self { named, upgrade }
    }

    /// Whether the field `name` crosses the proxy.
    pub fn passes(&self, name: &HeaderName) -> bool {
        self.named.is_empty() || !self.named.contains(name)
    }
}

/// Removes the headers named in `Connection` (read first), then the standard hop-by-hop set.
///
/// When the message asks for a protocol upgrade (`Connection: upgrade` plus `Upgrade`), the
/// `Upgrade` value is returned so the caller can put the pair back for the next hop.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) -> Option<HeaderValue> {
    let hop = HopByHop::scan(headers);
    remove_keeping_order(headers, &hop.named);
    hop.upgrade
}

/// Removes every field named in `doomed` and keeps the others in their order (`HeaderMap::remove`
/// moves the last field into the hole, which would reorder what the proxy passes on).
pub(crate) fn remove_keeping_order(headers: &mut HeaderMap, doomed: &[HeaderName]) {
    if doomed.is_empty() {
        return;
    }
    let old = std::mem::take(headers);
    headers.reserve(old.len());
    let mut current: Option<HeaderName> = None;
    for (name, value) in old {
        if let Some(name) = name {
            current = (!doomed.contains(&name)).then_some(name);
        }
        if let Some(name) = &current {
            headers.append(name.clone(), value);
        }
    }
}

/// Puts `Connection: upgrade` and `Upgrade: <protocol>` back for the next hop.
pub fn restore_upgrade(headers: &mut HeaderMap, protocol: HeaderValue) {
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, protocol);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &[u8])]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_bytes(value).unwrap(),
            );
        }
        h
    }

    #[test]
    fn removes_standard_set_and_connection_named_headers() {
        let mut h = map(&[
            ("connection", b"close, X-Secret"),
            ("connection", b"x-other"),
            ("x-secret", b"1"),
            ("x-other", b"2"),
            ("keep-alive", b"timeout=5"),
            ("proxy-connection", b"keep-alive"),
            ("proxy-authorization", b"Basic x"),
            ("proxy-authenticate", b"Basic"),
            ("te", b"trailers"),
            ("trailer", b"x"),
            ("transfer-encoding", b"chunked"),
            ("upgrade", b"h2c"),
            ("x-kept", b"3"),
            ("cookie", b"a=1"),
        ]);
        let upgrade = strip_hop_by_hop(&mut h);
        assert!(upgrade.is_none());
        let names: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["x-kept", "cookie"]);
    }

    #[test]
    fn connection_cannot_remove_host() {
        let mut h = map(&[("connection", b"Host"), ("host", b"chamilo.example")]);
        strip_hop_by_hop(&mut h);
        assert_eq!(h.get("host").unwrap(), "chamilo.example");
    }

    #[test]
    fn upgrade_is_reported_and_restorable() {
        let mut h = map(&[
            ("connection", b"keep-alive, Upgrade"),
            ("upgrade", b"websocket"),
            ("sec-websocket-key", b"k"),
        ]);
        let upgrade = strip_hop_by_hop(&mut h).unwrap();
        assert_eq!(upgrade, "websocket");
        assert!(h.get("upgrade").is_none());
        restore_upgrade(&mut h, upgrade);
        assert_eq!(h.get("connection").unwrap(), "upgrade");
        assert_eq!(h.get("upgrade").unwrap(), "websocket");
        assert_eq!(h.get("sec-websocket-key").unwrap(), "k");
    }

    #[test]
    fn upgrade_without_connection_token_is_not_an_upgrade() {
        let mut h = map(&[("upgrade", b"websocket")]);
        assert!(strip_hop_by_hop(&mut h).is_none());
        assert!(h.is_empty());
    }

    #[test]
    fn non_utf8_connection_value_does_not_panic() {
        let mut h = map(&[("connection", b"\xff\xfe, x-a"), ("x-a", b"\xe9t\xe9")]);
        strip_hop_by_hop(&mut h);
        assert!(h.get("connection").is_none());
        // The unreadable token names nothing; `x-a` is still named and goes.
        assert!(h.get("x-a").is_none());
    }
}
