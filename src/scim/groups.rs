//! `/Groups` (RFC 7643 §4.2): one handler per operation, over the directory's
//! [`GroupStore`], and the read-only `groups` of a User.
//!
//! Membership is the expensive part of a group, so every read asks the store for `members`
//! only when the response carries them (`excludedAttributes=members`, `attributes=displayName`
//! and lists that exclude them cost no membership listing). Writes read the group with its
//! members, apply the PUT or PATCH with the same normalisation and PATCH engine as users
//! (driven by the Group schema), and hand the store both states so it applies the difference.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use serde_json::{json, Map, Value};

use super::error::ScimError;
use super::projection::Projection;
use super::request::{check_if_match, etag_matches, read_json, QueryParams, SearchParams};
use super::response::{
    encode_id, encode_id_parts, json_response, render_resource, set_etag, LIST_RESPONSE,
};
use super::routes::method_not_allowed;
use super::{audit, backend_error, normalize, patch, Outcome, ScimService};
use crate::body::{empty, BoxBody, BoxError};
use crate::config::ScimConfig;
use crate::directory::schema::ResourceSchema;
use crate::directory::{DirectoryError, Group, GroupStore, User};

impl ScimService {
    /// Whether the backend has groups (drives `/Groups` and discovery).
    pub(super) fn has_groups(&self) -> bool {
        self.directory.groups().is_some()
    }

    /// Routes a request below `/Groups`; `rest` are the path segments after it.
    pub(super) async fn route_groups<B>(
        &self,
        req: Request<B>,
        rest: &[&str],
        base: &str,
        cfg: &ScimConfig,
        outcome: &mut Outcome,
    ) -> Result<Response<BoxBody>, ScimError>
    where
        B: http_body::Body<Data = Bytes> + Send,
        B::Error: Into<BoxError>,
    {
        let Some(store) = self.directory.groups() else {
            outcome.op = "groups_unsupported";
            return Err(ScimError::not_found(
                "This service provider offers no groups",
            ));
        };
        let method = req.method().clone();
        let search = || QueryParams::parse(req.uri().query()).into_search();
        match rest {
            [] => match method {
                Method::GET => {
                    outcome.op = "group_list";
                    list_groups(store, &search(), base, cfg).await
                }
                Method::POST => {
                    outcome.op = "group_create";
                    let projection = search().projection()?;
                    let body = read_json(req, cfg).await?;
                    outcome.attributes = audit::body_attributes(&body);
                    create_group(store, body, base, &projection, outcome).await
                }
                _ => Err(method_not_allowed("GET, POST")),
            },
            [".search"] => {
                outcome.op = "group_search";
                if method != Method::POST {
                    return Err(method_not_allowed("POST"));
                }
                let body = read_json(req, cfg).await?;
                list_groups(store, &SearchParams::from_body(&body)?, base, cfg).await
            }
            [id] => {
                // Percent-decoded once by the router, as for users.
                let id = (*id).to_owned();
                outcome.id = Some(id.clone());
                let projection = search().projection()?;
                let headers = req.headers().clone();
                match method {
                    Method::GET => {
                        outcome.op = "group_get";
                        get_group(store, &id, &headers, base, &projection).await
                    }
                    Method::PUT => {
                        outcome.op = "group_replace";
                        let body = read_json(req, cfg).await?;
                        outcome.attributes = audit::body_attributes(&body);
                        put_group(store, &id, &headers, body, base, &projection).await
                    }
                    Method::PATCH => {
                        outcome.op = "group_patch";
                        let body = read_json(req, cfg).await?;
                        outcome.attributes = audit::patch_attributes(&body);
                        patch_group(store, &id, &headers, body, base, &projection).await
                    }
                    Method::DELETE => {
                        outcome.op = "group_delete";
                        delete_group(store, &id, &headers).await
                    }
                    _ => Err(method_not_allowed("GET, PUT, PATCH, DELETE")),
                }
            }
            _ => {
                outcome.op = "not_found";
                Err(ScimError::not_found("No SCIM endpoint at this path"))
            }
        }
    }

