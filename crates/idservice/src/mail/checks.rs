//! The periodic checks that produce mail without a request: "Your password has expired"
//! (every address of the user, once per password) and token expiry warnings 30, 14, 7 and 1
//! days before (the token's owner, once per threshold). Run by `serve` every
//! `checks_interval_minutes` and by `idservice mail run-checks`.

use serde_json::Value;

use super::{Kind, Mail, recipients};
use crate::domain::password;
use crate::domain::{fmt_time, now};
use crate::store::{Conn, Store, account, admin};

/// Days before expiry at which the owner of a token is warned.
pub const TOKEN_WARNING_DAYS: [i64; 4] = [1, 7, 14, 30];

/// What a run queued.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ChecksReport {
    pub expired_passwords: usize,
    pub token_warnings: usize,
}

/// The warning threshold a token expiring in `remaining` falls under (the smallest of
/// [`TOKEN_WARNING_DAYS`] it is within), if any.
pub fn warning_threshold(remaining: chrono::Duration) -> Option<i64> {
    TOKEN_WARNING_DAYS
        .into_iter()
        .find(|d| remaining <= chrono::Duration::days(*d))
}

/// Runs both checks once. `signin_url` is put in the expiry notice.
pub async fn run(
    store: &Store,
    mail: &Mail,
    signin_url: &str,
) -> Result<ChecksReport, sqlx::Error> {
    let mut report = ChecksReport::default();
    if !mail.enabled() {
        return Ok(report);
    }
    let policy = password::policy();
    let at = now();
    let mut tx = store.begin().await?;
    account::backfill_password_ages(&mut tx, &at).await?;
    if policy.max_age_days > 0 {
        report.expired_passwords =
            notify_expired_passwords(&mut tx, mail, signin_url, &at, policy.max_age_days).await?;
    }
    report.token_warnings = warn_expiring_tokens(&mut tx, mail, &at).await?;
    tx.commit().await?;
    if report.expired_passwords + report.token_warnings > 0 {
        mail.wake();
        tracing::info!(
            expired_passwords = report.expired_passwords,
            token_warnings = report.token_warnings,
            "mail checks queued notices"
        );
    }
    Ok(report)
}

/// Queues "Your password has expired" once per password older than `max_age_days`.
async fn notify_expired_passwords(
    conn: &mut Conn,
    mail: &Mail,
    signin_url: &str,
    at: &str,
    max_age_days: u32,
) -> Result<usize, sqlx::Error> {
    let cutoff = fmt_time(chrono::Utc::now() - chrono::Duration::days(i64::from(max_age_days)));
    let expired = account::expired_unnotified(&mut *conn, &cutoff).await?;
    let days = max_age_days.to_string();
    let mut count = 0;
    for (id, user_name, resource) in expired {
        let resource: Value = serde_json::from_str(&resource).unwrap_or(Value::Null);
        let to = recipients(Kind::PasswordExpired, &resource);
        mail.queue(
            &mut *conn,
            Kind::PasswordExpired,
            &to,
            crate::i18n::Lang::of_user(&resource, mail.cfg.default_language),
            &[
                ("user_name", &user_name),
                ("days", &days),
                ("signin_url", signin_url),
            ],
        )
        .await?;
        account::expiry_notified(&mut *conn, &id, at).await?;
        count += 1;
    }
    Ok(count)
}

/// Queues a warning to the owner of each token nearing expiry, once per threshold.
async fn warn_expiring_tokens(
    conn: &mut Conn,
    mail: &Mail,
    at: &str,
) -> Result<usize, sqlx::Error> {
    let tokens = admin::owned_live_tokens(&mut *conn, at).await?;
    let now_t = chrono::Utc::now();
    let mut count = 0;
    for (id, owner, expires, scopes) in tokens {
        let Ok(exp) = chrono::DateTime::parse_from_rfc3339(&expires) else {
            continue;
        };
        let Some(days) = warning_threshold(exp.with_timezone(&chrono::Utc) - now_t) else {
            continue;
        };
        // Already warned at this threshold or a closer one: nothing new to say.
        if admin::expiry_warned(&mut *conn, &id, days).await? {
            continue;
        }
        let days_text = days.to_string();
        mail.queue(
            &mut *conn,
            Kind::TokenExpiring,
            std::slice::from_ref(&owner),
            // a token's owner is an address, not a user: the service's language
            mail.cfg.default_language,
            &[
                ("token_id", &id),
                ("expires", &expires),
                ("days", &days_text),
                ("scopes", &scopes),
                ("owner", &owner),
            ],
        )
        .await?;
        admin::record_expiry_warning(&mut *conn, &id, days, at).await?;
        count += 1;
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    #[test]
    fn thresholds() {
        assert_eq!(warning_threshold(Duration::days(40)), None);
        assert_eq!(warning_threshold(Duration::days(30)), Some(30));
        assert_eq!(warning_threshold(Duration::days(20)), Some(30));
        assert_eq!(warning_threshold(Duration::days(10)), Some(14));
        assert_eq!(warning_threshold(Duration::days(5)), Some(7));
        assert_eq!(warning_threshold(Duration::hours(3)), Some(1));
    }
}
