//! Where a request goes: the SCIM service, the pass-through, or nowhere.
//!
//! The decision is made on the decoded, normalised path (`proxy-and-ops.md`, "Path
//! confusion"), never on the raw target:
//!
//! - Only the path of the target counts: absolute-form targets (`GET http://h/scim/v2/Users`)
//!   route exactly like their origin-form path; the query never routes.
//! - Percent-encodings are decoded once (`%2F` is a slash, `%2e` a dot). A malformed
//!   encoding, a decoded byte sequence that is not UTF-8 (this covers overlong forms such as
//!   `%c0%af`), a NUL or other control character, or a backslash (raw or `%5C`) is rejected
//!   with 400: no legitimate Chamilo URL needs them and servers disagree on their meaning.
//! - Dot segments (`.`, `..`, also when encoded) are rejected with 400. Browsers resolve them
//!   before sending, so only crafted requests carry them, and refusing them means the upstream
//!   can never resolve a path differently from us.
//! - Empty segments (`//`) are merged, as Apache does.
//! - `;parameters` are cut off each segment for matching. A path that matches the SCIM prefix
//!   only once its parameters are cut (`/scim;x/v2/Users`) is ambiguous and rejected with 400.
//! - The SCIM prefix `/scim/v2` is matched **case-insensitively**: `/SCIM/V2/Users` goes to the
//!   SCIM service (and its token check) instead of reaching Chamilo, where a case-insensitive
//!   filesystem or router could serve it without one.
//!
//! A pass-through request is forwarded with its original target; `PassThrough::path` is the
//! normalised form used for access rules.

use http::header::{HeaderMap, HOST};
use http::{StatusCode, Uri, Version};

/// The path prefix intercepted for SCIM, compared case-insensitively per segment.
const SCIM_PREFIX: [&str; 2] = ["scim", "v2"];

/// The routing decision for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/scim/v2` and below; `sub_path` is the normalised rest (`""`, `/Users`, `/Users/42`).
    Scim { sub_path: String },
    /// Everything else; `path` is the normalised path used for access rules.
    PassThrough { path: String },
    /// A target that cannot be routed safely, answered with this status.
    Reject {
        status: http::StatusCode,
        reason: &'static str,
    },
}

/// Classifies a request target.
pub fn classify(uri: &Uri) -> Route {
    let raw = uri.path();
    if plain_pass_through(raw) {
        return Route::PassThrough {
            path: raw.to_owned(),
        };
    }
    classify_path(raw)
}

/// A request whose `Host` cannot be trusted, refused with 400 before any routing (RFC 9112
/// §3.2): more than one `Host` (which would Chamilo see?), or none in HTTP/1.1. HTTP/1.0
/// may omit it; HTTP/2 carries `:authority` instead.
pub fn host_problem(version: Version, headers: &HeaderMap) -> Option<Route> {
    let mut hosts = headers.get_all(HOST).iter();
    match (hosts.next(), hosts.next()) {
        (Some(_), Some(_)) => Some(reject("repeated Host field")),
        (None, _) if version == Version::HTTP_11 => Some(reject("no Host field")),
        _ => None,
    }
}

/// Whether `raw` is already its own normalised form and clearly not a SCIM path: visible
/// ASCII with nothing to decode (`%`), no parameters (`;`), no backslash, no empty and no dot
/// segments, and a first segment other than `scim` in any case. Nearly every browser request
/// is such a path; it skips the decoding and the segment list (this runs on every request).
fn plain_pass_through(raw: &str) -> bool {
    let bytes = raw.as_bytes();
    if bytes.first() != Some(&b'/') {
        return false;
    }
    let mut segment_start = 1;
    for i in 1..=bytes.len() {
        let byte = bytes.get(i).copied();
        match byte {
            Some(b'%' | b';' | b'\\') => return false,
            Some(b'/') | None => {
                let segment = &bytes[segment_start..i];
                // Only the last segment may be empty: `/` itself, or a trailing slash.
                let empty_inside = segment.is_empty() && byte.is_some();
                let first_is_scim = segment_start == 1 && segment.eq_ignore_ascii_case(b"scim");
                if empty_inside || segment == b"." || segment == b".." || first_is_scim {
                    return false;
                }
                segment_start = i + 1;
            }
            Some(0x21..=0x7e) => {}
            Some(_) => return false,
        }
    }
    true
}

