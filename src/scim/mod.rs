//! The SCIM 2.0 protocol layer (RFC 7643/7644), written against the `directory` trait.
//!
//! [`ScimService::handle`] authenticates, routes, reads and normalises the request, calls the
//! [`Directory`], and renders the canonical result with projection, `ETag` and `Location`.
//!
//! Mounting: build one `ScimService::new(Arc<dyn Directory>)` at start-up and call `handle`
//! with the path below [`MOUNT_PATH`] and the request's configuration snapshot. The public
//! base URL used in `Location`/`meta.location` is derived from the request:
//! `X-Forwarded-Proto` (else the URI's scheme, else `http`) and the authority or `Host`.
//! Every operation logs one line (`op`, `id`, `status`, `scim_type`, `elapsed_ms`) at `info`
//! (`warn` for 5xx); request bodies, passwords and tokens are never logged. Every
//! authenticated write also logs one line at target `audit` ([`audit`]: token name,
//! operation, resource type, id, attribute names, status, outcome).
//!
//! A request's path: [`ScimService::handle`] (the log line) → `routes` (the bearer token by
//! [`auth`], the routing table, one handler per User operation; `groups` has those of
//! `/Groups`, driven by the Group schema through the same normalisation, PATCH and
//! rendering) → `request` (list parameters,
//! the JSON body, `If-Match`) → [`normalize`] (every identity provider's quirks, in one
//! place) or [`patch`] → the [`Directory`] → `response` ([`projection`], `ETag`,
//! `Location`, error bodies by [`error`]). Filter text is parsed by [`filter`] into the query
//! model of [`crate::directory::query`]; `/Schemas` and friends come from [`discovery`].

mod audit;
pub mod auth;
pub mod discovery;
pub mod error;
pub mod filter;
mod groups;
pub mod normalize;
pub mod patch;
pub mod projection;
mod request;
mod response;
mod routes;

pub use request::ClientScheme;

// Re-export for tests/chamilo_directory.rs until it switches to the new path.
pub use crate::directory::schema;

use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{Request, Response};

use crate::body::{BoxBody, BoxError};
use crate::config::ScimConfig;
use crate::directory::schema::ResourceSchema;
use crate::directory::{Capabilities, DirFuture, Directory, DirectoryError, ListQuery, Page, User};
use error::{ScimError, ScimType};
use response::error_response;

/// Where the service is mounted; used for `Location` and `meta.location`.
pub const MOUNT_PATH: &str = "/scim/v2";

/// Media type of every SCIM response.
pub const SCIM_CONTENT_TYPE: &str = "application/scim+json";

/// The SCIM service provider mounted at `/scim/v2`.
pub struct ScimService {
    directory: Arc<dyn Directory>,
    /// The schema pruned to the backend's capabilities, rebuilt when they change.
    schema: ArcSwap<(Capabilities, ResourceSchema)>,
}

/// What the per-operation log line and the audit line record.
struct Outcome {
    op: &'static str,
    id: Option<String>,
    /// The configured name of the token that authenticated the request.
    token: Option<String>,
    /// The attribute names a write touched, for the audit line (never values).
    attributes: Vec<String>,
}

/// A service with no backend: every user operation answers 503 (discovery still answers).
/// The server uses it when the configured backend cannot be built, so that SCIM fails closed
/// while the pass-through keeps serving.
impl Default for ScimService {
    fn default() -> Self {
        Self::new(Arc::new(Unconfigured))
    }
}

/// The directory of [`ScimService::default`]: fails closed.
struct Unconfigured;

impl Unconfigured {
    fn fail<'a, T: Send + 'a>() -> DirFuture<'a, T> {
        tracing::error!(
            "SCIM request answered 503: no directory backend is wired into ScimService"
        );
        Box::pin(async { Err(DirectoryError::Unavailable { retry_after: None }) })
    }
}

