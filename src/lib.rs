//! chamilo-scim-proxy: a SCIM 2.0 provisioning sidecar for Chamilo LMS.
//!
//! Layers, top to bottom (dependencies point downwards only):
//! `server` → (`scim` | `proxy` | `admin`); `scim` → `directory`; `chamilo` → `directory`;
//! everything → `config`. See `../shared/docs/design.md`.

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
