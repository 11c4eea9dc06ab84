//! The `dirsync` command: parses the command line, loads the configuration, runs, prints the
//! report, and turns the outcome into the exit code of behaviour §5 (0 success, 1 some objects
//! failed, 2 run refused, 3 cannot reach source or target, 5 local state unreadable).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use dirsync::config::Config;
use dirsync::kerberos_env::PrivateDir;
use dirsync::report::{EXIT_OK, EXIT_REFUSED, EXIT_UNREACHABLE};
use dirsync::run::{SyncOptions, sync};
use dirsync::saved_plan::SavedPlan;

#[derive(Parser)]
#[command(
    name = "dirsync",
    version,
    about = "Synchronise an LDAP / Active Directory directory to a SCIM 2.0 service"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log level (overrides log.loglevel): error, warn, info, debug.
    #[arg(long, global = true)]
    log_level: Option<String>,
    /// Log to stderr in this format instead of `log.logger` (`log.file` is still written).
    #[arg(long, global = true, value_enum)]
    log_format: Option<LogFormat>,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ReportFormat {
    Text,
    Json,
}

#[derive(clap::Args)]
struct Files {
    /// config.yml
    #[arg(long, short)]
    config: PathBuf,
    /// secret.yml (default: secret.yml beside config.yml)
    #[arg(long)]
    secret: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Read the directory, plan, and apply the changes to the target.
    #[command(
        after_help = "Exit codes: 0 success, 1 some objects failed, 2 run refused \
        (deletion threshold, lock, configuration), 3 the directory or the target could not be \
        reached, 5 the local state could not be read (nothing was created or deleted)."
    )]
    Sync {
        #[command(flatten)]
        files: Files,
        /// Compute and show the plan; send nothing, change no state.
        #[arg(long)]
        dry_run: bool,
        /// Discard the local state and rebuild it from the target first.
        #[arg(long)]
        recovery: bool,
        /// Let this run through even if it moves up to N users (and N group deletions and
        /// member removals) over the deletion thresholds.
        #[arg(long, value_name = "N")]
        allow_deletions: Option<u64>,
        /// Take over target objects that match directory objects but were not created by
        /// this instance.
        #[arg(long)]
        adopt: bool,
        /// Full reconcile: read the whole directory and the whole target instead of the
        /// changes since the last run, and report any drift it repairs.
        #[arg(long)]
        full: bool,
        /// Report format on stdout.
        #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
        report: ReportFormat,
        /// With --dry-run: also write the plan to FILE, for review and `dirsync apply`.
        #[arg(long, value_name = "FILE", requires = "dry_run")]
        plan_out: Option<PathBuf>,
    },
    /// Apply a plan saved by `sync --dry-run --plan-out`: exactly its operations, or nothing
    /// (exit 2, naming the objects) when the directory or the target changed under it.
    #[command(
        after_help = "Refused (exit 2): a plan older than sync.plan_max_age (default 24h), one \
        made with another config.yml, one whose objects a fresh plan would now write \
        differently. A plan applied before does nothing (exit 0). Otherwise the exit codes of \
        `sync`."
    )]
    Apply {
        #[command(flatten)]
        files: Files,
        /// The plan file.
        plan: PathBuf,
        /// Report format on stdout.
        #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
        report: ReportFormat,
    },
    /// Run as a service: sync every `sync.schedule` (a full reconcile every
    /// `sync.full_every`), reload the configuration on SIGHUP, stop on SIGTERM/SIGINT once the
    /// run in progress has finished.
    Run {
        #[command(flatten)]
        files: Files,
        /// Serve Prometheus metrics at /metrics and health at /healthz on this address
        /// (e.g. 127.0.0.1:9464).
        #[arg(long, value_name = "ADDR")]
        metrics_listen: Option<std::net::SocketAddr>,
    },
    /// Validate the files, test the directory bind and the target token, count objects.
    Check {
        #[command(flatten)]
        files: Files,
    },
    /// Password Sync: carry password changes made in the directory to the target (capture from
    /// Samba's syncpasswords, then push)
    PasswordSync {
        #[command(subcommand)]
        command: dirsync::password_sync::cli::PasswordSyncCommand,
    },
    /// The configuration file: `dirsync config schema` prints the JSON Schema of config.yml.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Man pages and shell completions for the packages (scripts/package).
    #[command(hide = true)]
    Generate {
        #[command(subcommand)]
        command: GenerateCommand,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print the JSON Schema (draft 2020-12) of config.yml; secret.yml is not described.
    Schema,
}

