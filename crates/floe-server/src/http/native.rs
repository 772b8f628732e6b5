//! Floe's own JSON routes: IDs, decoding, node information, health and metrics.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use floe_core::{IdForm, Layout};
use serde::ser::{Serialize, SerializeSeq, Serializer};
use serde_json::json;

use super::{json_response, param, parse_count, ApiError, Params, PathParam};
use crate::node::Node;

/// `{"ids":[…]}`, serialised straight to bytes (a 100,000-ID reply builds no JSON tree).
#[derive(serde::Serialize)]
struct IdsBody<'a> {
    /// The IDs.
    ids: Ids<'a>,
}

/// `{"tag":…,"ids":[…]}`.
#[derive(serde::Serialize)]
struct TagIdsBody<'a> {
    /// The segment tag asked for.
    tag: &'a str,
    /// The IDs.
    ids: Ids<'a>,
}

/// IDs as JSON numbers, or as strings in one of the forms of [`IdForm`] (decimal for
/// JavaScript clients, which lose precision above 2^53; hex, radix62, radix36 that sort like the
/// numbers; friendly).
struct Ids<'a> {
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

/// `GET /v1/snowflake?count=N[&format=F]` → `{"ids":[…]}`.
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
#[derive(serde::Serialize)]
struct NumbersBody<'a> {
    /// The sequence asked for.
    name: &'a str,
    /// The numbers, in issue order.
    numbers: &'a [String],
}

/// `GET /v1/numbers/{name}?count=N` → `{"name":…,"numbers":[…]}`: all of them or an error.
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

/// `GET /v1/numbers` → `{"numbers":[…]}`: every sequence with its current period and next value.
pub(super) async fn list_numbers(State(node): State<Arc<Node>>) -> Result<Response, ApiError> {
    let numbers = node.numbers()?.list(node.now_ms()).await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({ "numbers": numbers }),
    ))
}

/// floe-core's one JSON shape of a decoded ID (fields in layout order), plus the layout, the
/// form the ID was read in and the ID in every form.
#[derive(serde::Serialize)]
struct DecodeBody<'a> {
    /// The decoded ID.
    #[serde(flatten)]
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

/// `GET /v1/info`: identity, layout, capacity, lanes, clock, high-water mark, version.
pub(super) async fn info(State(node): State<Arc<Node>>) -> Result<Response, ApiError> {
    let g = node.generator.load();
    let layout = g.layout();
    let identity: serde_json::Map<String, serde_json::Value> = layout
        .node_fields()
        .zip(g.identity().values())
        .map(|(f, v)| (f.name.clone(), json!(v)))
        .collect();
    let state = g.clock_state();
    let (seconds_left, layout_warning) = node.layout_time_left();
    let ready = node.readiness();
    let capacity = serde_json::to_value(layout.capacity())
        .map_err(|e| ApiError::internal(format!("capacity does not serialise: {e}")))?;
    let sf = &node.config.snowflake;
    let body = json!({
        "version": env!("CARGO_PKG_VERSION"),
        "instance": node.instance,
        "layout": layout.to_string(),
        "identity": identity,
        "capacity": capacity,
        "lanes": g.lanes(),
        "max_batch": g.max_batch(),
        "max_count": node.config.server.max_count,
        "clock": {
            "wall_ms": state.wall_ms,
            "logical_ms": state.logical_ms,
            "drift_ms": state.logical_ms.saturating_sub(state.wall_ms),
            "behind_ms": state.behind_ms,
            "rollback_exceeded": state.rollback_exceeded,
            "max_rollback_ms": sf.max_rollback.as_millis() as u64,
            "max_drift_ms": sf.max_drift.as_millis() as u64,
            "machine_clock": sf.machine_clock,
            "offset_ms": sf.clock_offset_ms,
        },
        "high_water_ms": state.high_water_ms,
        "layout_end": floe_core::rfc3339(layout.end_ms()),
        "layout_seconds_left": seconds_left,
        "layout_warning": layout_warning,
        "ready": ready.is_ok(),
        "not_ready_reason": ready.err(),
        "modes": {
            "snowflake": true,
            "segment": node.segments.is_some(),
            "numbers": node.numbers.is_some(),
        },
        "lease": node.lease.as_ref().map(|l| l.info()),
        "listen": { "tcp": node.tcp_addr.to_string(), "http": node.http_addr.to_string() },
    });
    Ok(json_response(StatusCode::OK, &body))
}

/// `GET /healthz`: the process is alive (restart it when this fails).
pub(super) async fn healthz() -> Response {
    json_response(StatusCode::OK, &json!({"status": "ok"}))
}

/// `GET /readyz`: 200 while IDs can be issued, else 503 with the reason (take the node out of
/// the balancer, do not restart it).
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
