//! Routes of the systems Floe replaces, with their response shapes byte for byte, so their
//! clients work unchanged: Distributed ID Generator (`/alloc`, `/health`), FeatherID
//! (`/api/v1/id`, `/api/v1/id/batch`) and Meituan Leaf (`/api/segment/get/{key}`,
//! `/api/snowflake/get/{key}`, `/decodeSnowflakeId`).
//!
//! Field order matters for byte-for-byte bodies, so every body is a struct whose fields are in
//! the original's order.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::DateTime;
use floe_core::{FieldKind, Layout};
use serde::Serialize;

use utoipa::ToSchema;

use super::openapi::ErrorBody;
use super::{param, parse_count, text_response, ApiError, Params};
use crate::node::Node;
use crate::segment::SegmentError;

/// FeatherID's batch limit.
const FEATHER_MAX_BATCH: u32 = 1000;

/// Distributed ID Generator's `/alloc` body.
#[derive(Serialize, ToSchema)]
pub(crate) struct AllocBody {
    /// 0 on success, -1 on error.
    resp_code: i32,
    /// "success" or the error.
    msg: String,
    /// The ID, 0 on error.
    id: u64,
}

/// Distributed ID Generator's `/health` body.
#[derive(Serialize, ToSchema)]
pub(crate) struct HealthBody {
    /// 0 on success, -1 on error.
    resp_code: i32,
    /// "success" or the error.
    msg: String,
    /// IDs left in the node's buffer, 0 on error.
    left: u64,
}

fn alloc_error(msg: String) -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        axum::Json(AllocBody {
            resp_code: -1,
            msg,
            id: 0,
        }),
    )
        .into_response()
}

fn app_tag(params: &[(String, String)]) -> Option<&str> {
    param(params, "app_tag").filter(|t| !t.is_empty())
}

/// `/alloc?app_tag=T` → `{"resp_code":0,"msg":"success","id":N}`, errors with HTTP 500.
#[utoipa::path(
    get,
    path = "/alloc",
    tag = "compatible",
    params(("app_tag" = String, Query, description = "The tag (Distributed ID Generator's app_tag)")),
    responses(
        (status = 200, description = "resp_code 0 and one segment ID", body = AllocBody),
        (status = 500, description = "resp_code -1 and the error, as the original answers every error (unknown tag, missing app_tag, store down)", body = AllocBody),
    )
)]
pub(crate) async fn alloc(State(node): State<Arc<Node>>, params: Params) -> Response {
    let Some(tag) = app_tag(&params) else {
        return alloc_error("app_tag is required".into());
    };
    match async { node.segments()?.allocate(tag, 1).await }.await {
        Ok(ids) => match ids.first() {
            Some(&id) => axum::Json(AllocBody {
                resp_code: 0,
                msg: "success".into(),
                id,
            })
            .into_response(),
            None => alloc_error("no ID allocated".into()),
        },
        Err(e) => alloc_error(e.to_string()),
    }
}

/// `/health?app_tag=T` → `{"resp_code":0,"msg":"success","left":N}`, errors with HTTP 500.
#[utoipa::path(
    get,
    path = "/health",
    tag = "compatible",
    params(("app_tag" = String, Query, description = "The tag")),
    responses(
        (status = 200, description = "resp_code 0 and the IDs buffered on this node", body = HealthBody),
        (status = 500, description = "resp_code -1 and the error, as the original", body = HealthBody),
    )
)]
pub(crate) async fn health(State(node): State<Arc<Node>>, params: Params) -> Response {
    let error = |msg: String| {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            axum::Json(HealthBody {
                resp_code: -1,
                msg,
                left: 0,
            }),
        )
            .into_response()
    };
    let Some(tag) = app_tag(&params) else {
        return error("app_tag is required".into());
    };
    match async { node.segments()?.remaining(tag).await }.await {
        Ok(left) => axum::Json(HealthBody {
            resp_code: 0,
            msg: "success".into(),
            left,
        })
        .into_response(),
        Err(e) => error(e.to_string()),
    }
}

/// FeatherID's body: always HTTP 200, the outcome in `code`.
#[derive(Serialize, ToSchema)]
pub(crate) struct FeatherBody {
    /// 0 success, 1 missing biz_tag, 2 segment failure, 3 bad count.
    code: i32,
    /// "success" or the error.
    msg: String,
    /// The ID(s), `null` on error.
    data: Option<FeatherData>,
}

/// FeatherID's `data`: one ID (`/api/v1/id`) or a list (`/api/v1/id/batch`).
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum FeatherData {
    /// One ID.
    One(u64),
    /// A batch.
    Many(Vec<u64>),
}

