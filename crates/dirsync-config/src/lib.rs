//! `config.yml` and `secret.yml` (behaviour §2): the key tree of the existing tool plus our
//! extensions, loaded strictly and validated before anything connects anywhere.
//!
//! Every struct denies unknown keys; values that have a syntax of their own (filters, regex
//! rewrites, durations, URLs, ranges) check it while being read, so every error names the
//! file, line, column and key path (see [`load`]). Secrets are `SecretString`s: zeroised on
//! drop and redacted in `Debug`, and secret.yml errors never quote values.
//!
//! This crate does not know connections (LDAP, SCIM), the mapping, the planner or the state
//! store; it only describes and checks what the administrator wrote. Flavor-dependent defaults
//! (which attributes to bind when a binding is absent) live in the mapping.

mod encryption;
mod load;
pub mod notify;
mod schema;
pub mod values;

use std::path::{Path, PathBuf};
use std::time::Duration;

use schemars::JsonSchema;
use secrecy::SecretString;
use serde::Deserialize;

use dirsync_model::kind::DirectoryKind;

pub use encryption::is_loopback_host;
pub use load::{ConfigError, Warning};
pub use notify::{EmailConfig, MailAddress, NotifyConfig, Recipients};
pub use schema::config_schema;
pub use values::{
    AttrList, Bounded, ByteSize, DurationText, HttpUrl, KdcAddress, KerberosPrincipal,
    LdapFilterText, OneOrMany, PollInterval, Ratio, RubyRegex, RubyReplacement, Schedule,
    ScimFilterText, TimeoutSecs,
};

/// The effective configuration: both files, with paths resolved.
#[derive(Debug)]
pub struct Config {
    pub log: LogConfig,
    pub ad: AdConfig,
    pub iid: IidConfig,
    pub sync: SyncConfig,
    /// [better] `notify:` (docs/dirsync.md, "Notifications").
    pub notify: NotifyConfig,
    pub secrets: Secrets,
    /// The config file as given.
    pub config_path: PathBuf,
    /// The secret file that was read (or would have been, when absent).
    pub secret_path: PathBuf,
    /// `sync.state_dir`, resolved against the config file's directory.
    pub state_dir: PathBuf,
}

impl Config {
    /// Loads `config_path` and the secret file (default: `secret.yml` beside it). An absent
    /// default secret file is not an error (an LDIF source with a token-less target needs no
    /// secrets); an explicitly named one that is absent is, and so is a secret file that the
    /// group or others may read ([`ConfigError::NotPrivate`]) or a bind DN whose password
    /// is missing. Plain LDAP written for a remote server is returned as a [`Warning`].
    pub fn load(
        config_path: &Path,
        secret_path: Option<&Path>,
    ) -> Result<(Config, Vec<Warning>), ConfigError> {
        load::load(config_path, secret_path)
    }
}

/// The top level of `config.yml`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConfigFile {
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub ad: AdConfig,
    pub iid: IidConfig,
    #[serde(default)]
    pub sync: SyncConfig,
    #[serde(default)]
    pub notify: NotifyConfig,
}

/// `log:` (docs/dirsync.md, "Logging").
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    #[serde(default)]
    pub loglevel: LogLevel,
    #[serde(default)]
    pub logger: Logger,
    /// [better] The local syslog socket `logger: syslog` writes to (default `/dev/log`).
    #[serde(default = "default_syslog_socket")]
    pub syslog_socket: PathBuf,
    /// [better] A file every line is also written to, rotated by size. Relative to the
    /// config file.
    #[serde(default)]
    pub file: Option<PathBuf>,
    /// [better] The size at which `file` is rotated (default `10MiB`).
    #[serde(default = "default_file_max_size")]
    pub file_max_size: ByteSize,
    /// [better] How many rotated files are kept (`FILE.1` … `FILE.N`, default 5; 0 keeps
    /// none: the file is emptied when full).
    #[serde(default = "default_file_keep")]
    pub file_keep: u16,
}

