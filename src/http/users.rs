//! `/v1/users`: registration, reading a user, editing one's own profile.

use std::sync::Arc;

use axum::{
    extract::{Path, State},
    http::StatusCode,
    routing::{get, patch, post},
    Json, Router,
};
use serde_json::Value;

use super::{
    extract::{Auth, Body, Client},
    validate::path_uuid,
    views, AppState,
};
use crate::{error::Result, service::users::AccountChanges, Rotor};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/users", post(register))
        .route("/v1/users/me", patch(update_me).get(get_me))
        .route("/v1/users/{id}", get(get_user))
}

async fn register(
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
    Ok((StatusCode::CREATED, Json(views::user(&user))))
}

async fn get_me(Auth(me): Auth) -> Json<Value> {
    Json(views::user(&me.user))
}

async fn get_user(
    State(rotor): State<Arc<Rotor>>,
    Auth(_me): Auth,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    let id = path_uuid("id", &id)?;
    Ok(Json(views::user(&rotor.get_user(id).await?)))
}

async fn update_me(
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
    Ok(Json(views::user(&user)))
}
