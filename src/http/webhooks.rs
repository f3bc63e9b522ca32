//! `/v1/admin/webhooks/*`: the configured endpoints (never their secrets), recent
//! deliveries with their attempts, and a manual retry of a failed delivery. Admins
//! only. Endpoints come from configuration alone: no route adds one.

use std::sync::Arc;

use axum::{
    extract::{Path, RawQuery, State},
    http::StatusCode,
    Json,
};
use serde::Serialize;
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{
    auth::{pagination, Pagination},
    extract::Admin,
    openapi::{Forbidden, Invalid, NotAuthenticated},
    validate::{path_uuid, Input},
    views::{self, ServiceError},
};
use crate::{
    error::{Error, Result},
    storage::outbox::{self, DeliveryRow, DeliveryStatus},
    Rotor,
};

/// A delivery's state: pending (due, in flight or waiting to be retried), delivered,
/// or failed (its 24-hour retry window ended).
#[derive(Serialize, ToSchema, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Status {
    Pending,
    Delivered,
    Failed,
}

impl From<DeliveryStatus> for Status {
    fn from(s: DeliveryStatus) -> Self {
        match s {
            DeliveryStatus::Pending => Self::Pending,
            DeliveryStatus::Delivered => Self::Delivered,
            DeliveryStatus::Failed => Self::Failed,
        }
    }
}

/// A configured endpoint.
#[derive(Serialize, ToSchema)]
pub(crate) struct Endpoint {
    /// The URL, any password in it shown as ***
    pub url: String,
    /// The event types it receives (WEBHOOK_EVENTS)
    pub events: Vec<String>,
    pub pending: u64,
    pub delivered: u64,
    pub failed: u64,
}

/// The configured endpoints (WEBHOOK_URL).
#[derive(Serialize, ToSchema)]
pub(crate) struct EndpointList {
    pub items: Vec<Endpoint>,
}

/// One attempt to deliver.
#[derive(Serialize, ToSchema)]
pub(crate) struct AttemptView {
    #[schema(format = DateTime)]
    pub at: String,
    /// The receiver's HTTP status; null when it did not answer
    #[schema(required = true)]
    pub status_code: Option<u16>,
    /// Why the attempt failed; null when it succeeded
    #[schema(required = true)]
    pub error: Option<String>,
    pub duration_ms: u64,
}

/// An event's delivery to one endpoint.
#[derive(Serialize, ToSchema)]
pub(crate) struct DeliveryView {
    /// The event's id (the path parameter of the retry route)
    pub event_id: Uuid,
    /// The webhook-id header: msg_ and the event id; the same on every redelivery
    pub webhook_id: String,
    pub event_type: String,
    #[schema(required = true)]
    pub user_id: Option<Uuid>,
    #[schema(format = DateTime)]
    pub created_at: String,
    /// The endpoint, any password in it shown as ***
    pub endpoint: String,
    pub status: Status,
    /// Failed attempts since the retry window opened
    pub attempts: u32,
    /// When it is due next; null unless pending
    #[schema(required = true, format = DateTime)]
    pub next_attempt_at: Option<String>,
    #[schema(required = true, format = DateTime)]
    pub delivered_at: Option<String>,
    /// Every attempt, oldest first
    pub history: Vec<AttemptView>,
}

/// A page of deliveries, newest event first.
#[derive(Serialize, ToSchema)]
pub(crate) struct DeliveryPage {
    pub items: Vec<DeliveryView>,
    /// Items on every page
    pub total: u64,
    #[schema(minimum = 1)]
    pub page: u32,
    #[schema(minimum = 1)]
    pub size: u32,
}

/// The result of a retry.
#[derive(Serialize, ToSchema)]
pub(crate) struct Retried {
    /// Failed deliveries of the event made pending again (one per endpoint)
    #[schema(minimum = 1)]
    pub retried: u64,
}

/// The `status` filter of the delivery list.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct StatusFilter {
    /// Only deliveries in this state
    #[param(nullable = false, inline)]
    status: Option<Status>,
}

/// The event of a retry.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub(crate) struct EventId {
    /// The event's id (event_id in the delivery list; 422 when not a UUID)
    id: Uuid,
}

