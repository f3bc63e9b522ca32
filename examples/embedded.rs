//! rotor embedded in another axum application.
//!
//! The application owns its router, its state and its database pool. It merges rotor's
//! routes (`/v1/...`, `/oauth/...`, `/.well-known/...`) and protects its own handler
//! `GET /api/hello` with rotor's [`Auth`] extractor, which yields the authenticated
//! user and the session (refresh family) the access token belongs to.
//!
//! ```text
//! cargo run --example embedded                        # SQLite in a temporary directory
//! DATABASE_URL=postgres://postgres@127.0.0.1/app cargo run --example embedded
//! PORT=3000 JWT_ALGORITHM=EdDSA cargo run --example embedded
//!
//! curl -s localhost:3000/v1/users -H 'content-type: application/json' \
//!      -d '{"email":"ada@example.com","password":"Analytical1"}'
//! curl -s localhost:3000/oauth/token -d grant_type=password \
//!      -d username=ada@example.com -d password=Analytical1      # → access_token
//! curl -s localhost:3000/api/hello -H "authorization: Bearer $ACCESS_TOKEN"
//! ```
//!
//! Every rotor setting is read from the environment as the `rotor` server reads it
//! (`SECRET_KEY`, `JWT_ALGORITHM`, `ADMIN_EMAIL`, ...); only `ROTOR_DATA_DIR` gets a
//! temporary default here.

use std::{collections::BTreeMap, net::SocketAddr, sync::Arc};

use anyhow::Context;
use axum::{
    extract::{FromRef, State},
    routing::get,
    Json, Router,
};
use rotor::{
    clock::{Clock, SystemClock},
    config::{DatabaseTarget, Settings},
    http::{Admin, AppState, Auth},
    storage::{postgres::PgStore, sqlite::SqliteStore, Store},
    Rotor,
};
use serde_json::{json, Value};

/// The application's own state. Rotor's extractors only need to find an
/// `Arc<Rotor>` in it, through [`FromRef`].
#[derive(Clone)]
struct AppContext {
    rotor: Arc<Rotor>,
    greeting: Arc<str>,
}

impl FromRef<AppContext> for Arc<Rotor> {
    fn from_ref(ctx: &AppContext) -> Self {
        ctx.rotor.clone()
    }
}

/// The application's handler: 401 `{"detail": "Not authenticated"}` without a valid
/// bearer token (rotor's rejection), the caller otherwise.
async fn hello(State(ctx): State<AppContext>, Auth(principal): Auth) -> Json<Value> {
    Json(json!({
        "message": format!("{}, {}", ctx.greeting, principal.user.email),
        "user_id": principal.user.id,
        "role": principal.user.role.as_str(),
        "session_id": principal.session_id,
    }))
}

/// Admins only: 401 without a token, 403 for other users.
async fn admin_report(Admin(principal): Admin) -> Json<Value> {
    Json(json!({ "admin": principal.user.email }))
}

async fn index() -> &'static str {
    "embedded rotor example: POST /oauth/token, then GET /api/hello with the bearer token\n"
}

/// Opens rotor's store: on PostgreSQL over the application's own pool (rotor's
/// migrations run on it; its tables live beside the application's); on SQLite, rotor
/// opens the file itself (it keeps its own writer thread and readers).
async fn open_store(settings: &Settings) -> anyhow::Result<Arc<dyn Store>> {
    let store: Arc<dyn Store> = match &settings.database {
        DatabaseTarget::Sqlite(path) => Arc::new(
            SqliteStore::open(path, Some(4))
                .await
                .with_context(|| format!("opening {}", path.display()))?,
        ),
        DatabaseTarget::Postgres(url) => {
            let pool = sqlx::postgres::PgPoolOptions::new()
                .max_connections(8)
                .connect(url)
                .await?;
            Arc::new(PgStore::from_pool(pool))
        }
    };
    store
        .migrate()
        .await
        .context("applying rotor's migrations")?;
    Ok(store)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter("info").init();

    let mut vars: BTreeMap<String, String> = std::env::vars().collect();
    let data_dir = std::env::temp_dir().join(format!("rotor-embedded-{}", std::process::id()));
    vars.entry("ROTOR_DATA_DIR".into())
        .or_insert_with(|| data_dir.display().to_string());
    vars.entry("PORT".into()).or_insert_with(|| "3000".into());
    let settings = Settings::from_vars(&vars)?;
    let addr = format!("{}:{}", settings.host, settings.port);

    let store = open_store(&settings).await?;
    let rotor =
        Arc::new(Rotor::new(settings, store, Arc::new(SystemClock) as Arc<dyn Clock>).await?);
    // The periodic cleanup of expired tokens, sessions and audit rows, as `rotor serve`
    // runs it (CLEANUP_INTERVAL_SECONDS).
    let _jobs = rotor::cli::spawn_background_jobs(rotor.clone());

    let ctx = AppContext {
        rotor: rotor.clone(),
        greeting: Arc::from("hello"),
    };
    let app = Router::new()
        .route("/", get(index))
        .route("/api/hello", get(hello))
        .route("/api/admin/report", get(admin_report))
        .with_state(ctx)
        .merge(rotor::http::routes(AppState::new(rotor)));

    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .with_context(|| format!("listening on {addr}"))?;
    tracing::info!(address = %listener.local_addr()?, "embedded example listening");
    // Connect info lets rotor record client addresses and rate-limit per client.
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(rotor::http::shutdown_signal())
    .await?;
    Ok(())
}
