//! The `rotor` command line: `serve`, `migrate`, `cleanup`, `backup`, `keys …`,
//! `users …`, `config check`. The only place (with `main.rs`) that uses `anyhow`.

use std::{
    io::{IsTerminal, Write},
    path::PathBuf,
    process::ExitCode,
    sync::Arc,
    time::Duration,
};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};

use crate::{
    config::{DatabaseTarget, Settings},
    http::{self, AppState},
    service::users::{AccountChanges, AccountSpec},
    storage::Role,
    Rotor,
};

const ENV_HELP: &str =
    "Settings come from the environment (a .env file in the working directory is read \
first), optionally layered over a TOML file given with --config; the environment wins. \
Run `rotor config check` to see the effective values. Variables:";

fn env_help() -> String {
    let mut s = String::from(ENV_HELP);
    for setting in Settings::help() {
        s.push_str(&format!("\n  {setting}"));
    }
    s
}

/// rotor: sessions, rotating refresh tokens and JWT access tokens.
#[derive(Debug, Parser)]
#[command(name = "rotor", version, about, after_long_help = env_help())]
pub(crate) struct Cli {
    /// A TOML file of settings (keys as the environment variable names, any case).
    #[arg(long, global = true, env = "ROTOR_CONFIG")]
    pub(crate) config: Option<PathBuf>,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the HTTP server on HOST:PORT (default 127.0.0.1:8000). With no DATABASE_URL
    /// it uses a SQLite file in ROTOR_DATA_DIR and generates a secret on first start.
    Serve,
    /// Apply pending database migrations and exit (serve also does this at start). On
    /// a PostgreSQL database of the original backend, adopt it in place first.
    Migrate {
        /// Print what would be done (users, sessions, forked families, duplicate
        /// emails, tables to add) and change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Delete expired refresh tokens, sessions past their absolute lifetime, audit
    /// events older than AUDIT_RETENTION_DAYS and webhook deliveries delivered more than
    /// WEBHOOK_RETENTION_DAYS ago, in batches of CLEANUP_BATCH_SIZE.
    Cleanup {
        /// Count what would be deleted without deleting it.
        #[arg(long)]
        dry_run: bool,
    },
    /// Write a consistent copy of the SQLite database to PATH while rotor serves
    /// (`VACUUM INTO`: one read transaction, writers are not held up). The copy is
    /// checked before it is moved into place. PostgreSQL: use pg_dump/pg_basebackup.
    Backup {
        /// Where to write the copy (a new file, mode 0600).
        path: PathBuf,
        /// Replace PATH if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Copy another deployment into the configured database (DATABASE_URL, migrated
    /// first): the original backend's PostgreSQL database, or a rotor database on
    /// SQLite or PostgreSQL. Users, sessions, refresh tokens (live ones keep rotating,
    /// revoked ones stay replays), the audit log and the signing keys move; forked
    /// families are repaired; duplicate emails refuse. One transaction: it lands or
    /// changes nothing. Safe to run again (brings over later revocations).
    Import {
        /// The source: postgres://… or sqlite://PATH (opened read-only).
        #[arg(long, value_name = "URL")]
        from: String,
    },
    /// Manage the asymmetric signing keys (JWT_ALGORITHM=EdDSA or ES256).
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Manage accounts.
    #[command(subcommand)]
    Users(UsersCommand),
    /// Inspect the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Webhooks (WEBHOOK_URL, WEBHOOK_SECRET).
    #[command(subcommand)]
    Webhooks(WebhooksCommand),
}

#[derive(Debug, Subcommand)]
pub(crate) enum WebhooksCommand {
    /// Send a signed `webhook.test` event to every configured endpoint and print what
    /// each answered; fails unless every endpoint answered 2xx.
    Test,
}

#[derive(Debug, Subcommand)]
pub(crate) enum KeysCommand {
    /// List the key ring: id, algorithm, created, retired.
    List,
    /// Add a new signing key; previous keys stop signing but keep verifying.
    Rotate,
    /// Delete retired keys whose every token has expired.
    Prune,
}

#[derive(Debug, Subcommand)]
pub(crate) enum UsersCommand {
    /// Create an admin account. The password is read from ROTOR_ADMIN_PASSWORD, or from
    /// standard input. An existing account with the same email identity key (case and
    /// Unicode folding) is shown and left alone unless --promote-existing is given.
    CreateAdmin {
        #[arg(long)]
        email: String,
        #[arg(long)]
        full_name: Option<String>,
        /// Promote the existing account with this email instead of refusing.
        #[arg(long)]
        promote_existing: bool,
    },
    /// Change an account's email; the way to resolve accounts whose emails share an
    /// identity key (reported by `rotor migrate`). Works before that is resolved.
    SetEmail {
        /// The account's id.
        #[arg(long)]
        id: uuid::Uuid,
        /// The new email address.
        email: String,
    },
    /// Deactivate an account: it can no longer log in, and every session ends.
    Deactivate { email: String },
    /// End every session of an account and invalidate its access tokens.
    RevokeSessions { email: String },
}

#[derive(Debug, Subcommand)]
pub(crate) enum ConfigCommand {
    /// Print the effective configuration (secrets redacted); fail on invalid values.
    Check,
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    // The original read .env from the working directory; so does rotor.
    let _ = dotenvy::dotenv();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = Settings::load(cli.config.as_deref()).context("invalid configuration")?;
    if let Command::Config(ConfigCommand::Check) = cli.command {
        for (name, value) in settings.describe() {
            println!("{name}={value}");
        }
        println!("# configuration is valid");
        return Ok(());
    }
    crate::logging::init(&settings);
    match cli.command {
        Command::Serve => serve(settings).await,
        Command::Migrate { dry_run: true } => {
            let store = crate::storage::open(&settings)
                .await
                .context("opening the database")?;
            let preview = store.migrate_preview().await;
            store.close().await;
            let preview = preview.context("inspecting the database")?;
            println!("dry run ({}); nothing was changed", store.backend());
            println!("{}", preview.summary);
            if preview.blocked {
                bail!("migration would be refused: resolve the duplicate emails listed above");
            }
            Ok(())
        }
        Command::Migrate { dry_run: false } => {
            let store = crate::storage::connect(&settings)
                .await
                .context("migrating the database")?;
            println!("migrations applied ({})", store.backend());
            store.close().await;
            Ok(())
        }
        Command::Cleanup { dry_run } => cleanup(settings, dry_run).await,
        Command::Backup { path, force } => backup(settings, path, force).await,
        Command::Import { from } => import(settings, &from).await,
        Command::Keys(cmd) => keys(settings, cmd).await,
        Command::Users(cmd) => users(settings, cmd).await,
        Command::Config(_) => unreachable!("BUG: handled above"),
        Command::Webhooks(WebhooksCommand::Test) => webhooks_test(&settings).await,
    }
}

async fn webhooks_test(settings: &Settings) -> anyhow::Result<()> {
    if settings.webhook_urls.is_empty() {
        bail!("no webhook endpoint configured (set WEBHOOK_URL and WEBHOOK_SECRET)");
    }
    let results = crate::webhooks::worker::send_test(settings, chrono::Utc::now()).await?;
    let mut failed = 0;
    for r in &results {
        let status = r
            .sent
            .status_code
            .map_or_else(|| "no answer".to_owned(), |s| format!("HTTP {s}"));
        match &r.sent.error {
            None => println!(
                "ok      {} {} ({status}, {} ms)",
                r.endpoint,
                r.webhook_id,
                r.sent.duration.as_millis()
            ),
            Some(e) => {
                failed += 1;
                println!(
                    "failed  {} {} ({e}, {} ms)",
                    r.endpoint,
                    r.webhook_id,
                    r.sent.duration.as_millis()
                );
            }
        }
    }
    if failed > 0 {
        bail!(
            "{failed} of {} endpoints did not accept the test event",
            results.len()
        );
    }
    Ok(())
}

async fn build(settings: Settings) -> anyhow::Result<Arc<Rotor>> {
    Ok(Arc::new(
        Rotor::from_settings(settings)
            .await
            .context("starting rotor")?,
    ))
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let addr = format!("{}:{}", settings.host, settings.port);
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .with_context(|| format!("cannot listen on {addr} (HOST/PORT)"))?;
    let local = listener
        .local_addr()
        .map_or(addr.clone(), |a| a.to_string());
    // Listen at once and answer 503 until migrations have run and rotor is built, so a
    // load balancer's readiness check sees "starting" rather than "connection refused".
    let slot: Arc<std::sync::OnceLock<http::edge::App>> = Arc::new(std::sync::OnceLock::new());
    let ready: Arc<std::sync::OnceLock<Arc<std::sync::atomic::AtomicBool>>> =
        Arc::new(std::sync::OnceLock::new());
    let ready_on_shutdown = ready.clone();
    let server = tokio::spawn(http::server::serve_with_limits(
        listener,
        http::starting_gate(slot.clone()),
        http::server::ConnectionLimits::from_settings(&settings),
        async move {
            http::shutdown_signal().await;
            if let Some(r) = ready_on_shutdown.get() {
                r.store(false, std::sync::atomic::Ordering::Relaxed);
            }
        },
    ));
    let rotor = build(settings).await?;
    let s = rotor.settings().clone();
    let state = AppState::new(rotor.clone());
    let _ = ready.set(state.ready.clone());
    let background = spawn_background_jobs(rotor.clone());
    if let (true, Some(bind)) = (s.metrics_enabled, s.metrics_bind.clone()) {
        let metrics_listener = tokio::net::TcpListener::bind(&bind)
            .await
            .with_context(|| format!("cannot listen on {bind} (METRICS_BIND)"))?;
        let app = http::metrics_app(state.clone());
        tokio::spawn(async move {
            let _ = http::serve(metrics_listener, app, http::shutdown_signal()).await;
        });
    }
    let _ = slot.set(http::app(state));
    tracing::info!(
        address = %local,
        backend = rotor.store().backend(),
        environment = s.environment.as_str(),
        algorithm = s.jwt_algorithm.as_str(),
        "rotor listening"
    );
    server
        .await
        .context("server task")?
        .context("serving HTTP")?;
    for job in background {
        job.abort();
    }
    rotor.store().close().await;
    tracing::info!("rotor stopped");
    Ok(())
}

/// The periodic cleanup (every `CLEANUP_INTERVAL_SECONDS`, one process at a time), the
/// webhook delivery worker (when `WEBHOOK_URL` is set) and, for asymmetric keys, a
/// key-ring reload so rotations made elsewhere are picked up.
pub fn spawn_background_jobs(rotor: Arc<Rotor>) -> Vec<tokio::task::JoinHandle<()>> {
    let mut jobs = Vec::new();
    let interval = rotor.settings().cleanup_interval_seconds;
    if interval > 0 {
        let r = rotor.clone();
        jobs.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(interval));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match r.cleanup(None).await {
                    Ok(Some(report)) => tracing::info!(
                        refresh_tokens = report.refresh_tokens,
                        sessions = report.sessions,
                        audit_events = report.audit_events,
                        webhook_deliveries = report.webhook_deliveries,
                        "cleanup round finished"
                    ),
                    Ok(None) => tracing::debug!("cleanup skipped: another process holds the lock"),
                    Err(e) => tracing::error!(error = %e, "cleanup round failed"),
                }
            }
        }));
    }
    if !rotor.settings().webhook_urls.is_empty() {
        jobs.push(tokio::spawn(crate::webhooks::worker::run(rotor.clone())));
    }
    if !rotor.settings().jwt_algorithm.is_symmetric() {
        let r = rotor.clone();
        jobs.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            tick.tick().await;
            loop {
                tick.tick().await;
                if let Err(e) = r.tokens().load(r.store().as_ref()).await {
                    tracing::error!(error = %e, "reloading the signing key ring failed");
                }
            }
        }));
    }
    jobs
}

