//! What a SCIM response carries: the rendered resource (`meta` completed, projected), weak
//! `ETag`s, `Location`, and the JSON and error bodies.

use http::{HeaderMap, HeaderValue, Response, StatusCode};
use serde_json::{json, Map, Value};

use super::error::ScimError;
use super::normalize;
use super::projection::Projection;
use super::SCIM_CONTENT_TYPE;
use crate::body::{full, BoxBody};
use crate::directory::schema::{ResourceKind, ResourceSchema};
use crate::directory::User;

pub(super) const LIST_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";

/// A user resource as the answer, with its `ETag`.
pub(super) fn render_user(
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

/// The canonical user as sent to clients: `meta` completed, `password` dropped, projected.
pub(super) fn render_json(
    user: &User,
    schema: &ResourceSchema,
    base: &str,
    projection: &Projection,
) -> Map<String, Value> {
    render_resource(user.as_json().clone(), schema, base, projection)
}

/// A canonical resource of `schema`'s type as sent to clients: `schemas` and `meta`
/// (`resourceType`, `location`, weak `version`) completed, `password` dropped, projected.
pub(super) fn render_resource(
    mut json: Map<String, Value>,
    schema: &ResourceSchema,
    base: &str,
    projection: &Projection,
) -> Map<String, Value> {
    json.remove("password");
    normalize::finish(schema, &mut json);
    let kind = schema.kind;
    let location = json
        .get("id")
        .and_then(Value::as_str)
        .map(|id| format!("{base}/{}/{}", kind.endpoint(), encode_id(id)));
    let meta = json
        .entry("meta")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(meta) = meta {
        meta.insert("resourceType".into(), json!(kind.name()));
        if let Some(loc) = location {
            meta.insert("location".into(), json!(loc));
        }
        if let Some(v) = meta.get("version").and_then(Value::as_str).map(weak_etag) {
            meta.insert("version".into(), json!(v));
        }
    }
    // `schemas`, `id` first for readability.
    let mut ordered = Map::new();
    let name_key = match kind {
        ResourceKind::User => "userName",
        ResourceKind::Group => "displayName",
    };
    for key in ["schemas", "id", "externalId", name_key] {
        if let Some(v) = json.remove(key) {
            ordered.insert(key.to_owned(), v);
        }
    }
    ordered.extend(json);
    projection.apply(schema, ordered)
}

/// RFC 3986 unreserved characters stay as they are in a path segment.
const PATH_SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

pub(super) fn encode_id(id: &str) -> String {
    encode_id_parts(id).collect()
}

/// [`encode_id`] as pieces, to append to a string being built.
pub(super) fn encode_id_parts(id: &str) -> percent_encoding::PercentEncode<'_> {
    percent_encoding::utf8_percent_encode(id, PATH_SEGMENT)
}

pub(super) fn weak_etag(version: &str) -> String {
    if version.starts_with("W/") {
        version.to_owned()
    } else {
        format!("W/\"{version}\"")
    }
}

pub(super) fn set_etag(headers: &mut HeaderMap, version: &str) {
    if let Ok(v) = HeaderValue::from_str(&weak_etag(version)) {
        headers.insert(http::header::ETAG, v);
    }
}

pub(super) fn json_response(status: StatusCode, body: &Value) -> Response<BoxBody> {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut resp = Response::new(full(bytes));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(SCIM_CONTENT_TYPE),
    );
    resp
}

pub(super) fn error_response(e: &ScimError) -> Response<BoxBody> {
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
