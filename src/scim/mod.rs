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
//! (`warn` for 5xx); request bodies, passwords and tokens are never logged.

pub mod auth;
pub mod discovery;
pub mod error;
pub mod filter;
pub mod normalize;
pub mod patch;
pub mod projection;

// Re-export for tests/chamilo_directory.rs until it switches to the new path.
pub use crate::directory::schema;

use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use serde_json::{json, Map, Value};

use crate::body::{empty, full, BoxBody, BoxError};
use crate::config::ScimConfig;
use crate::directory::query::AttrPath;
use crate::directory::schema::ResourceSchema;
use crate::directory::{Capabilities, Directory, ListQuery, SortKey, User};
use error::{ScimError, ScimType};
use filter::FilterLimits;
use projection::Projection;

/// Where the service is mounted; used for `Location` and `meta.location`.
pub const MOUNT_PATH: &str = "/scim/v2";

/// Media type of every SCIM response.
pub const SCIM_CONTENT_TYPE: &str = "application/scim+json";

const LIST_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
const SEARCH_REQUEST: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";

/// The SCIM service provider mounted at `/scim/v2`.
pub struct ScimService {
    directory: Arc<dyn Directory>,
    /// The schema pruned to the backend's capabilities, rebuilt when they change.
    schema: ArcSwap<(Capabilities, ResourceSchema)>,
}

/// What the per-operation log line records.
struct Outcome {
    op: &'static str,
    id: Option<String>,
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
    fn fail<'a, T: Send + 'a>() -> crate::directory::DirFuture<'a, T> {
        tracing::error!(
            "SCIM request answered 503: no directory backend is wired into ScimService"
        );
        Box::pin(async { Err(crate::directory::DirectoryError::Unavailable { retry_after: None }) })
    }
}