async fn cleanup(settings: Settings, dry_run: bool) -> anyhow::Result<()> {
    let rotor = build(settings).await?;
    if dry_run {
        let r = rotor.cleanup_preview().await?;
        println!(
            "dry run: would delete {} refresh tokens, {} sessions, {} audit events, {} webhook deliveries",
            r.refresh_tokens, r.sessions, r.audit_events, r.webhook_deliveries
        );
        return Ok(());
    }
    let terminal = std::io::stderr().is_terminal();
    // Totals for the bar come from a count taken first; rows expiring meanwhile may
    // push a table a little past 100%.
    let totals = if terminal {
        Some(rotor.cleanup_preview().await?)
    } else {
        None
    };
    let progress = move |table: &'static str, done: u64| match totals {
        Some(t) => {
            let total = match table {
                "refresh_tokens" => t.refresh_tokens,
                "sessions" => t.sessions,
                "webhook_deliveries" => t.webhook_deliveries,
                _ => t.audit_events,
            };
            eprint!("\r\x1b[2K{table:<15} {} {done}/{total}", bar(done, total));
            let _ = std::io::stderr().flush();
        }
        None => eprintln!("deleting {table}: {done} rows"),
    };
    let report = rotor.cleanup(Some(&progress)).await?;
    if terminal {
        eprintln!();
    }
    match report {
        Some(r) => println!(
            "deleted {} refresh tokens, {} sessions, {} audit events, {} webhook deliveries",
            r.refresh_tokens, r.sessions, r.audit_events, r.webhook_deliveries
        ),
        None => bail!("another cleanup is running (lock held); nothing done"),
    }
    rotor.store().close().await;
    Ok(())
}

