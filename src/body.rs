//! The response body type shared by every layer that answers HTTP requests.

use bytes::Bytes;
use http_body_util::{combinators::BoxBody as HttpBoxBody, BodyExt, Empty, Full};

/// Error type carried by boxed bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A boxed, streaming response (or request) body.
pub type BoxBody = HttpBoxBody<Bytes, BoxError>;

/// A body holding `bytes` in one frame.
pub fn full(bytes: impl Into<Bytes>) -> BoxBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// A body with no content.
pub fn empty() -> BoxBody {
    Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed()
}

/// A short `text/plain` answer produced by the proxy itself (a refusal, a 404).
pub fn plain_text(status: http::StatusCode, text: impl Into<Bytes>) -> http::Response<BoxBody> {
    let mut response = http::Response::new(full(text));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
