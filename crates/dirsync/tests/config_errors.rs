//! Malformed config.yml / secret.yml files: every error names the file, line, column and key
//! path, and never contains a secret. Each case is a snapshot of the error's `Display`, with
//! the temporary directory replaced by `<dir>`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use dirsync::config::{Config, ConfigError};

/// A minimal valid config to which each case adds or changes one thing.
const BASE: &str = "\
ad:
  ldap:
    server:
      addresses: [dc1.example.jp]
iid:
  scim:
    base_url: https://idp.example.jp/scim/v2
";

const SECRET_VALUE: &str = "s3cr3t-Hunter2";

fn load_err(config: &str, secret: Option<&str>) -> String {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.yml");
    std::fs::write(&cfg, config).unwrap();
    if let Some(s) = secret {
        write_secret(dir.path(), s);
    }
    let err = Config::load(&cfg, None).expect_err("the config must be rejected");
    let shown = err.to_string();
    assert!(!shown.contains(SECRET_VALUE), "a secret leaked: {shown}");
    assert!(
        !format!("{err:?}").contains(SECRET_VALUE),
        "a secret leaked in Debug"
    );
    shown.replace(&dir.path().display().to_string(), "<dir>")
}

fn write_secret(dir: &Path, text: &str) {
    let p = dir.join("secret.yml");
    std::fs::write(&p, text).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
}

#[test]
fn bad_yaml_syntax() {
    insta::assert_snapshot!(load_err(
        "ad:\n  ldap:\n    server:\n      addresses: [dc1.example.jp\niid:\n  scim:\n    base_url: https://x\n",
        None
    ));
}

#[test]
fn unknown_key_typo() {
    insta::assert_snapshot!(load_err(&BASE.replace("addresses:", "adresses:"), None));
}

#[test]
fn wrong_type_port() {
    insta::assert_snapshot!(load_err(
        &BASE.replace(
            "      addresses: [dc1.example.jp]\n",
            "      addresses: [dc1.example.jp]\n      port: \"abc\"\n"
        ),
        None
    ));
}

#[test]
fn timeout_out_of_range() {
    insta::assert_snapshot!(load_err(
        &BASE.replace(
            "      addresses: [dc1.example.jp]\n",
            "      addresses: [dc1.example.jp]\n      timeout: 36001\n"
        ),
        None
    ));
}

#[test]
fn duplicate_key() {
    insta::assert_snapshot!(load_err(
        &BASE.replace(
            "      addresses: [dc1.example.jp]\n",
            "      addresses: [dc1.example.jp]\n      addresses: [dc2.example.jp]\n"
        ),
        None
    ));
}

#[test]
fn bad_ldap_filter() {
    insta::assert_snapshot!(load_err(
        &format!("{BASE}{}", "").replace(
            "    server:\n",
            "    filter:\n      user: '&(objectClass=user)(cn=foo'\n    server:\n"
        ),
        None
    ));
}

#[test]
fn bad_regex() {
    insta::assert_snapshot!(load_err(
        &format!(
            "{BASE}    attribute:\n      user:\n        convert:\n          userName:\n            - pattern: '(@EXAMPLE'\n              replacement: '@example.jp'\n"
        ),
        None
    ));
}

#[test]
fn bad_scim_filter() {
    insta::assert_snapshot!(load_err(
        &format!("{BASE}    filter:\n      user: 'externalId prr'\n"),
        None
    ));
}

#[test]
fn issuer_rule() {
    insta::assert_snapshot!(load_err(
        &format!(
            "{BASE}    attribute:\n      user:\n        ad_bind:\n          externalUserName: userPrincipalName\n"
        ),
        None
    ));
}

#[test]
fn missing_base_url() {
    insta::assert_snapshot!(load_err(
        &BASE.replace(
            "    base_url: https://idp.example.jp/scim/v2\n",
            "    filter: {}\n"
        ),
        None
    ));
}

#[test]
fn base_url_not_http() {
    insta::assert_snapshot!(load_err(
        &BASE.replace("https://idp.example.jp/scim/v2", "ftp://idp.example.jp/"),
        None
    ));
}

#[test]
fn secret_unknown_key_does_not_echo_value() {
    insta::assert_snapshot!(load_err(
        BASE,
        Some(&format!(
            "ad:\n  ldap:\n    server:\n      pasword: '{SECRET_VALUE}'\n"
        ))
    ));
}

