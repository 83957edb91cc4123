//! The composition root: what `main.rs` calls to run the proxy. It builds every part from
//! the configuration — the pass-through, the SCIM service and its backend (the Chamilo
//! backend, or the in-memory one), the admin port, the reloader — wires them together, and
//! runs the process from start to exit ([`lifecycle`]). It is the only module that knows all
//! the others; `server` knows neither SCIM's backend nor Chamilo.

pub mod chamilo_metrics;
pub mod lifecycle;
pub mod preflight;
pub mod scim_backend;

pub use lifecycle::{run, StartError};
