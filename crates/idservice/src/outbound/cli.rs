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
        /// Accept an http:// URL (for tests on loopback): the token then travels in clear.
        #[arg(long)]
        allow_insecure_http: bool,
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

/// A table cell: `-` when empty; tabs, newlines and every other control character (which a
/// SCIM client or a downstream application chose, and which could move the cursor or
/// rewrite the administrator's terminal) become a space.
fn cell(s: Option<&str>) -> String {
    text(s.unwrap_or("-"))
}

/// `s` with every control character (C0, DEL, C1) replaced by a space: one line per row,
/// nothing a terminal interprets.
fn text(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
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
            allow_insecure_http,
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
                    allow_insecure_http,
                },
            )
            .await?;
            println!("application {} added ({})", text(&row.name), text(&row.url));
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
            text(&a.name),
            text(&a.url),
            cell(a.licence.as_deref()),
            text(a.groups.as_deref().unwrap_or("(all users)")),
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
            text(&l.app),
            text(&l.user_name),
            text(&l.state),
            cell(l.downstream_id.as_deref()),
            text(&l.immutable_id),
            cell(l.last_push.as_deref()),
            cell(l.last_error.as_deref())
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printed_values_carry_no_terminal_control() {
        let evil = "eve\u{1b}[2J\u{1b}]0;owned\u{7}\r\tx\u{9b}31m\u{7f}";
        let out = cell(Some(evil));
        assert!(!out.chars().any(char::is_control), "{out:?}");
        assert!(out.starts_with("eve ") && out.contains("owned"), "{out:?}");
        assert_eq!(cell(None), "-");
    }
}
