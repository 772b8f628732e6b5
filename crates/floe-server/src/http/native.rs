//! Floe's own JSON routes: IDs, decoding, node information, health and metrics.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use floe_core::{IdForm, Layout};
use serde::ser::{Serialize, SerializeSeq, Serializer};
use serde_json::json;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder};
use utoipa::openapi::{RefOr, Schema, Type};
use utoipa::ToSchema;

use super::openapi::{DecodedId, ErrorBody, LayoutCapacity};
use super::{json_response, param, parse_count, ApiError, Params, PathParam};
use crate::fence::LeaseInfo;
use crate::node::Node;
use crate::numbers::NumberView;

/// `{"ids":[…]}`, serialised straight to bytes (a 100,000-ID reply builds no JSON tree).
#[derive(serde::Serialize, ToSchema)]
pub(super) struct IdsBody<'a> {
    /// The IDs.
    ids: Ids<'a>,
}

/// `{"tag":…,"ids":[…]}`.
#[derive(serde::Serialize, ToSchema)]
pub(super) struct TagIdsBody<'a> {
    /// The segment tag asked for.
    tag: &'a str,
    /// The IDs.
    ids: Ids<'a>,
}

/// IDs as JSON numbers, or as strings in one of the forms of [`IdForm`] (decimal for
/// JavaScript clients, which lose precision above 2^53; hex, radix62, radix36 that sort like the
/// numbers; friendly).
pub(super) struct Ids<'a> {
    /// The IDs.
    ids: &'a [u64],
    /// How to write them.
    form: IdForm,
    /// The layout, for `friendly` (snowflake IDs only).
    layout: Option<&'a Layout>,
}

impl Serialize for Ids<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.ids.len()))?;
        for &id in self.ids {
            if self.form == IdForm::Number {
                seq.serialize_element(&id)?;
            } else {
                // The generator's IDs always decode under its layout, so every form renders.
                let text = self.form.render(id, self.layout).ok_or_else(|| {
                    serde::ser::Error::custom(format!("ID {id} has no {} form", self.form))
                })?;
                seq.serialize_element(&text)?;
            }
        }
        seq.end()
    }
}

impl utoipa::PartialSchema for Ids<'_> {
    /// An array of unsigned 64-bit integers, or of strings in the form `format` names.
    fn schema() -> RefOr<Schema> {
        let number = ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(0));
        let string = ObjectBuilder::new().schema_type(Type::String);
        ArrayBuilder::new()
            .items(OneOfBuilder::new().item(number).item(string))
            .into()
    }
}

impl ToSchema for Ids<'_> {}

/// The `format` parameter: a form of [`IdForm`], `number` when absent. `friendly` needs the
/// layout of snowflake IDs, so segment routes refuse it.
fn id_form(params: &[(String, String)], snowflake: bool) -> Result<IdForm, ApiError> {
    let form = match param(params, "format") {
        None => IdForm::Number,
        Some(text) => text
            .parse::<IdForm>()
            .map_err(|e| ApiError::bad_request(e.to_string()))?,
    };
    if form.needs_layout() && !snowflake {
        return Err(ApiError::bad_request(
            "format=friendly is for snowflake IDs (it shows their time and fields); segment IDs have number, string, hex, radix62 and radix36",
        ));
    }
    Ok(form)
}

/// The schema of the `format` and `form` parameters: the name of every [`IdForm`].
pub(super) struct IdFormat;

impl utoipa::PartialSchema for IdFormat {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(IdForm::ALL.iter().map(|f| f.name())))
            .description(Some("How IDs are written: number (JSON numbers, the default), string (decimal text, exact in JavaScript), hex, radix62, radix36 (fixed width, sorting like the numbers) or friendly (time and fields; snowflake IDs only)"))
            .into()
    }
}

impl ToSchema for IdFormat {}

/// `GET /v1/snowflake?count=N[&format=F]` → `{"ids":[…]}`.
#[utoipa::path(
    get,
    path = "/v1/snowflake",
    tag = "ids",
    params(
        ("count" = Option<u32>, Query, description = "IDs wanted, 1..=server.max_count (default 100000); default 1", minimum = 1),
        ("format" = Option<IdFormat>, Query, description = "number (default), string, hex, radix62, radix36 or friendly"),
    ),
    responses(
        (status = 200, description = "The IDs, strictly increasing", body = IdsBody),
        (status = 400, description = "A bad count or format", body = ErrorBody),
        (status = 503, description = "Cannot issue now: clock, high-water mark, lease, shutting down", body = ErrorBody),
    )
)]
pub(super) async fn snowflake(
    State(node): State<Arc<Node>>,
    params: Params,
) -> Result<Response, ApiError> {
    let max = node.config.server.max_count;
    let count =
        parse_count(param(&params, "count"), max, Some(1)).map_err(ApiError::bad_request)?;
    let form = id_form(&params, true)?;
    // An Arc, not a guard: it is held across the wait for the IDs.
    let generator = node.generator.load_full();
    let lane = generator.assign_lane();
    let mut ids = Vec::new();
    if let Err(e) = node.issue(lane, u64::from(count), &mut ids).await {
        node.metrics.request_error("http", "unavailable");
        return Err(e.into());
    }
    node.metrics.ids_http.increment(u64::from(count));
    Ok(axum::Json(IdsBody {
        ids: Ids {
            ids: &ids,
            form,
            layout: Some(generator.layout()),
        },
    })
    .into_response())
}