#[derive(Subcommand)]
enum GenerateCommand {
    /// Write a man page for dirsync and for each subcommand into DIR.
    Man { dir: PathBuf },
    /// Write the bash, zsh and fish completions into DIR.
    Completions { dir: PathBuf },
}

macro_rules! outln {
    ($($arg:tt)*) => { out(&format!("{}\n", format!($($arg)*))) };
}

/// Writes to stdout; a closed pipe (`dirsync ... | head`) is not an error worth a panic.
fn out(text: &str) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let _ = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush());
}

/// mimalloc instead of glibc's malloc (issue #5): at 100,000 users a full run frees its
/// directory entries while it maps them and then allocates the plan, and glibc's per-thread
/// arenas kept the freed memory out of reach (peak 677 MiB against 466 MiB with mimalloc, and
/// the run 20 % faster). Built without transparent huge pages (`no_thp`): with them the
/// kernel backed mimalloc's arenas in 2 MiB pages, and the same run peaked at 338 MiB instead of
/// 296 MiB. Measured in docs/performance.md.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Returns the memory a daemon run freed to the system. mimalloc keeps freed pages a moment
/// for reuse and hands them back lazily, on later frees; a daemon idle after a run frees
/// nothing more, so the last run's peak stayed resident (137 MiB at 100,000 users) until the
/// next run. Purging on every free instead (`MIMALLOC_PURGE_DELAY=0`) cost ~0.3 s per
/// watched change (docs/performance.md). The only `unsafe` of the project
/// (scripts/check-crate-graph fails on any other).
#[allow(unsafe_code)]
fn release_memory() {
    // SAFETY: mi_collect takes no pointer and has no precondition; mimalloc documents it as
    // callable from any thread at any time.
    unsafe { libmimalloc_sys::mi_collect(true) }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("dirsync: cannot start: {e}");
            return ExitCode::from(EXIT_UNREACHABLE as u8);
        }
    };
    let code = runtime.block_on(async_main(cli));
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

/// The configuration, its warnings and, for a Kerberos bind, the private Kerberos directory
/// (kept until the command ends). With `auth.mechanism: gssapi` the first call re-executes the
/// program in its private Kerberos environment ([`dirsync::kerberos_env`]).
type Loaded = (Config, Vec<String>, Option<PrivateDir>);

fn load(files: &Files) -> Result<Loaded, i32> {
    let (config, warnings) = match Config::load(&files.config, files.secret.as_deref()) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("dirsync: {e}");
            return Err(EXIT_REFUSED);
        }
    };
    let krb5 = match dirsync::kerberos_env::prepare(&config) {
        Ok(dir) => dir,
        Err(e) => {
            eprintln!("dirsync: {e}");
            return Err(EXIT_UNREACHABLE);
        }
    };
    let warnings = warnings.into_iter().map(|w| w.to_string()).collect();
    Ok((config, warnings, krb5))
}

/// [`load`], then logging at the configured level (or `--log-level`), the load warnings
/// logged: what `sync` and `run` start with.
fn load_and_log(
    files: &Files,
    log_level: Option<&str>,
    format: Option<LogFormat>,
) -> Result<Loaded, i32> {
    let loaded = load(files)?;
    let level = log_level.map_or_else(
        || loaded.0.log.loglevel.as_str().to_string(),
        str::to_string,
    );
    init_logging(&level, format, &loaded.0.log)?;
    for w in &loaded.1 {
        tracing::warn!("{w}");
    }
    Ok(loaded)
}

/// Logging as `log:` says ([`dirsync::logging`]); `--log-format` puts the lines on stderr
/// instead of the configured logger. A log file that cannot be opened stops the command
/// (exit 2, a configuration error).
fn init_logging(
    level: &str,
    format: Option<LogFormat>,
    log: &dirsync::config::LogConfig,
) -> Result<(), i32> {
    let format = format.map(|f| match f {
        LogFormat::Text => dirsync::logging::Format::Text,
        LogFormat::Json => dirsync::logging::Format::Json,
    });
    match dirsync::logging::init(level, format, log) {
        Ok(warnings) => {
            for w in warnings {
                tracing::warn!("{w}");
            }
            Ok(())
        }
        Err(e) => {
            eprintln!("dirsync: {e}");
            Err(EXIT_REFUSED)
        }
    }
}

