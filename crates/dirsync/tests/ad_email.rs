#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Issue 6 acceptance, identity-service side, end to end: a real Samba AD DC, `dirsync` with
//! the vendor's multiple-emails sample (proxyAddresses → several emails), our `idservice`
//! with an SMTP relay configured, and a real SMTP sink.
//!
//! A user created by the sync gets no email. Asking for a reset on the sign-in pages sends
//! "Password reset requested" to all three of the user's addresses; setting the password
//! sends "Password has been reset" to all three; repeated failed sign-ins send
//! "Account locked" to the primary address only.

mod ad_common;

use std::path::Path;
use std::time::{Duration, Instant};

use ad_common::*;
use testenv::{IdService, ReceivedMail, SambaDc, SmtpSink};

/// The sample, pointed at the test DC and idservice (same substitution as ad_samples.rs).
fn multiple_emails_config(dc: &SambaDc, base_url: &str) -> String {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/multiple-emails/config.yml");
    adapt_sample(&std::fs::read_to_string(path).unwrap(), dc, base_url)
}

/// Waits for exactly `n` messages (a short grace after the n-th catches extras).
fn wait_mail(sink: &SmtpSink, n: usize) -> Vec<ReceivedMail> {
    let m = sink
        .wait_for(n, Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}"));
    std::thread::sleep(Duration::from_millis(500));
    let again = sink.messages().unwrap();
    assert_eq!(
        again.len(),
        n,
        "more mail than expected: {:?}",
        summary(&again)
    );
    m
}

fn summary(m: &[ReceivedMail]) -> Vec<(Vec<String>, String)> {
    m.iter()
        .map(|x| (x.rcpts.clone(), x.subject.clone()))
        .collect()
}

/// Lower-cased, sorted recipients of the messages with this subject.
fn rcpts(m: &[ReceivedMail], subject: &str) -> Vec<String> {
    let mut v: Vec<String> = m
        .iter()
        .filter(|x| x.subject == subject)
        .flat_map(|x| x.rcpts.iter().map(|r| r.to_lowercase()))
        .collect();
    v.sort();
    v
}

fn post_form(
    http: &reqwest::Client,
    rt: &tokio::runtime::Runtime,
    url: &str,
    fields: &[(&str, &str)],
) -> (u16, String) {
    rt.block_on(async {
        let r = http.post(url).form(fields).send().await.unwrap();
        let st = r.status().as_u16();
        (st, r.text().await.unwrap())
    })
}

