//! Admin routes, behind `Authorization: Bearer <server.admin_token>`.
//!
//! Without a configured token the admin routes do not exist: they answer 404 like any unknown
//! route, so an unconfigured node exposes nothing. A missing or wrong token is 401.
//!
//! [`gate`] runs before every admin handler and decides before a single body byte is read: an
//! unauthorised client cannot make the node buffer anything. Authorised bodies are bounded in
//! size ([`MAX_BODY`], 413) and in time (`server.http_body_timeout`, 408).

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use floe_core::numbers::{Reset, Zone};
use floe_store::segment::SequenceRow;
use utoipa::ToSchema;

use super::openapi::ErrorBody;
use super::{param, ApiError, Params, PathParam};
use crate::config::{LogLevel, LOG_LEVELS};
use crate::node::Node;
use crate::segment::TagView;
use floe_store::segment::TagRow;

/// Largest admin request body: the biggest real one (a tag with start and step) is under 200
/// bytes, and an authorised client still must not make the node hold megabytes.
pub(super) const MAX_BODY: usize = 64 * 1024;

/// Compares in time independent of where the first difference is, so the token cannot be
/// guessed byte by byte from response times.
fn same(a: &[u8], b: &[u8]) -> bool {
    bool::from(a.ct_eq(b))
}

/// The credentials of `Authorization: Bearer <token>`; the scheme is case-insensitive
/// (RFC 7235 §2.1), so `bearer` and `BEARER` work too.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, credentials) = value.trim_start().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| credentials.trim())
}

/// Checks the bearer token: 404 when admin is disabled, 401 when the token is missing or wrong.
fn authorize(node: &Node, headers: &HeaderMap, method: &Method, uri: &Uri) -> Result<(), ApiError> {
    let Some(token) = node.config.server.admin_token.as_deref() else {
        return Err(ApiError::not_found(method, uri));
    };
    match bearer(headers) {
        Some(g) if same(g.as_bytes(), token.as_bytes()) => Ok(()),
        Some(_) => Err(unauthorized("the bearer token is wrong")),
        None => Err(unauthorized(
            "admin routes need the header `Authorization: Bearer <server.admin_token>`",
        )),
    }
}

/// Authorises an admin request, then reads its body within [`MAX_BODY`] and
/// `server.http_body_timeout`, and hands the handler the buffered body.
pub(super) async fn gate(State(node): State<Arc<Node>>, req: Request, next: Next) -> Response {
    if let Err(e) = authorize(&node, req.headers(), req.method(), req.uri()) {
        return e.into_response();
    }
    let (parts, body) = req.into_parts();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return too_large(declared);
    }
    let timeout = node.config.server.http.body_timeout;
    let collected = tokio::time::timeout(timeout, Limited::new(body, MAX_BODY).collect()).await;
    let bytes = match collected {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => return too_large(None),
        Ok(Err(e)) => {
            return ApiError::bad_request(format!("the request body could not be read: {e}"))
                .into_response()
        }
        Err(_) => {
            let mut response = ApiError {
                status: StatusCode::REQUEST_TIMEOUT,
                code: "timeout",
                message: format!(
                    "the request body did not arrive within server.http_body_timeout ({})",
                    humantime::format_duration(timeout)
                ),
            }
            .into_response();
            // The rest of the body may still be coming: this connection cannot carry another
            // request.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            return response;
        }
    };
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// 413 naming the limit (and the declared length, when the client sent one).
fn too_large(declared: Option<u64>) -> Response {
    let given = declared.map_or_else(String::new, |n| format!(" (Content-Length: {n})"));
    ApiError {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        code: "too_large",
        message: format!("admin request bodies are limited to {MAX_BODY} bytes{given}"),
    }
    .into_response()
}

fn unauthorized(message: &str) -> ApiError {
    ApiError {
        status: StatusCode::UNAUTHORIZED,
        code: "unauthorized",
        message: message.into(),
    }
}

fn parse_level(text: &str) -> Result<LogLevel, String> {
    text.parse()
        .map_err(|_| format!("level must be one of {LOG_LEVELS}, got {text:?}"))
}

