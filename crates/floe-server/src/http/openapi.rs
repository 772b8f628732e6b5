//! The OpenAPI 3.1 document served at `GET /openapi.json`.
//!
//! Native, console and admin routes are registered through `utoipa_axum::routes!` in
//! [`super::router`], so a route and its description come from one `#[utoipa::path]` attribute
//! on the handler and cannot drift apart. The compatible routes answer every method (as the
//! originals did), which `routes!` cannot register, so they are added with axum's `any` and
//! listed in [`ApiDoc`]. Response schemas are derived from the response types; the two shapes
//! floe-core serialises by hand (a decoded ID, a layout's capacity) are described here, and a
//! test holds each description to the real serialisation.

use std::collections::BTreeMap;

use serde::Serialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use super::compat;

/// The native error body: `{"error":{"code":…,"message":…}}`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ErrorBody {
    /// The error.
    pub(crate) error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ErrorDetail {
    /// Stable machine-readable code: `bad_request`, `unauthorized`, `not_found`, `unknown_tag`,
    /// `method_not_allowed`, `timeout`, `tag_exists`, `exhausted`, `too_large`, `internal`,
    /// `unavailable`.
    pub(crate) code: String,
    /// Names the parameter, the allowed range and the value, or what to do.
    pub(crate) message: String,
}

/// A decoded ID (floe-core's `Decoded`, serialised by hand there).
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // a description only
pub(crate) struct DecodedId {
    /// The ID.
    id: u64,
    /// The ID in hexadecimal, `0x` and 16 digits.
    id_hex: String,
    /// Start of the ID's tick, RFC 3339 UTC.
    time: String,
    /// Start of the ID's tick, Unix ms.
    unix_ms: u64,
    /// Every field of the layout, most significant first, with its value.
    fields: BTreeMap<String, u64>,
}

/// What a layout can issue (floe-core's `Capacity`).
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // a description only
pub(crate) struct LayoutCapacity {
    /// IDs one lane can issue in one tick.
    ids_per_tick_per_lane: u64,
    /// Lanes per node (1 without a lane field).
    lanes: u64,
    /// IDs one node can issue per second with every lane busy.
    ids_per_second_per_node: f64,
    /// Distinct node identities.
    nodes: u64,
    /// Length of one tick, ms.
    tick_ms: u64,
    /// Unix ms at which the time field runs out.
    end_ms: u64,
}

/// Adds the bearer scheme the admin routes name in their `security`.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("server.admin_token"))
                    .build(),
            ),
        );
    }
}

/// The document's frame: info, the bearer scheme, and the routes `routes!` cannot register.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Floe",
        description = "Unique 64-bit IDs: snowflake and segment modes. Native JSON routes, the console's data, admin (bearer token), and the routes of the systems Floe replaces, byte for byte. docs/protocol.md describes each.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        compat::alloc,
        compat::health,
        compat::feather_id,
        compat::feather_batch,
        compat::leaf_segment,
        compat::leaf_snowflake,
        compat::leaf_decode,
        openapi_json,
    ),
    components(schemas(super::native::IdFormat)),
    modifiers(&BearerAuth),
    tags(
        (name = "ids", description = "Snowflake and segment IDs"),
        (name = "node", description = "Node information, health and metrics"),
        (name = "console", description = "The embedded console and its data"),
        (name = "admin", description = "Behind Authorization: Bearer <server.admin_token>; 404 while no token is configured"),
        (name = "compatible", description = "Routes of Distributed ID Generator, FeatherID and Meituan Leaf, with their own response shapes; every method is accepted"),
    )
)]
pub(crate) struct ApiDoc;

/// `GET /openapi.json`: this document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "node",
    responses((status = 200, description = "The OpenAPI 3.1 document of every HTTP route", content_type = "application/json", body = Object))
)]
#[allow(dead_code)] // documents the route; the router serves the built document
pub(crate) async fn openapi_json() {}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use utoipa::openapi::{RefOr, Schema};

    use super::*;

    /// The property names of a documented object schema.
    fn properties<T: ToSchema>() -> BTreeSet<String> {
        match T::schema() {
            RefOr::T(Schema::Object(o)) => o.properties.keys().cloned().collect(),
            _ => panic!("{} is not an object schema", T::name()),
        }
    }

    /// The keys of a serialised value.
    fn keys(value: serde_json::Value) -> BTreeSet<String> {
        value.as_object().unwrap().keys().cloned().collect()
    }

    #[test]
    fn hand_written_shapes_match_floe_core() {
        let layout = floe_core::Layout::parse("genid").unwrap();
        let decoded = layout.decode(7710501619835731968).unwrap();
        assert_eq!(
            properties::<DecodedId>(),
            keys(serde_json::to_value(&decoded).unwrap())
        );
        assert_eq!(
            properties::<LayoutCapacity>(),
            keys(serde_json::to_value(layout.capacity()).unwrap())
        );
    }
}
