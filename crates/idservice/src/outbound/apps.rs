//! The administrator's operations on linked applications (`idservice apps …`).

use scim_client::ResourceKind;

use super::{Downstream, PURGE_BLOCK, PURGE_DELETE, read_token};
use crate::domain::{Service, now};
use crate::store::apps::{self as sa, AppRow, LinkRow};

/// What `apps add` registers.
#[derive(Debug, Clone)]
pub struct NewApp {
    pub name: String,
    pub url: String,
    pub token_file: std::path::PathBuf,
    pub licence: Option<String>,
    /// Group displayNames; empty: every user.
    pub groups: Vec<String>,
    pub purge_policy: String,
    pub rate_per_sec: Option<f64>,
}

/// Registers an application. Every existing user is queued for it, so the worker of a
/// running service links them.
pub async fn add(svc: &Service, new: NewApp) -> Result<AppRow, String> {
    let name = new.name.trim().to_string();
    if name.is_empty() || name.contains(char::is_whitespace) || name.contains(',') {
        return Err(format!("{name:?} is not a valid application name"));
    }
    if !(new.url.starts_with("http://") || new.url.starts_with("https://")) {
        return Err(format!(
            "--url {:?} must start with http:// or https://",
            new.url
        ));
    }
    if new.purge_policy != PURGE_DELETE && new.purge_policy != PURGE_BLOCK {
        return Err(format!(
            "--purge-policy must be {PURGE_DELETE} or {PURGE_BLOCK}, not {:?}",
            new.purge_policy
        ));
    }
    if new.rate_per_sec.is_some_and(|r| !r.is_finite() || r <= 0.0) {
        return Err("--rate must be a positive number of requests a second".into());
    }
    // Checked now so that a typo is reported at once, not by the worker later.
    read_token(&new.token_file)?;
    let token_file = std::fs::canonicalize(&new.token_file)
        .map_err(|e| format!("{}: {e}", new.token_file.display()))?;
    let groups: Vec<String> = new
        .groups
        .iter()
        .map(|g| g.trim().to_lowercase())
        .filter(|g| !g.is_empty())
        .collect();
    let row = AppRow {
        name,
        url: new.url.trim_end_matches('/').to_string(),
        token_file: token_file.display().to_string(),
        licence: new.licence.filter(|l| !l.is_empty()),
        groups: (!groups.is_empty()).then(|| groups.join(",")),
        purge_policy: new.purge_policy,
        rate_per_sec: new.rate_per_sec,
        created: now(),
        cursor_tx: 0,
        cursor: 0,
        last_error: None,
        last_error_at: None,
    };
    let mut tx = svc.store.begin().await.map_err(|e| e.to_string())?;
    if !sa::insert_app(&mut tx, &row)
        .await
        .map_err(|e| e.to_string())?
    {
        return Err(format!("an application named {} already exists", row.name));
    }
    tx.commit().await.map_err(|e| e.to_string())?;
    tracing::info!(app = %row.name, url = %row.url, "linked application added");
    Ok(row)
}

/// An application with its backlog (queued changes not yet pushed).
pub async fn list(svc: &Service) -> Result<Vec<(AppRow, i64)>, String> {
    let mut conn = svc.store.read().await.map_err(|e| e.to_string())?;
    let apps = sa::list_apps(&mut conn).await.map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(apps.len());
    for a in apps {
        let backlog = sa::backlog(&mut conn, &a.name, a.position())
            .await
            .map_err(|e| e.to_string())?;
        out.push((a, backlog));
    }
    Ok(out)
}

pub async fn remove(svc: &Service, name: &str) -> Result<(), String> {
    let mut tx = svc.store.begin().await.map_err(|e| e.to_string())?;
    let removed = sa::remove_app(&mut tx, name)
        .await
        .map_err(|e| e.to_string())?;
    tx.commit().await.map_err(|e| e.to_string())?;
    if removed {
        Ok(())
    } else {
        Err(format!("no application named {name}"))
    }
}

pub async fn links(svc: &Service, app: Option<&str>) -> Result<Vec<LinkRow>, String> {
    let mut conn = svc.store.read().await.map_err(|e| e.to_string())?;
    if let Some(name) = app
        && sa::get_app(&mut conn, name)
            .await
            .map_err(|e| e.to_string())?
            .is_none()
    {
        return Err(format!("no application named {name}"));
    }
    sa::list_links(&mut conn, app)
        .await
        .map_err(|e| e.to_string())
}

/// Deletes downstream account `account_id` of application `app` permanently (the fix of a
/// failed link), drops the links that held it, and queues the application's failed links
/// again. Returns how many failed links were queued.
pub async fn purge_account(svc: &Service, app: &str, account_id: &str) -> Result<u64, String> {
    let row = {
        let mut conn = svc.store.read().await.map_err(|e| e.to_string())?;
        sa::get_app(&mut conn, app)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("no application named {app}"))?
    };
    let ds = Downstream::connect(&row)?;
    let existed = ds
        .delete(ResourceKind::Users, account_id)
        .await
        .map_err(|e| format!("application {app}: {e}"))?;
    let mut tx = svc.store.begin().await.map_err(|e| e.to_string())?;
    let requeued = sa::after_account_purged(&mut tx, app, account_id)
        .await
        .map_err(|e| e.to_string())?;
    tx.commit().await.map_err(|e| e.to_string())?;
    tracing::info!(
        app,
        downstream_id = account_id,
        existed,
        requeued,
        "downstream account deleted by the administrator"
    );
    if existed {
        Ok(requeued)
    } else {
        Err(format!(
            "application {app} has no account {account_id} (nothing deleted; {requeued} failed link(s) queued again)"
        ))
    }
}

/// For messages: the command-line option naming the database of `svc` (`--data DIR` or
/// `--database URL`, without password).
pub fn db_option(svc: &Service) -> String {
    match svc.store.data_dir() {
        Some(dir) => format!("--data {}", dir.display()),
        None => format!("--database {}", svc.store.name()),
    }
}
