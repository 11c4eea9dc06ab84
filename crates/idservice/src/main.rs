//! The `idservice` command: `serve`, and the administrator commands for tokens, domains and
//! users pending deletion. Errors are printed as one line and exit non-zero.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use idservice::domain::tokens::{self, Scopes};
use idservice::domain::users::{self, Purge};
use idservice::server::{self, DbArgs, ServeOptions};
use idservice::store::admin;

/// mimalloc: the service allocates small objects per attribute on every request.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "idservice", version, about = "SCIM 2.0 identity service")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the SCIM API.
    Serve {
        /// Address to listen on (`127.0.0.1:0` picks a free port).
        #[arg(long, default_value = "127.0.0.1:8443")]
        listen: SocketAddr,
        #[command(flatten)]
        db: DbArgs,
        /// Days a deleted user stays pending before it is purged (saved in the database;
        /// default: the saved value, else 30).
        #[arg(long)]
        retention_days: Option<i64>,
        /// Largest request body in bytes (also the advertised bulk maxPayloadSize).
        #[arg(long, default_value_t = 10 * 1024 * 1024)]
        max_body_bytes: usize,
        /// Request timeout, e.g. 30s, 2m.
        #[arg(long, default_value = "30s")]
        request_timeout: String,
        /// How often the linked applications' outbound queue is looked at, e.g. 1s, 200ms.
        #[arg(long, default_value = "1s")]
        outbound_interval: String,
        /// Service configuration (YAML): email relay and templates, password policy,
        /// sign-in limits. Without it: defaults, and no email.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Manage bearer tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Manage the tenant's registered domains.
    Domain {
        #[command(subcommand)]
        command: DomainCommand,
    },
    /// Users pending deletion.
    Users {
        #[command(subcommand)]
        command: UsersCommand,
    },
    /// Email: run the password-expiry and token-expiry checks, show the outbox.
    Mail {
        #[command(subcommand)]
        command: MailCommand,
    },
    /// Apply the database migrations and exit (`serve` applies them too, at start).
    Migrate {
        #[command(flatten)]
        db: DbArgs,
    },
    /// Linked downstream applications.
    Apps {
        #[command(subcommand)]
        command: idservice::outbound::cli::AppsCommand,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a token and print it (once; only its hash is stored).
    Create {
        #[command(flatten)]
        db: DbArgs,
        /// Comma-separated: escim_read_users,escim_write_users,escim_read_groups,escim_write_groups
        #[arg(long)]
        scope: String,
        /// Validity, e.g. 90d, 12h, or `never`.
        #[arg(long, default_value = "90d")]
        expires: String,
        /// Email of the owner (warned before expiry).
        #[arg(long)]
        owner: Option<String>,
    },
    /// List tokens (never their secrets).
    List {
        #[command(flatten)]
        db: DbArgs,
    },
    /// Revoke a token by id.
    Revoke {
        #[command(flatten)]
        db: DbArgs,
        id: String,
    },
}

#[derive(Subcommand)]
enum MailCommand {
    /// Queue the due "password has expired" notices and token expiry warnings now (a
    /// running `serve` sends them from the outbox).
    RunChecks {
        #[command(flatten)]
        db: DbArgs,
        /// The service configuration (as given to `serve --config`).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Count the outbox rows by status (queued, sent, failed).
    Status {
        #[command(flatten)]
        db: DbArgs,
    },
}

fn load_config(file: Option<&std::path::Path>) -> Result<idservice::config::Config, String> {
    match file {
        Some(f) => idservice::config::load(f).map_err(|e| e.to_string()),
        None => Ok(idservice::config::Config::default()),
    }
}

#[derive(Subcommand)]
enum DomainCommand {
    /// Register a domain; from then on every userName must be in a registered domain.
    Add {
        #[command(flatten)]
        db: DbArgs,
        domain: String,
    },
    List {
        #[command(flatten)]
        db: DbArgs,
    },
    Remove {
        #[command(flatten)]
        db: DbArgs,
        domain: String,
    },
}

#[derive(Subcommand)]
enum UsersCommand {
    /// List users pending deletion.
    ListPending {
        #[command(flatten)]
        db: DbArgs,
    },
    /// Purge pending users: by default those past the retention period; `--user NAME` one
    /// pending user now; `--all` every pending user now.
    PurgePending {
        #[command(flatten)]
        db: DbArgs,
        #[arg(long, conflicts_with = "all")]
        user: Option<String>,
        #[arg(long)]
        all: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("IDSERVICE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn")),
        )
        .init();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("error: {msg}");
            ExitCode::FAILURE
        }
    }
}

