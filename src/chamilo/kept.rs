//! The SCIM attributes Chamilo has no column for, or cannot give back, kept as the identity
//! provider sent them in one user extra field (`chamilo.attributes_field`, default
//! `scim_attributes`), so that Chamilo stays the only store and every attribute comes back as
//! sent (issue 10).
//!
//! What is kept (see `super::mapping::ChamiloMapping::kept_of`): every attribute of the core
//! User schema and of the enterprise extension except those with a place of their own
//! (`id`, `userName` and `externalId` in their fields, `name.givenName`/`name.familyName` and
//! `active` in columns; `password`, `groups` and `meta` are never kept). The multi-valued
//! attributes Chamilo holds one value of (`emails`, `phoneNumbers`, `roles`) and the enterprise
//! `employeeNumber` are kept whole too: Chamilo's column holds the chosen value, and a change
//! made to it in Chamilo wins when the resource is read (`ChamiloMapping::to_user`). Besides:
//! - `active` unassigned by the identity provider (a PUT without it, a PATCH `remove`):
//!   Chamilo has no "unassigned", so the account is active, and the attribute is not returned
//!   while it stays so;
//! - `meta.created` and `meta.lastModified` of the writes made through the proxy (Chamilo's
//!   own dates cannot be read through its web services).
//!
//! One field rather than one per attribute because every extra field named in `get_users`
//! costs Chamilo one database query per user on the index listing.
//!
//! Encoding: `json64:` then the compact JSON document in base64url without padding
//! (RFC 4648 §5). It holds none of the characters HTML filters rewrite (`<>&"'`), nor any
//! outside ASCII (Chamilo mangles those outside the Basic Multilingual Plane), whatever the
//! values. Fields written before issue 10 (`preferredLanguage=fr-CA;locale=fr_CA;roles=teacher;
//! active=unassigned`, values percent-encoded) are still read.

use base64::Engine as _;
use percent_encoding::percent_decode_str;
use serde_json::{json, Map, Value};

/// The prefix of the current encoding.
const JSON64: &str = "json64:";

/// The longest field value written, in bytes (ASCII). Chamilo 1.11 stores extra-field values
/// as `LONGTEXT`, so the bound is the proxy's: every full index listing carries this field
/// for every account (10k accounts at the bound are 80 MB of listing) and the index keeps it
/// in memory. A user with Entra ID's default mapping takes about 1.2 KB (0.86 KB of JSON);
/// one with every attribute of both schemas (the tests' maximal Entra ID user) about 2 KB.
/// The index holds the JSON compressed against a SCIM dictionary and the account's own
/// fields (`super::index`): under 300 bytes for the Entra-mapped user, 47.6 MiB of index for
/// 100k of them (`tests/chamilo_rss.rs`, `bench/chamilo.md` session 11).
pub const MAX_FIELD_BYTES: usize = 8192;

/// Room kept under [`MAX_FIELD_BYTES`] for the dates and flags the proxy adds to what the
/// identity provider sent.
const META_ROOM: usize = 160;

const KEY_USER: &str = "user";
const KEY_CREATED: &str = "created";
const KEY_LAST_MODIFIED: &str = "lastModified";
const KEY_ACTIVE_UNASSIGNED: &str = "activeUnassigned";

/// Now, as `meta` dates are written (RFC 3339, UTC, milliseconds).
pub fn timestamp_now() -> String {
    timestamp(chrono::Utc::now())
}

