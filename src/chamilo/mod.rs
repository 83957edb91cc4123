//! The Chamilo backend: the web-service client (REST `v2.php` + the SOAP calls REST cannot do),
//! its error classes, the login mapping, and (later) the user index and the `directory`
//! implementation.
//!
//! Chamilo stays the only store of accounts: nothing here persists anything.

pub mod client;
pub mod directory;
pub mod error;
pub mod index;
pub mod soap;
pub mod username;

pub use client::{ChamiloClient, ClientSettings, Credentials};
pub use error::{CallOutcome, ChamiloError};
