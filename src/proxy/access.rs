//! Allow/deny rules for passed-through requests (`[[access.rules]]`).
//!
//! Every rule whose `path_prefix` matches the normalised path must let the request through:
//! the client address must not be in `deny`, and must be in `allow` when `allow` is not empty.
//! Prefixes compare ASCII case-insensitively (a case-insensitive filesystem behind Apache must
//! not offer a way around a rule), and a prefix ending in `/` also matches the path without
//! that slash (`/main/webservices/` covers `/main/webservices`). With no rules everything is
//! allowed: Chamilo's mobile app needs `/main/webservices/` from anywhere.

use std::net::IpAddr;

use crate::config::AccessRule;

/// Whether a request for `path` from `client` may pass. `client` is `None` when the address
/// could not be established; such a request passes only rules without an `allow` list and
/// without a `deny` list.
pub fn is_allowed(rules: &[AccessRule], path: &str, client: Option<IpAddr>) -> bool {
    rules
        .iter()
        .filter(|rule| prefix_matches(&rule.path_prefix, path))
        .all(|rule| match client {
            Some(ip) => {
                let ip = ip.to_canonical();
                !rule.deny.iter().any(|net| net.contains(&ip))
                    && (rule.allow.is_empty() || rule.allow.iter().any(|net| net.contains(&ip)))
            }
            None => rule.allow.is_empty() && rule.deny.is_empty(),
        })
}

fn prefix_matches(prefix: &str, path: &str) -> bool {
    let starts = |p: &str| {
        path.len() >= p.len()
            && path.is_char_boundary(p.len())
            && path[..p.len()].eq_ignore_ascii_case(p)
    };
    if starts(prefix) {
        return true;
    }
    match prefix.strip_suffix('/') {
        Some(bare) if !bare.is_empty() => path.eq_ignore_ascii_case(bare),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(prefix: &str, allow: &[&str], deny: &[&str]) -> AccessRule {
        AccessRule {
            path_prefix: prefix.to_owned(),
            allow: allow.iter().map(|s| s.parse().unwrap()).collect(),
            deny: deny.iter().map(|s| s.parse().unwrap()).collect(),
        }
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn no_rules_is_open() {
        assert!(is_allowed(
            &[],
            "/main/webservices/api/v2.php",
            ip("203.0.113.1")
        ));
        assert!(is_allowed(&[], "/main/webservices/api/v2.php", None));
    }

    #[test]
    fn webservices_locked_to_a_network() {
        let rules = [rule(
            "/main/webservices/",
            &["10.0.0.0/8", "127.0.0.1/32"],
            &[],
        )];
        let path = "/main/webservices/registration.soap.php";
        assert!(is_allowed(&rules, path, ip("10.2.3.4")));
        assert!(is_allowed(&rules, path, ip("::ffff:127.0.0.1")));
        assert!(!is_allowed(&rules, path, ip("203.0.113.1")));
        assert!(!is_allowed(&rules, path, None));
        assert!(!is_allowed(
            &rules,
            "/MAIN/WebServices/x.php",
            ip("203.0.113.1")
        ));
        assert!(!is_allowed(&rules, "/main/webservices", ip("203.0.113.1")));
        assert!(is_allowed(&rules, "/main/webservicesx", ip("203.0.113.1")));
        assert!(is_allowed(&rules, "/index.php", ip("203.0.113.1")));
    }

    #[test]
    fn deny_list_and_several_rules() {
        let rules = [
            rule("/", &[], &["192.0.2.0/24"]),
            rule("/main/admin/", &["10.0.0.0/8"], &["10.6.6.0/24"]),
        ];
        assert!(!is_allowed(&rules, "/index.php", ip("192.0.2.5")));
        assert!(is_allowed(&rules, "/index.php", ip("198.51.100.1")));
        assert!(!is_allowed(&rules, "/index.php", None));
        assert!(is_allowed(&rules, "/main/admin/index.php", ip("10.0.0.1")));
        assert!(!is_allowed(&rules, "/main/admin/index.php", ip("10.6.6.1")));
        assert!(!is_allowed(
            &rules,
            "/main/admin/index.php",
            ip("198.51.100.1")
        ));
    }

    #[test]
    fn non_ascii_paths_do_not_panic() {
        let rules = [rule("/main/é", &["10.0.0.0/8"], &[])];
        assert!(is_allowed(&rules, "/ma", ip("1.1.1.1")));
        assert!(is_allowed(&rules, "/main/\u{10000}", ip("1.1.1.1")));
        assert!(!is_allowed(&rules, "/main/é/x", ip("1.1.1.1")));
        // Only ASCII letters fold; a non-ASCII capital is another path.
        assert!(is_allowed(&rules, "/main/É", ip("1.1.1.1")));
    }
}
