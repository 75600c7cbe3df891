//! `/v1/graphql`: the same reads as the REST API, and live updates as subscriptions over
//! WebSocket with the `graphql-transport-ws` protocol (and the older `graphql-ws`), so GraphQL
//! clients and tools work unchanged.
//!
//! - `POST /v1/graphql` (or `GET` with `?query=`): queries, with a read key as
//!   `Authorization: Bearer KEY`.
//! - `GET /v1/graphql` with a WebSocket upgrade (`Sec-WebSocket-Protocol:
//!   graphql-transport-ws`): subscriptions. The key comes as the `Authorization` header, `?key=`,
//!   or in `connection_init`'s payload as `{"Authorization": "Bearer KEY"}` (or `{"key": KEY}`);
//!   a refused key closes the socket (code 1002, as async-graphql does) with the reason. The
//!   connection follows the same rules as live push ([`crate::socket`]: send queue, 4008 for
//!   clients too slow, pings, 4001 when its key is revoked, 1001 at shutdown), and
//!   [`session`] adds the subscription cap and the checks at each `subscribe`.
//!
//! ```graphql
//! query { series(metric: "page_views", from: "now-1h", resolution: "5m", filters: ["url:/home"]) {
//!   series { key points { start end final values } } } }
//! subscription { windowUpdates(metric: "page_views") { windows { key start end final values } } }
//! ```
//!
//! Epoch milliseconds are GraphQL `Int`s wider than 32 bits (as JavaScript numbers they are
//! exact). Keys and values are `JSON` objects named after the metric's columns.

mod session;

use crate::error::ApiError;
use crate::feed::{Change, Changes, Feed, Hubs};
use crate::keys::Access;
use crate::push::{connection_slot, socket_key};
use crate::query::params::SeriesParams;
use crate::query::{MetricInfo, Serving};
use crate::socket::Settings;
use async_graphql::futures_util::Stream;
use async_graphql::http::{ALL_WEBSOCKET_PROTOCOLS, WebSocketProtocols as Protocols};
use async_graphql::{
    Context, EmptyMutation, ErrorExtensions, Json, Object, Schema, SimpleObject, Subscription,
};
use async_graphql_axum::{GraphQLRequest, GraphQLResponse};
use axum::extract::rejection::QueryRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use session::GraphqlSession;
use sluice_core::access::{Grant, Role};
use std::sync::Arc;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The schema.
pub type SluiceSchema = Schema<QueryRoot, EmptyMutation, SubscriptionRoot>;

/// Deepest query accepted.
pub const MAX_DEPTH: usize = 12;
/// Most complex query accepted (fields, summed).
pub const MAX_COMPLEXITY: usize = 500;

/// What the GraphQL routes need.
pub struct GraphqlState {
    /// Keys.
    pub access: Arc<Access>,
    /// The schema (holds the serving engine).
    pub schema: SluiceSchema,
    /// One permit per open WebSocket connection (shared with live push).
    pub connections: Arc<Semaphore>,
    /// Cancelled when the server stops: connections close with 1001 ("going away").
    pub shutdown: CancellationToken,
    settings: Settings,
    max_subscriptions: usize,
}

impl std::fmt::Debug for GraphqlState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphqlState")
            .field("settings", &self.settings)
            .field("max_subscriptions", &self.max_subscriptions)
            .finish_non_exhaustive()
    }
}

impl GraphqlState {
    /// The GraphQL state over `serving`; WebSocket connections close when `shutdown` is
    /// cancelled.
    pub fn new(
        access: Arc<Access>,
        serving: Arc<Serving>,
        hubs: Arc<Hubs>,
        connections: Arc<Semaphore>,
        shutdown: CancellationToken,
    ) -> GraphqlState {
        GraphqlState {
            settings: Settings::of(serving.config()),
            max_subscriptions: serving.config().ws_max_subscriptions,
            schema: schema(serving, hubs),
            access,
            connections,
            shutdown,
        }
    }
}