    /// Sets the read-only `groups` of `user` from the store (omitted when it is in none).
    /// One store call: single-user reads only, and lists that ask for `groups` by name.
    pub(super) async fn add_user_groups(
        &self,
        user: &mut User,
        base: &str,
    ) -> Result<(), ScimError> {
        let (Some(store), Some(id)) = (self.directory.groups(), user.id()) else {
            return Ok(());
        };
        let refs = store.groups_of(id).await.map_err(backend_error)?;
        let json = user.as_json_mut();
        if refs.is_empty() {
            json.remove("groups");
            return Ok(());
        }
        let groups = refs
            .into_iter()
            .map(|g| {
                let mut m = Map::new();
                m.insert(
                    "$ref".into(),
                    json!(format!("{base}/Groups/{}", encode_id(&g.value))),
                );
                if let Some(display) = g.display {
                    m.insert("display".into(), json!(display));
                }
                m.insert("type".into(), json!("direct"));
                m.insert("value".into(), json!(g.value));
                Value::Object(m)
            })
            .collect();
        json.insert("groups".into(), Value::Array(groups));
        Ok(())
    }
}

fn schema() -> &'static ResourceSchema {
    ResourceSchema::group()
}

/// Whether the response carries `members`, so whether the store must read them.
pub(super) fn wants_members(projection: &Projection) -> bool {
    projection.includes(schema(), "members")
}

/// A group as sent to clients: each member's `$ref` (`{base}/Users/{id}`) and `type`
/// generated, then `meta` completed and projected as for users.
pub(super) fn render_group_json(
    group: Group,
    base: &str,
    projection: &Projection,
) -> Map<String, Value> {
    // By value: a group may carry 20,000 members, which are moved, not copied.
    let mut json = group.into_json();
    if let Some(Value::Array(members)) = json.get_mut("members") {
        let users = format!("{base}/Users/");
        for member in members.iter_mut() {
            let Value::Object(m) = member else { continue };
            if let Some(id) = m.get("value").and_then(Value::as_str) {
                // One allocation per member.
                let mut reference = String::with_capacity(users.len() + id.len() + 8);
                reference.push_str(&users);
                reference.extend(encode_id_parts(id));
                m.insert("$ref".into(), Value::String(reference));
            }
            m.entry("type").or_insert_with(|| json!("User"));
        }
    }
    render_resource(json, schema(), base, projection)
}

fn render_group(
    status: StatusCode,
    group: Group,
    base: &str,
    projection: &Projection,
) -> Response<BoxBody> {
    let version = group.version().map(str::to_owned);
    let body = Value::Object(render_group_json(group, base, projection));
    let mut resp = json_response(status, &body);
    if let Some(v) = version {
        set_etag(resp.headers_mut(), &v);
    }
    resp
}

async fn fetch_group(
    store: &dyn GroupStore,
    id: &str,
    with_members: bool,
) -> Result<Group, ScimError> {
    store
        .get_group(id, with_members)
        .await
        .map_err(backend_error)?
        .ok_or_else(|| ScimError::not_found(format!("Group {id} not found")))
}

/// Normalises and validates a POST or PUT body as a canonical Group.
fn group_from_body(body: &Value) -> Result<Map<String, Value>, ScimError> {
    let mut group = normalize::normalize_resource(schema(), body)?;
    drop_member_refs(&mut group);
    normalize::validate_group(&group)?;
    Ok(group)
}

/// Removes members' `$ref`: `value` names the member, and `$ref` is generated on output.
fn drop_member_refs(group: &mut Map<String, Value>) {
    if let Some(Value::Array(members)) = group.get_mut("members") {
        for member in members.iter_mut() {
            if let Value::Object(m) = member {
                m.remove("$ref");
            }
        }
    }
}

async fn create_group(
    store: &dyn GroupStore,
    body: Value,
    base: &str,
    projection: &Projection,
    outcome: &mut Outcome,
) -> Result<Response<BoxBody>, ScimError> {
    let group = group_from_body(&body)?;
    let created = store
        .create_group(Group::from_json(group))
        .await
        .map_err(backend_error)?;
    outcome.id = created.id().map(str::to_owned);
    let location = created
        .id()
        .map(|id| format!("{base}/Groups/{}", encode_id(id)))
        .and_then(|l| HeaderValue::from_str(&l).ok());
    let mut resp = render_group(StatusCode::CREATED, created, base, projection);
    if let Some(loc) = location {
        resp.headers_mut().insert(http::header::LOCATION, loc);
    }
    Ok(resp)
}

