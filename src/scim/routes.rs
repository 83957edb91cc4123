//! The routing table of `/scim/v2` and one handler per operation: each reads its request,
//! calls the [`Directory`](crate::directory::Directory), and renders the result.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use serde_json::{json, Value};

use super::error::ScimError;
use super::groups::{render_group_json, wants_members};
use super::projection::Projection;
use super::request::{
    base_url, check_if_match, etag_matches, read_json, QueryParams, SearchParams,
};
use super::response::{
    encode_id, json_response, render_json, render_user, set_etag, LIST_RESPONSE,
};
use super::{audit, auth, backend_error, discovery, normalize, patch, Outcome, ScimService};
use crate::body::{empty, BoxBody, BoxError};
use crate::config::ScimConfig;
use crate::directory::query::EitherSchema;
use crate::directory::schema::ResourceSchema;
use crate::directory::{DirectoryError, GroupStore, ListQuery, User};

impl ScimService {
    pub(super) async fn route<B>(
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
            match auth::authenticate(req.headers(), cfg) {
                Ok(name) => outcome.token = Some(name),
                Err(why) => {
                    outcome.op = "authenticate";
                    tracing::debug!(reason = ?why, "scim request not authenticated");
                    return Err(ScimError::new(
                        StatusCode::UNAUTHORIZED,
                        "Authentication with a valid bearer token is required",
                    ));
                }
            }
        }
        let base = base_url(&req, cfg);
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
                    outcome.attributes = audit::body_attributes(&body);
                    self.create(body, &base, &projection, outcome).await
                }
                _ => Err(method_not_allowed("GET, POST")),
            },
            // Root-level search (RFC 7644 §3.4.3): Users, then Groups when there are any.
            (Some(".search"), []) | (Some("users"), [".search"]) => {
                outcome.op = "search";
                if method != Method::POST {
                    return Err(method_not_allowed("POST"));
                }
                let root = first.as_deref() == Some(".search");
                let body = read_json(req, cfg).await?;
                let search = SearchParams::from_body(&body)?;
                match self.directory.groups() {
                    Some(store) if root => self.search_all(store, &search, &base, cfg).await,
                    _ => self.list(&search, &base, cfg).await,
                }
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
                        outcome.attributes = audit::body_attributes(&body);
                        self.put(&id, &headers, body, &base, &projection).await
                    }
                    Method::PATCH => {
                        outcome.op = "patch";
                        let projection = QueryParams::parse(req.uri().query())
                            .into_search()
                            .projection()?;
                        let headers = req.headers().clone();
                        let body = read_json(req, cfg).await?;
                        outcome.attributes = audit::patch_attributes(&body);
                        self.patch(&id, &headers, body, &base, &projection).await
                    }
                    Method::DELETE => {
                        outcome.op = "delete";
                        self.delete(&id, req.headers()).await
                    }
                    _ => Err(method_not_allowed("GET, PUT, PATCH, DELETE")),
                }
            }
            (Some("groups"), rest) => self.route_groups(req, rest, &base, cfg, outcome).await,
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
                    &discovery::list_of(discovery::resource_types(&base, self.has_groups())),
                ))
            }
            (Some("resourcetypes"), [id]) => {
                outcome.op = "discovery";
                only_get(&method)?;
                discovery::resource_types(&base, self.has_groups())
                    .into_iter()
                    .find(|t| t["id"].as_str().is_some_and(|t| t.eq_ignore_ascii_case(id)))
                    .map(|t| json_response(StatusCode::OK, &t))
                    .ok_or_else(|| ScimError::not_found(format!("No resource type {id}")))
            }
            (Some("schemas"), []) => {
                outcome.op = "discovery";
                only_get(&method)?;
                let schema = self.schema();
                Ok(json_response(
                    StatusCode::OK,
                    &discovery::list_of(discovery::schemas(&base, &schema.1, self.has_groups())),
                ))
            }
            (Some("schemas"), [id]) => {
                outcome.op = "discovery";
                only_get(&method)?;
                let schema = self.schema();
                discovery::schemas(&base, &schema.1, self.has_groups())
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
        let mut resp = render_user(StatusCode::CREATED, &created, schema, base, projection);
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
        let mut user = self.fetch(id).await?;
        if let (Some(v), Some(inm)) = (user.version(), headers.get(http::header::IF_NONE_MATCH)) {
            if etag_matches(inm, v) {
                let mut resp = Response::new(empty());
                *resp.status_mut() = StatusCode::NOT_MODIFIED;
                set_etag(resp.headers_mut(), v);
                return Ok(resp);
            }
        }
        if projection.includes(&schema.1, "groups") {
            self.add_user_groups(&mut user, base).await?;
        }
        Ok(render_user(
            StatusCode::OK,
            &user,
            &schema.1,
            base,
            &projection,
        ))
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
        check_if_match(headers, current.version())?;
        let stored = self
            .directory
            .replace(id, User::from_json(new), current.version())
            .await
            .map_err(backend_error)?;
        Ok(render_user(
            StatusCode::OK,
            &stored,
            schema,
            base,
            projection,
        ))
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
            check_if_match(headers, current.version())?;
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
                    return Ok(render_user(
                        StatusCode::OK,
                        &stored,
                        schema,
                        base,
                        projection,
                    ))
                }
                Err(DirectoryError::PreconditionFailed) => {
                    last = DirectoryError::PreconditionFailed.into();
                }
                Err(e) => return Err(backend_error(e)),
            }
        }
        Err(last)
    }

    async fn delete(&self, id: &str, headers: &HeaderMap) -> Result<Response<BoxBody>, ScimError> {
        if headers.contains_key(http::header::IF_MATCH) {
            let current = self.fetch(id).await?;
            check_if_match(headers, current.version())?;
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
        let query = search.list_query(cfg, ResourceSchema::full())?;
        let count = query.count;
        let start_index = query.start_index;
        let mut page = self.directory.find(&query).await.map_err(backend_error)?;
        // `groups` costs the backend one call per user, so a list carries it only when
        // `attributes` names it; single-user reads carry it by default.
        if projection.asks_for("groups") && projection.includes(&schema.1, "groups") {
            for user in page.resources.iter_mut().take(count) {
                self.add_user_groups(user, base).await?;
            }
        }
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

    /// A root-level search: the matching users, then the matching groups, as one list paged
    /// across both (`totalResults` counts both).
    async fn search_all(
        &self,
        store: &dyn GroupStore,
        search: &SearchParams,
        base: &str,
        cfg: &ScimConfig,
    ) -> Result<Response<BoxBody>, ScimError> {
        let schema = self.schema();
        let projection = search.projection()?;
        let query = search.list_query(
            cfg,
            &EitherSchema(ResourceSchema::full(), ResourceSchema::group()),
        )?;
        let users = self.directory.find(&query).await.map_err(backend_error)?;
        let mut resources: Vec<Value> = users
            .resources
            .iter()
            .take(query.count)
            .map(|u| Value::Object(render_json(u, &schema.1, base, &projection)))
            .collect();
        // Groups continue where users end: `startIndex` past the users is an index into the
        // groups, and the page takes what room the users left.
        let group_query = ListQuery {
            start_index: query.start_index.saturating_sub(users.total).max(1),
            count: query.count - resources.len(),
            ..query.clone()
        };
        let groups = store
            .find_groups(&group_query, wants_members(&projection))
            .await
            .map_err(backend_error)?;
        resources.extend(
            groups
                .resources
                .into_iter()
                .take(group_query.count)
                .map(|g| Value::Object(render_group_json(g, base, &projection))),
        );
        let body = json!({
            "schemas": [LIST_RESPONSE],
            "totalResults": users.total + groups.total,
            "startIndex": query.start_index,
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
}

pub(super) fn method_not_allowed(allow: &'static str) -> ScimError {
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