/// Builds the schema: queries read `serving`, subscriptions also share `hubs`.
pub fn schema(serving: Arc<Serving>, hubs: Arc<Hubs>) -> SluiceSchema {
    Schema::build(QueryRoot, EmptyMutation, SubscriptionRoot)
        .data(serving)
        .data(hubs)
        .limit_depth(MAX_DEPTH)
        .limit_complexity(MAX_COMPLEXITY)
        .finish()
}

/// The GraphQL routes, with their OpenAPI description.
pub fn router(state: Arc<GraphqlState>) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(get_graphql, post_graphql))
        .with_state(state)
}

/// A GraphQL request (documentation schema).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct GraphqlRequestDoc {
    /// The query, e.g. `{ metrics { name } }`.
    pub query: String,
    /// Its variables.
    pub variables: Option<serde_json::Value>,
    /// The operation to run, when the query holds several.
    #[serde(rename = "operationName")]
    pub operation_name: Option<String>,
}

/// The reader a request runs as.
#[derive(Debug, Clone)]
pub(crate) struct Reader(Arc<Grant>);

fn reader<'a>(ctx: &Context<'a>) -> async_graphql::Result<(&'a Arc<Serving>, Arc<str>)> {
    let reader = ctx
        .data::<Reader>()
        .map_err(|_| async_graphql::Error::new("missing read key"))?;
    let tenant = reader
        .0
        .tenant()
        .cloned()
        .ok_or_else(|| async_graphql::Error::new("this key belongs to no tenant"))?;
    Ok((ctx.data::<Arc<Serving>>()?, tenant))
}

fn graphql_error(error: ApiError) -> async_graphql::Error {
    let code = error.code();
    async_graphql::Error::new(error.message().to_owned()).extend_with(|_, extensions| {
        extensions.set("code", code);
    })
}

/// Queries.
#[derive(Debug, Default)]
pub struct QueryRoot;