#[test]
fn secret_wrong_type_does_not_echo_value() {
    insta::assert_snapshot!(load_err(
        BASE,
        Some(&format!("iid:\n  scim:\n    token: [{SECRET_VALUE}]\n"))
    ));
}

#[test]
fn secret_syntax_error_does_not_echo_value() {
    insta::assert_snapshot!(load_err(
        BASE,
        Some(&format!("iid:\n  scim:\n    token: '{SECRET_VALUE}\n"))
    ));
}

#[test]
fn bad_encryption_enum() {
    insta::assert_snapshot!(load_err(
        &BASE.replace(
            "      addresses: [dc1.example.jp]\n",
            "      addresses: [dc1.example.jp]\n      encryption: tls\n"
        ),
        None
    ));
}

#[test]
fn bad_retention_duration() {
    insta::assert_snapshot!(load_err(
        &format!("{BASE}sync:\n  pending_deletion:\n    retention: 30 days\n"),
        None
    ));
}

#[test]
fn bad_cron_schedule() {
    insta::assert_snapshot!(load_err(
        &format!("{BASE}sync:\n  schedule: '*/15 * * *'\n"),
        None
    ));
}

#[test]
fn watch_interval_under_a_second() {
    insta::assert_snapshot!(load_err(
        &format!("{BASE}sync:\n  watch: true\n  watch_interval: 0s\n"),
        None
    ));
}

#[test]
fn bad_ratio() {
    insta::assert_snapshot!(load_err(
        &format!("{BASE}sync:\n  max_deletion_ratio: 10\n"),
        None
    ));
}

#[test]
fn unknown_convert_target() {
    insta::assert_snapshot!(load_err(
        &format!(
            "{BASE}    attribute:\n      user:\n        convert:\n          usrName:\n            - pattern: 'a'\n              replacement: 'b'\n"
        ),
        None
    ));
}

#[test]
fn oauth2_without_token_url() {
    insta::assert_snapshot!(load_err(
        &format!("{BASE}    auth:\n      type: oauth2\n      client_id: dirsync\n"),
        None
    ));
}

#[test]
fn no_directory_configured() {
    insta::assert_snapshot!(load_err(
        &BASE.replace("      addresses: [dc1.example.jp]\n", "      port: 389\n"),
        None
    ));
}

#[test]
fn explicit_secret_file_missing() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.yml");
    std::fs::write(&cfg, BASE).unwrap();
    let err = Config::load(&cfg, Some(&dir.path().join("nope.yml"))).unwrap_err();
    assert!(matches!(err, ConfigError::Io { .. }), "{err}");
}

/// The behaviour §2.1 sample, verbatim, plus the required `iid.scim.base_url`.
const REFERENCE_SAMPLE: &str = r#"
log:
  loglevel: info            # error | warn | info | debug
  logger: syslog            # eventlog (Windows) | syslog ; [better] also stderr, journald, file, json
ad:
  ldap:
    server:
      addresses: [dc1.example.jp, dc2.example.jp]   # failover: first that answers
      port: 389
      user: 'CN=sync,CN=Users,DC=example,DC=jp'      # bind DN
      timeout: 3600                                   # seconds, 1..36000
      encryption: none        # none | start_tls   ([better] also ldaps)
      verify_mode: true       # verify the server certificate when encrypted (see 2.2)
    base_dn: 'DC=example,DC=jp'
    filter:
      user:  'memberOf:1.2.840.113556.1.4.1941:=CN=IDaaS users,OU=Groups,DC=example,DC=jp'
      group: 'memberOf:1.2.840.113556.1.4.1941:=CN=IDaaS users,OU=Groups,DC=example,DC=jp'
    search:                   # mostly for OpenLDAP
      user:  { object_class: inetOrgPerson }
      group: { object_class: groupOfNames, member_attribute: member, member_user_attribute: dn }
    cache_disabled: true      # accepted; see 4.6
