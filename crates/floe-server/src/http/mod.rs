//! The HTTP listener: native JSON routes, the routes of the systems Floe replaces (byte for
//! byte), and the admin routes. docs/protocol.md lists every route with example bodies.

mod admin;
mod compat;
mod console;
mod listener;
mod native;
mod openapi;

pub(crate) use listener::accept_loop;

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{FromRequestParts, MatchedPath, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::issue::IssueError;
use crate::node::Node;
use crate::numbers::NumberError;
use crate::segment::SegmentError;

/// The router of one node, and the OpenAPI document of its routes.
pub(crate) fn router(node: Arc<Node>) -> Router {
    let (router, api) = routes(node.clone());
    // Serialised once per listener; a document that does not serialise is a bug caught by the
    // tests, never a failed start.
    let document: Arc<str> = api.to_json().unwrap_or_else(|_| "{}".into()).into();
    router
        .route(
            "/openapi.json",
            get(move || {
                let document = document.clone();
                async move {
                    (
                        [(header::CONTENT_TYPE, "application/json")],
                        document.to_string(),
                    )
                }
            }),
        )
        .route_layer(middleware::from_fn_with_state(node.clone(), track))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(node)
}

/// Every route but `/openapi.json`, and their description (from the handlers' attributes).
fn routes(node: Arc<Node>) -> (Router<Arc<Node>>, utoipa::openapi::OpenApi) {
    // Authorised (and the body bounded) before any handler, so before any body byte is read.
    let admin = OpenApiRouter::new()
        .routes(routes!(admin::get_level, admin::put_level))
        .routes(routes!(admin::list_tags, admin::create_tag))
        .routes(routes!(admin::set_step))
        .routes(routes!(admin::declare_number))
        .routes(routes!(admin::feather_level))
        .route_layer(middleware::from_fn_with_state(node.clone(), admin::gate));
    let native = OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(native::snowflake))
        .routes(routes!(native::segment))
        .routes(routes!(native::list_numbers))
        .routes(routes!(native::numbers))
        .routes(routes!(native::decode))
        .routes(routes!(native::info))
        .routes(routes!(native::healthz))
        .routes(routes!(native::readyz))
        .routes(routes!(native::metrics))
        .routes(routes!(console::rates))
        .routes(routes!(console::segments))
        .routes(routes!(console::cluster))
        .routes(routes!(console::root))
        .routes(routes!(console::console))
        .routes(routes!(console::page))
        .routes(routes!(console::script))
        .routes(routes!(console::style))
        .routes(routes!(console::icon))
        .merge(admin)
        .route_layer(middleware::from_fn(json_errors));
    // The originals registered plain handlers that answer every method, and keep their own
    // error shapes (Leaf's are plain text), so they get no JSON error mapping; `routes!` cannot
    // register `any`, so their description is listed in `openapi::ApiDoc`.
    let compat = OpenApiRouter::new()
        .route("/alloc", any(compat::alloc))
        .route("/health", any(compat::health))
        .route("/api/v1/id", any(compat::feather_id))
        .route("/api/v1/id/batch", any(compat::feather_batch))
        .route("/api/segment/get/{key}", any(compat::leaf_segment))
        .route("/api/snowflake/get/{key}", any(compat::leaf_snowflake))
        .route("/decodeSnowflakeId", any(compat::leaf_decode));
    native.merge(compat).split_for_parts()
}

/// Records latency and status per route pattern (not per concrete path, which would make one
/// time series per ID).
async fn track(State(node): State<Arc<Node>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let started = Instant::now();
    let response = next.run(req).await;
    node.metrics
        .http_request(route, response.status().as_u16(), started.elapsed());
    response
}

/// Largest error body of axum's own rejections that [`json_errors`] rewrites; theirs are one line.
const MAX_REJECTION_BODY: usize = 4096;

/// Rewrites any error response that is not JSON (axum's extractor rejections are plain text)
/// into the documented `{"error":{"code":…,"message":…}}` body, keeping the status and the
/// message, so a native or admin client parses every error the same way.
async fn json_errors(req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let code = match status {
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::REQUEST_TIMEOUT => "timeout",
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::TOO_MANY_REQUESTS => "over_limit",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        s if s.is_server_error() => "internal",
        _ => "bad_request",
    };
    let text = axum::body::to_bytes(response.into_body(), MAX_REJECTION_BODY)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let message = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_owned()
    } else {
        text
    };
    ApiError {
        status,
        code,
        message,
    }
    .into_response()
}

/// One path parameter as text; a parameter that is not UTF-8 once percent-decoded
/// (`/v1/segment/%FF`) is a JSON 400 naming it, not axum's plain-text rejection.
pub(crate) struct PathParam(pub(crate) String);

impl<S: Send + Sync> FromRequestParts<S> for PathParam {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<String>::from_request_parts(parts, state).await {
            Ok(Path(text)) => Ok(PathParam(text)),
            Err(e) => Err(ApiError::bad_request(format!(
                "the path {:?} has a bad parameter: {} (parameters must be UTF-8 once percent-decoded)",
                parts.uri.path(),
                e.body_text()
            ))),
        }
    }
}