/// Sets the level, logging who changed it from what, so the change itself is on record.
fn apply(node: &Node, level: LogLevel) -> Result<(), ApiError> {
    let before = node.log.level();
    node.log.set_level(level).map_err(ApiError::internal)?;
    tracing::warn!("log level changed from {before} to {level} through the admin API");
    Ok(())
}

/// `{"level":"info"}`: the level in force, and the body of `PUT /admin/log-level`.
#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct LevelBody {
    /// One of trace, debug, info, warn, error.
    #[schema(pattern = "^(trace|debug|info|warn|error)$")]
    level: String,
}

/// `GET /admin/log-level` → `{"level":"info"}`.
#[utoipa::path(
    get,
    path = "/admin/log-level",
    tag = "admin",
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The level in force", body = LevelBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 404, description = "Admin is disabled (no server.admin_token)", body = ErrorBody),
    )
)]
pub(super) async fn get_level(State(node): State<Arc<Node>>) -> Result<Response, ApiError> {
    Ok(axum::Json(LevelBody {
        level: node.log.level().to_string(),
    })
    .into_response())
}

/// `PUT /admin/log-level` with `{"level":"debug"}` or `?level=debug` → `{"level":"debug"}`.
#[utoipa::path(
    put,
    path = "/admin/log-level",
    tag = "admin",
    security(("admin_token" = [])),
    params(("level" = Option<String>, Query, description = "The new level, instead of a body")),
    request_body(content = Option<LevelBody>, description = "The new level (or ?level=)"),
    responses(
        (status = 200, description = "The level now in force", body = LevelBody),
        (status = 400, description = "A bad or missing level", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 404, description = "Admin is disabled", body = ErrorBody),
        (status = 408, description = "The body did not arrive within server.http_body_timeout", body = ErrorBody),
        (status = 413, description = "A body over 64 KiB", body = ErrorBody),
    )
)]
pub(super) async fn put_level(
    State(node): State<Arc<Node>>,
    params: Params,
    body: Bytes,
) -> Result<Response, ApiError> {
    let text = match param(&params, "level") {
        Some(t) => t.to_owned(),
        None if body.iter().all(u8::is_ascii_whitespace) => {
            return Err(ApiError::bad_request(format!(
                "level is required (a JSON body {{\"level\":\"debug\"}} or ?level=): one of {LOG_LEVELS}"
            )))
        }
        None => {
            serde_json::from_slice::<LevelBody>(&body)
                .map_err(|e| {
                    ApiError::bad_request(format!(
                        "the body must be JSON {{\"level\":\"debug\"}}: {e}"
                    ))
                })?
                .level
        }
    };
    let level = parse_level(&text).map_err(ApiError::bad_request)?;
    apply(&node, level)?;
    Ok(axum::Json(LevelBody {
        level: level.to_string(),
    })
    .into_response())
}

/// FeatherID's body shape for its log-level route.
#[derive(Serialize, ToSchema)]
pub(super) struct FeatherLevel {
    /// 0 success, 1 bad level.
    code: i32,
    /// "success" or the error.
    msg: String,
    /// The level now in force, `null` on error.
    data: Option<String>,
}

/// FeatherID's `GET|POST /api/v1/log/level?level=L`; without `level` it reports the current one.
#[utoipa::path(
    method(get, post),
    path = "/api/v1/log/level",
    tag = "admin",
    security(("admin_token" = [])),
    params(("level" = Option<String>, Query, description = "The new level; without it, the current one is reported")),
    responses(
        (status = 200, description = "code 0 and the level in force", body = FeatherLevel),
        (status = 400, description = "code 1: a bad level", body = FeatherLevel),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 404, description = "Admin is disabled", body = ErrorBody),
    )
)]
pub(super) async fn feather_level(
    State(node): State<Arc<Node>>,
    params: Params,
) -> Result<Response, ApiError> {
    if let Some(text) = param(&params, "level") {
        match parse_level(text) {
            Ok(level) => apply(&node, level)?,
            Err(msg) => {
                return Ok((
                    StatusCode::BAD_REQUEST,
                    axum::Json(FeatherLevel {
                        code: 1,
                        msg,
                        data: None,
                    }),
                )
                    .into_response())
            }
        }
    }
    Ok(axum::Json(FeatherLevel {
        code: 0,
        msg: "success".into(),
        data: Some(node.log.level().to_string()),
    })
    .into_response())
}

