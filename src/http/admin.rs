//! `/v1/admin/*`: user management and the security log, for admins only (401 without
//! a valid bearer, 403 for non-admins).

use std::sync::Arc;

use axum::{
    extract::{Path, RawQuery, State},
    http::StatusCode,
    Json,
};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::{
    auth::{pagination, EventKind, Pagination},
    extract::{Admin, Body, Client},
    openapi::{Forbidden, Invalid, NotAuthenticated, RateLimited, UserNotFound},
    validate::{path_uuid, Input},
    views::{self, ServiceError},
};
use crate::{
    error::Result,
    service::users::{AccountChanges, AccountSpec},
    storage::{EventFilter, Role},
    Rotor,
};

/// The new account (read by [`create_user`]).
#[derive(ToSchema)]
#[allow(dead_code)]
pub(super) struct AdminUserCreate {
    #[schema(format = Email, pattern = "^[^\\x00]*$")]
    email: String,
    #[schema(min_length = 8, max_length = 128, pattern = "^[^\\x00]*$")]
    password: String,
    #[schema(max_length = 255, pattern = "^[^\\x00]*$")]
    full_name: Option<String>,
    /// Default user
    role: Option<views::Role>,
    /// Default true
    is_active: Option<bool>,
    /// Default false
    is_verified: Option<bool>,
}

/// The changes (read by [`update_user`]): only the fields present change.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(super) struct AdminUserUpdate {
    #[schema(format = Email, pattern = "^[^\\x00]*$")]
    email: Option<String>,
    /// Absent: unchanged; null: cleared
    #[schema(max_length = 255, pattern = "^[^\\x00]*$")]
    full_name: Option<String>,
    role: Option<views::Role>,
    is_active: Option<bool>,
    is_verified: Option<bool>,
    /// A new password; absent or null: unchanged
    #[schema(min_length = 8, max_length = 128, pattern = "^[^\\x00]*$")]
    password: Option<String>,
}

/// The user of an admin route.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub(super) struct UserId {
    /// User id (422 when not a UUID)
    id: uuid::Uuid,
}

/// The `user_id` filter of the security log.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(super) struct EventUser {
    /// Only events about this user
    #[param(nullable = false)]
    user_id: Option<uuid::Uuid>,
}

/// List users
#[utoipa::path(get, path = "/v1/admin/users", tag = "admin", operation_id = "adminListUsers", security(("bearer" = [])), params(Pagination),
    responses(
        (status = 200, description = "A page of users, oldest first", body = views::UserPage),
        (status = 401, response = NotAuthenticated),
        (status = 403, response = Forbidden),
        (status = 422, response = Invalid),
    ))]
pub(crate) async fn list_users(
    State(rotor): State<Arc<Rotor>>,
    Admin(_): Admin,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>> {
    let mut input = Input::query(q.as_deref());
    let (page, size) = pagination(&rotor, &mut input);
    input.finish()?;
    let (users, total) = rotor.list_users(page, size).await?;
    Ok(views::body(&views::UserPage {
        items: users.iter().map(views::user).collect(),
        total,
        page,
        size,
    }))
}

/// Create a user
#[utoipa::path(post, path = "/v1/admin/users", tag = "admin", operation_id = "adminCreateUser", security(("bearer" = [])), request_body = AdminUserCreate,
    responses(
        (status = 201, description = "Created", body = views::User),
        (status = 401, response = NotAuthenticated),
        (status = 403, response = Forbidden),
        (status = 409, description = "EmailAlreadyExists", body = ServiceError),
        (status = 422, response = Invalid),
        (status = 429, response = RateLimited),
    ))]
pub(crate) async fn create_user(
    State(rotor): State<Arc<Rotor>>,
    Client(ctx): Client,
    Admin(admin): Admin,
    body: Body,
) -> Result<(StatusCode, Json<Value>)> {
    let mut input = body.json()?;
    let email = input.email("email");
    let password = input.string("password", 8, 128);
    let full_name = input.optional_string("full_name", 255);
    let role = input.choice("role", &["user", "admin"]);
    let is_active = input.boolean("is_active");
    let is_verified = input.boolean("is_verified");
    input.finish()?;
    let (Some(email), Some(password)) = (email, password) else {
        unreachable!("BUG: finish() passed with a missing required field");
    };
    let spec = AccountSpec {
        email,
        password,
        full_name,
        role: role.as_deref().and_then(Role::parse).unwrap_or(Role::User),
        is_active: is_active.unwrap_or(true),
        is_verified: is_verified.unwrap_or(false),
    };
    let user = rotor.create_account(spec, Some(&admin), &ctx).await?;
    Ok((StatusCode::CREATED, views::body(&views::user(&user))))
}