/// `GET /v1/segment/{tag}?count=N` → `{"tag":…,"ids":[…]}`.
#[utoipa::path(
    get,
    path = "/v1/segment/{tag}",
    tag = "ids",
    params(
        ("tag" = String, Path, description = "The business tag: 1..=128 bytes, no control characters"),
        ("count" = Option<u32>, Query, description = "IDs wanted, 1..=server.max_count; default 1", minimum = 1),
        ("format" = Option<IdFormat>, Query, description = "number (default), string, hex, radix62 or radix36 (not friendly)"),
    ),
    responses(
        (status = 200, description = "The IDs, increasing", body = TagIdsBody),
        (status = 400, description = "A bad tag, count or format", body = ErrorBody),
        (status = 404, description = "unknown_tag: the tag has no row in the segment table", body = ErrorBody),
        (status = 409, description = "exhausted: the tag reached 2^63-1", body = ErrorBody),
        (status = 503, description = "The store is down, or segment mode is off", body = ErrorBody),
    )
)]
pub(super) async fn segment(
    State(node): State<Arc<Node>>,
    PathParam(tag): PathParam,
    params: Params,
) -> Result<Response, ApiError> {
    let max = node.config.server.max_count;
    let count =
        parse_count(param(&params, "count"), max, Some(1)).map_err(ApiError::bad_request)?;
    let form = id_form(&params, false)?;
    match node.segments()?.allocate(&tag, count).await {
        Ok(ids) => Ok(axum::Json(TagIdsBody {
            tag: &tag,
            ids: Ids {
                ids: &ids,
                form,
                layout: None,
            },
        })
        .into_response()),
        Err(e) => Err(ApiError::from(e)),
    }
}

/// `{"name":…,"numbers":[…]}`.
#[derive(serde::Serialize, ToSchema)]
pub(super) struct NumbersBody<'a> {
    /// The sequence asked for.
    name: &'a str,
    /// The numbers, in issue order.
    numbers: &'a [String],
}

/// `GET /v1/numbers/{name}?count=N` → `{"name":…,"numbers":[…]}`: all of them or an error.
#[utoipa::path(
    get,
    path = "/v1/numbers/{name}",
    tag = "ids",
    params(
        ("name" = String, Path, description = "The number sequence"),
        ("count" = Option<u32>, Query, description = "Numbers wanted, 1..=server.max_count; default 1", minimum = 1),
    ),
    responses(
        (status = 200, description = "The numbers, in issue order", body = NumbersBody),
        (status = 400, description = "A bad name or count", body = ErrorBody),
        (status = 404, description = "unknown_name", body = ErrorBody),
        (status = 409, description = "exhausted: the period's {seq:0N} reached 10^N - 1", body = ErrorBody),
        (status = 503, description = "The store is down, or segment mode is off", body = ErrorBody),
    )
)]
pub(super) async fn numbers(
    State(node): State<Arc<Node>>,
    PathParam(name): PathParam,
    params: Params,
) -> Result<Response, ApiError> {
    let max = node.config.server.max_count;
    let count =
        parse_count(param(&params, "count"), max, Some(1)).map_err(ApiError::bad_request)?;
    let numbers = node.numbers()?.issue(&name, count, node.now_ms()).await?;
    Ok(axum::Json(NumbersBody {
        name: &name,
        numbers: &numbers,
    })
    .into_response())
}

/// `{"numbers":[…]}`.
#[derive(serde::Serialize, ToSchema)]
pub(super) struct NumberListBody {
    /// Every sequence, configured and declared.
    numbers: Vec<NumberView>,
}

/// `GET /v1/numbers` → `{"numbers":[…]}`: every sequence with its current period and next value.
#[utoipa::path(
    get,
    path = "/v1/numbers",
    tag = "ids",
    responses(
        (status = 200, description = "Every number sequence with its current period, tag and next value", body = NumberListBody),
        (status = 503, description = "The store is down, or segment mode is off", body = ErrorBody),
    )
)]
pub(super) async fn list_numbers(State(node): State<Arc<Node>>) -> Result<Response, ApiError> {
    let numbers = node.numbers()?.list(node.now_ms()).await?;
    Ok(axum::Json(NumberListBody { numbers }).into_response())
}

