//! The console: its page, embedded in the binary (no network at run time), and the three JSON
//! routes only its views need (`/v1/console/rates`, `/segments`, `/cluster`); the rest of what
//! it shows comes from `/v1/info`, `/v1/decode/{id}` and the admin routes, as for any client.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use floe_store::registry::WorkerSlot;
use serde::Serialize;
use utoipa::ToSchema;

use super::openapi::ErrorBody;
use super::{param, ApiError, Params};
use crate::console::{RateSample, Totals, CAPACITY, INTERVAL};
use crate::node::Node;
use crate::segment::TagView;

/// The page cannot load or send anything to another origin, run inline script, or be framed.
pub(super) const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

/// One embedded file: its bytes and content type.
struct Asset {
    /// The file.
    body: &'static str,
    /// Its `Content-Type`.
    content_type: &'static str,
}

const INDEX: Asset = Asset {
    body: include_str!("../../console/index.html"),
    content_type: "text/html; charset=utf-8",
};
const SCRIPT: Asset = Asset {
    body: include_str!("../../console/console.js"),
    content_type: "text/javascript; charset=utf-8",
};
const STYLE: Asset = Asset {
    body: include_str!("../../console/console.css"),
    content_type: "text/css; charset=utf-8",
};
const ICON: Asset = Asset {
    body: include_str!("../../console/favicon.svg"),
    content_type: "image/svg+xml",
};

impl IntoResponse for &Asset {
    fn into_response(self) -> Response {
        let mut response = (
            [
                (header::CONTENT_TYPE, self.content_type),
                (header::CACHE_CONTROL, "no-cache"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
                (header::REFERRER_POLICY, "no-referrer"),
            ],
            self.body,
        )
            .into_response();
        response.headers_mut().insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        );
        response
    }
}

/// `GET /`: the console's single page.
#[utoipa::path(get, path = "/", tag = "console",
    responses((status = 200, description = "The console (HTML, embedded in the binary)", content_type = "text/html", body = String)))]
pub(super) async fn root() -> Response {
    INDEX.into_response()
}

/// `GET /console`: the console's single page, its overview.
#[utoipa::path(get, path = "/console", tag = "console",
    responses((status = 200, description = "The console", content_type = "text/html", body = String)))]
pub(super) async fn console() -> Response {
    INDEX.into_response()
}

/// `GET /console/{view}`: the same page; it shows the view the path names (overview, rates,
/// segments, cluster, decode, admin; anything else shows the overview).
#[utoipa::path(get, path = "/console/{view}", tag = "console",
    params(("view" = String, Path, description = "overview, rates, segments, cluster, decode or admin")),
    responses((status = 200, description = "The console", content_type = "text/html", body = String)))]
pub(super) async fn page() -> Response {
    INDEX.into_response()
}

/// `GET /console/assets/console.js`.
#[utoipa::path(get, path = "/console/assets/console.js", tag = "console",
    responses((status = 200, description = "The console's script", content_type = "text/javascript", body = String)))]
pub(super) async fn script() -> Response {
    SCRIPT.into_response()
}

/// `GET /console/assets/console.css`.
#[utoipa::path(get, path = "/console/assets/console.css", tag = "console",
    responses((status = 200, description = "The console's style sheet", content_type = "text/css", body = String)))]
pub(super) async fn style() -> Response {
    STYLE.into_response()
}

/// `GET /console/assets/favicon.svg`.
#[utoipa::path(get, path = "/console/assets/favicon.svg", tag = "console",
    responses((status = 200, description = "The console's icon", content_type = "image/svg+xml", body = String)))]
pub(super) async fn icon() -> Response {
    ICON.into_response()
}

/// `GET /v1/console/rates` body.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct RatesBody {
    /// Milliseconds between two samples.
    interval_ms: u64,
    /// Most samples kept (15 minutes).
    capacity: usize,
    /// Samples after `since`, oldest first.
    samples: Vec<RateSample>,
    /// The counters at the latest sample, as `/metrics` showed them then.
    totals: Totals,
}