impl Directory for Unconfigured {
    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }
    fn create(&self, _user: User) -> crate::directory::DirFuture<'_, User> {
        Self::fail()
    }
    fn get<'a>(&'a self, _id: &'a str) -> crate::directory::DirFuture<'a, Option<User>> {
        Self::fail()
    }
    fn find<'a>(
        &'a self,
        _query: &'a ListQuery,
    ) -> crate::directory::DirFuture<'a, crate::directory::Page> {
        Self::fail()
    }
    fn replace<'a>(
        &'a self,
        _id: &'a str,
        _user: User,
        _expected_version: Option<&'a str>,
    ) -> crate::directory::DirFuture<'a, User> {
        Self::fail()
    }
    fn delete<'a>(&'a self, _id: &'a str) -> crate::directory::DirFuture<'a, ()> {
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
        response
    }

    async fn route<B>(
        &self,
        req: Request<B>,
        sub_path: &str,
        cfg: &ScimConfig,
        outcome: &mut Outcome,
    ) -> Result<Response<BoxBody>, ScimError>
    where
        B: http_body::Body<Data = Bytes> + Send,
        B::Error: Into<BoxError>,
    {
        if !cfg.enabled {
            outcome.op = "disabled";
            return Err(ScimError::not_found("SCIM is disabled"));
        }
        let segments: Vec<&str> = sub_path.split('/').filter(|s| !s.is_empty()).collect();
        let first = segments.first().map(|s| s.to_ascii_lowercase());
        let is_discovery = matches!(
            first.as_deref(),
            Some("serviceproviderconfig" | "resourcetypes" | "schemas")
        );
        if !is_discovery || cfg.discovery_requires_auth {
            if let Err(why) = auth::authenticate(req.headers(), cfg) {
                outcome.op = "authenticate";
                tracing::debug!(reason = ?why, "scim request not authenticated");
                return Err(ScimError::new(
                    StatusCode::UNAUTHORIZED,
                    "Authentication with a valid bearer token is required",
                ));
            }
        }
        let base = base_url(&req);
        let method = req.method().clone();
        let rest = &segments[segments.len().min(1)..];
        match (first.as_deref(), rest) {
            (Some("users"), []) => match method {
                Method::GET => {
                    outcome.op = "list";
                    let params = QueryParams::parse(req.uri().query());
                    self.list(&params.into_search(), &base, cfg).await
                }
                Method::POST => {
                    outcome.op = "create";
                    let projection = QueryParams::parse(req.uri().query())
                        .into_search()
                        .projection()?;
                    let body = read_json(req, cfg).await?;
                    self.create(body, &base, &projection, outcome).await
                }
                _ => Err(method_not_allowed("GET, POST")),
            },
            // Root-level search (RFC 7644 §3.4.3): Users are the only resource type.
            (Some(".search"), []) | (Some("users"), [".search"]) => {
                outcome.op = "search";
                if method != Method::POST {
                    return Err(method_not_allowed("POST"));
                }
                let body = read_json(req, cfg).await?;
                let search = SearchParams::from_body(&body)?;
                self.list(&search, &base, cfg).await
            }
            (Some("users"), [id]) => {
                // `sub_path` arrives percent-decoded (the router decodes once); decoding
                // again would turn an id holding `%41` into another id.
                let id = (*id).to_owned();
                outcome.id = Some(id.clone());
                match method {
                    Method::GET => {
                        outcome.op = "get";
                        let params = QueryParams::parse(req.uri().query());
                        self.get(&id, req.headers(), &params.into_search(), &base)
                            .await
                    }
                    Method::PUT => {
                        outcome.op = "replace";
                        let projection = QueryParams::parse(req.uri().query())
                            .into_search()
                            .projection()?;
                        let headers = req.headers().clone();
                        let body = read_json(req, cfg).await?;
                        self.put(&id, &headers, body, &base, &projection).await
                    }
                    Method::PATCH => {
                        outcome.op = "patch";
                        let projection = QueryParams::parse(req.uri().query())
                            .into_search()
                            .projection()?;
                        let headers = req.headers().clone();
                        let body = read_json(req, cfg).await?;
                        self.patch(&id, &headers, body, &base, &projection).await
                    }
                    Method::DELETE => {
                        outcome.op = "delete";
                        self.delete(&id, req.headers()).await
                    }
                    _ => Err(method_not_allowed("GET, PUT, PATCH, DELETE")),
                }
            }
            (Some("serviceproviderconfig"), []) => {
                outcome.op = "discovery";
                only_get(&method)?;
                let (caps, _) = &*self.schema();
                Ok(json_response(
                    StatusCode::OK,
                    &discovery::service_provider_config(&base, caps, cfg),
                ))
            }
            (Some("resourcetypes"), []) => {
                outcome.op = "discovery";
                only_get(&method)?;
                Ok(json_response(
                    StatusCode::OK,
                    &discovery::list_of(vec![discovery::user_resource_type(&base)]),
                ))
            }
            (Some("resourcetypes"), [id]) => {
                outcome.op = "discovery";
                only_get(&method)?;
                if id.eq_ignore_ascii_case("User") {
                    Ok(json_response(
                        StatusCode::OK,
                        &discovery::user_resource_type(&base),
                    ))
                } else {
                    Err(ScimError::not_found(format!("No resource type {id}")))
                }
            }
            (Some("schemas"), []) => {
                outcome.op = "discovery";
                only_get(&method)?;
                let schema = self.schema();
                Ok(json_response(
                    StatusCode::OK,
                    &discovery::list_of(discovery::schemas(&base, &schema.1)),
                ))
            }
            (Some("schemas"), [id]) => {
                outcome.op = "discovery";
                only_get(&method)?;
                let schema = self.schema();
                discovery::schemas(&base, &schema.1)
                    .into_iter()
                    .find(|s| s["id"].as_str().is_some_and(|s| s.eq_ignore_ascii_case(id)))
                    .map(|s| json_response(StatusCode::OK, &s))
                    .ok_or_else(|| ScimError::not_found(format!("No schema {id}")))
            }
            (Some("bulk" | "me"), _) => {
                outcome.op = "unsupported";
                Err(ScimError::new(
                    StatusCode::NOT_IMPLEMENTED,
                    "This endpoint is not supported",
                ))
            }
            _ => {
                outcome.op = "not_found";
                Err(ScimError::not_found(format!(
                    "No SCIM endpoint at {sub_path}"
                )))
            }
        }
    }

    async fn create(
        &self,
        body: Value,
        base: &str,
        projection: &Projection,
        outcome: &mut Outcome,
    ) -> Result<Response<BoxBody>, ScimError> {
        let schema = self.schema();
        let (caps, schema) = (&schema.0, &schema.1);
        let user = normalize::normalize_user(schema, &body)?;
        normalize::validate(schema, caps, &user)?;
        let created = self
            .directory
            .create(User::from_json(user))
            .await
            .map_err(backend_error)?;
        outcome.id = created.id().map(str::to_owned);
        let location = created
            .id()
            .map(|id| format!("{base}/Users/{}", encode_id(id)));
        let mut resp = self.render_user(StatusCode::CREATED, &created, schema, base, projection);
        if let Some(loc) = location.and_then(|l| HeaderValue::from_str(&l).ok()) {
            resp.headers_mut().insert(http::header::LOCATION, loc);
        }
        Ok(resp)
    }

    async fn get(
        &self,
        id: &str,
        headers: &HeaderMap,
        search: &SearchParams,
        base: &str,
    ) -> Result<Response<BoxBody>, ScimError> {
        let schema = self.schema();
        let projection = search.projection()?;
        let user = self.fetch(id).await?;
        if let (Some(v), Some(inm)) = (user.version(), headers.get(http::header::IF_NONE_MATCH)) {
            if etag_matches(inm, v) {
                let mut resp = Response::new(empty());
                *resp.status_mut() = StatusCode::NOT_MODIFIED;
                set_etag(resp.headers_mut(), v);
                return Ok(resp);
            }
        }
        Ok(self.render_user(StatusCode::OK, &user, &schema.1, base, &projection))
    }

    async fn put(
        &self,
        id: &str,
        headers: &HeaderMap,
        body: Value,
        base: &str,
        projection: &Projection,
    ) -> Result<Response<BoxBody>, ScimError> {
        let schema = self.schema();
        let (caps, schema) = (&schema.0, &schema.1);
        let new = normalize::normalize_user(schema, &body)?;
        normalize::validate(schema, caps, &new)?;
        let current = self.fetch(id).await?;
        check_if_match(headers, &current)?;
        let stored = self
            .directory
            .replace(id, User::from_json(new), current.version())
            .await
            .map_err(backend_error)?;
        Ok(self.render_user(StatusCode::OK, &stored, schema, base, projection))
    }

    async fn patch(
        &self,
        id: &str,
        headers: &HeaderMap,
        body: Value,
        base: &str,
        projection: &Projection,
    ) -> Result<Response<BoxBody>, ScimError> {
        let schema = self.schema();
        let (caps, schema) = (&schema.0, &schema.1);
        let ops = patch::parse_patch_request(&body)?;
        // Without If-Match a lost race is retried on fresh data; with it, 412 is the answer.
        let attempts = if headers.contains_key(http::header::IF_MATCH) {
            1
        } else {
            3
        };
        let mut last = ScimError::new(
            StatusCode::PRECONDITION_FAILED,
            "The resource was modified concurrently",
        );
        for _ in 0..attempts {
            let current = self.fetch(id).await?;
            check_if_match(headers, &current)?;
            let mut base_json = current.as_json().clone();
            base_json.remove("password");
            let new = patch::apply_patch(schema, &base_json, &ops)?;
            normalize::validate(schema, caps, &new)?;
            match self
                .directory
                .modify(id, &current, User::from_json(new), current.version())
                .await
            {
                Ok(stored) => {
                    return Ok(self.render_user(StatusCode::OK, &stored, schema, base, projection))
                }
                Err(crate::directory::DirectoryError::PreconditionFailed) => {
                    last = crate::directory::DirectoryError::PreconditionFailed.into();
                }
                Err(e) => return Err(backend_error(e)),
            }
        }
        Err(last)
    }

    async fn delete(&self, id: &str, headers: &HeaderMap) -> Result<Response<BoxBody>, ScimError> {
        if headers.contains_key(http::header::IF_MATCH) {
            let current = self.fetch(id).await?;
            check_if_match(headers, &current)?;
        }
        self.directory.delete(id).await.map_err(backend_error)?;
        let mut resp = Response::new(empty());
        *resp.status_mut() = StatusCode::NO_CONTENT;
        Ok(resp)
    }

    async fn list(
        &self,
        search: &SearchParams,
        base: &str,
        cfg: &ScimConfig,
    ) -> Result<Response<BoxBody>, ScimError> {
        let schema = self.schema();
        let projection = search.projection()?;
        let filter = match search.filter.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(f) => {
                let limits = FilterLimits {
                    max_length: cfg.max_filter_length,
                    ..FilterLimits::default()
                };
                if f.len() > cfg.max_filter_length {
                    return Err(ScimError::bad_request(
                        ScimType::InvalidFilter,
                        format!("The filter is longer than {} bytes", cfg.max_filter_length),
                    ));
                }
                Some(filter::parse_filter(f, &limits).map_err(|e| {
                    ScimError::bad_request(ScimType::InvalidFilter, format!("Invalid filter {e}"))
                })?)
            }
        };
        let sort = match search.sort_by.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(s) => Some(SortKey {
                path: filter::parse_attr_path(s)
                    .map_err(|e| ScimError::invalid_value(format!("Invalid sortBy {e}")))?,
                descending: match search
                    .sort_order
                    .as_deref()
                    .map(str::to_ascii_lowercase)
                    .as_deref()
                {
                    None | Some("") | Some("ascending") => false,
                    Some("descending") => true,
                    Some(_) => {
                        return Err(ScimError::invalid_value(
                            "sortOrder must be ascending or descending",
                        ))
                    }
                },
            }),
        };
        let start_index = search.start_index.unwrap_or(1).max(1) as usize;
        let count = search
            .count
            .map(|c| c.max(0) as usize)
            .unwrap_or(cfg.default_count)
            .min(cfg.max_results);
        let query = ListQuery {
            filter,
            sort,
            start_index,
            count,
        };
        let page = self.directory.find(&query).await.map_err(backend_error)?;
        let resources: Vec<Value> = page
            .resources
            .iter()
            .take(count)
            .map(|u| Value::Object(render_json(u, &schema.1, base, &projection)))
            .collect();
        let body = json!({
            "schemas": [LIST_RESPONSE],
            "totalResults": page.total,
            "startIndex": start_index,
            "itemsPerPage": resources.len(),
            "Resources": resources,
        });
        Ok(json_response(StatusCode::OK, &body))
    }

    async fn fetch(&self, id: &str) -> Result<User, ScimError> {
        self.directory
            .get(id)
            .await
            .map_err(backend_error)?
            .ok_or_else(|| ScimError::not_found(format!("User {id} not found")))
    }

    fn render_user(
        &self,
        status: StatusCode,
        user: &User,
        schema: &ResourceSchema,
        base: &str,
        projection: &Projection,
    ) -> Response<BoxBody> {
        let body = Value::Object(render_json(user, schema, base, projection));
        let mut resp = json_response(status, &body);
        if let Some(v) = user.version() {
            set_etag(resp.headers_mut(), v);
        }
        resp
    }
}

