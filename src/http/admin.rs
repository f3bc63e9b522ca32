//! `/v1/admin/*`: user management and the security log, for admins only (401 without
//! a valid bearer, 403 for non-admins).

use std::sync::Arc;

use axum::{
    extract::{Path, RawQuery, State},
    http::StatusCode,
    routing::get,
    Json, Router,
};
use serde_json::Value;

use super::{
    auth::pagination,
    extract::{Admin, Body, Client},
    validate::{path_uuid, Input},
    views, AppState,
};
use crate::{
    error::Result,
    service::users::{AccountChanges, AccountSpec},
    storage::{EventFilter, Role},
    Rotor,
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/admin/users", get(list_users).post(create_user))
        .route(
            "/v1/admin/users/{id}",
            get(get_user).patch(update_user).delete(delete_user),
        )
        .route("/v1/admin/events", get(list_events))
}

async fn list_users(
    State(rotor): State<Arc<Rotor>>,
    Admin(_): Admin,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>> {
    let mut input = Input::query(q.as_deref());
    let (page, size) = pagination(&rotor, &mut input);
    input.finish()?;
    let (users, total) = rotor.list_users(page, size).await?;
    Ok(Json(views::page(
        users.iter().map(views::user).collect(),
        total,
        page,
        size,
    )))
}

async fn create_user(
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
    Ok((StatusCode::CREATED, Json(views::user(&user))))
}

async fn get_user(
    State(rotor): State<Arc<Rotor>>,
    Admin(_): Admin,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    let id = path_uuid("id", &id)?;
    Ok(Json(views::user(&rotor.get_user(id).await?)))
}

async fn update_user(
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
    Ok(Json(views::user(&user)))
}

async fn delete_user(
    State(rotor): State<Arc<Rotor>>,
    Client(ctx): Client,
    Admin(admin): Admin,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    let id = path_uuid("id", &id)?;
    rotor.delete_account(id, Some(&admin), &ctx).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list_events(
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
    Ok(Json(views::page(
        items.iter().map(views::event).collect(),
        total,
        page,
        size,
    )))
}