fn feather(code: i32, msg: impl Into<String>, data: Option<FeatherData>) -> Response {
    axum::Json(FeatherBody {
        code,
        msg: msg.into(),
        data,
    })
    .into_response()
}

fn biz_tag(params: &[(String, String)]) -> Option<&str> {
    param(params, "biz_tag").filter(|t| !t.is_empty())
}

/// `/api/v1/id?biz_tag=T` → `{"code":0,"msg":"success","data":N}`.
#[utoipa::path(
    get,
    path = "/api/v1/id",
    tag = "compatible",
    params(("biz_tag" = String, Query, description = "The tag (FeatherID's biz_tag)")),
    responses((status = 200, description = "code 0 and one ID; code 1 without biz_tag, 2 on a segment failure, data null", body = FeatherBody))
)]
pub(crate) async fn feather_id(State(node): State<Arc<Node>>, params: Params) -> Response {
    let Some(tag) = biz_tag(&params) else {
        return feather(1, "biz_tag is required", None);
    };
    match async { node.segments()?.allocate(tag, 1).await }.await {
        Ok(ids) => match ids.first() {
            Some(&id) => feather(0, "success", Some(FeatherData::One(id))),
            None => feather(2, "no ID allocated", None),
        },
        Err(e) => feather(2, e.to_string(), None),
    }
}

/// `/api/v1/id/batch?biz_tag=T&count=C` (1..=1000) → `{"code":0,"msg":"success","data":[…]}`.
#[utoipa::path(
    get,
    path = "/api/v1/id/batch",
    tag = "compatible",
    params(
        ("biz_tag" = String, Query, description = "The tag"),
        ("count" = u32, Query, description = "IDs wanted, 1..=1000", minimum = 1, maximum = 1000),
    ),
    responses((status = 200, description = "code 0 and the IDs; code 1 without biz_tag, 2 on a segment failure, 3 on a bad count, data null", body = FeatherBody))
)]
pub(crate) async fn feather_batch(State(node): State<Arc<Node>>, params: Params) -> Response {
    let Some(tag) = biz_tag(&params) else {
        return feather(1, "biz_tag is required", None);
    };
    let count = match parse_count(param(&params, "count"), FEATHER_MAX_BATCH, None) {
        Ok(n) => n,
        Err(msg) => return feather(3, msg, None),
    };
    match async { node.segments()?.allocate(tag, count).await }.await {
        Ok(ids) => feather(0, "success", Some(FeatherData::Many(ids))),
        Err(e) => feather(2, e.to_string(), None),
    }
}

/// Leaf's `/api/segment/get/{key}` → the ID as plain text.
#[utoipa::path(
    get,
    path = "/api/segment/get/{key}",
    tag = "compatible",
    params(("key" = String, Path, description = "The tag")),
    responses(
        (status = 200, description = "The ID", content_type = "text/plain", body = String),
        (status = 400, description = "A tag that breaks the tag rule (empty, over 128 bytes, a control character), as text", content_type = "text/plain", body = String),
        (status = 404, description = "unknown tag, as text", content_type = "text/plain", body = String),
        (status = 503, description = "The store is down or segment mode is off, as text", content_type = "text/plain", body = String),
    )
)]
pub(crate) async fn leaf_segment(
    State(node): State<Arc<Node>>,
    Path(key): Path<String>,
) -> Response {
    match async { node.segments()?.allocate(&key, 1).await }.await {
        Ok(ids) => match ids.first() {
            Some(id) => text_response(StatusCode::OK, id.to_string()),
            None => text_response(StatusCode::SERVICE_UNAVAILABLE, "no ID allocated".into()),
        },
        Err(e @ SegmentError::UnknownTag(_)) => text_response(StatusCode::NOT_FOUND, e.to_string()),
        // A tag that breaks the tag rule is the caller's mistake, not an outage.
        Err(e @ SegmentError::Invalid(_)) => text_response(StatusCode::BAD_REQUEST, e.to_string()),
        Err(e) => text_response(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

/// Leaf's `/api/snowflake/get/{key}` → a snowflake ID as plain text (Leaf ignores the key).
#[utoipa::path(
    get,
    path = "/api/snowflake/get/{key}",
    tag = "compatible",
    params(("key" = String, Path, description = "Ignored, as in Leaf")),
    responses(
        (status = 200, description = "The ID", content_type = "text/plain", body = String),
        (status = 503, description = "Cannot issue now, the reason as text", content_type = "text/plain", body = String),
    )
)]
pub(crate) async fn leaf_snowflake(
    State(node): State<Arc<Node>>,
    Path(_key): Path<String>,
) -> Response {
    let lane = node.generator.load().assign_lane();
    let mut ids = Vec::with_capacity(1);
    match node.issue(lane, 1, &mut ids).await {
        Ok(()) => match ids.first() {
            Some(id) => {
                node.metrics.ids_leaf.increment(1);
                text_response(StatusCode::OK, id.to_string())
            }
            None => text_response(StatusCode::INTERNAL_SERVER_ERROR, "no ID issued".into()),
        },
        Err(e) => {
            node.metrics.request_error("leaf", "unavailable");
            text_response(StatusCode::SERVICE_UNAVAILABLE, e.message().to_owned())
        }
    }
}

/// Leaf's decode body; its keys in the order the brief's clients expect.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct LeafDecoded {
    /// `"<unix ms>(<yyyy-MM-dd HH:mm:ss.SSS>)"`, UTC.
    timestamp: String,
    /// Every node field's bits together, as Leaf's workerId is.
    worker_id: String,
    /// The lane and sequence bits together (Leaf's sequence).
    sequence_id: String,
}