iid:
  scim:
    base_url: https://idp.example.jp/scim/v2
    filter:                   # SCIM filters that bound what this instance may touch (4.4)
      user:  'externalId pr'
      group: 'displayName eq ""'
    http:
      proxy: { use: true, address: proxy.example.jp, port: 8080, user: proxyuser }
    attribute:
      user:
        default:              # constants applied to every user
          emails: [ { primary: true } ]
          preferredLanguage: ja-JP
          idTokenClaims: { issuer: 'https://idp.example.jp/op' }
          phoneNumbers: { type: work }
        ad_bind:              # SCIM attribute <- directory attribute (a list = first non-empty wins)
          externalId: objectGUID
          downstreamId: [mS-DS-ConsistencyGuid, objectGUID]
          userName: userPrincipalName
          name: { familyName: sn, givenName: givenName }
          localNames: { familyName: msDS-PhoneticLastName, givenName: msDS-PhoneticFirstName }
          active: [userAccountControl, accountExpires]
          externalUserName: userPrincipalName
          emails: [ { value: proxyAddresses }, { value: mail } ]
          title: title
          department: department
          preferredLanguage: preferredLanguage
          phoneNumbers: { value: telephoneNumber }
        convert:              # ordered regex rewrites applied after binding
          externalUserName:
            - pattern: '@EXAMPLE\.JP\z'
              replacement: '@example.jp'
      group:
        ad_bind: { externalId: objectGUID, displayName: name, email: mail }
"#;

#[test]
fn spec_sample_loads() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.yml");
    std::fs::write(&cfg, REFERENCE_SAMPLE).unwrap();
    write_secret(
        dir.path(),
        &format!(
            "ad:   {{ ldap: {{ server: {{ password: '{SECRET_VALUE}' }} }} }}\niid:  {{ scim: {{ token: 'tok', http: {{ proxy: {{ password: 'pp' }} }} }} }}\n"
        ),
    );
    let (config, warnings) = Config::load(&cfg, None).unwrap();
    // The sample writes `encryption: none` to remote hosts: loaded, with the warning.
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].message.contains(
            "bind password and every entry read travel in clear to dc1.example.jp, dc2.example.jp"
        ),
        "{warnings:?}"
    );
    assert_eq!(config.ad.ldap.server.addresses.len(), 2);
    assert_eq!(config.ad.ldap.server.effective_port(), 389);
    assert_eq!(
        config.ad.ldap.filter.user.as_ref().unwrap().normalized(),
        "(memberOf:1.2.840.113556.1.4.1941:=CN=IDaaS users,OU=Groups,DC=example,DC=jp)"
    );
    assert_eq!(config.iid.scim.base_url.0, "https://idp.example.jp/scim/v2");
    assert_eq!(config.state_dir, dir.path().join("state"));
    let rule = &config.iid.scim.attribute.user.convert[0].1[0];
    assert_eq!(rule.apply("Taro@EXAMPLE.JP"), "Taro@example.jp");
    assert!(config.secrets.ldap_password.is_some());
    let debug = format!("{config:?}");
    assert!(!debug.contains(SECRET_VALUE), "{debug}");
    assert_eq!(config.sync.max_deletions, 500);
}

/// Loads `config` (with `secret` as secret.yml, mode 0600, when given).
fn load_ok(config: &str, secret: Option<&str>) -> (Config, Vec<dirsync::config::Warning>) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.yml");
    std::fs::write(&cfg, config).unwrap();
    if let Some(s) = secret {
        write_secret(dir.path(), s);
    }
    Config::load(&cfg, None).unwrap_or_else(|e| panic!("{e}"))
}

fn with_server(lines: &str) -> String {
    BASE.replace("      addresses: [dc1.example.jp]\n", lines)
}

/// Without `encryption`, a server on another host is reached with StartTLS (the bind
/// password never goes out in clear by default).
#[test]
fn ldap_encryption_defaults_to_start_tls_for_a_remote_host() {
    use dirsync::source::ldap::Encryption as Wire;
    for addresses in [
        "[dc1.example.jp]",
        "[10.0.0.5]",
        "[127.0.0.1, dc2.example.jp]",
    ] {
        let (config, warnings) = load_ok(
            &with_server(&format!("      addresses: {addresses}\n")),
            None,
        );
        let settings = dirsync::source::ldap_settings(&config);
        assert_eq!(settings.encryption, Wire::StartTls, "{addresses}");
        assert_eq!(settings.port, 389, "{addresses}");
        assert!(warnings.is_empty(), "{warnings:?}");
    }
}