/// Logs a backend failure's detail (no secrets by the trait's contract) and converts it.
fn backend_error(e: crate::directory::DirectoryError) -> ScimError {
    if let crate::directory::DirectoryError::Backend { detail } = &e {
        tracing::warn!(detail = %detail, "directory backend error");
    }
    e.into()
}

/// The canonical user as sent to clients: `meta` completed, `password` dropped, projected.
fn render_json(
    user: &User,
    schema: &ResourceSchema,
    base: &str,
    projection: &Projection,
) -> Map<String, Value> {
    let mut json = user.as_json().clone();
    json.remove("password");
    normalize::finish(&mut json);
    let location = user
        .id()
        .map(|id| format!("{base}/Users/{}", encode_id(id)));
    let meta = json
        .entry("meta")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(meta) = meta {
        meta.insert("resourceType".into(), json!("User"));
        if let Some(loc) = location {
            meta.insert("location".into(), json!(loc));
        }
        if let Some(v) = meta.get("version").and_then(Value::as_str).map(weak_etag) {
            meta.insert("version".into(), json!(v));
        }
    }
    // `schemas`, `id` first for readability.
    let mut ordered = Map::new();
    for key in ["schemas", "id", "externalId", "userName"] {
        if let Some(v) = json.remove(key) {
            ordered.insert(key.to_owned(), v);
        }
    }
    ordered.extend(json);
    projection.apply(schema, &ordered)
}

