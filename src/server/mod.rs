//! Listeners, connections, routing to `scim` / `proxy`, graceful drain.

pub mod route;