#[Object]
impl QueryRoot {
    /// Every metric (definitions are global; each tenant reads its own results).
    async fn metrics(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Metric>> {
        let (serving, _) = reader(ctx)?;
        Ok(serving.metrics().into_iter().map(Metric::from).collect())
    }

    /// One metric.
    async fn metric(&self, ctx: &Context<'_>, name: String) -> async_graphql::Result<Metric> {
        let (serving, _) = reader(ctx)?;
        serving
            .metric(&name)
            .map(Metric::from)
            .map_err(graphql_error)
    }

    /// A metric's time series over `[from, to)`, like `GET /v1/metrics/{name}`.
    #[allow(clippy::too_many_arguments)]
    async fn series(
        &self,
        ctx: &Context<'_>,
        metric: String,
        #[graphql(desc = "RFC 3339, epoch ms, now or now-DURATION (default: to - 1h)")]
        from: Option<String>,
        #[graphql(desc = "End, exclusive (default now)")] to: Option<String>,
        #[graphql(desc = "raw or a duration like 1h")] resolution: Option<String>,
        #[graphql(desc = "Only the N keys with the largest `by`")] top: Option<u32>,
        #[graphql(desc = "The aggregate top ranks by (default the first)")] by: Option<String>,
        #[graphql(desc = "KEY:VALUE filters on group keys")] filters: Option<Vec<String>>,
    ) -> async_graphql::Result<SeriesResult> {
        let (serving, tenant) = reader(ctx)?;
        let params = SeriesParams {
            from,
            to,
            resolution,
            top: top.map(|top| top as usize),
            by,
            filters: filters.unwrap_or_default(),
        };
        let answer = serving
            .series(&tenant, &metric, &params)
            .await
            .map_err(graphql_error)?;
        let plan_names: Vec<String> = answer
            .metric
            .values
            .iter()
            .map(|v| v.name.clone())
            .collect();
        Ok(SeriesResult {
            metric: answer.metric.name.clone(),
            from: answer.from,
            to: answer.to,
            resolution_ms: answer.resolution,
            watermark: answer.watermark,
            series: answer
                .series
                .into_iter()
                .map(|series| Series {
                    key: Json(series.key),
                    points: series
                        .points
                        .into_iter()
                        .map(|point| Point {
                            start: point.start,
                            end: point.end,
                            is_final: point.is_final,
                            values: Json(serde_json::Value::Object(
                                plan_names
                                    .iter()
                                    .cloned()
                                    .zip(point.values.iter().map(sluice_stream::render::value_json))
                                    .collect(),
                            )),
                        })
                        .collect(),
                })
                .collect(),
        })
    }
}

/// A metric's shape.
#[derive(Debug, SimpleObject)]
pub struct Metric {
    /// Name.
    pub name: String,
    /// Group key names.
    pub keys: Vec<String>,
    /// Aggregates, in order.
    pub values: Vec<MetricValue>,
    /// `tumble`, `hop` or `session`.
    pub window_kind: String,
    /// Window length (tumble, hop), ms.
    pub window_size_ms: Option<i64>,
    /// Distance between hopping windows, ms.
    pub window_slide_ms: Option<i64>,
    /// Session gap, ms.
    pub session_gap_ms: Option<i64>,
    /// How long after its end a window may still change, ms.
    pub allowed_lateness_ms: i64,
}

/// One aggregate of a metric.
#[derive(Debug, SimpleObject)]
pub struct MetricValue {
    /// Column name.
    pub name: String,
    /// `count`, `count_distinct`, `sum`, `min`, `max`, `avg` or `approx_percentile`.
    pub aggregate: String,
    /// The quantile of `approx_percentile`.
    pub quantile: Option<f64>,
}

impl From<MetricInfo> for Metric {
    fn from(info: MetricInfo) -> Metric {
        Metric {
            name: info.name,
            keys: info.keys,
            values: info
                .values
                .into_iter()
                .map(|value| MetricValue {
                    name: value.name,
                    aggregate: value.aggregate.to_owned(),
                    quantile: value.quantile,
                })
                .collect(),
            window_kind: info.window.kind.to_owned(),
            window_size_ms: info.window.size_ms,
            window_slide_ms: info.window.slide_ms,
            session_gap_ms: info.window.gap_ms,
            allowed_lateness_ms: info.allowed_lateness_ms,
        }
    }
}

/// A query's answer.
#[derive(Debug, SimpleObject)]
pub struct SeriesResult {
    /// The metric.
    pub metric: String,
    /// Windows starting at or after this, epoch ms.
    pub from: i64,
    /// Windows starting before this, epoch ms.
    pub to: i64,
    /// Bucket size, ms (`null`: the metric's windows).
    pub resolution_ms: Option<i64>,
    /// Windows closing at or before this are final.
    pub watermark: Option<i64>,
    /// One series per group key.
    pub series: Vec<Series>,
}

/// One group key's points.
#[derive(Debug, SimpleObject)]
pub struct Series {
    /// The group key, `{name: value}`.
    pub key: Json<serde_json::Value>,
    /// In time order.
    pub points: Vec<Point>,
}

/// One window or bucket.
#[derive(Debug, SimpleObject)]
pub struct Point {
    /// Start, epoch ms.
    pub start: i64,
    /// End, epoch ms, exclusive.
    pub end: i64,
    /// Whether it can no longer change.
    #[graphql(name = "final")]
    pub is_final: bool,
    /// The aggregates, `{name: value}`.
    pub values: Json<serde_json::Value>,
}

/// What changed in a subscribed metric.
#[derive(Debug, SimpleObject)]
pub struct LiveUpdate {
    /// The metric.
    pub metric: String,
    /// The windows that changed since the previous update.
    pub windows: Vec<LiveWindow>,
}

/// One changed window.
#[derive(Debug, SimpleObject)]
pub struct LiveWindow {
    /// The group key.
    pub key: Json<serde_json::Value>,
    /// Start, epoch ms.
    pub start: i64,
    /// End, epoch ms.
    pub end: i64,
    /// Whether it can no longer change.
    #[graphql(name = "final")]
    pub is_final: bool,
    /// The window no longer exists (a session merged into another).
    pub removed: bool,
    /// The aggregates (`null` when removed).
    pub values: Option<Json<serde_json::Value>>,
}

/// Subscriptions.
#[derive(Debug, Default)]
pub struct SubscriptionRoot;

#[Subscription]
impl SubscriptionRoot {
    /// Changed windows of a metric, coalesced per `api.push-interval`; the first update holds
    /// every open window.
    async fn window_updates(
        &self,
        ctx: &Context<'_>,
        metric: String,
        #[graphql(desc = "KEY:VALUE filters on group keys")] filters: Option<Vec<String>>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<LiveUpdate>>> {
        // The key's request rate applies when the subscription is asked for (session.rs).
        let (serving, tenant) = reader(ctx)?;
        let hubs = ctx.data::<Arc<Hubs>>()?;
        let feed = Feed::new(
            Arc::clone(serving),
            hubs,
            &tenant,
            &metric,
            filters.unwrap_or_default(),
        )
        .await
        .map_err(graphql_error)?;
        Ok(futures::stream::unfold(Some(feed), |feed| async move {
            let mut feed = feed?;
            loop {
                feed.changed().await;
                match feed.take() {
                    Ok(None) => continue,
                    Ok(Some(Changes::Windows(changes))) => {
                        let update = live_update(&feed, &changes);
                        return Some((Ok(update), Some(feed)));
                    }
                    Ok(Some(Changes::TooMany(count))) => {
                        let error = async_graphql::Error::new(format!(
                            "{count} windows changed at once; query the range instead"
                        ))
                        .extend_with(|_, extensions| extensions.set("code", "too_many_changes"));
                        return Some((Err(error), Some(feed)));
                    }
                    Err(error) => {
                        let ends = Feed::ends(&error);
                        return Some((Err(graphql_error(error)), (!ends).then_some(feed)));
                    }
                }
            }
        }))
    }
}

/// The windows of an update as GraphQL objects (the per-subscription part: what it receives).
fn live_update(feed: &Feed, changes: &[Arc<Change>]) -> LiveUpdate {
    let plan = feed.plan();
    LiveUpdate {
        metric: feed.metric().to_owned(),
        windows: changes
            .iter()
            .map(|change| LiveWindow {
                key: Json(serde_json::from_str(&change.key_json).unwrap_or_default()),
                start: change.start,
                end: change.end,
                is_final: change.is_final,
                removed: change.removed,
                values: (!change.removed).then(|| Json(change.values_json(plan))),
            })
            .collect(),
    }
}

/// Runs a GraphQL query (`metrics`, `metric`, `series`) as the read key's tenant.
#[utoipa::path(post, path = "/v1/graphql", tag = "graphql", security(("bearer" = [])),
    request_body = GraphqlRequestDoc,
    responses(
        (status = 200, description = "`{\"data\": …, \"errors\": […]}`: errors carry `extensions.code`", body = serde_json::Value),
        (status = 400, description = "Not a GraphQL request"),
        (status = 401, description = "No or unknown key", body = crate::error::ErrorBody),
        (status = 403, description = "Not a read key", body = crate::error::ErrorBody),
        (status = 429, description = "The key's request rate is spent (see Retry-After)", body = crate::error::ErrorBody),
    ))]