/// floe-core's one JSON shape of a decoded ID (fields in layout order), plus the layout, the
/// form the ID was read in and the ID in every form.
#[derive(serde::Serialize, ToSchema)]
pub(super) struct DecodeBody<'a> {
    /// The decoded ID.
    #[serde(flatten)]
    #[schema(value_type = DecodedId)]
    decoded: &'a floe_core::Decoded,
    /// The layout's spec string, so the reader knows how the bits were split.
    layout: String,
    /// The form the path was read as.
    form: &'static str,
    /// The ID in every string form.
    forms: std::collections::BTreeMap<&'static str, String>,
}

/// `GET /v1/decode/{id}[?form=F]` → every field of the ID under the configured layout; the ID in
/// any form (detected, or the one `form` names), the form it was read as, and its other forms.
#[utoipa::path(
    get,
    path = "/v1/decode/{id}",
    tag = "ids",
    params(
        ("id" = String, Path, description = "An ID in any form: decimal, 0x hex, hex, radix62, radix36, friendly"),
        ("form" = Option<IdFormat>, Query, description = "Read the ID in this form instead of detecting it"),
    ),
    responses(
        (status = 200, description = "The ID's time and fields, the form it was read as, and its other forms", body = DecodeBody),
        (status = 400, description = "Not an ID of this layout, or a bad form", body = ErrorBody),
    )
)]
pub(super) async fn decode(
    State(node): State<Arc<Node>>,
    PathParam(text): PathParam,
    params: Params,
) -> Result<Response, ApiError> {
    let generator = node.generator.load();
    let layout = generator.layout();
    let forced = param(&params, "form")
        .map(|f| f.parse::<IdForm>())
        .transpose()
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let (id, form) = match forced {
        Some(form) => (form.parse(text.trim(), Some(layout)), form),
        None => match IdForm::detect(&text, Some(layout)) {
            Ok((id, form)) => (Ok(id), form),
            Err(e) => (Err(e), IdForm::Number),
        },
    };
    let id = id.map_err(|e| ApiError::bad_request(e.to_string()))?;
    let decoded = layout
        .decode(id)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let forms = IdForm::ALL
        .into_iter()
        .filter(|f| *f != IdForm::Number)
        .filter_map(|f| Some((f.name(), f.render(id, Some(layout))?)))
        .collect();
    Ok(axum::Json(DecodeBody {
        decoded: &decoded,
        layout: layout.to_string(),
        form: form.name(),
        forms,
    })
    .into_response())
}

/// The clock in `/v1/info`.
#[derive(serde::Serialize, ToSchema)]
pub(super) struct ClockInfo {
    /// Wall clock behind the highest time seen (a rollback), ms.
    behind_ms: u64,
    /// Logical time ahead of the wall clock (borrowed ticks), ms.
    drift_ms: u64,
    /// The generator's logical time, Unix ms (0 before the first ID).
    logical_ms: u64,
    /// Whether `snowflake.machine_clock` is on.
    machine_clock: bool,
    /// `snowflake.max_drift`, ms.
    max_drift_ms: u64,
    /// `snowflake.max_rollback`, ms.
    max_rollback_ms: u64,
    /// `snowflake.clock_offset_ms`.
    offset_ms: i64,
    /// Whether the rollback exceeds `max_rollback` (IDs refused).
    rollback_exceeded: bool,
    /// The wall clock, Unix ms.
    wall_ms: u64,
}

/// The bound addresses in `/v1/info`.
#[derive(serde::Serialize, ToSchema)]
pub(super) struct ListenInfo {
    /// HTTP.
    http: String,
    /// Binary TCP.
    tcp: String,
}

/// The modes in `/v1/info`.
#[derive(serde::Serialize, ToSchema)]
pub(super) struct ModesInfo {
    /// Whether business numbers are on (they need segment mode).
    numbers: bool,
    /// Whether segment mode is on.
    segment: bool,
    /// Always true.
    snowflake: bool,
}

