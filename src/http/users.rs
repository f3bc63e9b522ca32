//! `/v1/users`: registration, reading a user, editing one's own profile.

use std::sync::Arc;

use axum::{
    extract::{Path, State},
    http::StatusCode,
    Json,
};
use serde_json::Value;
use utoipa::ToSchema;

use super::{
    extract::{Auth, Body, Client},
    openapi::{Invalid, NotAuthenticated, RateLimited, UserNotFound},
    validate::path_uuid,
    views::{self, ServiceError},
};
use crate::{error::Result, service::users::AccountChanges, Rotor};

/// The registration body (read by [`register`]).
#[derive(ToSchema)]
#[allow(dead_code)]
pub(super) struct UserCreate {
    /// An email address (no whitespace, control or invisible characters)
    #[schema(format = Email, pattern = "^[^\\x00]*$")]
    email: String,
    /// At least one uppercase letter and one digit
    #[schema(
        min_length = 8,
        max_length = 128,
        pattern = "^(?=[^\\x00]*[A-Z])(?=[^\\x00]*[0-9])[^\\x00]*$"
    )]
    password: String,
    #[schema(max_length = 255, pattern = "^[^\\x00]*$")]
    full_name: Option<String>,
}

/// The profile edit (read by [`update_me`]).
#[derive(ToSchema)]
#[allow(dead_code)]
pub(super) struct UserUpdateMe {
    /// Absent: unchanged; null: cleared
    #[schema(max_length = 255, pattern = "^[^\\x00]*$")]
    full_name: Option<String>,
}

/// Register
///
/// Creates an active, unverified user; the ADMIN_EMAIL address becomes an admin.
#[utoipa::path(post, path = "/v1/users", tag = "users", operation_id = "register", security(()), request_body = UserCreate,
    responses(
        (status = 201, description = "Registered", body = views::User),
        (status = 409, description = "EmailAlreadyExists (emails are unique case-insensitively)",
            body = ServiceError),
        (status = 422, response = Invalid),
        (status = 429, response = RateLimited),
    ))]
pub(crate) async fn register(
    State(rotor): State<Arc<Rotor>>,
    Client(ctx): Client,
    body: Body,
) -> Result<(StatusCode, Json<Value>)> {
    let mut input = body.json()?;
    let email = input.email("email");
    let password = input.strong_password("password");
    let full_name = input.optional_string("full_name", 255);
    input.finish()?;
    let (Some(email), Some(password)) = (email, password) else {
        unreachable!("BUG: finish() passed with a missing required field");
    };
    let user = rotor.register(&email, &password, full_name, &ctx).await?;
    Ok((StatusCode::CREATED, views::body(&views::user(&user))))
}

/// The current user
#[utoipa::path(get, path = "/v1/users/me", tag = "users", operation_id = "getMe", security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller", body = views::User),
        (status = 401, response = NotAuthenticated),
    ))]
pub(crate) async fn get_me(Auth(me): Auth) -> axum::response::Response {
    views::direct(&views::user(&me.user))
}

/// A user by id
#[utoipa::path(get, path = "/v1/users/{id}", tag = "users", operation_id = "getUser", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "User id (422 when not a UUID)")),
    responses(
        (status = 200, description = "The user", body = views::User),
        (status = 401, response = NotAuthenticated),
        (status = 404, response = UserNotFound),
        (status = 422, response = Invalid),
    ))]
pub(crate) async fn get_user(
    State(rotor): State<Arc<Rotor>>,
    Auth(_me): Auth,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    let id = path_uuid("id", &id)?;
    Ok(views::body(&views::user(&rotor.get_user(id).await?)))
}

/// Edit one's own profile
#[utoipa::path(patch, path = "/v1/users/me", tag = "users", operation_id = "updateMe", security(("bearer" = [])), request_body = UserUpdateMe,
    responses(
        (status = 200, description = "Updated", body = views::User),
        (status = 401, response = NotAuthenticated),
        (status = 422, response = Invalid),
    ))]
pub(crate) async fn update_me(
    State(rotor): State<Arc<Rotor>>,
    Client(ctx): Client,
    Auth(me): Auth,
    body: Body,
) -> Result<Json<Value>> {
    let mut input = body.json()?;
    let full_name = input.nullable_string("full_name", 255);
    input.finish()?;
    let changes = AccountChanges {
        full_name,
        ..AccountChanges::default()
    };
    let user = rotor
        .update_account(me.user.id, changes, Some(&me), &ctx)
        .await?;
    Ok(views::body(&views::user(&user)))
}