fn delivery(d: &DeliveryRow) -> DeliveryView {
    DeliveryView {
        event_id: d.event_id,
        webhook_id: outbox::webhook_id(d.event_id),
        event_type: d.event_type.clone(),
        user_id: d.user_id,
        created_at: views::ts(d.created_at),
        endpoint: crate::config::redact_url(&d.endpoint),
        status: d.status.into(),
        attempts: d.attempts,
        next_attempt_at: d.next_attempt_at.map(views::ts),
        delivered_at: d.delivered_at.map(views::ts),
        history: d
            .history
            .iter()
            .map(|a| AttemptView {
                at: views::ts(a.at),
                status_code: a.status_code,
                error: a.error.clone(),
                duration_ms: a.duration_ms,
            })
            .collect(),
    }
}

/// Webhook endpoints
///
/// The endpoints configured by WEBHOOK_URL, with their delivery counts. Secrets are
/// never shown; endpoints cannot be added through the API.
#[utoipa::path(get, path = "/v1/admin/webhooks/endpoints", tag = "admin", operation_id = "adminListWebhookEndpoints", security(("bearer" = [])),
    responses(
        (status = 200, description = "The configured endpoints", body = EndpointList),
        (status = 401, response = NotAuthenticated),
        (status = 403, response = Forbidden),
    ))]
pub(crate) async fn list_endpoints(
    State(rotor): State<Arc<Rotor>>,
    Admin(_): Admin,
) -> Result<Json<Value>> {
    let items = rotor
        .webhook_endpoints()
        .await?
        .into_iter()
        .map(|e| Endpoint {
            url: e.url,
            events: e.events.iter().map(|t| t.as_str().to_owned()).collect(),
            pending: e.pending,
            delivered: e.delivered,
            failed: e.failed,
        })
        .collect();
    Ok(views::body(&EndpointList { items }))
}

/// Webhook deliveries
///
/// Recent deliveries, newest event first, each with its attempts.
#[utoipa::path(get, path = "/v1/admin/webhooks/deliveries", tag = "admin", operation_id = "adminListWebhookDeliveries", security(("bearer" = [])), params(Pagination, StatusFilter),
    responses(
        (status = 200, description = "A page of deliveries", body = DeliveryPage),
        (status = 401, response = NotAuthenticated),
        (status = 403, response = Forbidden),
        (status = 422, response = Invalid),
    ))]
pub(crate) async fn list_deliveries(
    State(rotor): State<Arc<Rotor>>,
    Admin(_): Admin,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>> {
    let mut input = Input::query(q.as_deref());
    let (page, size) = pagination(&rotor, &mut input);
    let status = input
        .choice("status", &["pending", "delivered", "failed"])
        .and_then(|s| DeliveryStatus::parse(&s));
    input.finish()?;
    let (items, total) = rotor.webhook_deliveries(status, page, size).await?;
    Ok(views::body(&DeliveryPage {
        items: items.iter().map(delivery).collect(),
        total,
        page,
        size,
    }))
}

/// Retry a failed webhook delivery
///
/// Makes the event's failed deliveries pending again, due at once, with a new 24-hour
/// retry window. The redelivery keeps the event's webhook-id.
#[utoipa::path(post, path = "/v1/admin/webhooks/deliveries/{id}/retry", tag = "admin", operation_id = "adminRetryWebhookDelivery", security(("bearer" = [])), params(EventId),
    responses(
        (status = 202, description = "Queued for delivery", body = Retried),
        (status = 401, response = NotAuthenticated),
        (status = 403, response = Forbidden),
        (status = 404, description = "WebhookDeliveryNotFound: no failed delivery of this event", body = ServiceError),
        (status = 422, response = Invalid),
    ))]
pub(crate) async fn retry_delivery(
    State(rotor): State<Arc<Rotor>>,
    Admin(_): Admin,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Value>)> {
    let id = path_uuid("id", &id)?;
    match rotor.retry_webhook(id).await? {
        0 => Err(Error::WebhookDeliveryNotFound),
        retried => Ok((StatusCode::ACCEPTED, views::body(&Retried { retried }))),
    }
}