/// `GET /v1/info` body; keys in alphabetical order.
#[derive(serde::Serialize, ToSchema)]
pub(super) struct InfoBody {
    /// What the layout can issue.
    #[schema(value_type = LayoutCapacity)]
    capacity: floe_core::Capacity,
    /// Where the clock stands.
    clock: ClockInfo,
    /// The persisted high-water mark, Unix ms.
    high_water_ms: u64,
    /// The node fields and their values.
    identity: BTreeMap<String, u64>,
    /// Random per process, so a peer check can tell a node from itself.
    instance: String,
    /// Lanes of the generator.
    lanes: usize,
    /// The layout's spec string.
    layout: String,
    /// When the layout's time field runs out, RFC 3339.
    layout_end: String,
    /// Seconds until then.
    layout_seconds_left: u64,
    /// Set when less than a year is left.
    layout_warning: Option<String>,
    /// The worker-id lease; `null` with a static identity.
    lease: Option<LeaseInfo>,
    /// The bound addresses.
    listen: ListenInfo,
    /// Largest reservation of one generator call.
    max_batch: u64,
    /// `server.max_count`.
    max_count: u32,
    /// Which modes are on.
    modes: ModesInfo,
    /// Why the node is not ready, when it is not.
    not_ready_reason: Option<String>,
    /// Whether `/readyz` answers 200.
    ready: bool,
    /// Milliseconds since the node started.
    uptime_ms: u64,
    /// Floe's version.
    version: String,
    /// Worker threads of the async runtime (`server.workers`, default one per core).
    workers: usize,
}

/// `GET /v1/info`: identity, layout, capacity, lanes, clock, high-water mark, version.
#[utoipa::path(
    get,
    path = "/v1/info",
    tag = "node",
    responses((status = 200, description = "The node", body = InfoBody))
)]
pub(super) async fn info(State(node): State<Arc<Node>>) -> Result<Response, ApiError> {
    let g = node.generator.load();
    let layout = g.layout();
    let identity = layout
        .node_fields()
        .zip(g.identity().values())
        .map(|(f, v)| (f.name.clone(), *v))
        .collect();
    let state = g.clock_state();
    let (seconds_left, layout_warning) = node.layout_time_left();
    let ready = node.readiness();
    let sf = &node.config.snowflake;
    let body = InfoBody {
        capacity: layout.capacity(),
        clock: ClockInfo {
            behind_ms: state.behind_ms,
            drift_ms: state.logical_ms.saturating_sub(state.wall_ms),
            logical_ms: state.logical_ms,
            machine_clock: sf.machine_clock,
            max_drift_ms: sf.max_drift.as_millis() as u64,
            max_rollback_ms: sf.max_rollback.as_millis() as u64,
            offset_ms: sf.clock_offset_ms,
            rollback_exceeded: state.rollback_exceeded,
            wall_ms: state.wall_ms,
        },
        high_water_ms: state.high_water_ms,
        identity,
        instance: node.instance.clone(),
        lanes: g.lanes(),
        layout: layout.to_string(),
        layout_end: floe_core::rfc3339(layout.end_ms()),
        layout_seconds_left: seconds_left,
        layout_warning,
        lease: node.lease.as_ref().map(|l| l.info()),
        listen: ListenInfo {
            http: node.http_addr.to_string(),
            tcp: node.tcp_addr.to_string(),
        },
        max_batch: g.max_batch(),
        max_count: node.config.server.max_count,
        modes: ModesInfo {
            numbers: node.numbers.is_some(),
            segment: node.segments.is_some(),
            snowflake: true,
        },
        not_ready_reason: ready.clone().err(),
        ready: ready.is_ok(),
        uptime_ms: node.started.elapsed().as_millis() as u64,
        version: env!("CARGO_PKG_VERSION").to_owned(),
        // Asked of the runtime itself, so the figure is what runs, whoever set it.
        workers: tokio::runtime::Handle::current().metrics().num_workers(),
    };
    Ok(axum::Json(body).into_response())
}

/// `{"status":"ok"}`, `{"status":"ready"}` or `{"status":"unavailable","reason":…}`.
#[derive(serde::Serialize, ToSchema)]
pub(super) struct StatusBody {
    /// `ok`, `ready` or `unavailable`.
    status: String,
    /// Why not ready (`/readyz` 503 only).
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

/// `GET /healthz`: the process is alive (restart it when this fails).
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "node",
    responses((status = 200, description = "Liveness", body = StatusBody))
)]
pub(super) async fn healthz() -> Response {
    json_response(StatusCode::OK, &json!({"status": "ok"}))
}

/// `GET /readyz`: 200 while IDs can be issued, else 503 with the reason (take the node out of
/// the balancer, do not restart it).
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "node",
    responses(
        (status = 200, description = "Ready", body = StatusBody),
        (status = 503, description = "Not ready, with the reason", body = StatusBody),
    )
)]
pub(super) async fn readyz(State(node): State<Arc<Node>>) -> Response {
    match node.readiness() {
        Ok(()) => json_response(StatusCode::OK, &json!({"status": "ready"})),
        Err(reason) => json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"status": "unavailable", "reason": reason}),
        ),
    }
}

/// `GET /metrics`: Prometheus text format.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "node",
    responses((status = 200, description = "Prometheus text format, every family with HELP", content_type = "text/plain", body = String))
)]
pub(super) async fn metrics(State(node): State<Arc<Node>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        node.metrics.prometheus.render(),
    )
        .into_response()
}