async fn get_group(
    store: &dyn GroupStore,
    id: &str,
    headers: &HeaderMap,
    base: &str,
    projection: &Projection,
) -> Result<Response<BoxBody>, ScimError> {
    let group = fetch_group(store, id, wants_members(projection)).await?;
    if let (Some(v), Some(inm)) = (group.version(), headers.get(http::header::IF_NONE_MATCH)) {
        if etag_matches(inm, v) {
            let mut resp = Response::new(empty());
            *resp.status_mut() = StatusCode::NOT_MODIFIED;
            set_etag(resp.headers_mut(), v);
            return Ok(resp);
        }
    }
    Ok(render_group(StatusCode::OK, group, base, projection))
}

async fn list_groups(
    store: &dyn GroupStore,
    search: &SearchParams,
    base: &str,
    cfg: &ScimConfig,
) -> Result<Response<BoxBody>, ScimError> {
    let projection = search.projection()?;
    let query = search.list_query(cfg, ResourceSchema::group())?;
    let page = store
        .find_groups(&query, wants_members(&projection))
        .await
        .map_err(backend_error)?;
    let resources: Vec<Value> = page
        .resources
        .into_iter()
        .take(query.count)
        .map(|g| Value::Object(render_group_json(g, base, &projection)))
        .collect();
    let body = json!({
        "schemas": [LIST_RESPONSE],
        "totalResults": page.total,
        "startIndex": query.start_index,
        "itemsPerPage": resources.len(),
        "Resources": resources,
    });
    Ok(json_response(StatusCode::OK, &body))
}

async fn put_group(
    store: &dyn GroupStore,
    id: &str,
    headers: &HeaderMap,
    body: Value,
    base: &str,
    projection: &Projection,
) -> Result<Response<BoxBody>, ScimError> {
    let mut new = group_from_body(&body)?;
    let current = fetch_group(store, id, true).await?;
    check_if_match(headers, current.version())?;
    new.insert("id".into(), json!(id));
    let stored = store
        .modify_group(id, &current, Group::from_json(new), current.version())
        .await
        .map_err(backend_error)?;
    Ok(render_group(StatusCode::OK, stored, base, projection))
}

async fn patch_group(
    store: &dyn GroupStore,
    id: &str,
    headers: &HeaderMap,
    body: Value,
    base: &str,
    projection: &Projection,
) -> Result<Response<BoxBody>, ScimError> {
    let ops = patch::parse_patch_request(&body)?;
    // As for users: without If-Match a lost race is retried on fresh data.
    let attempts = if headers.contains_key(http::header::IF_MATCH) {
        1
    } else {
        3
    };
    let mut last = ScimError::from(DirectoryError::PreconditionFailed);
    for _ in 0..attempts {
        let current = fetch_group(store, id, true).await?;
        check_if_match(headers, current.version())?;
        let mut new = patch::apply_patch(schema(), current.as_json(), &ops)?;
        drop_member_refs(&mut new);
        normalize::validate_group(&new)?;
        match store
            .modify_group(id, &current, Group::from_json(new), current.version())
            .await
        {
            Ok(stored) => return Ok(render_group(StatusCode::OK, stored, base, projection)),
            Err(DirectoryError::PreconditionFailed) => {
                last = DirectoryError::PreconditionFailed.into();
            }
            Err(e) => return Err(backend_error(e)),
        }
    }
    Err(last)
}

async fn delete_group(
    store: &dyn GroupStore,
    id: &str,
    headers: &HeaderMap,
) -> Result<Response<BoxBody>, ScimError> {
    if headers.contains_key(http::header::IF_MATCH) {
        let current = fetch_group(store, id, false).await?;
        check_if_match(headers, current.version())?;
    }
    store.delete_group(id).await.map_err(backend_error)?;
    let mut resp = Response::new(empty());
    *resp.status_mut() = StatusCode::NO_CONTENT;
    Ok(resp)
}

#[cfg(test)]
mod tests;