/// RFC 3986 unreserved characters stay as they are in a path segment.
const PATH_SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn encode_id(id: &str) -> String {
    percent_encoding::utf8_percent_encode(id, PATH_SEGMENT).to_string()
}

fn weak_etag(version: &str) -> String {
    if version.starts_with("W/") {
        version.to_owned()
    } else {
        format!("W/\"{version}\"")
    }
}

fn set_etag(headers: &mut HeaderMap, version: &str) {
    if let Ok(v) = HeaderValue::from_str(&weak_etag(version)) {
        headers.insert(http::header::ETAG, v);
    }
}

/// Weak comparison of an `If-Match`/`If-None-Match` list against a version.
fn etag_matches(header: &HeaderValue, version: &str) -> bool {
    let Ok(h) = header.to_str() else { return false };
    let bare = |t: &str| {
        t.trim()
            .trim_start_matches("W/")
            .trim_matches('"')
            .to_owned()
    };
    let want = bare(&weak_etag(version));
    h.split(',').any(|t| t.trim() == "*" || bare(t) == want)
}

fn check_if_match(headers: &HeaderMap, current: &User) -> Result<(), ScimError> {
    let Some(h) = headers.get(http::header::IF_MATCH) else {
        return Ok(());
    };
    match current.version() {
        Some(v) if etag_matches(h, v) => Ok(()),
        // A backend without versions: only `*` ("it exists") can match.
        None if h.to_str().is_ok_and(|h| h.trim() == "*") => Ok(()),
        _ => Err(ScimError::new(
            StatusCode::PRECONDITION_FAILED,
            "If-Match does not match the current version",
        )),
    }
}