/// On this machine (127.0.0.0/8, ::1, localhost) the default stays plain LDAP, without a
/// warning: nothing crosses a network.
#[test]
fn ldap_encryption_default_stays_none_on_loopback() {
    use dirsync::source::ldap::Encryption as Wire;
    for addresses in ["[127.0.0.1]", "['::1']", "[localhost, 127.0.0.2]"] {
        for written in ["", "      encryption: none\n"] {
            let (config, warnings) = load_ok(
                &with_server(&format!("      addresses: {addresses}\n{written}")),
                None,
            );
            let settings = dirsync::source::ldap_settings(&config);
            assert_eq!(settings.encryption, Wire::None, "{addresses} {written}");
            assert!(warnings.is_empty(), "{warnings:?}");
        }
    }
}

/// `encryption: none` written for a remote server is honoured, with a warning naming the
/// host and saying the bind password travels in clear (shown on every sync and check).
#[test]
fn explicit_cleartext_to_a_remote_host_warns() {
    use dirsync::source::ldap::Encryption as Wire;
    let (config, warnings) = load_ok(
        &with_server(
            "      addresses: [dc1.example.jp, 127.0.0.1]\n      user: 'CN=sync,DC=example,DC=jp'\n      encryption: none\n",
        ),
        Some(&format!(
            "ad: {{ldap: {{server: {{password: '{SECRET_VALUE}'}}}}}}\n"
        )),
    );
    assert_eq!(
        dirsync::source::ldap_settings(&config).encryption,
        Wire::None
    );
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    let text = warnings[0].to_string();
    assert!(text.contains("ad.ldap.server.encryption: none"), "{text}");
    assert!(
        text.contains("bind password and every entry read travel in clear to dc1.example.jp ("),
        "{text}"
    );
    assert!(!text.contains(SECRET_VALUE), "{text}");
    // Anonymous: no password to lose, the data still travels in clear.
    let (_, warnings) = load_ok(
        &with_server("      addresses: [dc1.example.jp]\n      encryption: none\n"),
        None,
    );
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0]
            .message
            .contains("every entry read travels in clear to dc1.example.jp")
    );
}

/// A bind DN without a password is not turned into an anonymous bind: the password's key is
/// named, whether the key is absent, empty, or the whole file is missing.
#[test]
fn bind_dn_without_password_is_an_error() {
    let config =
        with_server("      addresses: [127.0.0.1]\n      user: 'cn=sync,dc=example,dc=test'\n");
    for secret in [
        None,
        Some("iid: {scim: {token: 'tok'}}\n"),
        Some("ad: {ldap: {server: {password: ''}}}\n"),
    ] {
        let err = load_err(&config, secret);
        assert!(
            err.starts_with("<dir>/secret.yml: ad.ldap.server.password: no bind password"),
            "{err}"
        );
        assert!(err.contains("cn=sync,dc=example,dc=test"), "{err}");
        assert!(
            err.contains("does not fall back to an anonymous bind"),
            "{err}"
        );
    }
    // No bind DN: an anonymous bind is what was asked for.
    load_ok(&with_server("      addresses: [127.0.0.1]\n"), None);
    // An LDIF source binds to nothing.
    load_ok(
        &config.replace("ad:\n  ldap:\n", "ad:\n  ldif_file: dir.ldif\n  ldap:\n"),
        None,
    );
}

/// A secret.yml that the group or others may read (or write) is refused, not warned about:
/// the error names the file, its mode and the fix.
#[cfg(unix)]
#[test]
fn readable_secret_file_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    for mode in [0o644, 0o640, 0o604, 0o620, 0o660] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("config.yml");
        std::fs::write(&cfg, BASE).unwrap();
        let secret = dir.path().join("secret.yml");
        std::fs::write(
            &secret,
            format!("iid: {{scim: {{token: '{SECRET_VALUE}'}}}}\n"),
        )
        .unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(mode)).unwrap();
        for explicit in [None, Some(secret.as_path())] {
            let err = Config::load(&cfg, explicit).expect_err("must be refused");
            let text = err.to_string();
            let shown = secret.display().to_string();
            assert!(text.starts_with(&shown), "{text}");
            assert!(text.contains(&format!("mode {mode:04o}")), "{text}");
            assert!(text.contains(&format!("chmod 600 {shown}")), "{text}");
            assert!(!text.contains(SECRET_VALUE), "{text}");
        }
    }
    // 0600 and 0400 are fine.
    for mode in [0o600, 0o400] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("config.yml");
        std::fs::write(&cfg, BASE).unwrap();
        let secret = dir.path().join("secret.yml");
        std::fs::write(&secret, "iid: {scim: {token: 'tok'}}\n").unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(mode)).unwrap();
        let (config, _) = Config::load(&cfg, None).unwrap();
        assert!(config.secrets.scim_token.is_some());
    }
}