impl Directory for Unconfigured {
    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }
    fn create(&self, _user: User) -> DirFuture<'_, User> {
        Self::fail()
    }
    fn get<'a>(&'a self, _id: &'a str) -> DirFuture<'a, Option<User>> {
        Self::fail()
    }
    fn find<'a>(&'a self, _query: &'a ListQuery) -> DirFuture<'a, Page> {
        Self::fail()
    }
    fn replace<'a>(
        &'a self,
        _id: &'a str,
        _user: User,
        _expected_version: Option<&'a str>,
    ) -> DirFuture<'a, User> {
        Self::fail()
    }
    fn delete<'a>(&'a self, _id: &'a str) -> DirFuture<'a, ()> {
        Self::fail()
    }
}

impl ScimService {
    /// A service backed by `directory`.
    pub fn new(directory: Arc<dyn Directory>) -> Self {
        let caps = directory.capabilities();
        let schema = ResourceSchema::new(&caps);
        Self {
            directory,
            schema: ArcSwap::from_pointee((caps, schema)),
        }
    }

    fn schema(&self) -> Arc<(Capabilities, ResourceSchema)> {
        let caps = self.directory.capabilities();
        let current = self.schema.load_full();
        if current.0 == caps {
            return current;
        }
        let fresh = Arc::new((caps.clone(), ResourceSchema::new(&caps)));
        self.schema.store(fresh.clone());
        fresh
    }

    /// Answers one SCIM request. `sub_path` is the normalised, percent-decoded path below
    /// `/scim/v2` (`""`, `/Users`, `/Users/42`); `cfg` is the configuration snapshot of this
    /// request. With `cfg.enabled == false` every request gets a 404.
    pub async fn handle<B>(
        &self,
        req: Request<B>,
        sub_path: &str,
        cfg: &ScimConfig,
    ) -> Response<BoxBody>
    where
        B: http_body::Body<Data = Bytes> + Send,
        B::Error: Into<BoxError>,
    {
        let started = Instant::now();
        let method = req.method().clone();
        let mut outcome = Outcome {
            op: "unknown",
            id: None,
            token: None,
            attributes: Vec::new(),
        };
        let result = self.route(req, sub_path, cfg, &mut outcome).await;
        let mut scim_type = None;
        let response = match result {
            Ok(resp) => resp,
            Err(e) => {
                scim_type = e.scim_type.map(ScimType::as_str);
                error_response(&e)
            }
        };
        let status = response.status().as_u16();
        let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
        if response.status().is_server_error() {
            tracing::warn!(
                op = outcome.op,
                method = %method,
                id = outcome.id.as_deref(),
                status,
                scim_type,
                elapsed_ms,
                "scim operation failed"
            );
        } else {
            tracing::info!(
                op = outcome.op,
                method = %method,
                id = outcome.id.as_deref(),
                status,
                scim_type,
                elapsed_ms,
                "scim operation"
            );
        }
        audit_line(&outcome, status, scim_type);
        response
    }
}

/// The audit line of a write, success or failure (see [`audit`]). Only authenticated
/// requests carry a token name, so a 401 is never audited.
fn audit_line(outcome: &Outcome, status: u16, scim_type: Option<&str>) {
    let (Some(token), Some((resource_type, operation))) =
        (outcome.token.as_deref(), audit::write_of(outcome.op))
    else {
        return;
    };
    let result = if (200..300).contains(&status) {
        "success"
    } else {
        "failure"
    };
    tracing::info!(
        target: "audit",
        token,
        operation,
        resource_type,
        id = outcome.id.as_deref(),
        attributes = %outcome.attributes.join(","),
        status,
        outcome = result,
        scim_type,
        "scim write"
    );
}

/// Logs a backend failure's detail (no secrets by the trait's contract) and converts it.
fn backend_error(e: DirectoryError) -> ScimError {
    if let DirectoryError::Backend { detail } = &e {
        tracing::warn!(detail = %detail, "directory backend error");
    }
    e.into()
}