async fn post_graphql(
    State(state): State<Arc<GraphqlState>>,
    headers: HeaderMap,
    request: GraphQLRequest,
) -> Result<GraphQLResponse, ApiError> {
    let grant = state.access.authorize(&headers, Role::Read)?;
    Ok(state
        .schema
        .execute(request.into_inner().data(Reader(grant)))
        .await
        .into())
}

/// `?key=` for WebSocket clients that cannot send headers.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct SocketParams {
    /// The read key (else the `Authorization` header, or `connection_init`'s payload).
    key: Option<String>,
}

/// A GraphQL query as `?query=…`, or — with a WebSocket upgrade and `Sec-WebSocket-Protocol:
/// graphql-transport-ws` — subscriptions (`windowUpdates`).
#[utoipa::path(get, path = "/v1/graphql", tag = "graphql", security(("bearer" = [])),
    params(SocketParams, ("query" = Option<String>, Query, description = "A GraphQL query (without a WebSocket upgrade)")),
    responses(
        (status = 101, description = "WebSocket speaking graphql-transport-ws (or graphql-ws)"),
        (status = 200, description = "The query's `{\"data\": …}`", body = serde_json::Value),
        (status = 400, description = "Neither a GraphQL query nor a GraphQL WebSocket", body = crate::error::ErrorBody),
        (status = 401, description = "No or unknown key", body = crate::error::ErrorBody),
        (status = 403, description = "Not a read key", body = crate::error::ErrorBody),
        (status = 503, description = "api.ws-max-connections are open", body = crate::error::ErrorBody),
    ))]
