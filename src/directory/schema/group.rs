//! The core Group schema (RFC 7643 §4.2, §8.7.1).

use super::{AttrDef, Mutability, Uniqueness};
use crate::directory::query::AttrKind;

/// The core Group attributes, `id`/`externalId`/`meta` excluded (common attributes).
///
/// `displayName` is required (every backend names its groups, and IdPs match on it).
/// `members.$ref` is immutable as in RFC 7643 §8.7.1 (clients may send it, and conformance
/// tools fill `value` from it), but the engine drops it on input and generates it from
/// `value` on output; `members.display` is read-only: the backend knows the member's name.
pub fn core_group_attributes() -> Vec<AttrDef> {
    use Mutability::{Immutable, ReadOnly};
    vec![
        AttrDef::string(
            "displayName",
            "A human-readable name for the Group. REQUIRED.",
        )
        .required()
        .unique(Uniqueness::Server),
        AttrDef::new(
            "members",
            AttrKind::Complex,
            "A list of members of the Group.",
        )
        .multi()
        .subs(vec![
            AttrDef::string("value", "Identifier of the member of this Group.")
                .case_exact()
                .mutability(Immutable),
            AttrDef::new(
                "$ref",
                AttrKind::Reference,
                "The URI corresponding to a SCIM resource that is a member of this Group.",
            )
            .refs(&["User"])
            .mutability(Immutable),
            AttrDef::string("display", "A human-readable name of the member.").mutability(ReadOnly),
            AttrDef::string("type", "A label indicating the type of resource.")
                .canonical(&["User"])
                .mutability(Immutable),
        ]),
    ]
}