#[test]
fn synced_user_gets_no_mail_then_reset_reaches_every_address_and_lock_the_primary() {
    if testenv::skip_samba(
        "synced_user_gets_no_mail_then_reset_reaches_every_address_and_lock_the_primary",
    ) {
        return;
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let t0 = Instant::now();
    let sink = SmtpSink::start().unwrap_or_else(|e| panic!("smtp sink: {e}"));
    let cfg_dir = tempfile::tempdir().unwrap();
    let cfg = cfg_dir.path().join("idservice.yml");
    std::fs::write(
        &cfg,
        format!(
            "service_name: Example ID\nsmtp:\n  host: 127.0.0.1\n  port: {}\n  starttls: false\n  from: noreply@example.test\noutbox:\n  poll_seconds: 1\nsignin:\n  max_failures: 3\n",
            sink.port
        ),
    )
    .unwrap();
    // At debug level: the secrets grep at the end must mean something.
    let ids = IdService::start_with_env(
        &["--config", cfg.to_str().unwrap()],
        &[("IDSERVICE_LOG", "debug")],
    )
    .unwrap_or_else(|e| panic!("idservice: {e}"));
    let site = ids.url.trim_end_matches("/scim/v2").to_string();

    let dc = start_dc("MAIL.TEST", "MAIL");
    dc.add_ou("Groups").unwrap();
    let idaas = dc.add_group_in("IDaaS users", Some("Groups")).unwrap();
    let mia = dc
        .add_user(
            "mia",
            "Mia",
            "Test",
            Some("mia@example.test"),
            Some("mia@example.test"),
            None,
        )
        .unwrap();
    dc.set_attr(
        &mia.dn,
        "proxyAddresses",
        &[
            "SMTP:Mia.Primary@example.test",
            "smtp:mia.alias@example.test",
        ],
    )
    .unwrap();
    dc.add_members(&idaas, &[&mia.dn]).unwrap();

    let inst = Instance::new(
        &multiple_emails_config(&dc, &ids.url),
        &dc.svc_pw,
        &ids.token,
    );
    let report = inst.sync();
    assert_clean(&report, "sync");
    let users = target_users(&inst.load());
    let synced = user_named(&users, "mia@example.test").unwrap_or_else(|| panic!("{users:?}"));
    let mut addresses: Vec<String> = synced["emails"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["value"].as_str().unwrap().to_lowercase())
        .collect();
    addresses.sort();
    assert_eq!(
        addresses,
        [
            "mia.alias@example.test",
            "mia.primary@example.test",
            "mia@example.test"
        ],
        "three addresses from proxyAddresses and mail"
    );

    // No email for a user created through SCIM (after several outbox polls).
    std::thread::sleep(Duration::from_millis(2500));
    assert!(
        sink.messages().unwrap().is_empty(),
        "{:?}",
        summary(&sink.messages().unwrap())
    );

    let rt = runtime();
    let http = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    // The synced user has no password yet: sign-in fails, a reset gives one.
    let (st, _) = post_form(
        &http,
        &rt,
        &format!("{site}/signin"),
        &[
            ("username", "mia@example.test"),
            ("password", "anything-at-all"),
        ],
    );
    assert_eq!(st, 401);
    let (st, page) = post_form(
        &http,
        &rt,
        &format!("{site}/forgot"),
        &[("username", "mia@example.test")],
    );
    assert_eq!(st, 200, "{page}");
    let m = wait_mail(&sink, 3);
    assert_eq!(
        rcpts(&m, "[Example ID] Password reset requested"),
        addresses
    );
    let link = m[0]
        .body
        .split_whitespace()
        .find(|w| w.contains("/reset?token="))
        .unwrap()
        .to_string();
    let token = link.split("token=").nth(1).unwrap().to_string();
    let pw = "Mia's first password";
    let (st, page) = post_form(
        &http,
        &rt,
        &format!("{site}/reset"),
        &[("token", &token), ("password", pw), ("confirm", pw)],
    );
    assert_eq!(st, 200, "{page}");
    let m = wait_mail(&sink, 6);
    assert_eq!(rcpts(&m, "[Example ID] Password has been reset"), addresses);
    let (st, _) = post_form(
        &http,
        &rt,
        &format!("{site}/signin"),
        &[("username", "mia@example.test"), ("password", pw)],
    );
    assert_eq!(st, 303, "signs in with the new password");

    // Three failures lock the account: the primary address alone is told.
    for _ in 0..3 {
        let (st, _) = post_form(
            &http,
            &rt,
            &format!("{site}/signin"),
            &[
                ("username", "mia@example.test"),
                ("password", "not her password"),
            ],
        );
        assert_eq!(st, 401);
    }
    let m = wait_mail(&sink, 7);
    assert_eq!(
        rcpts(&m, "[Example ID] Account locked"),
        ["mia.primary@example.test"]
    );
    // A second sync (nothing changed in AD) sends nothing either.
    let second = inst.sync();
    assert_clean(&second, "second sync");
    std::thread::sleep(Duration::from_millis(2000));
    assert_eq!(sink.messages().unwrap().len(), 7);

    // No password, token or reset link in the service's debug log or the sync reports; the
    // mails in the sink are the only place the link may be.
    let log = ids.server_log();
    assert!(
        log.contains("DEBUG"),
        "the service did not log at debug level"
    );
    let reports = [
        report.to_text(),
        second.to_text(),
        format!("{report:?}"),
        format!("{second:?}"),
    ];
    for (what, secret) in [
        ("the new password", pw),
        ("the reset token", token.as_str()),
        ("the reset link", link.as_str()),
        ("the bearer token", ids.token.as_str()),
        ("the bind password", dc.svc_pw.as_str()),
    ] {
        assert!(!log.contains(secret), "{what} is in the idservice log");
        for r in &reports {
            assert!(!r.contains(secret), "{what} is in a dirsync report");
        }
    }
    assert!(
        !log.contains("reset?token="),
        "a reset link is in the idservice log"
    );
    eprintln!("TIMING ad_email total {:.1} s", t0.elapsed().as_secs_f64());
}
