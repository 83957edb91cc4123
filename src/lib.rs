//! chamilo-scim-proxy: a SCIM 2.0 provisioning sidecar for Chamilo LMS.
//!
//! Module map, top to bottom; a module uses only those below it (checked by
//! `tests/layering.rs`). See `../shared/docs/design.md`.
//!
//! | module | owns |
//! |---|---|
//! | [`app`] | the composition root: builds every part from the configuration, wires them, runs the process (start, signals, drain); `main.rs` calls [`app::run`] |
//! | [`server`] | the public listener: workers, connections (TLS, HTTP/1.1 and HTTP/2), the express lane, routing to `scim` or `proxy` |
//! | [`admin`] | the admin port: `/livez`, `/readyz`, `/metrics`, `/reload` |
//! | [`scim`] | the SCIM protocol: routes and handlers (Users, and Groups when the directory has them), filter parsing, IdP normalisation, PATCH, projection, discovery |
//! | [`proxy`] | the pass-through: upstream pool and client, hop-by-hop and forwarding headers, upgrades |
//! | [`chamilo`] | the [`directory::Directory`] backend for Chamilo's web services |
//! | [`standin`] | a simulated Chamilo (tests and `demo`) |
//! | [`directory`] | the account store trait, the canonical [`directory::User`] and its schema, groups ([`directory::GroupStore`], [`directory::Group`] and its schema), the query model (filter AST, evaluation, select/sort/page), the in-memory backend |
//! | [`http1`] | HTTP/1.1 as bytes, shared by `server` and `proxy` |
//! | [`telemetry`] | logging |
//! | [`config`] | typed configuration, loading, validation, hot reload |
//! | [`body`], [`secret`], [`timer`] | the response body type, redacted secrets, coarse timers |
//!
//! A pass-through request's path: `server::worker` → `server::accept` →
//! `server::connection` → `server::express` (or `server::hyper_lane`) →
//! `server::dispatch` → `proxy` → `http1` on the upstream connection. A SCIM request's:
//! … → `server::dispatch` → `scim` (`routes` → `request` → `normalize`/`patch` →
//! [`directory::Directory`] → `response`).

#![forbid(unsafe_code)]

pub mod admin;
pub mod app;
pub mod body;
pub mod chamilo;
pub mod config;
pub mod directory;
pub mod http1;
pub mod proxy;
pub mod scim;
pub mod secret;
pub mod server;
pub mod standin;
pub mod telemetry;
pub mod timer;
