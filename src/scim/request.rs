//! What a SCIM request carries besides its path: list parameters (query string or
//! `.search` body), the JSON body, `If-Match`/`If-None-Match`, and the public base URL.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, StatusCode};
use http_body_util::{BodyExt, Limited};
use serde_json::Value;

use super::error::{ScimError, ScimType};
use super::filter::{self, FilterLimits};
use super::projection::Projection;
use super::response::weak_etag;
use super::MOUNT_PATH;
use crate::body::BoxError;
use crate::config::ScimConfig;
use crate::directory::query::{check_filter, AttrPath, AttrTypes};
use crate::directory::{ListQuery, SortKey};

const SEARCH_REQUEST: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";

/// List parameters from a query string or a `.search` body.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct SearchParams {
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
    pub(super) fn from_body(body: &Value) -> Result<Self, ScimError> {
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

    pub(super) fn projection(&self) -> Result<Projection, ScimError> {
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

    /// The directory query these parameters ask for: the filter and `sortBy` parsed, `startIndex`
    /// at least 1, `count` defaulted and clamped by `cfg`.
    /// The filter is checked against `types` (the schema of the resource types searched).
    pub(super) fn list_query(
        &self,
        cfg: &ScimConfig,
        types: &dyn AttrTypes,
    ) -> Result<ListQuery, ScimError> {
        let filter = match self.filter.as_deref().map(str::trim) {
            None => None,
            // `filter=` would otherwise list everyone: a client that meant to filter and sent
            // nothing must hear about it (issue 11 §9).
            Some("") => {
                return Err(ScimError::bad_request(
                    ScimType::InvalidFilter,
                    "The filter is blank; omit the filter parameter to list every resource",
                ))
            }
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
                let mut parsed = filter::parse_filter(f, &limits).map_err(|e| {
                    ScimError::bad_request(ScimType::InvalidFilter, format!("Invalid filter {e}"))
                })?;
                check_filter(&mut parsed, types).map_err(|why| {
                    ScimError::bad_request(
                        ScimType::InvalidFilter,
                        format!("Invalid filter: {why}"),
                    )
                })?;
                Some(parsed)
            }
        };
        let sort = match self.sort_by.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(s) => Some(SortKey {
                path: filter::parse_attr_path(s)
                    .map_err(|e| ScimError::invalid_value(format!("Invalid sortBy {e}")))?,
                descending: match self
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
        let start_index = self.start_index.unwrap_or(1).max(1) as usize;
        let count = self
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
        Ok(query)
    }
}

pub(super) fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Query parameters; names are matched case-insensitively and unknown ones ignored.
pub(super) struct QueryParams(Vec<(String, String)>);

impl QueryParams {
    pub(super) fn parse(query: Option<&str>) -> Self {
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

    pub(super) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub(super) fn into_search(self) -> SearchParams {
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

/// How the client reached the proxy, as the server established it (the request extension
/// the server sets): the scheme `Location` and `meta.location` use when `scim.base_url` is
/// not configured. A request without one is taken as plain HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientScheme {
    /// TLS to the proxy, or `X-Forwarded-Proto: https` from a trusted peer.
    pub https: bool,
}

/// The service's public base URL for this request: `scim.base_url` when configured, else the
/// request's `Host` with the scheme the server established ([`ClientScheme`]); a client's own
/// `X-Forwarded-Proto` is never believed here.
pub(super) fn base_url<B>(req: &Request<B>, cfg: &ScimConfig) -> String {
    if let Some(base) = &cfg.base_url {
        return base.trim_end_matches('/').to_owned();
    }
    let headers = req.headers();
    let scheme = match req.extensions().get::<ClientScheme>() {
        Some(ClientScheme { https: true }) => "https".to_owned(),
        Some(ClientScheme { https: false }) => "http".to_owned(),
        None => req.uri().scheme_str().unwrap_or("http").to_owned(),
    };
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
pub(super) async fn read_json<B>(req: Request<B>, cfg: &ScimConfig) -> Result<Value, ScimError>
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
    let read = tokio::time::timeout(
        cfg.body_read_timeout,
        Limited::new(req.into_body(), cfg.max_body_bytes).collect(),
    )
    .await
    .map_err(|_| {
        ScimError::new(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "The request body did not arrive within {} s",
                cfg.body_read_timeout.as_secs()
            ),
        )
    })?;
    let bytes = match read {
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

/// Weak comparison of an `If-Match`/`If-None-Match` list against a version.
pub(super) fn etag_matches(header: &HeaderValue, version: &str) -> bool {
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

/// Checks `If-Match` against the current version of the resource (`None`: the backend keeps
/// no versions); 412 when it does not match.
pub(super) fn check_if_match(headers: &HeaderMap, current: Option<&str>) -> Result<(), ScimError> {
    let Some(h) = headers.get(http::header::IF_MATCH) else {
        return Ok(());
    };
    match current {
        Some(v) if etag_matches(h, v) => Ok(()),
        // A backend without versions: only `*` ("it exists") can match.
        None if h.to_str().is_ok_and(|h| h.trim() == "*") => Ok(()),
        _ => Err(ScimError::new(
            StatusCode::PRECONDITION_FAILED,
            "If-Match does not match the current version",
        )),
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