/// Parses a JSON body, naming the expected shape on error.
fn body<T: serde::de::DeserializeOwned>(bytes: &Bytes, shape: &str) -> Result<T, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("the body must be JSON {shape}: {e}")))
}

/// `{"tags":[…]}`.
#[derive(Serialize, ToSchema)]
pub(super) struct TagsBody {
    /// Every row of the segment table, with this node's buffer.
    tags: Vec<TagView>,
}

/// `GET /admin/tags` → `{"tags":[{"tag","max_id","step","buffer":{…}|null}]}`.
#[utoipa::path(
    get,
    path = "/admin/tags",
    tag = "admin",
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "Every tag", body = TagsBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 404, description = "Admin is disabled", body = ErrorBody),
        (status = 503, description = "The store is down, or segment mode is off", body = ErrorBody),
    )
)]
pub(super) async fn list_tags(State(node): State<Arc<Node>>) -> Result<Response, ApiError> {
    let tags = node.segments()?.tags().await?;
    Ok(axum::Json(TagsBody { tags }).into_response())
}

/// Body of `POST /admin/tags`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateTag {
    /// The new tag: 1..=128 bytes, no control characters.
    tag: String,
    /// Its first ID (default 1).
    #[schema(minimum = 1)]
    start: Option<u64>,
    /// IDs per claim (default `segment.default_step`).
    #[schema(minimum = 1)]
    step: Option<u64>,
}

/// `POST /admin/tags` with `{"tag":"orders","start":1000,"step":2000}` → 201 and the row.
#[utoipa::path(
    post,
    path = "/admin/tags",
    tag = "admin",
    security(("admin_token" = [])),
    request_body = CreateTag,
    responses(
        (status = 201, description = "The new row", body = TagRow),
        (status = 400, description = "A bad body, tag, start or step", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 404, description = "Admin is disabled", body = ErrorBody),
        (status = 408, description = "The body did not arrive in time", body = ErrorBody),
        (status = 409, description = "tag_exists", body = ErrorBody),
        (status = 413, description = "A body over 64 KiB", body = ErrorBody),
        (status = 503, description = "The store is down, or segment mode is off", body = ErrorBody),
    )
)]
pub(super) async fn create_tag(
    State(node): State<Arc<Node>>,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    let req: CreateTag = body(&bytes, r#"{"tag":"orders","start":1,"step":1000}"#)?;
    let default_step = node
        .config
        .segment
        .as_ref()
        .map_or(1000, |s| s.service.default_step);
    let row = node
        .segments()?
        .create(
            &req.tag,
            req.start.unwrap_or(1),
            req.step.unwrap_or(default_step),
        )
        .await?;
    tracing::info!(tag = %row.tag, start = row.max_id, step = row.step, "tag created through the admin API");
    Ok((StatusCode::CREATED, axum::Json(row)).into_response())
}

/// Body of `PUT /admin/tags/{tag}`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct SetStep {
    /// The new step, IDs per claim.
    #[schema(minimum = 1)]
    step: u64,
}

