//! The SCIM 2.0 protocol layer (RFC 7643/7644), written against the `directory` trait.

pub mod filter;