async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::not_found(&method, &uri)
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError {
        status: StatusCode::METHOD_NOT_ALLOWED,
        code: "method_not_allowed",
        message: format!(
            "{} does not accept {method}; see docs/protocol.md",
            uri.path()
        ),
    }
}

/// The native error shape: `{"error":{"code":…,"message":…}}` with a matching status.
#[derive(Debug)]
pub(crate) struct ApiError {
    /// HTTP status.
    status: StatusCode,
    /// Stable machine-readable code.
    code: &'static str,
    /// Names the parameter and the allowed range, or what to do.
    message: String,
}

impl From<SegmentError> for ApiError {
    /// One mapping of segment errors for every native and admin route.
    fn from(e: SegmentError) -> ApiError {
        let (status, code) = match &e {
            SegmentError::UnknownTag(_) => (StatusCode::NOT_FOUND, "unknown_tag"),
            SegmentError::TagExists(_) => (StatusCode::CONFLICT, "tag_exists"),
            SegmentError::Invalid(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            // A state of the tag, not of the node: another node cannot serve it either.
            SegmentError::Exhausted(_) => (StatusCode::CONFLICT, "exhausted"),
            SegmentError::NotConfigured
            | SegmentError::Unavailable { .. }
            | SegmentError::Store(_)
            | SegmentError::Closed => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        };
        ApiError {
            status,
            code,
            message: e.to_string(),
        }
    }
}

impl From<NumberError> for ApiError {
    /// One mapping of number errors for every native and admin route.
    fn from(e: NumberError) -> ApiError {
        let (status, code) = match &e {
            NumberError::Segment(inner) => return ApiError::from(inner.clone()),
            NumberError::NotConfigured => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            NumberError::UnknownName(_) => (StatusCode::NOT_FOUND, "unknown_name"),
            NumberError::NameExists(_) => (StatusCode::CONFLICT, "name_exists"),
            NumberError::Invalid(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            // The period's state, the same on every node.
            NumberError::Exhausted(_) => (StatusCode::CONFLICT, "exhausted"),
            NumberError::Definition(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        ApiError {
            status,
            code,
            message: e.to_string(),
        }
    }
}

impl ApiError {
    /// 400: a parameter is missing or out of range.
    pub(crate) fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code: "bad_request",
            message: message.into(),
        }
    }

    /// 404 for an unknown route (and for admin routes while admin is disabled).
    pub(crate) fn not_found(method: &Method, uri: &Uri) -> ApiError {
        ApiError {
            status: StatusCode::NOT_FOUND,
            code: "not_found",
            message: format!("no route for {method} {}; see docs/protocol.md", uri.path()),
        }
    }

    /// 503: retry later or on another node.
    pub(crate) fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "unavailable",
            message: message.into(),
        }
    }

    /// 500: a bug.
    pub(crate) fn internal(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "internal",
            message: message.into(),
        }
    }
}

impl From<IssueError> for ApiError {
    fn from(e: IssueError) -> ApiError {
        match e {
            IssueError::Unavailable(m) => ApiError::unavailable(m),
            IssueError::Internal(m) => ApiError::internal(m),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = openapi::ErrorBody {
            error: openapi::ErrorDetail {
                code: self.code.to_owned(),
                message: self.message,
            },
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"floe admin\""),
            );
        }
        response
    }
}

/// Query parameters in order; the first occurrence of a name wins.
type Params = axum::extract::Query<Vec<(String, String)>>;

/// The first value of `name`.
fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Parses a `count` parameter; `default` applies when it is absent.
fn parse_count(raw: Option<&str>, max: u32, default: Option<u32>) -> Result<u32, String> {
    match raw {
        None => default.ok_or_else(|| format!("count is required: an integer in 1..={max}")),
        Some(text) => match text.parse::<u32>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(format!(
                "count must be an integer in 1..={max}, got {text:?}"
            )),
        },
    }
}

/// A JSON body from a value that always serialises.
fn json_response(status: StatusCode, body: &serde_json::Value) -> Response {
    (status, axum::Json(body)).into_response()
}

/// A `text/plain` body, for Leaf's routes.
fn text_response(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::parse_count;

    #[test]
    fn count_parameter_names_range_and_value() {
        assert_eq!(parse_count(None, 10, Some(1)), Ok(1));
        assert_eq!(parse_count(Some("10"), 10, None), Ok(10));
        for bad in ["0", "-1", "abc", "11", "", "1.5", "99999999999"] {
            let e = parse_count(Some(bad), 10, Some(1)).unwrap_err();
            assert_eq!(
                e,
                format!("count must be an integer in 1..=10, got {bad:?}")
            );
        }
        assert_eq!(
            parse_count(None, 10, None).unwrap_err(),
            "count is required: an integer in 1..=10"
        );
    }
}