fn default_syslog_socket() -> PathBuf {
    PathBuf::from("/dev/log")
}
fn default_file_max_size() -> ByteSize {
    ByteSize(10 * 1024 * 1024)
}
fn default_file_keep() -> u16 {
    5
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            loglevel: LogLevel::default(),
            logger: Logger::default(),
            syslog_socket: default_syslog_socket(),
            file: None,
            file_max_size: default_file_max_size(),
            file_keep: default_file_keep(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Error,
    Warn,
    #[default]
    Info,
    Debug,
}

impl LogLevel {
    /// The name `tracing`'s filter syntax and `--log-level` use.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Logger {
    /// Windows only in the existing tool; on other systems treated as stderr.
    Eventlog,
    Syslog,
    #[default]
    Stderr,
    Journald,
    Json,
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AdConfig {
    #[serde(default)]
    pub ldap: LdapConfig,
    /// [better] Read the directory from this LDIF file instead of an LDAP server (the
    /// embedded sample, tests). Relative to the config file.
    #[serde(default)]
    pub ldif_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LdapConfig {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub base_dn: String,
    #[serde(default)]
    pub filter: LdapFilters,
    #[serde(default)]
    pub search: SearchConfig,
    /// Accepted for compatibility (behaviour §4.6); the local state is a cache either way.
    #[serde(default)]
    pub cache_disabled: Option<bool>,
    #[serde(default)]
    pub flavor: Flavor,
    /// [better] How an incremental run finds Active Directory's changes (docs/dirsync.md,
    /// "Incremental reads: Active Directory"). OpenLDAP always uses syncrepl.
    #[serde(default)]
    pub change_tracking: ChangeTracking,
}

/// `ad.ldap.change_tracking`: which Active Directory change mechanism incremental runs use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChangeTracking {
    /// DirSync where the DC lets the account use it, else uSNChanged high-water marks.
    #[default]
    Auto,
    /// The DirSync control only.
    DirSync,
    /// uSNChanged high-water marks (and tombstones) only.
    UsnChanged,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    #[serde(default)]
    pub addresses: Vec<String>,
    /// Default: 636 for `ldaps`, else 389 (see [`ServerConfig::effective_port`]).
    #[serde(default)]
    pub port: Option<u16>,
    /// The bind DN; absent means an anonymous bind.
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub timeout: TimeoutSecs,
    /// As written; absent means StartTLS, or none when every address is loopback (see
    /// [`ServerConfig::effective_encryption`]).
    #[serde(default)]
    pub encryption: Option<Encryption>,
    /// [better] Defaults to true: certificates are verified unless turned off explicitly.
    #[serde(default = "yes")]
    pub verify_mode: bool,
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// [better] How the agent authenticates: `simple` (the default: `user` and the password
    /// from secret.yml) or `gssapi` (Kerberos from a keytab; docs/active-directory.md,
    /// "Kerberos").
    #[serde(default)]
    pub auth: LdapAuth,
    /// [better] The Kerberos KDC (`host` or `host:port`) for `auth.mechanism: gssapi`, when the
    /// system's krb5.conf does not name one for the principal's realm.
    #[serde(default)]
    pub kdc: Option<KdcAddress>,
}

/// `ad.ldap.server.auth`: the bind mechanism, checked as a whole (`gssapi` needs a keytab and
/// a principal; `simple` takes neither).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawLdapAuth")]
pub enum LdapAuth {
    /// A simple bind with `ad.ldap.server.user` and the password from secret.yml.
    #[default]
    Simple,
    /// A SASL GSSAPI (Kerberos) bind with the key of `principal` from `keytab`.
    Gssapi {
        /// As written; relative paths are resolved against the config file's directory by
        /// the loader.
        keytab: PathBuf,
        principal: KerberosPrincipal,
    },
}

impl LdapAuth {
    /// The mechanism's name as written in the configuration and shown by `dirsync check`.
    pub fn mechanism(&self) -> &'static str {
        match self {
            LdapAuth::Simple => "simple",
            LdapAuth::Gssapi { .. } => "gssapi",
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
enum BindMechanism {
    #[default]
    Simple,
    Gssapi,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawLdapAuth {
    #[serde(default)]
    mechanism: BindMechanism,
    #[serde(default)]
    keytab: Option<PathBuf>,
    #[serde(default)]
    principal: Option<KerberosPrincipal>,
}

impl TryFrom<RawLdapAuth> for LdapAuth {
    type Error = values::ValueError;
    fn try_from(raw: RawLdapAuth) -> Result<Self, values::ValueError> {
        match (raw.mechanism, raw.keytab, raw.principal) {
            (BindMechanism::Simple, None, None) => Ok(LdapAuth::Simple),
            (BindMechanism::Simple, _, _) => Err(values::ValueError::KerberosFieldsOnSimple),
            (BindMechanism::Gssapi, Some(keytab), Some(principal)) => {
                if keytab.as_os_str().is_empty() {
                    return Err(values::ValueError::GssapiIncomplete);
                }
                Ok(LdapAuth::Gssapi { keytab, principal })
            }
            (BindMechanism::Gssapi, _, _) => Err(values::ValueError::GssapiIncomplete),
        }
    }
}

fn yes() -> bool {
    true
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            addresses: Vec::new(),
            port: None,
            user: None,
            timeout: TimeoutSecs::default(),
            encryption: None,
            verify_mode: true,
            ca_file: None,
            auth: LdapAuth::Simple,
            kdc: None,
        }
    }
}

impl ServerConfig {
    pub fn effective_port(&self) -> u16 {
        self.port.unwrap_or(match self.effective_encryption() {
            Encryption::Ldaps => 636,
            _ => 389,
        })
    }
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(u64::from(self.timeout.0))
    }
}

/// `ad.ldap.server.encryption`. There is no `Default`: an absent value depends on the
/// addresses ([`ServerConfig::effective_encryption`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Encryption {
    None,
    StartTls,
    Ldaps,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Flavor {
    /// Decided from the rootDSE at connect time (LDIF: from the entries' object classes).
    #[default]
    Auto,
    ActiveDirectory,
    Openldap,
}

impl Flavor {
    /// The directory kind this flavor forces; `None` for `auto` (decided from the directory).
    pub fn kind(self) -> Option<DirectoryKind> {
        match self {
            Flavor::Auto => None,
            Flavor::ActiveDirectory => Some(DirectoryKind::ActiveDirectory),
            Flavor::Openldap => Some(DirectoryKind::OpenLdap),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LdapFilters {
    #[serde(default)]
    pub user: Option<LdapFilterText>,
    #[serde(default)]
    pub group: Option<LdapFilterText>,
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchConfig {
    #[serde(default)]
    pub user: UserSearch,
    #[serde(default)]
    pub group: GroupSearch,
}

/// Absent values take the flavor's default (`DirectoryKind::defaults`).
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UserSearch {
    #[serde(default)]
    pub object_class: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupSearch {
    #[serde(default)]
    pub object_class: Option<String>,
    /// The group attribute listing members (`member`, `uniqueMember`, `memberUid`).
    #[serde(default)]
    pub member_attribute: Option<String>,
    /// What a member value identifies: `dn` (the user's DN), or a user attribute such as
    /// `uid` for `memberUid`.
    #[serde(default)]
    pub member_user_attribute: Option<String>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IidConfig {
    pub scim: ScimConfig,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScimConfig {
    /// [better] The SCIM endpoint, e.g. `https://idp.example.jp/scim/v2`. Required.
    pub base_url: HttpUrl,
    #[serde(default)]
    pub auth: AuthConfig,
    #[serde(default)]
    pub filter: ScimFilters,
    #[serde(default)]
    pub http: HttpConfig,
    #[serde(default)]
    pub attribute: AttributeConfig,
}

/// How the agent authenticates to the target. `type: bearer` (default) uses `iid.scim.token`
/// from secret.yml; `type: oauth2` uses the client-credentials grant with `client_secret`
/// from secret.yml.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(try_from = "RawAuth")]
pub struct AuthConfig {
    pub kind: AuthKind,
    pub oauth2: Option<OAuth2Config>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuth2Config {
    pub token_url: String,
    pub client_id: String,
    pub scope: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuthKind {
    #[default]
    Bearer,
    Oauth2,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    #[serde(default, rename = "type")]
    kind: AuthKind,
    #[serde(default)]
    token_url: Option<HttpUrl>,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    scope: Option<String>,
}

impl TryFrom<RawAuth> for AuthConfig {
    type Error = values::ValueError;
    fn try_from(raw: RawAuth) -> Result<Self, values::ValueError> {
        match raw.kind {
            AuthKind::Bearer => {
                if raw.token_url.is_some() || raw.client_id.is_some() || raw.scope.is_some() {
                    return Err(values::ValueError::OAuth2FieldsOnBearer);
                }
                Ok(AuthConfig {
                    kind: AuthKind::Bearer,
                    oauth2: None,
                })
            }
            AuthKind::Oauth2 => match (raw.token_url, raw.client_id) {
                (Some(url), Some(id)) => Ok(AuthConfig {
                    kind: AuthKind::Oauth2,
                    oauth2: Some(OAuth2Config {
                        token_url: url.0,
                        client_id: id,
                        scope: raw.scope,
                    }),
                }),
                _ => Err(values::ValueError::OAuth2Incomplete),
            },
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScimFilters {
    #[serde(default)]
    pub user: Option<ScimFilterText>,
    #[serde(default)]
    pub group: Option<ScimFilterText>,
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    #[serde(default)]
    pub proxy: Option<ProxyConfig>,
    /// [better] Per-request timeout (default 60s).
    #[serde(default)]
    pub timeout: Option<DurationText>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    #[serde(rename = "use", default)]
    pub enabled: bool,
    #[serde(default)]
    pub address: Option<String>,
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub user: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AttributeConfig {
    #[serde(default)]
    pub user: UserAttributes,
    #[serde(default)]
    pub group: GroupAttributes,
}

/// `iid.scim.attribute.user`: constants, bindings and rewrites for users. Checked as a whole
/// for the issuer rule (behaviour §2.1).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(try_from = "RawUserAttributes")]
pub struct UserAttributes {
    pub default: UserDefaults,
    pub ad_bind: UserBindings,
    pub convert: Vec<(ConvertTarget, Vec<ConvertRule>)>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawUserAttributes {
    #[serde(default)]
    default: UserDefaults,
    #[serde(default)]
    ad_bind: UserBindings,
    /// Regex rewrites per SCIM attribute (`externalUserName: [{pattern, replacement}]`).
    #[serde(default)]
    #[schemars(schema_with = "schema::convert_rules")]
    convert: std::collections::BTreeMap<ConvertTarget, Vec<ConvertRule>>,
}

impl TryFrom<RawUserAttributes> for UserAttributes {
    type Error = values::ValueError;
    fn try_from(raw: RawUserAttributes) -> Result<Self, values::ValueError> {
        let issuer = raw
            .default
            .id_token_claims
            .as_ref()
            .and_then(|c| c.issuer.as_deref())
            .is_some_and(|s| !s.trim().is_empty());
        let subject_bound = raw
            .ad_bind
            .id_token_claims
            .as_ref()
            .and_then(|c| c.subject.as_ref())
            .is_some_and(|a| !a.0.is_empty())
            || raw
                .default
                .id_token_claims
                .as_ref()
                .is_some_and(|c| c.subject.is_some());
        let external_bound = raw
            .ad_bind
            .external_user_name
            .as_ref()
            .is_some_and(|a| !a.0.is_empty())
            || raw.default.external_user_name.is_some();
        if (external_bound || subject_bound) && !issuer {
            let what = if external_bound {
                "externalUserName"
            } else {
                "idTokenClaims.subject"
            };
            // Named relative to `iid.scim.attribute.user`, which the key path shows.
            return Err(values::ValueError::NoIssuer(what));
        }
        Ok(UserAttributes {
            default: raw.default,
            ad_bind: raw.ad_bind,
            convert: raw.convert.into_iter().collect(),
        })
    }
}

/// Constants applied to every user (`iid.scim.attribute.user.default`).
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UserDefaults {
    /// Positional flags for the email bindings: the i-th entry applies to the i-th binding of
    /// `ad_bind.emails`.
    #[serde(default)]
    pub emails: Option<Vec<MultiValueFlags>>,
    /// Positional flags for phone number bindings.
    #[serde(default)]
    pub phone_numbers: Option<OneOrMany<MultiValueFlags>>,
    #[serde(default)]
    pub preferred_language: Option<String>,
    #[serde(default)]
    pub locale: Option<String>,
    #[serde(default)]
    pub timezone: Option<String>,
    #[serde(default)]
    pub user_type: Option<String>,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub department: Option<String>,
    #[serde(default)]
    pub organization: Option<String>,
    #[serde(default)]
    pub external_user_name: Option<String>,
    #[serde(default)]
    pub id_token_claims: Option<IdTokenClaimsDefault>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MultiValueFlags {
    #[serde(default)]
    pub primary: Option<bool>,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IdTokenClaimsDefault {
    #[serde(default)]
    pub issuer: Option<String>,
    #[serde(default)]
    pub subject: Option<String>,
}

/// SCIM attribute ← directory attribute(s) (`iid.scim.attribute.user.ad_bind`). `None` means
/// "not written": the flavor default applies. An empty list means "bind nothing".
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UserBindings {
    #[serde(default)]
    pub external_id: Option<AttrList>,
    #[serde(default)]
    pub user_name: Option<AttrList>,
    #[serde(default)]
    pub display_name: Option<AttrList>,
    #[serde(default)]
    pub nick_name: Option<AttrList>,
    #[serde(default)]
    pub name: Option<NameBindings>,
    #[serde(default)]
    pub title: Option<AttrList>,
    #[serde(default)]
    pub user_type: Option<AttrList>,
    #[serde(default)]
    pub preferred_language: Option<AttrList>,
    #[serde(default)]
    pub locale: Option<AttrList>,
    #[serde(default)]
    pub timezone: Option<AttrList>,
    /// All listed attributes are checked (not first-non-empty): the user is active only when
    /// none of them says disabled (`userAccountControl`, `accountExpires`,
    /// `pwdAccountLockedTime`, `nsAccountLock`, or a boolean attribute).
    #[serde(default)]
    pub active: Option<AttrList>,
    #[serde(default)]
    pub emails: Option<OneOrMany<ValueBinding>>,
    #[serde(default)]
    pub phone_numbers: Option<OneOrMany<ValueBinding>>,
    // Enterprise extension.
    #[serde(default)]
    pub employee_number: Option<AttrList>,
    #[serde(default)]
    pub cost_center: Option<AttrList>,
    #[serde(default)]
    pub organization: Option<AttrList>,
    #[serde(default)]
    pub division: Option<AttrList>,
    #[serde(default)]
    pub department: Option<AttrList>,
    // IIJ extension.
    #[serde(default)]
    pub downstream_id: Option<AttrList>,
    #[serde(default)]
    pub external_user_name: Option<AttrList>,
    #[serde(default)]
    pub local_names: Option<NameBindings>,
    #[serde(default)]
    pub id_token_claims: Option<IdTokenClaimsBinding>,
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NameBindings {
    #[serde(default)]
    pub formatted: Option<AttrList>,
    #[serde(default)]
    pub family_name: Option<AttrList>,
    #[serde(default)]
    pub given_name: Option<AttrList>,
    #[serde(default)]
    pub middle_name: Option<AttrList>,
    #[serde(default)]
    pub honorific_prefix: Option<AttrList>,
    #[serde(default)]
    pub honorific_suffix: Option<AttrList>,
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IdTokenClaimsBinding {
    #[serde(default)]
    pub subject: Option<AttrList>,
}

/// One element binding of a multi-valued attribute: `{value: proxyAddresses}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ValueBinding {
    pub value: AttrList,
}

/// The SCIM attributes a `convert` rule may rewrite. Deserialised from a plain string (not
/// derived) so that the key path of an error names the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ConvertTarget {
    ExternalId,
    UserName,
    DisplayName,
    NickName,
    Title,
    PreferredLanguage,
    Emails,
    PhoneNumbers,
    Department,
    EmployeeNumber,
    Organization,
    Division,
    DownstreamId,
    ExternalUserName,
}

impl ConvertTarget {
    const ALL: [(ConvertTarget, &'static str); 14] = [
        (ConvertTarget::ExternalId, "externalId"),
        (ConvertTarget::UserName, "userName"),
        (ConvertTarget::DisplayName, "displayName"),
        (ConvertTarget::NickName, "nickName"),
        (ConvertTarget::Title, "title"),
        (ConvertTarget::PreferredLanguage, "preferredLanguage"),
        (ConvertTarget::Emails, "emails"),
        (ConvertTarget::PhoneNumbers, "phoneNumbers"),
        (ConvertTarget::Department, "department"),
        (ConvertTarget::EmployeeNumber, "employeeNumber"),
        (ConvertTarget::Organization, "organization"),
        (ConvertTarget::Division, "division"),
        (ConvertTarget::DownstreamId, "downstreamId"),
        (ConvertTarget::ExternalUserName, "externalUserName"),
    ];

    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(t, _)| *t == self)
            .map(|(_, n)| *n)
            .unwrap_or("")
    }
}

impl<'de> Deserialize<'de> for ConvertTarget {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        ConvertTarget::ALL
            .iter()
            .find(|(_, n)| *n == name)
            .map(|(t, _)| *t)
            .ok_or_else(|| {
                let names: Vec<&str> = ConvertTarget::ALL.iter().map(|(_, n)| *n).collect();
                serde::de::Error::custom(format!(
                    "`{name}` cannot be converted; convertible attributes: {}",
                    names.join(", ")
                ))
            })
    }
}

/// A regex rewrite, applied like Ruby's `gsub` (every match).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConvertRule {
    pub pattern: RubyRegex,
    pub replacement: RubyReplacement,
}

impl ConvertRule {
    pub fn apply(&self, value: &str) -> String {
        self.pattern
            .regex
            .replace_all(value, self.replacement.rust.as_str())
            .into_owned()
    }
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupAttributes {
    #[serde(default)]
    pub ad_bind: GroupBindings,
    #[serde(default)]
    pub default: GroupDefaults,
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GroupBindings {
    #[serde(default)]
    pub external_id: Option<AttrList>,
    #[serde(default)]
    pub display_name: Option<AttrList>,
    #[serde(default)]
    pub email: Option<AttrList>,
    #[serde(default)]
    pub description: Option<AttrList>,
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GroupDefaults {
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub group_type: Option<String>,
}

/// [better] `sync.*`: state, safety and lifecycle (behaviour §2.2, 5).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SyncConfig {
    /// Default: `state/` beside config.yml.
    #[serde(default)]
    pub state_dir: Option<PathBuf>,
    #[serde(default = "default_max_deletions")]
    pub max_deletions: u64,
    #[serde(default = "default_ratio")]
    pub max_deletion_ratio: Ratio,
    /// [better] The ratio gate applies only to a run that removes more than this many
    /// objects (default 10); `max_deletions` is unaffected.
    #[serde(default = "default_ratio_floor")]
    pub deletion_ratio_floor: u64,
    /// Group deletions + member removals; default: the same count as `max_deletions`.
    #[serde(default)]
    pub max_group_deletions: Option<u64>,
    #[serde(default)]
    pub pending_deletion: PendingDeletionConfig,
    #[serde(default = "default_full_every")]
    pub full_every: DurationText,
    /// [better] `dirsync apply` refuses a saved plan older than this (default 24h).
    #[serde(default = "default_plan_max_age")]
    pub plan_max_age: DurationText,
    /// [better] A run gives up on the SCIM target or the directory (exit 3) only once it has
    /// stayed unreachable this long (default 2m): a request or a directory read cut off by a
    /// reset or a timeout is made again meanwhile.
    #[serde(default = "default_unreachable_after")]
    pub unreachable_after: DurationText,
    /// When `dirsync run` starts a run: an interval or a cron expression (default 15m).
    #[serde(default = "default_schedule")]
    pub schedule: Schedule,
    /// [better] `dirsync run`: between scheduled runs, follow the directory's changes as they
    /// happen and run at once (syncrepl refreshAndPersist on OpenLDAP; on Active Directory a
    /// highestCommittedUSN poll every `watch_interval`).
    #[serde(default)]
    pub watch: bool,
    /// How often the Active Directory watch polls (default 5s).
    #[serde(default = "default_watch_interval")]
    pub watch_interval: PollInterval,
    #[serde(default = "default_member_chunk")]
    pub member_chunk: Bounded<10000>,
    #[serde(default)]
    pub flatten_nested_groups: bool,
    #[serde(default = "default_concurrency")]
    pub concurrency: Bounded<64>,
}

fn default_max_deletions() -> u64 {
    500
}
fn default_ratio() -> Ratio {
    Ratio(0.10)
}
fn default_ratio_floor() -> u64 {
    10
}
fn default_plan_max_age() -> DurationText {
    DurationText(Duration::from_secs(24 * 3600))
}
fn default_unreachable_after() -> DurationText {
    DurationText(Duration::from_secs(120))
}
fn default_full_every() -> DurationText {
    DurationText(Duration::from_secs(24 * 3600))
}
fn default_schedule() -> Schedule {
    Schedule::Every(Duration::from_secs(15 * 60))
}
fn default_watch_interval() -> PollInterval {
    PollInterval(Duration::from_secs(5))
}
fn default_member_chunk() -> Bounded<10000> {
    Bounded(100)
}
fn default_concurrency() -> Bounded<64> {
    Bounded(16)
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            state_dir: None,
            max_deletions: default_max_deletions(),
            max_deletion_ratio: default_ratio(),
            deletion_ratio_floor: default_ratio_floor(),
            max_group_deletions: None,
            pending_deletion: PendingDeletionConfig::default(),
            full_every: default_full_every(),
            plan_max_age: default_plan_max_age(),
            unreachable_after: default_unreachable_after(),
            schedule: default_schedule(),
            watch: false,
            watch_interval: default_watch_interval(),
            member_chunk: default_member_chunk(),
            flatten_nested_groups: false,
            concurrency: default_concurrency(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PendingDeletionConfig {
    /// How long the agent keeps a user disabled before deleting it on a plain target.
    #[serde(default = "default_retention")]
    pub retention: DurationText,
    #[serde(default)]
    pub kept_by: KeptBy,
}

fn default_retention() -> DurationText {
    DurationText(Duration::from_secs(30 * 86_400))
}

impl Default for PendingDeletionConfig {
    fn default() -> Self {
        PendingDeletionConfig {
            retention: default_retention(),
            kept_by: KeptBy::Auto,
        }
    }
}

/// Who keeps users pending deletion (behaviour §4.1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum KeptBy {
    /// Ask the target's ServiceProviderConfig.
    #[default]
    Auto,
    Target,
    Agent,
}

/// The secrets from secret.yml. `Debug` shows only which ones are present.
#[derive(Default)]
pub struct Secrets {
    pub ldap_password: Option<SecretString>,
    pub scim_token: Option<SecretString>,
    pub proxy_password: Option<SecretString>,
    pub oauth2_client_secret: Option<SecretString>,
    /// `notify.email.password`: the SMTP relay's password.
    pub notify_smtp_password: Option<SecretString>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = |s: &Option<SecretString>| if s.is_some() { "<set>" } else { "<unset>" };
        f.debug_struct("Secrets")
            .field("ldap_password", &set(&self.ldap_password))
            .field("scim_token", &set(&self.scim_token))
            .field("proxy_password", &set(&self.proxy_password))
            .field("oauth2_client_secret", &set(&self.oauth2_client_secret))
            .field("notify_smtp_password", &set(&self.notify_smtp_password))
            .finish()
    }
}