/// `rotor backup PATH`: copies the SQLite database without stopping the server (see
/// [`crate::storage::sqlite::backup`]); refuses on PostgreSQL, whose own tools do it.
async fn backup(settings: Settings, dest: PathBuf, force: bool) -> anyhow::Result<()> {
    use crate::storage::sqlite::backup::{backup, BackupError};
    let source = match &settings.database {
        DatabaseTarget::Postgres(_) => bail!(
            "rotor backup copies the embedded SQLite database, and DATABASE_URL is PostgreSQL. \
             Use PostgreSQL's own tools, which take consistent backups while rotor serves:\n  \
             pg_dump --format=custom --file=rotor.dump \"$DATABASE_URL\"   (logical; restore with pg_restore)\n  \
             pg_basebackup --pgdata=/backups/base --wal-method=stream --checkpoint=fast   (physical; with WAL archiving: point-in-time recovery)\n\
             See the README, \"Backups\"."
        ),
        DatabaseTarget::Sqlite(p) if p.as_os_str() == ":memory:" => bail!(
            "DATABASE_URL is an in-memory SQLite database: it lives inside the serving process \
             and cannot be copied from another one"
        ),
        DatabaseTarget::Sqlite(p) => p.clone(),
    };
    eprintln!("copying {} to {} …", source.display(), dest.display());
    let now = chrono::Utc::now();
    let target = dest.clone();
    let report = match tokio::task::spawn_blocking(move || backup(&source, &target, force, now))
        .await
        .context("the backup task failed")?
    {
        Ok(report) => report,
        Err(BackupError::Exists(p)) => bail!(
            "{} already exists; it was left untouched (pass --force to replace it)",
            p.display()
        ),
        Err(e) => return Err(e).context("backup failed; nothing was written to the destination"),
    };
    let secs = |d: Duration| format!("{:.3} s", d.as_secs_f64());
    println!("backup written to {}", report.path.display());
    println!(
        "  size         {:.1} MiB ({} bytes)",
        report.bytes as f64 / f64::from(1 << 20),
        report.bytes
    );
    println!("  integrity    ok (PRAGMA integrity_check)");
    println!("  users        {}", report.users);
    println!("  sessions     {} active", report.sessions);
    println!("  live tokens  {}", report.live_tokens);
    println!(
        "  time         {} ({} reading the live database)",
        secs(report.total),
        secs(report.copy)
    );
    let mut secret = if settings.secret_key.is_some() {
        "the SECRET_KEY setting".to_owned()
    } else {
        format!(
            "the file {}",
            settings.data_dir.join("secret_key").display()
        )
    };
    if settings.key_encryption_key.is_some() {
        // The signing keys in the copy are sealed with it.
        secret.push_str(" and KEY_ENCRYPTION_KEY");
    }
    println!(
        "Restore with the same secret, {secret}: keep it with your backups, stored apart \
         from them. The copy holds only hashes of refresh tokens, so its sessions rotate \
         under any secret, but the secret signs access tokens (under another one, every \
         access token in circulation is refused until its client refreshes), derives \
         successor tokens for retried refreshes, keys audit fingerprints and seals \
         EdDSA/ES256 signing keys. Restore: start rotor on the copy \
         (DATABASE_URL=sqlite://PATH) or `rotor import --from sqlite://PATH`."
    );
    Ok(())
}

