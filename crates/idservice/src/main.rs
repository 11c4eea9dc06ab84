//! The `idservice` command: `serve`, and the administrator commands for tokens, domains and
//! users pending deletion. Errors are printed as one line and exit non-zero. This file knows
//! the command line and how to print results and errors; what a command does lives in the
//! library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, Parser, Subcommand};
use idservice::config::{Config, ConfigError};
use idservice::domain::Service;
use idservice::domain::admins::{self, Role};
use idservice::domain::tokens::{self, Scopes};
use idservice::domain::users::{self, Purge};
use idservice::server::{self, DbArgs, ServeError, ServeOptions};
use idservice::store::admin;
use idservice::store::backend::BackendError;

/// mimalloc: the service allocates small objects per attribute on every request.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "idservice", version, about = "SCIM 2.0 identity service")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// `idservice serve` options.
#[derive(clap::Args)]
struct ServeArgs {
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
    /// A reverse proxy or load balancer in front of the service (repeatable): for requests
    /// from it, the client address (for the sign-in rate limits) is taken from its
    /// X-Forwarded-For header; from anyone else that header is ignored.
    #[arg(long = "trusted-proxy")]
    trusted_proxies: Vec<std::net::IpAddr>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the SCIM API.
    Serve(ServeArgs),
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
    /// Administrators of the console (/admin/).
    Admins {
        #[command(subcommand)]
        command: AdminsCommand,
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
    /// Man pages and shell completions for the packages (scripts/package).
    #[command(hide = true)]
    Generate {
        #[command(subcommand)]
        command: GenerateCommand,
    },
}

#[derive(Subcommand)]
enum GenerateCommand {
    /// Write a man page for idservice and for each subcommand into DIR.
    Man { dir: PathBuf },
    /// Write the bash, zsh and fish completions into DIR.
    Completions { dir: PathBuf },
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
enum AdminsCommand {
    /// Add an administrator of the console.
    Add {
        #[command(flatten)]
        db: DbArgs,
        /// The name to sign in with.
        name: String,
        /// A file whose first line is the password (private to its owner), or `-` for
        /// standard input.
        #[arg(long)]
        password_file: PathBuf,
        /// admin: everything; helpdesk: view, unlock, send a reset email.
        #[arg(long, value_enum, default_value = "admin")]
        role: Role,
    },
    /// List the administrators (never their passwords).
    List {
        #[command(flatten)]
        db: DbArgs,
    },
    /// Remove an administrator (their sessions end).
    Remove {
        #[command(flatten)]
        db: DbArgs,
        name: String,
    },
    /// Set an administrator's password (clears a lockout; their sessions end).
    SetPassword {
        #[command(flatten)]
        db: DbArgs,
        name: String,
        /// As for `add`.
        #[arg(long)]
        password_file: PathBuf,
    },
}

#[derive(Subcommand)]
enum UsersCommand {
    /// List users pending deletion.
    ListPending {
        #[command(flatten)]
        db: DbArgs,
    },
    /// Every change of a user's state (disabled, enabled, pending deletion, restored,
    /// purged), as the database recorded it, oldest first; `--user NAME` one user's.
    History {
        #[command(flatten)]
        db: DbArgs,
        #[arg(long)]
        user: Option<String>,
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

/// Why a command failed; printed as one line after `error: `.
#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error("cannot start the runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error(transparent)]
    Serve(#[from] ServeError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    #[error(transparent)]
    TokenArgs(#[from] tokens::ParseError),
    #[error(transparent)]
    Outbound(#[from] idservice::outbound::Error),
    #[error(transparent)]
    Mail(#[from] idservice::mail::Error),
    #[error(transparent)]
    Admins(#[from] admins::AdminError),
    #[error(transparent)]
    NotPrivate(#[from] idservice::secret_file::NotPrivate),
    #[error("cannot read the password from {0}: {1}")]
    PasswordFile(PathBuf, #[source] std::io::Error),
    /// A domain operation refused; its detail is the message.
    #[error("{}", .0.detail)]
    Scim(#[from] scim::ScimError),
    #[error("invalid timeout {0:?}")]
    InvalidTimeout(String),
    #[error("--retention-days must not be negative")]
    NegativeRetention,
    #[error("no active token with id {0}")]
    NoSuchToken(String),
    #[error("{0:?} is not a domain name")]
    InvalidDomain(String),
    #[error("domain {0} is not registered")]
    DomainNotRegistered(String),
    #[error("email is off: the configuration has no smtp section")]
    MailOff,
    #[error("cannot write the {0}: {1}")]
    Generate(&'static str, #[source] std::io::Error),
}

impl CliError {
    /// The process exit code for this error (every failure is 1).
    fn exit_code(&self) -> ExitCode {
        ExitCode::FAILURE
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Generate { command } = &cli.command {
        return match generate(command) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                e.exit_code()
            }
        };
    }
    init_logging();
    let result = tokio::runtime::Runtime::new()
        .map_err(CliError::Runtime)
        .and_then(|rt| rt.block_on(run(cli.command)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    }
}

/// `generate man|completions DIR`: files for the packages, written before logging or the
/// runtime start; the names of the files written are printed.
fn generate(command: &GenerateCommand) -> Result<(), CliError> {
    let files = match command {
        GenerateCommand::Man { dir } => cli_docs::man_pages(Cli::command(), dir)
            .map_err(|e| CliError::Generate("man pages", e))?,
        GenerateCommand::Completions { dir } => cli_docs::completions(Cli::command(), dir)
            .map_err(|e| CliError::Generate("completions", e))?,
    };
    for f in files {
        println!("{}", f.display());
    }
    Ok(())
}

/// Logs to stderr, filtered by `IDSERVICE_LOG` (default `info,sqlx=warn`).
fn init_logging() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("IDSERVICE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn")),
        )
        .init();
}

/// The service configuration from `--config FILE`, or the defaults without one.
fn load_config(file: Option<&std::path::Path>) -> Result<Config, CliError> {
    match file {
        Some(f) => Ok(idservice::config::load(f)?),
        None => Ok(Config::default()),
    }
}

/// Parses `--request-timeout` (`never` is a day).
fn parse_timeout(s: &str) -> Result<Duration, CliError> {
    match tokens::parse_duration(s)? {
        Some(d) => d
            .to_std()
            .map_err(|_| CliError::InvalidTimeout(s.to_string())),
        None => Ok(Duration::from_secs(24 * 3600)),
    }
}

/// Opens the database the options name (migrations applied) as a service.
async fn service(db: &DbArgs) -> Result<Service, CliError> {
    let backend = db.backend()?;
    let svc = server::open_service(&backend, None, 0, &Default::default()).await?;
    // An administrator's change (a token revoked, a domain removed) is on disk when the
    // command says it is done.
    svc.store
        .durable_commits()
        .await
        .map_err(server::ServeError::from)?;
    Ok(svc)
}

/// Runs one command.
async fn run(cmd: Command) -> Result<(), CliError> {
    match cmd {
        Command::Migrate { db } => migrate(&db).await,
        Command::Serve(args) => {
            let opts = serve_options(args)?;
            Ok(server::serve(opts).await?)
        }
        Command::Token { command } => token(command).await,
        Command::Domain { command } => domain(command).await,
        Command::Mail { command } => match command {
            MailCommand::RunChecks { db, config } => mail_run_checks(&db, config.as_deref()).await,
            MailCommand::Status { db } => mail_status(&db).await,
        },
        Command::Apps { command } => {
            let svc = service(command.db()).await?;
            Ok(idservice::outbound::cli::run(&svc, command).await?)
        }
        Command::Admins { command } => admins_command(command).await,
        Command::Users { command } => match command {
            UsersCommand::ListPending { db } => users_list_pending(&db).await,
            UsersCommand::History { db, user } => users_history(&db, user.as_deref()).await,
            UsersCommand::PurgePending { db, user, all } => {
                users_purge_pending(&db, user, all).await
            }
        },
        Command::Generate { command } => generate(&command),
    }
}

/// `admins …`.
async fn admins_command(command: AdminsCommand) -> Result<(), CliError> {
    match command {
        AdminsCommand::Add {
            db,
            name,
            password_file,
            role,
        } => {
            let password = read_password(&password_file)?;
            admins::add(&service(&db).await?, &name, password, role).await?;
            println!("administrator {name} added (role {})", role.as_str());
        }
        AdminsCommand::List { db } => {
            let at = idservice::domain::now();
            for a in admins::list(&service(&db).await?).await? {
                let locked = a.locked_until.as_deref().is_some_and(|l| l > at.as_str());
                println!(
                    "{}\t{}\tcreated {}{}",
                    a.name,
                    a.role,
                    a.created,
                    if locked { "\tlocked" } else { "" }
                );
            }
        }
        AdminsCommand::Remove { db, name } => {
            admins::remove(&service(&db).await?, &name).await?;
            println!("administrator {name} removed");
        }
        AdminsCommand::SetPassword {
            db,
            name,
            password_file,
        } => {
            let password = read_password(&password_file)?;
            admins::set_password(&service(&db).await?, &name, password).await?;
            println!("password of administrator {name} set");
        }
    }
    Ok(())
}

/// The first line of a password file (which must be private), or of standard input for `-`.
fn read_password(path: &std::path::Path) -> Result<zeroize::Zeroizing<String>, CliError> {
    let text = if path.as_os_str() == "-" {
        let mut s = zeroize::Zeroizing::new(String::new());
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
            .map_err(|e| CliError::PasswordFile(path.to_path_buf(), e))?;
        s
    } else {
        idservice::secret_file::check_private(path)?;
        zeroize::Zeroizing::new(
            std::fs::read_to_string(path)
                .map_err(|e| CliError::PasswordFile(path.to_path_buf(), e))?,
        )
    };
    Ok(zeroize::Zeroizing::new(
        text.lines().next().unwrap_or("").to_string(),
    ))
}

/// `migrate`: opening the service applies the migrations.
async fn migrate(db: &DbArgs) -> Result<(), CliError> {
    let svc = service(db).await?;
    println!("migrations applied to {}", svc.store.name());
    svc.store.close().await;
    Ok(())
}

/// `serve`: checks and converts the command-line options.
fn serve_options(args: ServeArgs) -> Result<ServeOptions, CliError> {
    if args.retention_days.is_some_and(|d| d < 0) {
        return Err(CliError::NegativeRetention);
    }
    Ok(ServeOptions {
        listen: args.listen,
        backend: args.db.backend()?,
        retention_days: args.retention_days,
        max_body_bytes: args.max_body_bytes,
        request_timeout: parse_timeout(&args.request_timeout)?,
        outbound_interval: idservice::outbound::parse_interval(&args.outbound_interval)?,
        config: std::sync::Arc::new(load_config(args.config.as_deref())?),
        trusted_proxies: args.trusted_proxies,
    })
}

/// `token …`: dispatches to the subcommand.
async fn token(command: TokenCommand) -> Result<(), CliError> {
    match command {
        TokenCommand::Create {
            db,
            scope,
            expires,
            owner,
        } => token_create(&db, &scope, &expires, owner).await,
        TokenCommand::List { db } => token_list(&db).await,
        TokenCommand::Revoke { db, id } => token_revoke(&db, &id).await,
    }
}

/// `token create`: prints the secret on stdout (once) and what was created on stderr.
async fn token_create(
    db: &DbArgs,
    scope: &str,
    expires: &str,
    owner: Option<String>,
) -> Result<(), CliError> {
    let scopes = Scopes::parse_list(scope)?;
    let valid_for = tokens::parse_duration(expires)?;
    let svc = service(db).await?;
    let t = tokens::create(&svc.store, scopes, valid_for, owner).await?;
    println!("{}", t.secret);
    eprintln!(
        "token {} created (scopes {}, expires {}); it is shown only once",
        t.id,
        scopes.to_list(),
        t.expires.as_deref().unwrap_or("never")
    );
    Ok(())
}

/// `token list`: one tab-separated line per token, never its secret.
async fn token_list(db: &DbArgs) -> Result<(), CliError> {
    let svc = service(db).await?;
    let list = tokens::list(&svc.store).await?;
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

/// `token revoke ID`.
async fn token_revoke(db: &DbArgs, id: &str) -> Result<(), CliError> {
    let svc = service(db).await?;
    if tokens::revoke(&svc.store, id).await? {
        println!("token {id} revoked");
        Ok(())
    } else {
        Err(CliError::NoSuchToken(id.to_string()))
    }
}

/// `domain …`: opens the service, then lists, adds or removes.
async fn domain(command: DomainCommand) -> Result<(), CliError> {
    match command {
        DomainCommand::List { db } => {
            let svc = service(&db).await?;
            domain_list(&svc).await
        }
        DomainCommand::Add { db, domain } => {
            let svc = service(&db).await?;
            domain_change(&svc, &domain, true).await
        }
        DomainCommand::Remove { db, domain } => {
            let svc = service(&db).await?;
            domain_change(&svc, &domain, false).await
        }
    }
}

/// `domain list`: one registered domain a line.
async fn domain_list(svc: &Service) -> Result<(), CliError> {
    let mut conn = svc.store.read().await?;
    for d in admin::list_domains(&mut conn).await? {
        println!("{d}");
    }
    Ok(())
}

/// `domain add` (`add` true) or `domain remove`: the name is normalised (trimmed, no
/// leading `@`, lower case) and checked first.
async fn domain_change(svc: &Service, domain: &str, add: bool) -> Result<(), CliError> {
    let name = domain.trim().trim_start_matches('@').to_lowercase();
    if name.is_empty() || !name.contains('.') || name.contains(char::is_whitespace) {
        return Err(CliError::InvalidDomain(name));
    }
    let mut tx = svc.store.begin().await?;
    let changed = if add {
        admin::add_domain(&mut tx, &name, &idservice::domain::now()).await
    } else {
        admin::remove_domain(&mut tx, &name).await
    }?;
    tx.commit().await?;
    match (add, changed) {
        (true, true) => println!("domain {name} added"),
        (true, false) => println!("domain {name} was already registered"),
        (false, true) => println!("domain {name} removed"),
        (false, false) => return Err(CliError::DomainNotRegistered(name)),
    }
    Ok(())
}

/// `mail run-checks`: queues the due expiry notices now (email must be configured).
async fn mail_run_checks(db: &DbArgs, config: Option<&std::path::Path>) -> Result<(), CliError> {
    let cfg = std::sync::Arc::new(load_config(config)?);
    idservice::domain::password::set_policy(cfg.password_policy.clone());
    let svc = service(db).await?;
    let mail = idservice::mail::Mail::new(cfg.clone(), svc.store.data_dir())?;
    if !mail.enabled() {
        return Err(CliError::MailOff);
    }
    let signin_url = format!("{}/signin", cfg.public_url.as_deref().unwrap_or(""));
    let r = idservice::mail::checks::run(&svc.store, &mail, &signin_url).await?;
    println!(
        "queued {} password-expired notice(s) and {} token expiry warning(s)",
        r.expired_passwords, r.token_warnings
    );
    Ok(())
}

/// `mail status`: the outbox rows counted by status.
async fn mail_status(db: &DbArgs) -> Result<(), CliError> {
    let svc = service(db).await?;
    let mut conn = svc.store.read().await?;
    for (status, n) in idservice::mail::outbox::counts(&mut conn).await? {
        println!("{status}\t{n}");
    }
    Ok(())
}

/// `users list-pending`: one tab-separated line per user pending deletion.
async fn users_list_pending(db: &DbArgs) -> Result<(), CliError> {
    let svc = service(db).await?;
    let list = users::list_pending(&svc).await?;
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

/// `users history`: one tab-separated line per state change, oldest first (`-` for the
/// state of a user created in its first recorded state).
async fn users_history(db: &DbArgs, user: Option<&str>) -> Result<(), CliError> {
    let svc = service(db).await?;
    let changes = users::state_history(&svc, user).await?;
    println!("AT	ID	USERNAME	EXTERNALID	FROM	TO");
    for c in changes {
        println!(
            "{}	{}	{}	{}	{}	{}",
            c.at,
            c.user_id,
            c.user_name,
            // default: no externalId and no previous state are shown as `-`.
            c.external_id.as_deref().unwrap_or("-"),
            c.from_state.as_deref().unwrap_or("-"),
            c.to_state
        );
    }
    Ok(())
}

/// `users purge-pending`: one user now (`--user`), all now (`--all`), or those past the
/// retention period.
async fn users_purge_pending(db: &DbArgs, user: Option<String>, all: bool) -> Result<(), CliError> {
    let svc = service(db).await?;
    let what = match (user, all) {
        (Some(u), _) => Purge::User(u),
        (None, true) => Purge::All,
        (None, false) => Purge::Expired {
            retention_days: svc.retention_days,
        },
    };
    let purged = users::purge(&svc, what).await?;
    for name in &purged {
        println!("purged {name}");
    }
    eprintln!("{} user(s) purged", purged.len());
    Ok(())
}