/// Logging on stderr only (`check`, `password-sync`): `--log-format`, text by default.
fn init_stderr_logging(level: &str, format: Option<LogFormat>) {
    let _ = init_logging(
        level,
        Some(format.unwrap_or(LogFormat::Text)),
        &dirsync::config::LogConfig::default(),
    );
}

async fn async_main(cli: Cli) -> i32 {
    match cli.command {
        Command::Sync {
            files,
            dry_run,
            recovery,
            allow_deletions,
            adopt,
            full,
            report,
            plan_out,
        } => {
            let (config, warnings, _krb5) =
                match load_and_log(&files, cli.log_level.as_deref(), cli.log_format) {
                    Ok(c) => c,
                    Err(code) => return code,
                };
            let options = SyncOptions {
                dry_run,
                recovery,
                allow_deletions,
                adopt,
                full,
                saved_plan: None,
            };
            let result = sync(&config, warnings, &options).await;
            if let (Some(path), Some(plan)) = (&plan_out, &result.plan)
                && result.report.refused.is_none()
            {
                let saved =
                    SavedPlan::new(&config, &result.report.run_id, &result.report.mode, plan);
                if let Err(e) = saved.write(path) {
                    eprintln!("dirsync: {e}");
                    return EXIT_UNREACHABLE;
                }
            }
            print_result(&result, report, dry_run);
            // After the report is out: a slow relay does not hold it back.
            dirsync::notify::after_run(&config, &result.report).await;
            dirsync::run_report::after_run(&config, &result.report, None).await;
            result.report.outcome.exit_code()
        }
        Command::Apply {
            files,
            plan,
            report,
        } => {
            let (config, warnings, _krb5) =
                match load_and_log(&files, cli.log_level.as_deref(), cli.log_format) {
                    Ok(c) => c,
                    Err(code) => return code,
                };
            apply(&config, warnings, &plan, report).await
        }
        Command::Run {
            files,
            metrics_listen,
        } => {
            let (config, warnings, _krb5) =
                match load_and_log(&files, cli.log_level.as_deref(), cli.log_format) {
                    Ok(c) => c,
                    Err(code) => return code,
                };
            let options = dirsync::daemon::DaemonOptions {
                config_path: files.config,
                secret_path: files.secret,
                metrics_listen,
                release_memory: Some(release_memory),
            };
            let announce = |addr| outln!("metrics listening on http://{addr}");
            match dirsync::daemon::run(config, warnings, &options, &announce).await {
                Ok(()) => EXIT_OK,
                Err(e) => {
                    tracing::error!("{e}");
                    EXIT_UNREACHABLE
                }
            }
        }
        Command::Check { files } => {
            let (config, warnings, _krb5) = match load(&files) {
                Ok(c) => c,
                Err(code) => return code,
            };
            init_stderr_logging(cli.log_level.as_deref().unwrap_or("warn"), cli.log_format);
            check(&config, &warnings).await
        }
        Command::PasswordSync { command } => {
            let format = cli.log_format;
            let init = move |level: &str| init_stderr_logging(level, format);
            dirsync::password_sync::cli::run(command, cli.log_level.as_deref(), &init).await
        }
        Command::Config {
            command: ConfigCommand::Schema,
        } => match serde_json::to_string_pretty(&dirsync::config::config_schema()) {
            Ok(text) => {
                outln!("{text}");
                EXIT_OK
            }
            Err(e) => {
                eprintln!("dirsync: cannot write the schema: {e}");
                1
            }
        },
        Command::Generate { command } => {
            let (what, result) = match command {
                GenerateCommand::Man { dir } => {
                    ("man pages", cli_docs::man_pages(Cli::command(), &dir))
                }
                GenerateCommand::Completions { dir } => {
                    ("completions", cli_docs::completions(Cli::command(), &dir))
                }
            };
            match result {
                Ok(files) => {
                    for f in files {
                        outln!("{}", f.display());
                    }
                    EXIT_OK
                }
                Err(e) => {
                    eprintln!("dirsync: cannot write the {what}: {e}");
                    1
                }
            }
        }
    }
}

