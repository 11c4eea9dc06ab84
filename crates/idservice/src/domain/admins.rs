//! The console's administrator accounts (`idservice admins …`): names, roles and passwords
//! under the same policy and hashing as users' passwords. An administrator is not a SCIM
//! user: SCIM clients never see these accounts, and a user's password never opens the console.
//!
//! It does not know HTTP, sessions or pages; the console (`crate::console`) signs in
//! against [`verify`].

use zeroize::Zeroizing;

use super::password::{self, PolicyError};
use super::{Service, now};
use crate::store::console::{self as sc, AdminRow};

/// What an administrator may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    /// Everything the console offers.
    Admin,
    /// View, unlock, send a reset email; nothing else.
    Helpdesk,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Helpdesk => "helpdesk",
        }
    }

    /// The role stored in the database (an unknown value is refused by the table's CHECK, so
    /// anything else is read as the lesser role).
    pub fn from_stored(s: &str) -> Role {
        if s == "admin" {
            Role::Admin
        } else {
            Role::Helpdesk
        }
    }
}

/// Why an account command failed. No message contains a password.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("an administrator named {0} exists already")]
    Taken(String),
    #[error("no administrator named {0}")]
    NotFound(String),
    #[error(
        "administrator names are 1 to 64 characters without spaces or control characters: {0:?}"
    )]
    BadName(String),
    #[error("the password is refused: {0}")]
    Policy(#[from] PolicyError),
    #[error("cannot hash the password")]
    Hash,
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
}

fn check_name(name: &str) -> Result<String, AdminError> {
    let ok = !name.is_empty()
        && name.chars().count() <= 64
        && !name.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok {
        Ok(name.to_lowercase())
    } else {
        Err(AdminError::BadName(name.to_string()))
    }
}

async fn hash(password: Zeroizing<String>) -> Result<String, AdminError> {
    password::check_policy(&password)?;
    tokio::task::spawn_blocking(move || password::hash(&password))
        .await
        .ok()
        .flatten()
        .ok_or(AdminError::Hash)
}

/// Adds an administrator.
pub async fn add(
    svc: &Service,
    name: &str,
    password: Zeroizing<String>,
    role: Role,
) -> Result<(), AdminError> {
    let name_lc = check_name(name)?;
    let password_hash = hash(password).await?;
    let row = AdminRow {
        name_lc,
        name: name.to_string(),
        role: role.as_str().to_string(),
        password_hash,
        failures: 0,
        locked_until: None,
        created: now(),
    };
    let mut tx = svc.store.begin().await?;
    if !sc::insert_admin(&mut tx, &row).await? {
        return Err(AdminError::Taken(name.to_string()));
    }
    tx.commit().await?;
    tracing::info!(target: "audit", event = "admin_added", admin = %name, role = role.as_str(), "administrator added");
    Ok(())
}

/// Every administrator, by name.
pub async fn list(svc: &Service) -> Result<Vec<AdminRow>, AdminError> {
    let mut conn = svc.store.read().await?;
    Ok(sc::admins(&mut conn).await?)
}

/// Removes an administrator (and ends their sessions).
pub async fn remove(svc: &Service, name: &str) -> Result<(), AdminError> {
    let mut tx = svc.store.begin().await?;
    if !sc::remove_admin(&mut tx, &name.to_lowercase()).await? {
        return Err(AdminError::NotFound(name.to_string()));
    }
    tx.commit().await?;
    tracing::info!(target: "audit", event = "admin_removed", admin = %name, "administrator removed");
    Ok(())
}

/// Sets a new password (clears a lockout, ends the administrator's sessions).
pub async fn set_password(
    svc: &Service,
    name: &str,
    password: Zeroizing<String>,
) -> Result<(), AdminError> {
    let name_lc = name.to_lowercase();
    let password_hash = hash(password).await?;
    let mut tx = svc.store.begin().await?;
    if !sc::set_admin_password(&mut tx, &name_lc, &password_hash).await? {
        return Err(AdminError::NotFound(name.to_string()));
    }
    tx.commit().await?;
    tracing::info!(target: "audit", event = "admin_password_set", admin = %name, "administrator password set");
    Ok(())
}

/// The account named `name` if `password` is its password. Every failure costs one argon2
/// verification (against a fixed hash when the name is unknown), so timing does not tell
/// which names exist.
pub async fn verify(
    svc: &Service,
    name: &str,
    password: Zeroizing<String>,
    dummy_hash: Option<String>,
) -> Result<Option<AdminRow>, AdminError> {
    let row = {
        let mut conn = svc.store.read().await?;
        sc::admin(&mut conn, &name.to_lowercase()).await?
    };
    let stored = row.as_ref().map(|r| r.password_hash.clone());
    let known = stored.is_some();
    let ok = tokio::task::spawn_blocking(move || {
        stored
            .or(dummy_hash)
            .is_some_and(|h| password::verify(&password, &h))
    })
    .await
    .unwrap_or(false);
    Ok(row.filter(|_| ok && known))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_and_compared_ignoring_case() {
        assert_eq!(check_name("Alice").ok().as_deref(), Some("alice"));
        assert_eq!(check_name("管理者").ok().as_deref(), Some("管理者"));
        for bad in ["", "a b", "tab\there", &"x".repeat(65)] {
            assert!(
                matches!(check_name(bad), Err(AdminError::BadName(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn unknown_roles_read_as_the_lesser_one() {
        assert_eq!(Role::from_stored("admin"), Role::Admin);
        assert_eq!(Role::from_stored("helpdesk"), Role::Helpdesk);
        assert_eq!(Role::from_stored("root"), Role::Helpdesk);
    }
}