fn method_not_allowed(allow: &'static str) -> ScimError {
    ScimError {
        allow: Some(allow),
        ..ScimError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "Method not allowed on this endpoint",
        )
    }
}

fn only_get(method: &Method) -> Result<(), ScimError> {
    if method == Method::GET || method == Method::HEAD {
        Ok(())
    } else {
        Err(method_not_allowed("GET"))
    }
}

/// The service's public base URL for this request.
fn base_url<B>(req: &Request<B>) -> String {
    let headers = req.headers();
    let scheme = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| s == "http" || s == "https")
        .or_else(|| req.uri().scheme_str().map(str::to_owned))
        .unwrap_or_else(|| "http".to_owned());
    let host = req
        .uri()
        .authority()
        .map(|a| a.as_str().to_owned())
        .or_else(|| {
            headers
                .get(http::header::HOST)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "localhost".to_owned());
    format!("{scheme}://{host}{MOUNT_PATH}")
}

/// Reads the whole body within `cfg.max_body_bytes` and parses it as JSON, whatever the
/// declared content type (IdPs send `application/scim+json`, `application/json`,
/// `text/json` or nothing).
async fn read_json<B>(req: Request<B>, cfg: &ScimConfig) -> Result<Value, ScimError>
where
    B: http_body::Body<Data = Bytes> + Send,
    B::Error: Into<BoxError>,
{
    let too_large = || {
        ScimError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "The request body is larger than {} bytes",
                cfg.max_body_bytes
            ),
        )
    };
    let declared = req
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > cfg.max_body_bytes as u64) {
        return Err(too_large());
    }
    let bytes = match Limited::new(req.into_body(), cfg.max_body_bytes)
        .collect()
        .await
    {
        Ok(c) => c.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => return Err(too_large()),
        Err(_) => {
            return Err(ScimError::invalid_syntax(
                "The request body could not be read",
            ))
        }
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ScimError::invalid_syntax("The request body is empty"));
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| ScimError::invalid_syntax(format!("The request body is not valid JSON: {e}")))
}

fn json_response(status: StatusCode, body: &Value) -> Response<BoxBody> {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut resp = Response::new(full(bytes));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(SCIM_CONTENT_TYPE),
    );
    resp
}

fn error_response(e: &ScimError) -> Response<BoxBody> {
    let mut resp = json_response(e.status, &e.body());
    let headers = resp.headers_mut();
    if e.status == StatusCode::UNAUTHORIZED {
        headers.insert(
            http::header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"SCIM\""),
        );
    }
    if let Some(allow) = e.allow {
        headers.insert(http::header::ALLOW, HeaderValue::from_static(allow));
    }
    if let Some(after) = e.retry_after {
        if let Ok(v) = HeaderValue::from_str(&after.as_secs().max(1).to_string()) {
            headers.insert(http::header::RETRY_AFTER, v);
        }
    }
    resp
}

/// List parameters from a query string or a `.search` body.
#[derive(Debug, Clone, Default, PartialEq)]
struct SearchParams {
    filter: Option<String>,
    sort_by: Option<String>,
    sort_order: Option<String>,
    start_index: Option<i64>,
    count: Option<i64>,
    attributes: Vec<String>,
    excluded: Vec<String>,
    bad_number: Option<&'static str>,
}