fn parse_timeout(s: &str) -> Result<Duration, String> {
    match tokens::parse_duration(s)? {
        Some(d) => d.to_std().map_err(|_| format!("invalid timeout {s:?}")),
        None => Ok(Duration::from_secs(24 * 3600)),
    }
}

async fn service(db: &DbArgs) -> Result<idservice::domain::Service, String> {
    let backend = db.backend().map_err(|e| e.to_string())?;
    server::open_service(&backend, None, 0)
        .await
        .map_err(|e| e.to_string())
}

async fn run(cmd: Command) -> Result<(), String> {
    match cmd {
        Command::Migrate { db } => {
            let svc = service(&db).await?;
            println!("migrations applied to {}", svc.store.name());
            svc.store.close().await;
            Ok(())
        }
        Command::Serve {
            listen,
            db,
            retention_days,
            max_body_bytes,
            request_timeout,
            outbound_interval,
            config,
        } => {
            if retention_days.is_some_and(|d| d < 0) {
                return Err("--retention-days must not be negative".into());
            }
            let opts = ServeOptions {
                listen,
                backend: db.backend().map_err(|e| e.to_string())?,
                retention_days,
                max_body_bytes,
                request_timeout: parse_timeout(&request_timeout)?,
                outbound_interval: idservice::outbound::parse_interval(&outbound_interval)?,
                config: std::sync::Arc::new(load_config(config.as_deref())?),
            };
            server::serve(opts).await.map_err(|e| e.to_string())
        }
        Command::Token { command } => match command {
            TokenCommand::Create {
                db,
                scope,
                expires,
                owner,
            } => {
                let scopes = Scopes::parse_list(&scope)?;
                let valid_for = tokens::parse_duration(&expires)?;
                let svc = service(&db).await?;
                let t = tokens::create(&svc.store, scopes, valid_for, owner)
                    .await
                    .map_err(|e| e.to_string())?;
                println!("{}", t.secret);
                eprintln!(
                    "token {} created (scopes {}, expires {}); it is shown only once",
                    t.id,
                    scopes.to_list(),
                    t.expires.as_deref().unwrap_or("never")
                );
                Ok(())
            }
            TokenCommand::List { db } => {
                let svc = service(&db).await?;
                let list = tokens::list(&svc.store).await.map_err(|e| e.to_string())?;
                println!("ID\tSTATUS\tSCOPES\tOWNER\tCREATED\tEXPIRES");
                let now = idservice::domain::now();
                for t in list {
                    let status = if t.revoked.is_some() {
                        "revoked"
                    } else if t.expires.as_deref().is_some_and(|e| e <= now.as_str()) {
                        "expired"
                    } else {
                        "valid"
                    };
                    println!(
                        "{}\t{}\t{}\t{}\t{}\t{}",
                        t.id,
                        status,
                        t.scopes,
                        t.owner.unwrap_or_default(),
                        t.created,
                        t.expires.unwrap_or_else(|| "never".into())
                    );
                }
                Ok(())
            }
            TokenCommand::Revoke { db, id } => {
                let svc = service(&db).await?;
                if tokens::revoke(&svc.store, &id)
                    .await
                    .map_err(|e| e.to_string())?
                {
                    println!("token {id} revoked");
                    Ok(())
                } else {
                    Err(format!("no active token with id {id}"))
                }
            }
        },
        Command::Domain { command } => {
            let (db, op, name) = match command {
                DomainCommand::Add { db, domain } => (db, "add", Some(domain)),
                DomainCommand::Remove { db, domain } => (db, "remove", Some(domain)),
                DomainCommand::List { db } => (db, "list", None),
            };
            let svc = service(&db).await?;
            let name = name.map(|n| n.trim().trim_start_matches('@').to_lowercase());
            match (op, name) {
                ("list", _) => {
                    let mut conn = svc.store.read().await.map_err(|e| e.to_string())?;
                    for d in admin::list_domains(&mut conn)
                        .await
                        .map_err(|e| e.to_string())?
                    {
                        println!("{d}");
                    }
                    Ok(())
                }
                (op, Some(name)) => {
                    if name.is_empty() || !name.contains('.') || name.contains(char::is_whitespace)
                    {
                        return Err(format!("{name:?} is not a domain name"));
                    }
                    let mut tx = svc.store.begin().await.map_err(|e| e.to_string())?;
                    let changed = if op == "add" {
                        admin::add_domain(&mut tx, &name, &idservice::domain::now()).await
                    } else {
                        admin::remove_domain(&mut tx, &name).await
                    }
                    .map_err(|e| e.to_string())?;
                    tx.commit().await.map_err(|e| e.to_string())?;
                    match (op, changed) {
                        ("add", true) => println!("domain {name} added"),
                        ("add", false) => println!("domain {name} was already registered"),
                        (_, true) => println!("domain {name} removed"),
                        (_, false) => return Err(format!("domain {name} is not registered")),
                    }
                    Ok(())
                }
                _ => Err("a domain name is required".into()),
            }
        }
        Command::Mail { command } => match command {
            MailCommand::RunChecks { db, config } => {
                let cfg = std::sync::Arc::new(load_config(config.as_deref())?);
                idservice::domain::password::set_policy(cfg.password_policy.clone());
                let mail = idservice::mail::Mail::new(cfg.clone())?;
                if !mail.enabled() {
                    return Err("email is off: the configuration has no smtp section".into());
                }
                let svc = service(&db).await?;
                let signin_url = format!("{}/signin", cfg.public_url.as_deref().unwrap_or(""));
                let r = idservice::mail::checks::run(&svc.store, &mail, &signin_url)
                    .await
                    .map_err(|e| e.to_string())?;
                println!(
                    "queued {} password-expired notice(s) and {} token expiry warning(s)",
                    r.expired_passwords, r.token_warnings
                );
                Ok(())
            }
            MailCommand::Status { db } => {
                let svc = service(&db).await?;
                let mut conn = svc.store.read().await.map_err(|e| e.to_string())?;
                for (status, n) in idservice::mail::outbox::counts(&mut conn)
                    .await
                    .map_err(|e| e.to_string())?
                {
                    println!("{status}\t{n}");
                }
                Ok(())
            }
        },
        Command::Apps { command } => {
            let svc = service(command.db()).await?;
            idservice::outbound::cli::run(&svc, command).await
        }
        Command::Users { command } => match command {
            UsersCommand::ListPending { db } => {
                let svc = service(&db).await?;
                let list = users::list_pending(&svc).await.map_err(|e| e.detail)?;
                println!("ID\tUSERNAME\tEXTERNALID\tPENDING_SINCE");
                for u in list {
                    println!(
                        "{}\t{}\t{}\t{}",
                        u.id,
                        u.user_name,
                        u.external_id.unwrap_or_default(),
                        u.pending_since.unwrap_or_default()
                    );
                }
                Ok(())
            }
            UsersCommand::PurgePending { db, user, all } => {
                let svc = service(&db).await?;
                let what = match (user, all) {
                    (Some(u), _) => Purge::User(u),
                    (None, true) => Purge::All,
                    (None, false) => Purge::Expired {
                        retention_days: svc.retention_days,
                    },
                };
                let purged = users::purge(&svc, what).await.map_err(|e| e.detail)?;
                for name in &purged {
                    println!("purged {name}");
                }
                eprintln!("{} user(s) purged", purged.len());
                Ok(())
            }
        },
    }
}