#[test]
fn gssapi_without_keytab() {
    insta::assert_snapshot!(load_err(
        &BASE.replace(
            "      addresses: [dc1.example.jp]\n",
            "      addresses: [dc1.example.jp]\n      auth:\n        mechanism: gssapi\n        principal: 'sync@EXAMPLE.JP'\n"
        ),
        None
    ));
}

#[test]
fn bad_kerberos_principal() {
    insta::assert_snapshot!(load_err(
        &BASE.replace(
            "      addresses: [dc1.example.jp]\n",
            "      addresses: [dc1.example.jp]\n      auth: { mechanism: gssapi, keytab: k.keytab, principal: 'sync' }\n"
        ),
        None
    ));
}

#[test]
fn bad_kdc_address() {
    insta::assert_snapshot!(load_err(
        &BASE.replace(
            "      addresses: [dc1.example.jp]\n",
            "      addresses: [dc1.example.jp]\n      kdc: 'dc1.example.jp:eighty-eight'\n"
        ),
        None
    ));
}

/// `notify:` and the `log:` extensions: errors name file, line and key like the rest.
#[test]
fn notify_and_log_errors() {
    let notify = "notify:\n  email:\n    host: smtp.example.jp\n    from: dirsync@example.jp\n";
    let err = load_err(
        &format!("{BASE}{notify}    to: [ops@example.jp, 'ops at example.jp']\n"),
        None,
    );
    assert!(
        err.starts_with("<dir>/config.yml:12:")
            && err.contains("notify.email.to[1]: invalid mail address \"ops at example.jp\""),
        "{err}"
    );
    let err = load_err(&format!("{BASE}{notify}    to: []\n"), None);
    assert!(
        err.contains("notify.email.to: at least one recipient"),
        "{err}"
    );
    let err = load_err(
        &format!("{BASE}{notify}    to: a@b.jp\n    tls: true\n"),
        None,
    );
    assert!(err.contains("notify.email.tls: unknown field"), "{err}");
    let err = load_err(
        &format!("{BASE}{notify}    to: a@b.jp\n    username: relay\n"),
        Some("ad:\n  ldap:\n    server:\n      password: x\n"),
    );
    assert!(
        err.starts_with("<dir>/secret.yml: notify.email.password: no SMTP relay password"),
        "{err}"
    );
    let err = load_err(&format!("{BASE}log:\n  file_max_size: 10 parsecs\n"), None);
    assert!(
        err.starts_with("<dir>/config.yml:9:18: log.file_max_size: invalid size"),
        "{err}"
    );
}

/// A full `notify.email` and `log:` load: relative paths resolved against the config file, the
/// relay password read from secret.yml and never shown by `Debug`.
#[test]
fn notify_and_log_load() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.yml");
    std::fs::write(
        &cfg,
        format!(
            "{BASE}log:\n  logger: syslog\n  syslog_socket: /run/x.sock\n  file: dirsync.log\n  \
             file_max_size: 2MiB\n  file_keep: 3\nnotify:\n  email:\n    host: smtp.example.jp\n    \
             port: 25\n    username: relay\n    ca_file: ca.pem\n    from: 'dirsync <d@example.jp>'\n    \
             to: ops@example.jp\n"
        ),
    )
    .unwrap();
    write_secret(
        dir.path(),
        &format!(
            "ad:\n  ldap:\n    server:\n      password: x\nnotify:\n  email:\n    password: '{SECRET_VALUE}'\n"
        ),
    );
    let (config, _) = Config::load(&cfg, None).unwrap();
    assert_eq!(config.log.file, Some(dir.path().join("dirsync.log")));
    assert_eq!(config.log.file_max_size.0, 2 << 20);
    assert_eq!(config.log.file_keep, 3);
    assert_eq!(config.log.syslog_socket, Path::new("/run/x.sock"));
    let email = config.notify.email.as_ref().unwrap();
    assert_eq!(email.ca_file, Some(dir.path().join("ca.pem")));
    assert_eq!((email.port, email.starttls), (25, true));
    assert_eq!(email.to.0.len(), 1);
    assert!(config.secrets.notify_smtp_password.is_some());
    assert!(!format!("{config:?}").contains(SECRET_VALUE));
}