/// The report (and, for a dry run, the plan) on stdout.
fn print_result(result: &dirsync::run::RunResult, report: ReportFormat, dry_run: bool) {
    match report {
        ReportFormat::Json => {
            // Written as it is serialised: the plan of an initial run holds 100,000
            // resources, and one JSON value of all of it was most of that run's peak
            // memory (issue #5).
            #[derive(serde::Serialize)]
            struct Output<'a> {
                report: &'a dirsync::report::Report,
                plan: &'a Option<dirsync::plan::Plan>,
            }
            let output = Output {
                report: &result.report,
                plan: &result.plan,
            };
            let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
            // A closed pipe (`dirsync ... | head`) is not an error worth a panic.
            let _ = serde_json::to_writer_pretty(&mut stdout, &output)
                .map_err(std::io::Error::from)
                .and_then(|()| {
                    use std::io::Write;
                    stdout.write_all(b"\n").and_then(|()| stdout.flush())
                });
        }
        ReportFormat::Text => {
            if dry_run && let Some(plan) = &result.plan {
                out(&format!("plan:\n{plan}\n\n"));
            }
            out(&result.report.to_text());
        }
    }
}

/// `dirsync apply`: checks the plan file, then a full run restricted to it.
async fn apply(
    config: &Config,
    warnings: Vec<String>,
    path: &std::path::Path,
    report: ReportFormat,
) -> i32 {
    let saved = match SavedPlan::read(path).and_then(|p| p.check_applicable(config).map(|()| p)) {
        Ok(saved) => saved,
        Err(e) => {
            eprintln!("dirsync: {e}");
            return EXIT_REFUSED;
        }
    };
    if saved.applied_before(config) {
        outln!(
            "the plan {} was applied before; nothing to do (make a new one with `dirsync sync \
             --dry-run --plan-out`)",
            saved.id
        );
        return EXIT_OK;
    }
    let options = SyncOptions {
        full: true,
        saved_plan: Some(std::sync::Arc::new(saved.clone())),
        ..SyncOptions::default()
    };
    let result = sync(config, warnings, &options).await;
    let code = result.report.outcome.exit_code();
    // Applied (fully, or with objects that failed and are retried by the next run).
    if result.report.refused.is_none()
        && result.report.stopped.is_none()
        && let Err(e) = saved.record_applied(config)
    {
        eprintln!("dirsync: {e}");
    }
    print_result(&result, report, false);
    dirsync::notify::after_run(config, &result.report).await;
    dirsync::run_report::after_run(config, &result.report, None).await;
    code
}

async fn check(config: &Config, warnings: &[String]) -> i32 {
    let mark = |ok: bool| if ok { "ok  " } else { "FAIL" };
    outln!(
        "{} configuration {} (secrets: {})",
        mark(true),
        config.config_path.display(),
        config.secret_path.display()
    );
    for w in warnings {
        outln!("warn {w}");
    }
    let mut code = EXIT_OK;
    match dirsync::source::read(config).await {
        Ok(read) => {
            outln!(
                "{} directory {} ({}): {} users, {} groups in scope{}",
                mark(read.read.complete),
                read.description,
                dirsync::run::kind_name(read.kind),
                read.read.users.len(),
                read.read.groups.len(),
                if read.read.complete {
                    ""
                } else {
                    " (read incomplete)"
                }
            );
            if !read.bind.is_empty() {
                outln!("{} bind: {}", mark(true), read.bind);
            }
        }
        Err(e) => {
            outln!("{} directory: {e}", mark(false));
            code = EXIT_UNREACHABLE;
        }
    }
    match dirsync::run::scim_client(config) {
        Ok(client) => match client.service_provider_config().await {
            Ok(spc) => {
                let probe = scim::filter::parse("userName eq \"dirsync-check-probe\"");
                let token_ok = match probe {
                    Ok(f) => {
                        client
                            .list(scim_client::ResourceKind::Users, Some(&f), None)
                            .await
                    }
                    Err(e) => Err(scim_client::ClientError::Protocol(e.detail)),
                };
                match token_ok {
                    Ok(_) => outln!(
                        "{} target {} (bulk: {}, keeps pending users: {})",
                        mark(true),
                        client.base_url(),
                        spc.bulk,
                        spc.keeps_pending_users
                    ),
                    Err(e) => {
                        outln!("{} target {}: {e}", mark(false), client.base_url());
                        code = EXIT_UNREACHABLE;
                    }
                }
            }
            Err(e) => {
                outln!("{} target {}: {e}", mark(false), client.base_url());
                code = EXIT_UNREACHABLE;
            }
        },
        Err(e) => {
            outln!("{} target: {e}", mark(false));
            code = EXIT_REFUSED;
        }
    }
    code
}
