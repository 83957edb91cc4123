//! The Chamilo backend: web-service client, mapping, user index, `directory` implementation.

pub mod username;
