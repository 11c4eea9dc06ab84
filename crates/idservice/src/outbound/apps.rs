//! The administrator's operations on linked applications (`idservice apps …`).

use scim_client::ResourceKind;

use super::{Downstream, Error, PURGE_BLOCK, PURGE_DELETE, read_token};
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
    /// Accept an `http://` URL (tests on loopback); otherwise only `https://`.
    pub allow_insecure_http: bool,
}

/// Registers an application. Every existing user is queued for it, so the worker of a
/// running service links them.
pub async fn add(svc: &Service, new: NewApp) -> Result<AppRow, Error> {
    let name = new.name.trim().to_string();
    if name.is_empty() || name.contains(char::is_whitespace) || name.contains(',') {
        return Err(Error::InvalidName(name));
    }
    if !(new.url.starts_with("http://") || new.url.starts_with("https://")) {
        return Err(Error::InvalidUrl(new.url));
    }
    if new.url.starts_with("http://") && !new.allow_insecure_http {
        return Err(Error::InsecureUrl(new.url));
    }
    if new.purge_policy != PURGE_DELETE && new.purge_policy != PURGE_BLOCK {
        return Err(Error::InvalidPurgePolicy {
            given: new.purge_policy,
        });
    }
    if new.rate_per_sec.is_some_and(|r| !r.is_finite() || r <= 0.0) {
        return Err(Error::InvalidRate);
    }
    // Checked now so that a typo is reported at once, not by the worker later.
    read_token(&new.token_file)?;
    let token_file =
        std::fs::canonicalize(&new.token_file).map_err(|source| Error::TokenFilePath {
            path: new.token_file.clone(),
            source,
        })?;
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
    let mut tx = svc.store.begin().await?;
    if !sa::insert_app(&mut tx, &row).await? {
        return Err(Error::AppExists(row.name));
    }
    tx.commit().await?;
    tracing::info!(app = %row.name, url = %row.url, "linked application added");
    Ok(row)
}

/// An application with its backlog (queued changes not yet pushed).
pub async fn list(svc: &Service) -> Result<Vec<(AppRow, i64)>, Error> {
    let mut conn = svc.store.read().await?;
    let apps = sa::list_apps(&mut conn).await?;
    let mut out = Vec::with_capacity(apps.len());
    for a in apps {
        let backlog = sa::backlog(&mut conn, &a.name, a.position()).await?;
        out.push((a, backlog));
    }
    Ok(out)
}

/// Removes an application and its link records.
pub async fn remove(svc: &Service, name: &str) -> Result<(), Error> {
    let mut tx = svc.store.begin().await?;
    let removed = sa::remove_app(&mut tx, name).await?;
    tx.commit().await?;
    if removed {
        Ok(())
    } else {
        Err(Error::NoSuchApp(name.to_string()))
    }
}

/// The link records of one application, or of all of them.
pub async fn links(svc: &Service, app: Option<&str>) -> Result<Vec<LinkRow>, Error> {
    let mut conn = svc.store.read().await?;
    if let Some(name) = app
        && sa::get_app(&mut conn, name).await?.is_none()
    {
        return Err(Error::NoSuchApp(name.to_string()));
    }
    Ok(sa::list_links(&mut conn, app).await?)
}

/// Deletes downstream account `account_id` of application `app` permanently (the fix of a
/// failed link), drops the links that held it, and queues the application's failed links
/// again. Returns how many failed links were queued.
pub async fn purge_account(svc: &Service, app: &str, account_id: &str) -> Result<u64, Error> {
    let row = {
        let mut conn = svc.store.read().await?;
        sa::get_app(&mut conn, app)
            .await?
            .ok_or_else(|| Error::NoSuchApp(app.to_string()))?
    };
    let ds = Downstream::connect(&row)?;
    let existed = ds
        .delete(ResourceKind::Users, account_id)
        .await
        .map_err(|source| Error::Downstream {
            app: app.to_string(),
            source,
        })?;
    let mut tx = svc.store.begin().await?;
    let requeued = sa::after_account_purged(&mut tx, app, account_id).await?;
    tx.commit().await?;
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
        Err(Error::NoSuchAccount {
            app: app.to_string(),
            account_id: account_id.to_string(),
            requeued,
        })
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