/// A user
#[utoipa::path(get, path = "/v1/admin/users/{id}", tag = "admin", operation_id = "adminGetUser", security(("bearer" = [])), params(UserId),
    responses(
        (status = 200, description = "The user", body = views::User),
        (status = 401, response = NotAuthenticated),
        (status = 403, response = Forbidden),
        (status = 404, response = UserNotFound),
        (status = 422, response = Invalid),
    ))]
pub(crate) async fn get_user(
    State(rotor): State<Arc<Rotor>>,
    Admin(_): Admin,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    let id = path_uuid("id", &id)?;
    Ok(views::body(&views::user(&rotor.get_user(id).await?)))
}

/// Edit a user
///
/// Only the fields present change. Setting a password or deactivating the user ends all
/// of the user's sessions and their access tokens.
#[utoipa::path(patch, path = "/v1/admin/users/{id}", tag = "admin", operation_id = "adminUpdateUser", security(("bearer" = [])), params(UserId), request_body = AdminUserUpdate,
    responses(
        (status = 200, description = "Updated", body = views::User),
        (status = 401, response = NotAuthenticated),
        (status = 403, response = Forbidden),
        (status = 404, response = UserNotFound),
        (status = 409, description = "EmailAlreadyExists: the new email is taken", body = ServiceError),
        (status = 422, response = Invalid),
    ))]
pub(crate) async fn update_user(
    State(rotor): State<Arc<Rotor>>,
    Client(ctx): Client,
    Admin(admin): Admin,
    Path(id): Path<String>,
    body: Body,
) -> Result<Json<Value>> {
    let id = path_uuid("id", &id)?;
    let mut input = body.json()?;
    let changes = AccountChanges {
        email: input.optional_email("email"),
        full_name: input.nullable_string("full_name", 255),
        role: input
            .choice("role", &["user", "admin"])
            .as_deref()
            .and_then(Role::parse),
        is_active: input.boolean("is_active"),
        is_verified: input.boolean("is_verified"),
        password: match input.raw("password") {
            None | Some(Value::Null) => None,
            Some(_) => input.string("password", 8, 128),
        },
    };
    input.finish()?;
    let user = rotor
        .update_account(id, changes, Some(&admin), &ctx)
        .await?;
    Ok(views::body(&views::user(&user)))
}

/// Delete a user
///
/// Deletes the user and, with them, every session.
#[utoipa::path(delete, path = "/v1/admin/users/{id}", tag = "admin", operation_id = "adminDeleteUser", security(("bearer" = [])), params(UserId),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, response = NotAuthenticated),
        (status = 403, response = Forbidden),
        (status = 404, response = UserNotFound),
        (status = 422, response = Invalid),
    ))]
pub(crate) async fn delete_user(
    State(rotor): State<Arc<Rotor>>,
    Client(ctx): Client,
    Admin(admin): Admin,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    let id = path_uuid("id", &id)?;
    rotor.delete_account(id, Some(&admin), &ctx).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The security log
#[utoipa::path(get, path = "/v1/admin/events", tag = "admin", operation_id = "adminListEvents", security(("bearer" = [])), params(Pagination, EventUser, EventKind),
    responses(
        (status = 200, description = "A page of events, newest first", body = views::EventPage),
        (status = 401, response = NotAuthenticated),
        (status = 403, response = Forbidden),
        (status = 422, response = Invalid),
    ))]
pub(crate) async fn list_events(
    State(rotor): State<Arc<Rotor>>,
    Admin(_): Admin,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>> {
    let mut input = Input::query(q.as_deref());
    let (page, size) = pagination(&rotor, &mut input);
    let filter = EventFilter {
        user_id: input.uuid("user_id"),
        kind: input.optional_string("kind", 64),
    };
    input.finish()?;
    let (items, total) = rotor.list_events(&filter, page, size).await?;
    Ok(views::body(&views::EventPage {
        items: items.iter().map(views::event).collect(),
        total,
        page,
        size,
    }))
}