/// `GET /v1/console/rates?since=<unix ms>`: the rate history, or the part after `since`.
#[utoipa::path(get, path = "/v1/console/rates", tag = "console",
    params(("since" = Option<u64>, Query, description = "Only samples taken after this Unix time, ms (default 0: all)")),
    responses(
        (status = 200, description = "Up to 15 minutes of one-second samples", body = RatesBody),
        (status = 400, description = "A bad since", body = ErrorBody),
    ))]
pub(super) async fn rates(
    State(node): State<Arc<Node>>,
    params: Params,
) -> Result<Response, ApiError> {
    let since = match param(&params, "since") {
        None => 0,
        Some(text) => text.parse::<u64>().map_err(|_| {
            ApiError::bad_request(format!(
                "since must be a Unix time in milliseconds, 0..={}, got {text:?}",
                u64::MAX
            ))
        })?,
    };
    let (samples, totals) = node.rates.since(since);
    Ok(axum::Json(RatesBody {
        interval_ms: INTERVAL.as_millis() as u64,
        capacity: CAPACITY,
        samples,
        totals,
    })
    .into_response())
}

/// `GET /v1/console/segments` body.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct SegmentsBody {
    /// Whether segment mode is on (`segment.enabled`).
    enabled: bool,
    /// Every row of the segment table with this node's buffer of it.
    tags: Vec<TagView>,
}

/// `GET /v1/console/segments`: the store's rows and this node's buffers, as `GET /admin/tags`
/// but without the token (read-only, and no more than `/metrics` tells per tag).
#[utoipa::path(get, path = "/v1/console/segments", tag = "console",
    responses(
        (status = 200, description = "The store's rows and this node's buffers", body = SegmentsBody),
        (status = 503, description = "The segment store is down", body = ErrorBody),
    ))]
pub(super) async fn segments(State(node): State<Arc<Node>>) -> Result<Response, ApiError> {
    let Some(service) = &node.segments else {
        return Ok(axum::Json(SegmentsBody {
            enabled: false,
            tags: Vec::new(),
        })
        .into_response());
    };
    let tags = service.tags().await?;
    Ok(axum::Json(SegmentsBody {
        enabled: true,
        tags,
    })
    .into_response())
}

/// One id of the registry, and whether it is this node's.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct Holder {
    /// The registry's record.
    #[serde(flatten)]
    slot: WorkerSlot,
    /// Whether this node holds it (the owner token is this node's).
    this_node: bool,
}

/// `GET /v1/console/cluster` body.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct ClusterBody {
    /// Where the leases are (`static`, `kubernetes (…)`, `sql at …`, `redis at …`).
    registry: String,
    /// The namespace shared by the cluster; `null` with a static identity.
    namespace: Option<String>,
    /// Number of ids in the pool; `null` with a static identity.
    pool_size: Option<u32>,
    /// The ids the registry has a record of, lowest first (at most 4,096).
    holders: Vec<Holder>,
}

/// `GET /v1/console/cluster`: the registry's view — which ids are held, by whom, epoch, expiry.
#[utoipa::path(get, path = "/v1/console/cluster", tag = "console",
    responses(
        (status = 200, description = "The registry's ids, holders, epochs and expiries", body = ClusterBody),
        (status = 503, description = "The registry is unavailable", body = ErrorBody),
    ))]
pub(super) async fn cluster(State(node): State<Arc<Node>>) -> Result<Response, ApiError> {
    let Some(lease) = &node.lease else {
        return Ok(axum::Json(ClusterBody {
            registry: "static".into(),
            namespace: None,
            pool_size: None,
            holders: Vec::new(),
        })
        .into_response());
    };
    let slots = lease
        .registry
        .list(&lease.request)
        .await
        .map_err(|e| ApiError::unavailable(floe_core::report(&e)))?;
    let holders = slots
        .into_iter()
        .map(|slot| Holder {
            this_node: slot.held && slot.owner.as_deref() == Some(lease.request.owner.as_str()),
            slot,
        })
        .collect();
    Ok((
        StatusCode::OK,
        axum::Json(ClusterBody {
            registry: lease.registry.describe(),
            namespace: Some(lease.request.namespace.clone()),
            pool_size: Some(lease.request.pool_size),
            holders,
        }),
    )
        .into_response())
}
