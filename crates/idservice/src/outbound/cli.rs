//! `idservice apps …`: the administrator commands for linked applications (kept here so that
//! `main.rs` only dispatches). Output is tab-separated with a header line; tokens are never
//! printed (only the secret file's path).

use std::path::PathBuf;

use clap::Subcommand;

use super::apps::{self, NewApp};
use super::{Error, PURGE_BLOCK};
use crate::domain::Service;
use crate::server::DbArgs;

#[derive(Debug, Subcommand)]
pub enum AppsCommand {
    /// Register a downstream SCIM 2.0 application; every existing user in its scope is linked.
    Add {
        #[command(flatten)]
        db: DbArgs,
        /// A short name (no spaces).
        name: String,
        /// The application's SCIM base URL, e.g. https://scim.example.com/v2
        #[arg(long)]
        url: String,
        /// File holding the application's bearer token (read at run time, never printed).
        #[arg(long)]
        token_file: PathBuf,
        /// Entitlement value given to linked accounts and removed when they are blocked.
        #[arg(long)]
        licence: Option<String>,
        /// Link only direct members of these groups (displayNames, comma-separated).
        #[arg(long, value_delimiter = ',')]
        groups: Vec<String>,
        /// What purging a user does downstream: `delete` the account, or leave it `block`ed.
        #[arg(long, default_value = PURGE_BLOCK)]
        purge_policy: String,
        /// At most this many requests a second to the application.
        #[arg(long)]
        rate: Option<f64>,
    },
    /// List applications with their backlog and the error holding their queue, if any.
    List {
        #[command(flatten)]
        db: DbArgs,
    },
    /// Remove an application and its link records (downstream accounts are left as they are).
    Remove {
        #[command(flatten)]
        db: DbArgs,
        name: String,
    },
    /// Link records: state, downstream id, immutable id, last push, last error.
    Links {
        #[command(flatten)]
        db: DbArgs,
        name: Option<String>,
    },
    /// Delete a downstream account permanently (the fix for a link that failed because a
    /// blocked account holds the userName); the application's failed links are retried.
    PurgeAccount {
        #[command(flatten)]
        db: DbArgs,
        name: String,
        account_id: String,
    },
}

impl AppsCommand {
    /// The database the command works on.
    pub fn db(&self) -> &DbArgs {
        match self {
            AppsCommand::Add { db, .. }
            | AppsCommand::List { db }
            | AppsCommand::Remove { db, .. }
            | AppsCommand::Links { db, .. }
            | AppsCommand::PurgeAccount { db, .. } => db,
        }
    }
}

/// A table cell: `-` when empty, tabs and newlines flattened.
fn cell(s: Option<&str>) -> String {
    // One line per row whatever the text holds.
    s.unwrap_or("-").replace(['\t', '\n'], " ")
}

/// Runs an `apps` command against an opened service.
pub async fn run(svc: &Service, cmd: AppsCommand) -> Result<(), Error> {
    match cmd {
        AppsCommand::Add {
            db: _,
            name,
            url,
            token_file,
            licence,
            groups,
            purge_policy,
            rate,
        } => {
            let row = apps::add(
                svc,
                NewApp {
                    name,
                    url,
                    token_file,
                    licence,
                    groups,
                    purge_policy,
                    rate_per_sec: rate,
                },
            )
            .await?;
            println!("application {} added ({})", row.name, row.url);
            Ok(())
        }
        AppsCommand::List { db: _ } => print_apps(svc).await,
        AppsCommand::Remove { db: _, name } => {
            apps::remove(svc, &name).await?;
            println!("application {name} removed");
            Ok(())
        }
        AppsCommand::Links { db: _, name } => print_links(svc, name.as_deref()).await,
        AppsCommand::PurgeAccount {
            db: _,
            name,
            account_id,
        } => {
            let requeued = apps::purge_account(svc, &name, &account_id).await?;
            println!(
                "downstream account {account_id} of {name} deleted; {requeued} failed link(s) queued again"
            );
            Ok(())
        }
    }
}

/// `apps list`: one tab-separated line per application, with its backlog and last error.
async fn print_apps(svc: &Service) -> Result<(), Error> {
    println!("NAME\tURL\tLICENCE\tGROUPS\tPURGE_POLICY\tBACKLOG\tLAST_ERROR");
    for (a, backlog) in apps::list(svc).await? {
        let error = a
            .last_error
            .as_deref()
            .map(|e| format!("{} {e}", a.last_error_at.as_deref().unwrap_or("")));
        println!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}",
            a.name,
            a.url,
            cell(a.licence.as_deref()),
            a.groups.as_deref().unwrap_or("(all users)"),
            a.purge_policy,
            backlog,
            cell(error.as_deref())
        );
    }
    Ok(())
}

/// `apps links`: one tab-separated line per link, of one application or all.
async fn print_links(svc: &Service, name: Option<&str>) -> Result<(), Error> {
    println!("APP\tUSERNAME\tSTATE\tDOWNSTREAM_ID\tIMMUTABLE_ID\tLAST_PUSH\tLAST_ERROR");
    for l in apps::links(svc, name).await? {
        println!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}",
            l.app,
            l.user_name,
            l.state,
            cell(l.downstream_id.as_deref()),
            l.immutable_id,
            cell(l.last_push.as_deref()),
            cell(l.last_error.as_deref())
        );
    }
    Ok(())
}