async fn import(settings: Settings, from: &str) -> anyhow::Result<()> {
    use crate::storage::import::{self, ImportOptions, Progress};
    let terminal = std::io::stderr().is_terminal();
    let last_table = std::sync::Mutex::new("");
    let progress = move |p: Progress| {
        let mut last = last_table.lock().unwrap_or_else(|e| e.into_inner());
        if terminal {
            if *last != p.table && !last.is_empty() {
                eprintln!();
            }
            eprint!(
                "\r\x1b[2K{:<15} {} {}/{}",
                p.table,
                bar(p.done, p.total),
                p.done,
                p.total
            );
            let _ = std::io::stderr().flush();
        } else {
            eprintln!("importing {}: {}/{} rows", p.table, p.done, p.total);
        }
        *last = p.table;
    };
    let options = ImportOptions {
        session_max_lifetime: chrono::Duration::days(settings.session_max_lifetime_days),
        now: chrono::Utc::now(),
    };
    let result = import::import(from, &settings, options, &progress).await;
    if terminal {
        eprintln!();
    }
    let report = result.context("import failed; the target database is unchanged")?;
    println!("{report}");
    if !report.changed() {
        println!("nothing to do: the target already holds everything the source has");
    }
    let keys = report
        .tables
        .iter()
        .find(|t| t.table == "signing_keys")
        .map_or(0, |t| t.read);
    if keys > 0 {
        println!(
            "note: the {keys} signing key(s) were copied sealed: run rotor on this database \
             with the source's SECRET_KEY (and KEY_ENCRYPTION_KEY if it was set), or it \
             cannot sign with them"
        );
    }
    Ok(())
}

