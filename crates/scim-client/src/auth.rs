//! How the client proves who it is: a bearer token, or OAuth 2.0 client credentials
//! (RFC 6749 §4.4) with the access token cached until shortly before it expires.
//!
//! Client credentials are one form POST; the `oauth2` crate would pull in a second HTTP stack
//! for that, so it is written here.

use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio::sync::Mutex;

use crate::error::ClientError;

/// Credentials for the SCIM service. `credential` names where they came from (for example
/// "iid.scim.token in /etc/dirsync/secret.yml") so that a refusal can say which to fix.
pub enum Auth {
    None,
    Bearer {
        token: SecretString,
        credential: String,
    },
    OAuth2(OAuth2ClientCredentials),
}

pub struct OAuth2ClientCredentials {
    pub token_url: String,
    pub client_id: String,
    pub client_secret: SecretString,
    pub scope: Option<String>,
    pub credential: String,
}

impl Auth {
    pub(crate) fn credential(&self) -> &str {
        match self {
            Auth::None => "no credentials",
            Auth::Bearer { credential, .. } => credential,
            Auth::OAuth2(c) => &c.credential,
        }
    }
}

/// The live state of an `Auth`: for OAuth2, the cached access token.
pub(crate) struct Authenticator {
    auth: Auth,
    cached: Mutex<Option<(SecretString, Instant)>>,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: SecretString,
    expires_in: Option<u64>,
}

impl Authenticator {
    pub(crate) fn new(auth: Auth) -> Self {
        Authenticator {
            auth,
            cached: Mutex::new(None),
        }
    }

    pub(crate) fn credential(&self) -> &str {
        self.auth.credential()
    }

    /// The `Authorization` header value, fetching an OAuth2 token when needed.
    pub(crate) async fn header(
        &self,
        http: &reqwest::Client,
    ) -> Result<Option<SecretString>, ClientError> {
        match &self.auth {
            Auth::None => Ok(None),
            Auth::Bearer { token, .. } => Ok(Some(SecretString::from(format!(
                "Bearer {}",
                token.expose_secret()
            )))),
            Auth::OAuth2(cc) => {
                let mut cached = self.cached.lock().await;
                if let Some((token, until)) = cached.as_ref()
                    && Instant::now() < *until
                {
                    return Ok(Some(SecretString::from(format!(
                        "Bearer {}",
                        token.expose_secret()
                    ))));
                }
                let fresh = fetch_token(http, cc).await?;
                let header = SecretString::from(format!("Bearer {}", fresh.0.expose_secret()));
                *cached = Some(fresh);
                Ok(Some(header))
            }
        }
    }

    /// Forgets a cached OAuth2 token after the service refused it, so one refresh is tried.
    pub(crate) async fn invalidate(&self) -> bool {
        if let Auth::OAuth2(_) = self.auth {
            self.cached.lock().await.take().is_some()
        } else {
            false
        }
    }
}

async fn fetch_token(
    http: &reqwest::Client,
    cc: &OAuth2ClientCredentials,
) -> Result<(SecretString, Instant), ClientError> {
    let mut form = vec![
        ("grant_type", "client_credentials".to_string()),
        ("client_id", cc.client_id.clone()),
        (
            "client_secret",
            cc.client_secret.expose_secret().to_string(),
        ),
    ];
    if let Some(scope) = &cc.scope {
        form.push(("scope", scope.clone()));
    }
    let response = http
        .post(&cc.token_url)
        .form(&form)
        .send()
        .await
        .map_err(|e| ClientError::Unreachable {
            url: cc.token_url.clone(),
            reason: e.without_url().to_string(),
        })?;
    if response.status().is_redirection() {
        return Err(crate::client::redirected(&cc.token_url, &response));
    }
    let status = response.status().as_u16();
    if !response.status().is_success() {
        return Err(ClientError::Unauthorized {
            status,
            credential: cc.credential.clone(),
            detail: "the OAuth2 token endpoint refused the client credentials".into(),
        });
    }
    let body: TokenResponse = response.json().await.map_err(|e| {
        ClientError::Protocol(format!("OAuth2 token response: {}", e.without_url()))
    })?;
    // Renew a minute early so a token never expires in flight.
    let lifetime = Duration::from_secs(body.expires_in.unwrap_or(300).saturating_sub(60));
    Ok((body.access_token, Instant::now() + lifetime))
}
