//! Admin routes, behind `Authorization: Bearer <server.admin_token>`.
//!
//! Without a configured token the admin routes do not exist: they answer 404 like any unknown
//! route, so an unconfigured node exposes nothing. A missing or wrong token is 401.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{json_response, param, ApiError, Params};
use crate::config::{LogLevel, LOG_LEVELS};
use crate::node::Node;

/// Compares in time independent of where the first difference is, so the token cannot be
/// guessed byte by byte from response times.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Checks the bearer token: 404 when admin is disabled, 401 when the token is missing or wrong.
fn authorize(node: &Node, headers: &HeaderMap, method: &Method, uri: &Uri) -> Result<(), ApiError> {
    let Some(token) = node.config.server.admin_token.as_deref() else {
        return Err(ApiError::not_found(method, uri));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match given {
        Some(g) if same(g.as_bytes(), token.as_bytes()) => Ok(()),
        Some(_) => Err(unauthorized("the bearer token is wrong")),
        None => Err(unauthorized(
            "admin routes need the header `Authorization: Bearer <server.admin_token>`",
        )),
    }
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

/// `GET /admin/log-level` → `{"level":"info"}`.
pub(super) async fn get_level(
    State(node): State<Arc<Node>>,
    headers: HeaderMap,
    method: Method,
    uri: Uri,
) -> Result<Response, ApiError> {
    authorize(&node, &headers, &method, &uri)?;
    Ok(json_response(
        StatusCode::OK,
        &json!({"level": node.log.level().to_string()}),
    ))
}

/// Body of `PUT /admin/log-level`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LevelBody {
    /// The new level.
    level: String,
}

/// `PUT /admin/log-level` with `{"level":"debug"}` or `?level=debug` → `{"level":"debug"}`.
pub(super) async fn put_level(
    State(node): State<Arc<Node>>,
    headers: HeaderMap,
    method: Method,
    uri: Uri,
    params: Params,
    body: Bytes,
) -> Result<Response, ApiError> {
    authorize(&node, &headers, &method, &uri)?;
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
    Ok(json_response(
        StatusCode::OK,
        &json!({"level": level.to_string()}),
    ))
}

/// FeatherID's body shape for its log-level route.
#[derive(Serialize)]
struct FeatherLevel {
    /// 0 success, 1 bad level.
    code: i32,
    /// "success" or the error.
    msg: String,
    /// The level now in force, `null` on error.
    data: Option<String>,
}

/// FeatherID's `GET|POST /api/v1/log/level?level=L`; without `level` it reports the current one.
pub(super) async fn feather_level(
    State(node): State<Arc<Node>>,
    headers: HeaderMap,
    method: Method,
    uri: Uri,
    params: Params,
) -> Result<Response, ApiError> {
    authorize(&node, &headers, &method, &uri)?;
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

/// `GET /admin/tags` → `{"tags":[{"tag","max_id","step","buffer":{…}|null}]}`.
pub(super) async fn list_tags(
    State(node): State<Arc<Node>>,
    headers: HeaderMap,
    method: Method,
    uri: Uri,
) -> Result<Response, ApiError> {
    authorize(&node, &headers, &method, &uri)?;
    let tags = node.segments.tags().await?;
    Ok(json_response(StatusCode::OK, &json!({ "tags": tags })))
}

/// Body of `POST /admin/tags`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateTag {
    /// The new tag.
    tag: String,
    /// Its first ID (default 1).
    start: Option<u64>,
    /// IDs per claim (default `segment.default_step`).
    step: Option<u64>,
}

/// `POST /admin/tags` with `{"tag":"orders","start":1000,"step":2000}` → 201 and the row.
pub(super) async fn create_tag(
    State(node): State<Arc<Node>>,
    headers: HeaderMap,
    method: Method,
    uri: Uri,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    authorize(&node, &headers, &method, &uri)?;
    let req: CreateTag = body(&bytes, r#"{"tag":"orders","start":1,"step":1000}"#)?;
    let default_step = node
        .config
        .segment
        .as_ref()
        .map_or(1000, |s| s.service.default_step);
    let row = node
        .segments
        .create(
            &req.tag,
            req.start.unwrap_or(1),
            req.step.unwrap_or(default_step),
        )
        .await?;
    tracing::info!(tag = %row.tag, start = row.max_id, step = row.step, "tag created through the admin API");
    Ok(json_response(StatusCode::CREATED, &json!(row)))
}

/// Body of `PUT /admin/tags/{tag}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetStep {
    /// The new step.
    step: u64,
}

/// `PUT /admin/tags/{tag}` with `{"step":5000}` → the row.
pub(super) async fn set_step(
    State(node): State<Arc<Node>>,
    Path(tag): Path<String>,
    headers: HeaderMap,
    method: Method,
    uri: Uri,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    authorize(&node, &headers, &method, &uri)?;
    let req: SetStep = body(&bytes, r#"{"step":5000}"#)?;
    let row = node.segments.set_step(&tag, req.step).await?;
    tracing::info!(tag = %row.tag, step = row.step, "step changed through the admin API");
    Ok(json_response(StatusCode::OK, &json!(row)))
}

#[cfg(test)]
mod tests {
    use super::same;

    #[test]
    fn token_comparison() {
        assert!(same(b"secret", b"secret"));
        assert!(!same(b"secret", b"secreT"));
        assert!(!same(b"secret", b"secret2"));
        assert!(!same(b"", b"x"));
    }
}