/// Leaf's error body for an ID it cannot parse.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct LeafDecodeError {
    /// Leaf's fixed message.
    error_msg: &'static str,
}

/// Either of Leaf's decode answers.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)] // a description of the two bodies
pub(crate) enum LeafDecodeAnswer {
    /// The decoded ID.
    Decoded(LeafDecoded),
    /// An ID that cannot be parsed.
    Error(LeafDecodeError),
}

/// Leaf's message for an ID that cannot be parsed.
const LEAF_DECODE_ERROR: &str = "snowflake Id反解析发生异常!";

/// Concatenates the values of the fields of `kinds`, most significant first.
fn joined(layout: &Layout, id: u64, kinds: &[FieldKind]) -> u64 {
    layout
        .fields()
        .iter()
        .filter(|f| kinds.contains(&f.kind))
        .fold(0u64, |acc, f| {
            acc.checked_shl(f.width).unwrap_or(0) | f.get(id)
        })
}

/// Leaf's `/decodeSnowflakeId?snowflakeId=N` under the configured layout.
#[utoipa::path(
    get,
    path = "/decodeSnowflakeId",
    tag = "compatible",
    params(("snowflakeId" = String, Query, description = "The ID, decimal, as a Java long or unsigned")),
    responses(
        (status = 200, description = "The decoded ID, or Leaf's errorMsg for one that cannot be parsed", body = LeafDecodeAnswer),
        (status = 400, description = "snowflakeId is missing", body = ErrorBody),
    )
)]
pub(crate) async fn leaf_decode(
    State(node): State<Arc<Node>>,
    params: Params,
) -> Result<Response, ApiError> {
    let Some(text) = param(&params, "snowflakeId") else {
        return Err(ApiError::bad_request(
            "snowflakeId is required: a decimal ID (Java long or unsigned 64-bit)",
        ));
    };
    // Leaf's IDs are Java longs: IDs with the top bit set arrive negative.
    let id = text
        .trim()
        .parse::<u64>()
        .ok()
        .or_else(|| text.trim().parse::<i64>().ok().map(|v| v as u64));
    let generator = node.generator.load();
    let layout = generator.layout();
    let Some(decoded) = id.and_then(|id| layout.decode(id).ok()) else {
        return Ok(axum::Json(LeafDecodeError {
            error_msg: LEAF_DECODE_ERROR,
        })
        .into_response());
    };
    let when = i64::try_from(decoded.unix_ms)
        .ok()
        .and_then(DateTime::from_timestamp_millis)
        .map_or_else(String::new, |t| {
            t.format("%Y-%m-%d %H:%M:%S%.3f").to_string()
        });
    Ok(axum::Json(LeafDecoded {
        timestamp: format!("{}({when})", decoded.unix_ms),
        worker_id: joined(layout, decoded.id, &[FieldKind::Node]).to_string(),
        sequence_id: joined(layout, decoded.id, &[FieldKind::Lane, FieldKind::Seq]).to_string(),
    })
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joined_fields_follow_layout_order() {
        let layout = Layout::parse("genid").unwrap();
        let identity = layout
            .identity(&[("zone".into(), 1), ("dc".into(), 2), ("machine".into(), 3)])
            .unwrap();
        let id = layout.compose(100, &identity, 4, 5);
        assert_eq!(
            joined(&layout, id, &[FieldKind::Node]),
            (1 << 6) | (2 << 3) | 3
        );
        assert_eq!(
            joined(&layout, id, &[FieldKind::Lane, FieldKind::Seq]),
            (4 << 16) | 5
        );
    }
}