fn timestamp(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// `meta.lastModified` for a write after one made at `previous`: now, or a millisecond after
/// `previous` when the clock has not passed it (two writes in one millisecond, a clock set
/// back, another replica's clock ahead). So the field never gets the value it holds — which
/// a real Chamilo refuses within the same second — and the date never goes back.
pub fn timestamp_after(previous: Option<&str>, now: chrono::DateTime<chrono::Utc>) -> String {
    let previous = previous
        .and_then(|p| chrono::DateTime::parse_from_rfc3339(p).ok())
        .map(|p| p.with_timezone(&chrono::Utc));
    match previous {
        Some(p) if now <= p => timestamp(p + chrono::Duration::milliseconds(1)),
        _ => timestamp(now),
    }
}

/// The field value holding the compact JSON document `doc` (see the module documentation).
pub fn json64_encode(doc: &[u8]) -> String {
    let mut field = String::with_capacity(JSON64.len() + doc.len().div_ceil(3) * 4);
    field.push_str(JSON64);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode_string(doc, &mut field);
    field
}

/// The document a field value in the current encoding holds, exactly as written: `None` for
/// anything else (the older encoding, surrounding spaces, non-canonical base64), so that
/// [`json64_encode`] of the result gives `field` back byte for byte. The bytes are not checked
/// to be JSON.
pub fn json64_decode(field: &str) -> Option<Vec<u8>> {
    let mut doc = Vec::new();
    json64_decode_into(field, &mut doc).then_some(doc)
}

/// As [`json64_decode`], into `doc` (cleared first): whether `field` is in that encoding.
pub fn json64_decode_into(field: &str, doc: &mut Vec<u8>) -> bool {
    doc.clear();
    let Some(encoded) = field.strip_prefix(JSON64) else {
        return false;
    };
    // The engine refuses padding and non-zero trailing bits: one encoding per document.
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode_vec(encoded, doc)
        .is_ok()
}

/// The attribute names a scan can rule out without decoding kept documents (see
/// [`KeyNames`]): the User schema's attributes but those never kept, `name`'s two sub-attributes
/// Chamilo has columns for, and the enterprise extension's attributes.
const KNOWN_NAMES: [&str; 29] = [
    "id",
    "userName",
    "externalId",
    "name",
    "givenName",
    "familyName",
    "displayName",
    "nickName",
    "profileUrl",
    "title",
    "userType",
    "preferredLanguage",
    "locale",
    "timezone",
    "emails",
    "phoneNumbers",
    "ims",
    "photos",
    "addresses",
    "groups",
    "entitlements",
    "roles",
    "x509Certificates",
    "employeeNumber",
    "costCenter",
    "organization",
    "division",
    "department",
    "manager",
];

/// Which of a set of attribute names a kept document holds as keys, at any depth and in any
/// case: one bit per name the proxy knows (`KNOWN_NAMES`). The index keeps it per account so
/// that a search on attributes a document does not hold (`name.familyName`, `userName sw`)
/// can skip decoding it. [`KeyNames::ALL`] stands for "may hold any": a document that is not
/// JSON the scanner can read, or an older field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KeyNames(u32);

impl KeyNames {
    /// No name.
    pub const NONE: Self = Self(0);
    /// Every name: nothing can be ruled out.
    pub const ALL: Self = Self(u32::MAX);

    /// The bit of one attribute name (case-insensitive); `None` for a name not known.
    pub fn of_name(name: &str) -> Option<Self> {
        Self::of_name_bytes(name.as_bytes())
    }

    fn of_name_bytes(name: &[u8]) -> Option<Self> {
        KNOWN_NAMES
            .iter()
            .position(|known| known.as_bytes().eq_ignore_ascii_case(name))
            .map(|i| Self(1 << i))
    }

    /// The known names among the keys of a JSON document: every string followed by `:`.
    /// A key written with an escape (which could spell a name) or a document cut short gives
    /// [`KeyNames::ALL`].
    pub fn of_document(doc: &[u8]) -> Self {
        let mut names = 0;
        let mut at = 0;
        while let Some(open) = doc
            .get(at..)
            .and_then(|rest| rest.iter().position(|&b| b == b'"'))
        {
            let start = at + open + 1;
            let mut end = start;
            let mut escaped = false;
            loop {
                match doc.get(end) {
                    None => return Self::ALL,
                    Some(b'"') => break,
                    Some(b'\\') => {
                        escaped = true;
                        end += 2;
                    }
                    Some(_) => end += 1,
                }
            }
            at = end + 1;
            let next = doc
                .get(at..)
                .and_then(|rest| rest.iter().find(|b| !b.is_ascii_whitespace()));
            if next == Some(&b':') {
                if escaped {
                    return Self::ALL;
                }
                if let Some(bit) = doc.get(start..end).and_then(Self::of_name_bytes) {
                    names |= bit.0;
                }
            }
        }
        Self(names)
    }

    /// Both sets together.
    pub fn with(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// Whether the two sets share a name.
    pub fn meets(self, other: Self) -> bool {
        self.0 & other.0 != 0
    }

    /// The bits, for storing.
    pub fn bits(self) -> u32 {
        self.0
    }

    /// From stored bits.
    pub fn from_bits(bits: u32) -> Self {
        Self(bits)
    }
}

/// The attributes kept in the extra field.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KeptAttributes {
    /// The attributes as sent, canonical (core ones at the top, the enterprise extension's
    /// under its URN), without those Chamilo holds elsewhere (see the module documentation).
    pub attributes: Map<String, Value>,
    /// The identity provider unassigned `active` (Chamilo keeps the account active).
    pub active_unassigned: bool,
    /// `meta.created` (RFC 3339), for accounts the proxy created.
    pub created: Option<String>,
    /// `meta.lastModified` (RFC 3339), of the last write through the proxy.
    pub last_modified: Option<String>,
}

impl KeptAttributes {
    /// The field's value; empty when nothing is kept (which clears the field).
    pub fn encode(&self) -> String {
        if self.is_empty() {
            return String::new();
        }
        let mut doc = Map::new();
        if !self.attributes.is_empty() {
            doc.insert(KEY_USER.into(), Value::Object(self.attributes.clone()));
        }
        if self.active_unassigned {
            doc.insert(KEY_ACTIVE_UNASSIGNED.into(), Value::Bool(true));
        }
        if let Some(c) = &self.created {
            doc.insert(KEY_CREATED.into(), json!(c));
        }
        if let Some(m) = &self.last_modified {
            doc.insert(KEY_LAST_MODIFIED.into(), json!(m));
        }
        let bytes = serde_json::to_vec(&Value::Object(doc)).unwrap_or_default();
        json64_encode(&bytes)
    }

    /// Reads a field value. What cannot be read (a value that is not the encoding, a pair
    /// without `=` in the older one) is left out rather than failing the account: the field
    /// can be edited by an administrator.
    pub fn decode(field: &str) -> Self {
        match field.trim().strip_prefix(JSON64) {
            Some(encoded) => Self::decode_json64(encoded),
            None => Self::decode_pairs(field),
        }
    }

    fn decode_json64(encoded: &str) -> Self {
        let Some(Value::Object(mut doc)) = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(encoded.trim())
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        else {
            return Self::default();
        };
        let text = |v: Option<Value>| match v {
            Some(Value::String(s)) if !s.is_empty() => Some(s),
            _ => None,
        };
        Self {
            attributes: match doc.remove(KEY_USER) {
                Some(Value::Object(a)) => a,
                _ => Map::new(),
            },
            active_unassigned: doc.remove(KEY_ACTIVE_UNASSIGNED) == Some(Value::Bool(true)),
            created: text(doc.remove(KEY_CREATED)),
            last_modified: text(doc.remove(KEY_LAST_MODIFIED)),
        }
    }

    /// The encoding before issue 10: `preferredLanguage=fr-CA;locale=fr_CA;roles=teacher;
    /// active=unassigned`, values percent-encoded.
    fn decode_pairs(field: &str) -> Self {
        let mut kept = Self::default();
        for pair in field.split(';') {
            let Some((key, value)) = pair.split_once('=') else {
                continue;
            };
            let Ok(value) = percent_decode_str(value.trim()).decode_utf8() else {
                continue;
            };
            if value.is_empty() {
                continue;
            }
            match key.trim() {
                "active" => kept.active_unassigned = value == "unassigned",
                key @ ("preferredLanguage" | "locale") => {
                    kept.attributes.insert(key.to_owned(), json!(value));
                }
                "roles" => {
                    kept.attributes
                        .insert("roles".to_owned(), json!([{ "value": value }]));
                }
                _ => {}
            }
        }
        kept
    }

    /// Whether nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.attributes.is_empty()
            && !self.active_unassigned
            && self.created.is_none()
            && self.last_modified.is_none()
    }

    /// Whether `self` and `other` keep the same attributes, whatever their dates: what
    /// decides that a write changes the field.
    pub fn same_content(&self, other: &Self) -> bool {
        self.attributes == other.attributes && self.active_unassigned == other.active_unassigned
    }

    /// A kept string attribute (`preferredLanguage`, `locale`).
    pub fn get_str(&self, attr: &str) -> Option<&str> {
        self.attributes.get(attr).and_then(Value::as_str)
    }

    /// `Ok` when the field fits [`MAX_FIELD_BYTES`] with room for the dates; otherwise the
    /// attribute taking the most room and the size, for a 400 that says what to shorten.
    pub fn check_size(&self) -> Result<(), (String, usize)> {
        let size = self.encode().len();
        if size + META_ROOM <= MAX_FIELD_BYTES {
            return Ok(());
        }
        let weight = |v: &Value| serde_json::to_vec(v).map_or(0, |b| b.len());
        let mut largest = (String::new(), 0);
        for (k, v) in &self.attributes {
            match v {
                // The extension is one key here but several attributes for the client.
                Value::Object(ext) if k.starts_with("urn:") => {
                    for (sub, v) in ext {
                        if weight(v) > largest.1 {
                            largest = (format!("{k}:{sub}"), weight(v));
                        }
                    }
                }
                v if weight(v) > largest.1 => largest = (k.clone(), weight(v)),
                _ => {}
            }
        }
        Err((largest.0, size))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_names_are_the_keys_a_document_holds_at_any_depth() {
        let names = |list: &[&str]| {
            list.iter()
                .map(|n| KeyNames::of_name(n).unwrap())
                .fold(KeyNames::NONE, KeyNames::with)
        };
        let doc = br#"{"user":{"displayName":"familyName","name":{"formatted":"A B"},
            "emails" : [{"value":"a@b","type":"work"}],
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"Department":"x\"y"}},
            "created":"2026-01-01T00:00:00Z"}"#;
        let held = KeyNames::of_document(doc);
        assert_eq!(
            held,
            names(&["displayName", "name", "emails", "department"])
        );
        // A value is not a key, whatever it says.
        assert!(!held.meets(names(&["familyName", "title"])));
        // Names the index does not know have no bit.
        assert_eq!(KeyNames::of_name("formatted"), None);
        assert_eq!(
            KeyNames::of_name("DISPLAYNAME"),
            KeyNames::of_name("displayName")
        );
        // What cannot be read may hold anything.
        assert_eq!(
            KeyNames::of_document(br#"{"na\u006de":"x"}"#),
            KeyNames::ALL
        );
        assert_eq!(KeyNames::of_document(br#"{"title":"x"#), KeyNames::ALL);
        assert_eq!(KeyNames::of_document(b""), KeyNames::NONE);
        assert!(KeyNames::ALL.meets(names(&["title"])));
        assert!(!KeyNames::ALL.meets(KeyNames::NONE));
    }

    fn attrs(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    #[test]
    fn round_trips_verbatim_in_characters_no_filter_touches() {
        let k = KeptAttributes {
            attributes: attrs(json!({
                "preferredLanguage": "fr-CA",
                "displayName": "Zoë <b>&\"x\"='1' 😀",
                "addresses": [{"type": "work", "locality": "Montréal", "primary": true}],
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {
                    "department": "R&D", "manager": {"value": "42"}
                }
            })),
            active_unassigned: true,
            created: Some("2026-01-02T03:04:05.000Z".into()),
            last_modified: Some("2026-01-03T03:04:05.000Z".into()),
        };
        let field = k.encode();
        assert!(field.starts_with("json64:"), "{field}");
        assert!(
            field.is_ascii() && !field.contains(['<', '>', '&', '"', '\'', ' ', '=', ';', '+']),
            "{field}"
        );
        assert_eq!(KeptAttributes::decode(&field), k);
    }

    #[test]
    fn nothing_kept_is_an_empty_field() {
        assert_eq!(KeptAttributes::default().encode(), "");
        assert!(KeptAttributes::decode("").is_empty());
        assert!(KeptAttributes::decode("json64:").is_empty());
        assert!(KeptAttributes::decode("json64:!!not base64").is_empty());
    }

    #[test]
    fn fields_written_before_issue_10_are_read() {
        let k = KeptAttributes::decode(
            "preferredLanguage=fr-CA;locale=fr_CA;roles=Course%20Teacher;active=unassigned",
        );
        assert_eq!(k.get_str("preferredLanguage"), Some("fr-CA"));
        assert_eq!(k.get_str("locale"), Some("fr_CA"));
        assert_eq!(k.attributes["roles"], json!([{"value": "Course Teacher"}]));
        assert!(k.active_unassigned);
        let k = KeptAttributes::decode("junk;colour=red;locale=%FF%FE;roles=;preferredLanguage=de");
        assert_eq!(k.attributes, attrs(json!({"preferredLanguage": "de"})));
    }

    #[test]
    fn content_ignores_dates_and_key_order() {
        let a = KeptAttributes {
            attributes: attrs(json!({"title": "T", "nickName": "N"})),
            last_modified: Some("2026-01-01T00:00:00.000Z".into()),
            ..KeptAttributes::default()
        };
        let b = KeptAttributes {
            attributes: attrs(json!({"nickName": "N", "title": "T"})),
            ..KeptAttributes::default()
        };
        assert!(a.same_content(&b));
        let c = KeptAttributes {
            active_unassigned: true,
            ..b.clone()
        };
        assert!(!b.same_content(&c));
    }

    #[test]
    fn last_modified_always_moves_forward() {
        let at = |s: &str| {
            chrono::DateTime::parse_from_rfc3339(s)
                .unwrap()
                .with_timezone(&chrono::Utc)
        };
        let now = at("2026-12-03T13:00:00.000Z");
        assert_eq!(timestamp_after(None, now), "2026-12-03T13:00:00.000Z");
        assert_eq!(
            timestamp_after(Some("2026-12-03T12:00:00.000Z"), now),
            "2026-12-03T13:00:00.000Z"
        );
        assert_eq!(
            timestamp_after(Some("2026-12-03T13:00:00.000Z"), now),
            "2026-12-03T13:00:00.001Z",
            "same millisecond"
        );
        assert_eq!(
            timestamp_after(Some("2026-12-03T14:00:00.000Z"), now),
            "2026-12-03T14:00:00.001Z",
            "a clock behind"
        );
        assert_eq!(
            timestamp_after(Some("not a date"), now),
            "2026-12-03T13:00:00.000Z"
        );
    }

    #[test]
    fn the_size_bound_names_the_largest_attribute() {
        let mut k = KeptAttributes {
            attributes: attrs(json!({"title": "T", "nickName": "x".repeat(4000)})),
            ..KeptAttributes::default()
        };
        assert_eq!(k.check_size(), Ok(()));
        k.attributes.insert(
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User".into(),
            json!({"department": "d".repeat(4500)}),
        );
        let (attr, size) = k.check_size().unwrap_err();
        assert_eq!(
            attr,
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department"
        );
        assert!(size > MAX_FIELD_BYTES - META_ROOM, "{size}");
    }
}