async fn get_graphql(
    State(state): State<Arc<GraphqlState>>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
    params: Result<Query<SocketParams>, QueryRejection>,
    request: Result<GraphQLRequest, async_graphql_axum::rejection::GraphQLRejection>,
) -> Result<Response, ApiError> {
    let Ok(upgrade) = upgrade else {
        // A plain GET query.
        let grant = state.access.authorize(&headers, Role::Read)?;
        let request = request.map_err(|rejection| {
            ApiError::bad_request(
                "invalid_graphql",
                format!("not a GraphQL request: {}", rejection.0),
            )
        })?;
        let response: GraphQLResponse = state
            .schema
            .execute(request.into_inner().data(Reader(grant)))
            .await
            .into();
        return Ok(response.into_response());
    };
    let upgrade = upgrade
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        .max_message_size(crate::push::MAX_CLIENT_MESSAGE)
        .max_write_buffer_size(4 * 1024 * 1024);
    let protocol = upgrade
        .selected_protocol()
        .and_then(|protocol| protocol.to_str().ok())
        .and_then(|protocol| protocol.parse::<Protocols>().ok())
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_protocol",
                "send Sec-WebSocket-Protocol: graphql-transport-ws (or graphql-ws)",
            )
        })?;
    let key = params.ok().and_then(|Query(params)| params.key);
    // Without a key in the header or the query string, it comes in connection_init.
    let key = if headers.contains_key(axum::http::header::AUTHORIZATION) || key.is_some() {
        let key = socket_key(&headers, key.as_deref())?;
        Some(state.access.authorize_session(key, Role::Read)?)
    } else {
        None
    };
    let slot = connection_slot(&state.connections)?;
    let session = GraphqlSession::new(
        state.schema.clone(),
        protocol,
        Arc::clone(&state.access),
        key.as_ref(),
        state.max_subscriptions,
    );
    let (settings, shutdown) = (state.settings, state.shutdown.clone());
    Ok(upgrade.on_upgrade(move |socket| async move {
        crate::socket::serve(socket, session, key, settings, shutdown).await;
        drop(slot);
    }))
}

/// The key in a `connection_init` payload: `{"Authorization": "Bearer KEY"}` (any case) or
/// `{"key": "KEY"}`.
pub(crate) fn init_key(payload: &serde_json::Value) -> Option<String> {
    let object = payload.as_object()?;
    for (name, value) in object {
        let Some(text) = value.as_str() else { continue };
        if name.eq_ignore_ascii_case("authorization") {
            let (scheme, key) = text.split_once(' ')?;
            return scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| key.trim().to_owned());
        }
        if name == "key" {
            return Some(text.to_owned());
        }
    }
    None
}