/// `[#########...........]  45%`
fn bar(done: u64, total: u64) -> String {
    const WIDTH: u64 = 30;
    let done = done.min(total);
    let filled = (done * WIDTH).checked_div(total).unwrap_or(WIDTH);
    let percent = (done * 100).checked_div(total).unwrap_or(100);
    format!(
        "[{}{}] {percent:>3}%",
        "#".repeat(filled as usize),
        ".".repeat((WIDTH - filled) as usize)
    )
}

async fn keys(settings: Settings, cmd: KeysCommand) -> anyhow::Result<()> {
    let rotor = build(settings).await?;
    let store = rotor.store().clone();
    match cmd {
        KeysCommand::List => {
            let keys = store.list_keys().await?;
            if keys.is_empty() {
                println!(
                    "no asymmetric keys (JWT_ALGORITHM={} signs with SECRET_KEY)",
                    rotor.tokens().algorithm().as_str()
                );
            }
            for k in keys {
                println!(
                    "{}\t{}\tcreated {}\t{}",
                    k.kid,
                    k.algorithm,
                    http::views::ts(k.created_at),
                    k.retired_at.map_or("active".to_owned(), |t| format!(
                        "retired {}",
                        http::views::ts(t)
                    ))
                );
            }
        }
        KeysCommand::Rotate => {
            let kid = rotor
                .tokens()
                .rotate_key(store.as_ref(), rotor.now())
                .await?;
            println!("new signing key {kid}; previous keys keep verifying until pruned");
        }
        KeysCommand::Prune => {
            let removed = rotor.tokens().prune(store.as_ref(), rotor.now()).await?;
            println!(
                "pruned {} keys{}",
                removed.len(),
                if removed.is_empty() {
                    String::new()
                } else {
                    format!(": {}", removed.join(", "))
                }
            );
        }
    }
    store.close().await;
    Ok(())
}

