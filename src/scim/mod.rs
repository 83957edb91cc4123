//! The SCIM 2.0 protocol layer (RFC 7643/7644), written against the `directory` trait.

pub mod filter;
mod filter_shim;
pub mod list;
pub mod schema;

use bytes::Bytes;
use http::{Request, Response, StatusCode};

use crate::body::{full, BoxBody, BoxError};
use crate::config::ScimConfig;

/// The SCIM service provider mounted at `/scim/v2`.
///
/// INTERFACE STUB: `new` will take the directory backend; `handle` answers 501 until the
/// engine lands.
#[derive(Default)]
pub struct ScimService {}

impl ScimService {
    /// Answers one SCIM request. `sub_path` is the normalised path below `/scim/v2`
    /// (`""`, `/Users`, `/Users/42`); `cfg` is the configuration snapshot of this request.
    pub async fn handle<B>(
        &self,
        _req: Request<B>,
        _sub_path: &str,
        _cfg: &ScimConfig,
    ) -> Response<BoxBody>
    where
        B: http_body::Body<Data = Bytes> + Send,
        B::Error: Into<BoxError>,
    {
        let body = r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:Error"],"status":"501","detail":"SCIM is not implemented yet"}"#;
        let mut resp = Response::new(full(body));
        *resp.status_mut() = StatusCode::NOT_IMPLEMENTED;
        resp.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/scim+json"),
        );
        resp
    }
}