/// The full classification: decode, split, check, match the SCIM prefix.
fn classify_path(raw: &str) -> Route {
    if !raw.starts_with('/') {
        // Asterisk-form (`OPTIONS *`) or authority-form (`CONNECT host:port`): nothing to
        // pass to a web application.
        return reject("request target is not a path");
    }
    let decoded = match decode(raw) {
        Ok(decoded) => decoded,
        Err(reason) => return reject(reason),
    };

    // Segments of the decoded path, `//` merged, `;params` cut off.
    let mut segments: Vec<&str> = Vec::new();
    let mut had_params = false;
    for segment in decoded.split('/').filter(|s| !s.is_empty()) {
        let (name, params) = match segment.split_once(';') {
            Some((name, _)) => (name, true),
            None => (segment, false),
        };
        had_params |= params;
        if name == "." || name == ".." || segment == "." || segment == ".." {
            return reject("dot segment in path");
        }
        if name.is_empty() {
            // A segment that was only parameters (`/;x/`): merge like an empty one.
            continue;
        }
        segments.push(name);
    }

    let is_scim = segments.len() >= SCIM_PREFIX.len()
        && segments
            .iter()
            .zip(SCIM_PREFIX)
            .all(|(segment, expected)| segment.eq_ignore_ascii_case(expected));
    if is_scim {
        if had_params {
            return reject("path parameters in a SCIM path");
        }
        let mut sub_path = String::new();
        for segment in &segments[SCIM_PREFIX.len()..] {
            sub_path.push('/');
            sub_path.push_str(segment);
        }
        return Route::Scim { sub_path };
    }

    let mut path = String::with_capacity(decoded.len());
    for segment in &segments {
        path.push('/');
        path.push_str(segment);
    }
    if path.is_empty() || (decoded.ends_with('/') && !segments.is_empty()) {
        path.push('/');
    }
    Route::PassThrough { path }
}

fn reject(reason: &'static str) -> Route {
    Route::Reject {
        status: StatusCode::BAD_REQUEST,
        reason,
    }
}