/// `PUT /admin/tags/{tag}` with `{"step":5000}` → the row.
#[utoipa::path(
    put,
    path = "/admin/tags/{tag}",
    tag = "admin",
    security(("admin_token" = [])),
    params(("tag" = String, Path, description = "The tag")),
    request_body = SetStep,
    responses(
        (status = 200, description = "The row", body = TagRow),
        (status = 400, description = "A bad body, tag or step", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 404, description = "unknown_tag, or admin is disabled", body = ErrorBody),
        (status = 408, description = "The body did not arrive in time", body = ErrorBody),
        (status = 413, description = "A body over 64 KiB", body = ErrorBody),
        (status = 503, description = "The store is down, or segment mode is off", body = ErrorBody),
    )
)]
pub(super) async fn set_step(
    State(node): State<Arc<Node>>,
    PathParam(tag): PathParam,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    let req: SetStep = body(&bytes, r#"{"step":5000}"#)?;
    let row = node.segments()?.set_step(&tag, req.step).await?;
    tracing::info!(tag = %row.tag, step = row.step, "step changed through the admin API");
    Ok(axum::Json(row).into_response())
}

/// Body of `POST /admin/numbers`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct DeclareNumber {
    /// The sequence's name.
    name: String,
    /// Its format, e.g. `ORD-{date:%Y%m%d}-{seq:06}`.
    format: String,
    /// `never` (default), `year`, `month` or `day`.
    reset: Option<String>,
    /// IANA name or fixed offset (default `UTC`).
    time_zone: Option<String>,
    /// First value of each period (default 1).
    start: Option<u64>,
    /// Values claimed per segment (default `segment.default_step`).
    step: Option<u64>,
}

/// `POST /admin/numbers` with `{"name":"order_no","format":"ORD-{date:%Y%m%d}-{seq:06}",
/// "reset":"day","time_zone":"Asia/Shanghai"}` → 201 and the stored definition.
#[utoipa::path(
    post,
    path = "/admin/numbers",
    tag = "admin",
    security(("admin_token" = [])),
    request_body = DeclareNumber,
    responses(
        (status = 201, description = "The stored definition", body = SequenceRow),
        (status = 400, description = "A definition that does not validate, naming the field", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 404, description = "Admin is disabled", body = ErrorBody),
        (status = 408, description = "The body did not arrive in time", body = ErrorBody),
        (status = 409, description = "name_exists", body = ErrorBody),
        (status = 413, description = "A body over 64 KiB", body = ErrorBody),
        (status = 503, description = "The store is down, or segment mode is off", body = ErrorBody),
    )
)]
pub(super) async fn declare_number(
    State(node): State<Arc<Node>>,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    let req: DeclareNumber = body(
        &bytes,
        r#"{"name":"order_no","format":"ORD-{date:%Y%m%d}-{seq:06}","reset":"day","time_zone":"Asia/Shanghai","start":1,"step":1000}"#,
    )?;
    let default_step = node
        .config
        .segment
        .as_ref()
        .map_or(1000, |s| s.service.default_step);
    let row = SequenceRow {
        name: req.name,
        format: req.format,
        reset: req.reset.unwrap_or_else(|| Reset::Never.to_string()),
        time_zone: req.time_zone.unwrap_or_else(|| Zone::default().to_string()),
        start: req.start.unwrap_or(1),
        step: req.step.unwrap_or(default_step),
    };
    let row = node.numbers()?.declare(row).await?;
    tracing::info!(name = %row.name, format = %row.format, reset = %row.reset, "number sequence declared through the admin API");
    Ok((StatusCode::CREATED, axum::Json(row)).into_response())
}

#[cfg(test)]
mod tests {
    use axum::http::{header, HeaderMap, HeaderValue};

    use super::{bearer, same};

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        let of = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(header::AUTHORIZATION, HeaderValue::from_static(v));
            bearer(&h).map(str::to_owned)
        };
        for v in ["Bearer tok", "bearer tok", "BEARER tok", "bEaReR  tok "] {
            assert_eq!(of(v).as_deref(), Some("tok"), "{v}");
        }
        for v in ["Basic tok", "Bearertok", "tok", "Bear tok"] {
            assert_eq!(of(v), None, "{v}");
        }
        assert_eq!(bearer(&HeaderMap::new()), None);
    }

    #[test]
    fn token_comparison() {
        assert!(same(b"secret", b"secret"));
        assert!(!same(b"secret", b"secreT"));
        assert!(!same(b"secret", b"secret2"));
        assert!(!same(b"", b"x"));
    }
}
