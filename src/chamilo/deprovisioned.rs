//! Accounts deleted through SCIM under the `deactivate` policy (a soft delete).
//!
//! RFC 7644 §3.6: a service provider may keep a deleted resource but must answer 404 for it
//! from then on. Chamilo keeps the learner's history, so SCIM `DELETE` deactivates the account
//! and, in the same `update_user_from_username` call, moves its SCIM identity out of the way:
//! the userName field becomes `scim-deprovisioned:<userName>` and the externalId field
//! `scim-deprovisioned:<externalId>` (a tombstone).
//!
//! Why the identity fields and not a flag in `scim_attributes`: the fresh lookups every
//! answer is confirmed with (`users_profiles_by_extra_field`) cannot return other extra
//! fields, so a flag would stay invisible to the other replicas until their next listing. A
//! tombstoned value is simply not found by a lookup for the live value, on every replica, at
//! no extra call; and a lookup for the tombstone finds the account again when the identity
//! provider creates the same `userName` or `externalId` later (the account is revived).
//!
//! Tombstones are not valid SCIM values: a `userName` or `externalId` that begins with the
//! prefix is refused (400), and a filter on one matches nothing.

use super::index::Account;

/// What a tombstoned userName or externalId field value begins with.
pub const PREFIX: &str = "scim-deprovisioned:";

/// The field value that marks `value` as deprovisioned.
pub fn tombstone(value: &str) -> String {
    format!("{PREFIX}{value}")
}

/// Whether a field value (or a value sent by a client) is a tombstone. ASCII-case-insensitive,
/// like Chamilo's own comparison of extra-field values.
pub fn is_tombstone(value: &str) -> bool {
    value
        .get(..PREFIX.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(PREFIX))
}

/// The value a tombstone was made from.
pub fn original(value: &str) -> Option<&str> {
    is_tombstone(value).then(|| &value[PREFIX.len()..])
}

/// Whether SCIM deleted this account: its userName field is a tombstone. Such an account is,
/// for SCIM, gone (404, never matched, never listed) until a create revives it.
pub fn is_deprovisioned(account: &Account) -> bool {
    account.user_name.as_deref().is_some_and(is_tombstone)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tombstones_round_trip_and_are_recognised_in_any_case() {
        let t = tombstone("Ann.Lee@Example.org");
        assert_eq!(t, "scim-deprovisioned:Ann.Lee@Example.org");
        assert!(is_tombstone(&t));
        assert!(is_tombstone("SCIM-Deprovisioned:x"));
        assert_eq!(original(&t), Some("Ann.Lee@Example.org"));
        assert!(!is_tombstone("ann"));
        assert!(!is_tombstone("scim-deprovisioned"));
        assert!(!is_tombstone("x scim-deprovisioned:ann"));
        // Not a char boundary at the prefix length: no panic, no match.
        assert!(!is_tombstone("scim-déprovisioned:x"));
        assert_eq!(original("ann"), None);
    }

    #[test]
    fn an_account_is_deprovisioned_by_its_user_name_field() {
        let mut a = Account {
            id: 7,
            login: "ann".into(),
            user_name: Some("ann".into()),
            ..Account::default()
        };
        assert!(!is_deprovisioned(&a));
        a.user_name = Some(tombstone("ann"));
        assert!(is_deprovisioned(&a));
        a.user_name = None;
        assert!(!is_deprovisioned(&a), "an account made outside SCIM");
    }
}