/// Decodes `%XX` escapes once and checks that the result is clean UTF-8 without control
/// characters or backslashes.
fn decode(raw: &str) -> Result<String, &'static str> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let byte = bytes[i];
        if byte == b'%' {
            let hi = bytes.get(i + 1).and_then(|b| hex_value(*b));
            let lo = bytes.get(i + 2).and_then(|b| hex_value(*b));
            match (hi, lo) {
                (Some(hi), Some(lo)) => out.push(hi << 4 | lo),
                _ => return Err("malformed percent-encoding in path"),
            }
            i += 3;
        } else {
            out.push(byte);
            i += 1;
        }
    }
    let text = String::from_utf8(out).map_err(|_| "path is not valid UTF-8")?;
    if text.chars().any(char::is_control) {
        return Err("control character in path");
    }
    if text.contains('\\') {
        return Err("backslash in path");
    }
    Ok(text)
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_must_be_there_once_in_http11_and_at_most_once_otherwise() {
        let mut h = HeaderMap::new();
        assert!(host_problem(Version::HTTP_11, &h).is_some());
        assert!(host_problem(Version::HTTP_10, &h).is_none());
        assert!(host_problem(Version::HTTP_2, &h).is_none());
        h.append(HOST, "lms.example".parse().unwrap());
        assert!(host_problem(Version::HTTP_11, &h).is_none());
        h.append(HOST, "evil.example".parse().unwrap());
        for version in [Version::HTTP_10, Version::HTTP_11, Version::HTTP_2] {
            assert!(matches!(
                host_problem(version, &h),
                Some(Route::Reject {
                    status: StatusCode::BAD_REQUEST,
                    ..
                })
            ));
        }
    }

    fn route(target: &str) -> Route {
        let uri: Uri = target.parse().unwrap();
        classify(&uri)
    }

    fn scim(sub: &str) -> Route {
        Route::Scim {
            sub_path: sub.to_owned(),
        }
    }

    fn pass(path: &str) -> Route {
        Route::PassThrough {
            path: path.to_owned(),
        }
    }

    fn is_reject(r: &Route) -> bool {
        matches!(r, Route::Reject { status, .. } if *status == StatusCode::BAD_REQUEST)
    }

    #[test]
    fn only_paths_that_are_already_normal_take_the_shortcut() {
        for plain in [
            "/",
            "/index.php",
            "/a/",
            "/main/inc/lib/x.min.js",
            "/scimx",
            "/a/scim",
        ] {
            assert!(plain_pass_through(plain), "{plain}");
        }
        for not_plain in [
            "",
            "*",
            "//",
            "/a//b",
            "/./",
            "/a/.",
            "/..",
            "/scim",
            "/SCIM/v2/Users",
            "/Scim/",
            "/a%2fb",
            "/a;b",
            "/a\\b",
            "/a b",
            "/caf\u{e9}",
        ] {
            assert!(!plain_pass_through(not_plain), "{not_plain}");
        }
    }

    #[test]
    fn plain_targets() {
        let table = [
            ("/scim/v2", scim("")),
            ("/scim/v2/", scim("")),
            ("/scim/v2/Users", scim("/Users")),
            ("/scim/v2/Users/42", scim("/Users/42")),
            (
                "/scim/v2/Users?filter=userName%20eq%20%22a%22",
                scim("/Users"),
            ),
            ("/", pass("/")),
            ("/index.php?x=/scim/v2/Users", pass("/index.php")),
            (
                "/main/webservices/registration.soap.php",
                pass("/main/webservices/registration.soap.php"),
            ),
            ("/main/", pass("/main/")),
            ("/scim", pass("/scim")),
            ("/scim/v1/Users", pass("/scim/v1/Users")),
            ("/scim/v2x/Users", pass("/scim/v2x/Users")),
            ("/scimv2/Users", pass("/scimv2/Users")),
            (
                "/courses/ABC/document/a%20b.pdf",
                pass("/courses/ABC/document/a b.pdf"),
            ),
        ];
        for (target, expected) in table {
            assert_eq!(route(target), expected, "target {target}");
        }
    }

    /// Every spelling of the SCIM prefix must reach the SCIM service (and its token check),
    /// never Chamilo's PHP.
    #[test]
    fn scim_prefix_variants_reach_scim() {
        let table = [
            ("/SCIM/v2/Users", "/Users"),
            ("/Scim/V2/Users", "/Users"),
            ("//scim/v2/Users", "/Users"),
            ("/scim//v2//Users", "/Users"),
            ("/scim%2Fv2/Users", "/Users"),
            ("/scim%2fv2%2FUsers", "/Users"),
            ("/%73cim/v2/Users", "/Users"),
            ("/sc%49m/%76%32/Users", "/Users"),
            ("http://evil.example/scim/v2/Users", "/Users"),
            ("http://chamilo.example:8080//SCIM/v2/Users/7", "/Users/7"),
            ("/scim/v2/Users/a%2Fb", "/Users/a/b"),
        ];
        for (target, sub) in table {
            assert_eq!(route(target), scim(sub), "target {target}");
        }
    }

    /// Targets whose meaning servers disagree on are refused outright.
    #[test]
    fn ambiguous_targets_are_rejected() {
        let table = [
            "/scim/v2/../../main/index.php",
            "/foo/../scim/v2/Users",
            "/foo/%2e%2e/scim/v2/Users",
            "/foo/%2E%2E/scim/v2/Users",
            "/foo/.%2e/scim/v2/Users",
            "/scim/./v2/Users",
            "/scim/%2e/v2/Users",
            "/main/webservices/../../etc/passwd",
            "/x/..%2fscim/v2/Users",
            "/x/..;/scim/v2/Users",
            "/scim;x/v2/Users",
            "/scim/v2;jsessionid=1/Users",
            "/scim/v2/Users;x",
            "/scim%5Cv2/Users",
            "/scim/v2/Users%00.php",
            "/index.php%00",
            "/a%0d%0aSet-Cookie:x",
            "/scim/v2/%zz",
            "/scim/v2/Users%2",
            "/scim/v2/Users%",
            "/%c0%afscim/v2/Users",
            "/%e0%80%afscim/v2/Users",
            "/%ff",
            "*",
        ];
        for target in table {
            let r = route(target);
            assert!(is_reject(&r), "target {target} gave {r:?}");
        }
    }

    #[test]
    fn pass_through_paths_are_normalised_for_access_rules() {
        let table = [
            ("//main//webservices/x.php", "/main/webservices/x.php"),
            ("/main%2Fwebservices/x.php", "/main/webservices/x.php"),
            ("/main/webservices;a=b/x.php", "/main/webservices/x.php"),
            ("http://h/main/webservices/", "/main/webservices/"),
            ("/main/%77ebservices/", "/main/webservices/"),
        ];
        for (target, path) in table {
            assert_eq!(route(target), pass(path), "target {target}");
        }
    }

    #[test]
    fn authority_form_is_rejected() {
        let uri = Uri::from_static("chamilo.example:443");
        assert!(is_reject(&classify(&uri)));
    }

    #[test]
    fn backslash_in_raw_target_is_rejected() {
        // `http::Uri` refuses a raw backslash; the decoded form is the only way in.
        if let Ok(uri) = "/scim\\v2/Users".parse::<Uri>() {
            assert!(is_reject(&classify(&uri)));
        }
        assert!(is_reject(&route("/scim%5cv2/Users")));
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// Percent-encodes a random subset of the bytes of `text`, with random hex case.
        fn disguise(text: &str, mask: &[bool], upper: &[bool]) -> String {
            let mut out = String::new();
            for (i, byte) in text.bytes().enumerate() {
                if mask.get(i).copied().unwrap_or(false) {
                    if upper.get(i).copied().unwrap_or(false) {
                        out.push_str(&format!("%{byte:02X}"));
                    } else {
                        out.push_str(&format!("%{byte:02x}"));
                    }
                } else {
                    out.push(byte as char);
                }
            }
            out
        }

        proptest! {
            /// However the SCIM prefix is spelled (escapes, case, doubled slashes), the request
            /// goes to the SCIM service or is refused; it never passes through.
            #[test]
            fn disguised_scim_paths_never_pass_through(
                case in proptest::collection::vec(any::<bool>(), 8),
                mask in proptest::collection::vec(any::<bool>(), 32),
                upper in proptest::collection::vec(any::<bool>(), 32),
                slashes in 1usize..4,
                rest in "(/[A-Za-z0-9]{1,8}){0,3}",
            ) {
                let prefix: String = "scimv2"
                    .chars()
                    .zip(&case)
                    .map(|(c, up)| if *up { c.to_ascii_uppercase() } else { c })
                    .collect();
                let plain = format!(
                    "{}{}/{}{}",
                    "/".repeat(slashes),
                    &prefix[..4],
                    &prefix[4..],
                    rest
                );
                let target = disguise(&plain, &mask, &upper);
                let Ok(uri) = target.parse::<Uri>() else { return Ok(()) };
                let route = classify(&uri);
                prop_assert!(
                    !matches!(route, Route::PassThrough { .. }),
                    "{target} passed through"
                );
            }

            /// Whatever the target, classification never panics, and a pass-through path is
            /// absolute, free of `//`, dot segments, backslashes and control characters.
            #[test]
            fn the_plain_path_shortcut_agrees_with_the_full_classification(
                target in "/[a-zA-Z0-9./;%\\\\_~-]{0,30}"
            ) {
                if plain_pass_through(&target) {
                    prop_assert_eq!(
                        classify_path(&target),
                        Route::PassThrough { path: target.clone() }
                    );
                }
            }

            #[test]
            fn any_target_gives_a_clean_path(target in "/[ -~]{0,40}") {
                let Ok(uri) = target.parse::<Uri>() else { return Ok(()) };
                if let Route::PassThrough { path } = classify(&uri) {
                    prop_assert!(path.starts_with('/'));
                    prop_assert!(!path.contains("//"), "{path}");
                    prop_assert!(!path.contains('\\'));
                    prop_assert!(!path.chars().any(char::is_control));
                    prop_assert!(path.split('/').all(|s| s != "." && s != ".."), "{path}");
                    prop_assert!(!path.to_ascii_lowercase().starts_with("/scim/v2/"));
                    prop_assert!(!path.eq_ignore_ascii_case("/scim/v2"));
                }
            }
        }
    }
}
