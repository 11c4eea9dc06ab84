//! The SCIM client for the configured target (`iid.scim.*`): authentication, concurrency
//! ceiling, timeout and proxy. Used by sync runs and password sync alike.

use secrecy::SecretString;

use crate::config::{AuthKind, Config};

/// The SCIM client for the configured target, as `dirsync check` and Password Sync use it: a
/// connection failure is retried a few times (Password Sync has its own backoff).
pub fn scim_client(config: &Config) -> Result<scim_client::ScimClient, scim_client::ClientError> {
    scim_client::ScimClient::new(client_options(config))
}

/// The SCIM client of a sync run: a connection failure is retried until the target has
/// stayed unreachable for `sync.unreachable_after`.
pub fn run_scim_client(
    config: &Config,
) -> Result<scim_client::ScimClient, scim_client::ClientError> {
    let mut options = client_options(config);
    options.unreachable_after = Some(config.sync.unreachable_after.0);
    scim_client::ScimClient::new(options)
}

fn client_options(config: &Config) -> scim_client::ClientOptions {
    let secret_file = config.secret_path.display();
    let auth = match config.iid.scim.auth.kind {
        AuthKind::Bearer => match &config.secrets.scim_token {
            Some(token) => scim_client::Auth::Bearer {
                token: token.clone(),
                credential: format!("iid.scim.token in {secret_file}"),
            },
            None => scim_client::Auth::None,
        },
        AuthKind::Oauth2 => {
            let o = config.iid.scim.auth.oauth2.as_ref();
            scim_client::Auth::OAuth2(scim_client::OAuth2ClientCredentials {
                // default: without OAuth settings the static token is used.
                token_url: o.map(|o| o.token_url.clone()).unwrap_or_default(),
                // default: without OAuth settings the static token is used.
                client_id: o.map(|o| o.client_id.clone()).unwrap_or_default(),
                client_secret: config
                    .secrets
                    .oauth2_client_secret
                    .clone()
                    .unwrap_or_else(|| SecretString::from(String::new())),
                scope: o.and_then(|o| o.scope.clone()),
                credential: format!(
                    "the OAuth2 client credentials (client_secret in {secret_file})"
                ),
            })
        }
    };
    let mut options = scim_client::ClientOptions::new(config.iid.scim.base_url.0.clone(), auth);
    // sync.concurrency is the ceiling; the client adapts below it (429/503 halve it).
    options.max_concurrency = config.sync.concurrency.0 as usize;
    if let Some(timeout) = &config.iid.scim.http.timeout {
        options.timeout = timeout.0;
    }
    if let Some(proxy) = &config.iid.scim.http.proxy
        && proxy.enabled
        && let Some(address) = &proxy.address
    {
        options.proxy = Some(scim_client::ProxyOptions {
            url: format!("http://{address}:{}", proxy.port.unwrap_or(8080)),
            user: proxy.user.clone(),
            password: config.secrets.proxy_password.clone(),
        });
    }
    options
}