async fn users(settings: Settings, cmd: UsersCommand) -> anyhow::Result<()> {
    if let UsersCommand::SetEmail { id, email } = cmd {
        return set_email(settings, id, &email).await;
    }
    let rotor = build(settings).await?;
    let ctx = crate::service::ClientContext {
        user_agent: Some("rotor-cli".into()),
        ..Default::default()
    };
    match cmd {
        UsersCommand::CreateAdmin {
            email,
            full_name,
            promote_existing,
        } => {
            if let Err(reason) = crate::domain::email::check(&email) {
                bail!("--email: {reason}");
            }
            // Only the account whose identity key is this email's key is ever touched.
            let key = crate::domain::email::EmailKey::of(&email);
            if let Some(user) = rotor.store().get_user_by_email(&key).await? {
                if user.role == Role::Admin {
                    println!("{} is already an admin", describe(&user));
                } else if !promote_existing {
                    bail!(
                        "an account with this email already exists and is not an admin:\n  {}\n\
                         It may not belong to you: anyone can register an address. Check it, \
                         then run again with --promote-existing to make it an admin, or delete \
                         it and run again to create a fresh admin account.",
                        describe(&user)
                    );
                } else {
                    let changes = AccountChanges {
                        role: Some(Role::Admin),
                        ..Default::default()
                    };
                    rotor.update_account(user.id, changes, None, &ctx).await?;
                    println!("promoted {} to admin", describe(&user));
                }
            } else {
                let password = match std::env::var("ROTOR_ADMIN_PASSWORD") {
                    Ok(p) => p,
                    Err(_) => {
                        if std::io::stdin().is_terminal() {
                            eprint!("password for {email}: ");
                            let _ = std::io::stderr().flush();
                        }
                        let mut line = String::new();
                        std::io::stdin()
                            .read_line(&mut line)
                            .context("reading the password from stdin")?;
                        line.trim_end_matches(['\r', '\n']).to_owned()
                    }
                };
                if !(8..=128).contains(&password.chars().count()) {
                    bail!("the password must be 8 to 128 characters");
                }
                let spec = AccountSpec {
                    email,
                    password,
                    full_name,
                    role: Role::Admin,
                    is_active: true,
                    is_verified: true,
                };
                let user = rotor.create_account(spec, None, &ctx).await?;
                println!("created admin {} ({})", user.email, user.id);
            }
        }
        UsersCommand::SetEmail { .. } => unreachable!("BUG: handled above"),
        UsersCommand::Deactivate { email } => {
            let user = rotor
                .store()
                .get_user_by_email(&crate::domain::email::EmailKey::of(&email))
                .await?
                .with_context(|| format!("no user {email}"))?;
            let changes = AccountChanges {
                is_active: Some(false),
                ..Default::default()
            };
            rotor.update_account(user.id, changes, None, &ctx).await?;
            println!(
                "deactivated {} ({}); every session ended",
                user.email, user.id
            );
        }
        UsersCommand::RevokeSessions { email } => {
            let user = rotor
                .store()
                .get_user_by_email(&crate::domain::email::EmailKey::of(&email))
                .await?
                .with_context(|| format!("no user {email}"))?;
            let principal = crate::service::Principal {
                user: user.clone(),
                session_id: None,
            };
            let n = rotor.logout_all(&principal, &ctx).await?;
            println!("ended {n} sessions of {} ({})", user.email, user.id);
        }
    }
    rotor.store().close().await;
    Ok(())
}

/// One line naming an account for the operator.
fn describe(user: &crate::storage::User) -> String {
    format!(
        "{} {:?} (role {}, {}, created {})",
        user.id,
        user.email,
        user.role.as_str(),
        if user.is_active { "active" } else { "inactive" },
        user.created_at
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    )
}

/// `rotor users set-email`: runs even while `rotor migrate` refuses because accounts'
/// emails collide, since this is how an operator resolves that.
async fn set_email(settings: Settings, id: uuid::Uuid, email: &str) -> anyhow::Result<()> {
    use crate::storage::{StoreError, UserPatch};
    if let Err(reason) = crate::domain::email::check(email) {
        bail!("{email:?}: {reason}");
    }
    let store = crate::storage::open(&settings)
        .await
        .context("opening the database")?;
    match store.migrate().await {
        Ok(()) | Err(StoreError::EmailCollisions(_)) => {}
        Err(e) => return Err(e).context("migrating the database"),
    }
    let before = store
        .get_user(id)
        .await?
        .with_context(|| format!("no user with id {id}"))?;
    let patch = UserPatch {
        email: Some(email.to_owned()),
        ..UserPatch::default()
    };
    match store.update_user(id, &patch, chrono::Utc::now()).await {
        Ok(_) => {}
        Err(StoreError::Conflict(_)) => {
            bail!("another account already has this email (same identity key)")
        }
        Err(e) => return Err(e.into()),
    }
    println!("{id}: email {:?} -> {email:?}", before.email);
    let result = store.migrate().await;
    store.close().await;
    match result {
        Ok(()) => {
            println!("every account has a distinct email identity key");
            Ok(())
        }
        Err(StoreError::EmailCollisions(report)) => {
            println!("{report}");
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::bar;

    #[test]
    fn progress_bar_fills_with_the_fraction_done() {
        assert_eq!(bar(0, 10), format!("[{}]   0%", ".".repeat(30)));
        assert_eq!(
            bar(5, 10),
            format!("[{}{}]  50%", "#".repeat(15), ".".repeat(15))
        );
        assert_eq!(bar(12, 10), format!("[{}] 100%", "#".repeat(30)));
        assert_eq!(bar(0, 0), format!("[{}] 100%", "#".repeat(30)));
    }
}