impl SearchParams {
    fn from_body(body: &Value) -> Result<Self, ScimError> {
        let obj = body
            .as_object()
            .ok_or_else(|| ScimError::invalid_syntax("The search body must be a JSON object"))?;
        if let Some(schemas) = obj.get("schemas").and_then(Value::as_array) {
            if !schemas.iter().any(|s| s.as_str() == Some(SEARCH_REQUEST)) {
                return Err(ScimError::invalid_syntax(format!(
                    "schemas must contain {SEARCH_REQUEST}"
                )));
            }
        }
        let get = |k: &str| {
            obj.iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(k))
                .map(|(_, v)| v)
        };
        let string = |k: &str| -> Result<Option<String>, ScimError> {
            match get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(ScimError::invalid_value(format!("{k} must be a string"))),
            }
        };
        let number = |k: &str| -> Result<Option<i64>, ScimError> {
            match get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Number(n)) => n
                    .as_i64()
                    .map(Some)
                    .ok_or_else(|| ScimError::invalid_value(format!("{k} must be an integer"))),
                Some(Value::String(s)) => s
                    .trim()
                    .parse()
                    .map(Some)
                    .map_err(|_| ScimError::invalid_value(format!("{k} must be an integer"))),
                Some(_) => Err(ScimError::invalid_value(format!("{k} must be an integer"))),
            }
        };
        let list = |k: &str| -> Vec<String> {
            match get(k) {
                Some(Value::Array(a)) => a
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect(),
                Some(Value::String(s)) => split_list(s),
                _ => Vec::new(),
            }
        };
        Ok(Self {
            filter: string("filter")?,
            sort_by: string("sortBy")?,
            sort_order: string("sortOrder")?,
            start_index: number("startIndex")?,
            count: number("count")?,
            attributes: list("attributes"),
            excluded: list("excludedAttributes"),
            bad_number: None,
        })
    }

    fn projection(&self) -> Result<Projection, ScimError> {
        if let Some(name) = self.bad_number {
            return Err(ScimError::invalid_value(format!(
                "{name} must be an integer"
            )));
        }
        let parse = |items: &[String]| -> Result<Vec<AttrPath>, ScimError> {
            items
                .iter()
                .map(|s| {
                    filter::parse_attr_path(s).map_err(|e| {
                        ScimError::invalid_value(format!("Invalid attribute {s}: {e}"))
                    })
                })
                .collect()
        };
        Ok(Projection {
            attributes: parse(&self.attributes)?,
            excluded: parse(&self.excluded)?,
        })
    }
}

fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Query parameters; names are matched case-insensitively and unknown ones ignored.
struct QueryParams(Vec<(String, String)>);

impl QueryParams {
    fn parse(query: Option<&str>) -> Self {
        let decode = |s: &str| {
            let s = s.replace('+', " ");
            percent_encoding::percent_decode_str(&s)
                .decode_utf8_lossy()
                .into_owned()
        };
        Self(
            query
                .unwrap_or("")
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap_or((p, ""));
                    (decode(k), decode(v))
                })
                .collect(),
        )
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn into_search(self) -> SearchParams {
        let mut bad_number = None;
        let mut number = |k: &'static str| {
            self.get(k).and_then(|v| match v.trim().parse::<i64>() {
                Ok(n) => Some(n),
                Err(_) => {
                    bad_number = Some(k);
                    None
                }
            })
        };
        let start_index = number("startIndex");
        let count = number("count");
        SearchParams {
            filter: self.get("filter").map(str::to_owned),
            sort_by: self.get("sortBy").map(str::to_owned),
            sort_order: self.get("sortOrder").map(str::to_owned),
            start_index,
            count,
            attributes: self.get("attributes").map(split_list).unwrap_or_default(),
            excluded: self
                .get("excludedAttributes")
                .map(split_list)
                .unwrap_or_default(),
            bad_number,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters_decode_and_ignore_unknowns() {
        let q = QueryParams::parse(Some(
            "aadOptscim062020&filter=userName+eq+%22a%2Bb%40x.org%22&COUNT=5&startIndex=x",
        ));
        let s = q.into_search();
        assert_eq!(s.filter.as_deref(), Some("userName eq \"a+b@x.org\""));
        assert_eq!(s.count, Some(5));
        assert_eq!(s.bad_number, Some("startIndex"));
        assert!(s.projection().is_err());
    }

    #[test]
    fn etags_compare_weakly() {
        let h = HeaderValue::from_static("W/\"3\"");
        assert!(etag_matches(&h, "3"));
        assert!(!etag_matches(&h, "4"));
        assert!(etag_matches(&HeaderValue::from_static("\"1\", \"3\""), "3"));
        assert!(etag_matches(&HeaderValue::from_static("*"), "9"));
    }
}
