#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The administrator's console of `idservice` in a real browser: Debian's headless Chromium
//! driven through chromedriver (WebDriver, `fantoccini`), against an `idservice` filled by a
//! real `dirsync` run from a real slapd. Each test signs in through the form, works as an
//! administrator would (search, open a user, confirm an action), runs axe-core in every page
//! it opens (0 serious or critical violations), and saves a screenshot of its final page
//! under `target/screenshots/`.

mod common;

use std::path::PathBuf;

use common::{Env, Target, TargetKind, gen_uid, gen_user};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use testenv::{Browser, IdService, SmtpSink};

const ADMIN_PW: &str = "browser test admin password";
const HELP_PW: &str = "browser test helpdesk password";

/// slapd with `users` generated users, synced into idservice; two console accounts.
fn synced(users: usize) -> (Env, PathBuf) {
    let env = Env::start(TargetKind::IdService);
    env.slapd.load_generated(users, 3, &[]).unwrap();
    let config = env.config(
        "main",
        json!({"iid": {"scim": {"attribute": {"user": {"ad_bind": {
            "displayName": "displayName",
        }}}}}, "sync": {"deletion_ratio_floor": 0}}),
    );
    let run = env.sync(&config, &[]);
    assert_eq!(run.code, 0, "{:#}", run.report);
    for (name, pw, role) in [("alice", ADMIN_PW, "admin"), ("helen", HELP_PW, "helpdesk")] {
        let file = env.dir.path().join(format!("{name}.pw"));
        std::fs::write(&file, format!("{pw}\n")).unwrap();
        std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        env.target
            .idservice()
            .admin_command(&[
                "admins",
                "add",
                name,
                "--password-file",
                file.to_str().unwrap(),
                "--role",
                role,
            ])
            .unwrap();
    }
    (env, config)
}

/// The service's root URL (`http://127.0.0.1:PORT`).
fn root(env: &Env) -> String {
    env.target.url().trim_end_matches("/scim/v2").to_string()
}

/// A headless Chromium session.
async fn open(browser: &Browser, language: &str) -> Client {
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(browser.capabilities(language))
        .connect(&browser.webdriver_url)
        .await
        .unwrap_or_else(|e| panic!("webdriver session: {e}"))
}

/// Runs axe-core in the page; fails on any serious or critical violation.
async fn assert_accessible(c: &Client, what: &str) {
    let axe = testenv::axe_source().unwrap();
    c.execute(&axe, vec![]).await.unwrap();
    let result = c
        .execute_async(
            "const done = arguments[arguments.length - 1];\
             axe.run(document).then(r => done(r.violations.map(v => \
               ({id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.length}))));",
            vec![],
        )
        .await
        .unwrap();
    let bad: Vec<&Value> = result
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| matches!(v["impact"].as_str(), Some("serious" | "critical")))
        .collect();
    assert!(bad.is_empty(), "{what}: accessibility violations {bad:#?}");
}

/// Saves the current page as `target/screenshots/NAME.png`.
async fn screenshot(c: &Client, name: &str) {
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"))
        .join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join(format!("{name}.png")),
        c.screenshot().await.unwrap(),
    )
    .unwrap();
}

/// Clicks `element` and waits until the page it leads to has loaded (a form post or a link:
/// the old document is marked, and the new one is complete and unmarked).
async fn click_to_next_page(c: &Client, element: fantoccini::elements::Element) {
    c.execute("window.__stale = true;", vec![]).await.unwrap();
    element.click().await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let loaded = c
            .execute(
                "return window.__stale === undefined && document.readyState === 'complete';",
                vec![],
            )
            .await
            .unwrap_or(Value::Bool(false));
        if loaded == Value::Bool(true) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no new page after a click"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

async fn body_text(c: &Client) -> String {
    c.find(Locator::Css("body"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn heading(c: &Client) -> String {
    c.find(Locator::Css("h1"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Signs in through the form and lands on the users page.
async fn sign_in(c: &Client, root: &str, name: &str, password: &str) {
    c.goto(&format!("{root}/admin/")).await.unwrap();
    assert_eq!(heading(c).await, "Console sign-in");
    assert_accessible(c, "sign-in page").await;
    c.find(Locator::Id("username"))
        .await
        .unwrap()
        .send_keys(name)
        .await
        .unwrap();
    c.find(Locator::Id("password"))
        .await
        .unwrap()
        .send_keys(password)
        .await
        .unwrap();
    let target = c
        .find(Locator::Css("main button[type=submit]"))
        .await
        .unwrap();
    click_to_next_page(c, target).await;
    assert_eq!(heading(c).await, "Users", "{}", body_text(c).await);
}

/// Searches the users page and opens the one result named `user_name`.
async fn open_user(c: &Client, prefix: &str, state: Option<&str>, user_name: &str) {
    let target = c
        .find(Locator::Css("a[href='/admin/users']"))
        .await
        .unwrap();
    click_to_next_page(c, target).await;
    let q = c.find(Locator::Id("q")).await.unwrap();
    q.clear().await.unwrap();
    q.send_keys(prefix).await.unwrap();
    if let Some(s) = state {
        c.find(Locator::Css(&format!("#state option[value='{s}']")))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
    }
    let target = c.find(Locator::Css("form.search button")).await.unwrap();
    click_to_next_page(c, target).await;
    assert_accessible(c, "users page with a search").await;
    let target = c
        .find(Locator::LinkText(user_name))
        .await
        .unwrap_or_else(|e| panic!("{user_name} not found: {e}"));
    click_to_next_page(c, target).await;
    assert_eq!(heading(c).await, user_name);
    assert_accessible(c, "a user's page").await;
}

/// Clicks the action's link on a user's page, checks the confirmation page, confirms.
async fn confirm_action(c: &Client, label: &str) {
    let target = c
        .find(Locator::LinkText(label))
        .await
        .unwrap_or_else(|e| panic!("no {label} link: {e}"));
    click_to_next_page(c, target).await;
    assert!(heading(c).await.starts_with(label), "{}", heading(c).await);
    assert_accessible(c, "a confirmation page").await;
    let target = c
        .find(Locator::Css("main form button[type=submit]"))
        .await
        .unwrap();
    click_to_next_page(c, target).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_finds_disables_restores_and_purges_users() {
    let (env, config) = synced(60);
    let root = root(&env);
    let browser = Browser::start().unwrap();
    let c = open(&browser, "en").await;
    sign_in(&c, &root, "alice", ADMIN_PW).await;

    // Find a user, disable them.
    let victim = gen_user(7);
    open_user(&c, &gen_uid(7), None, &victim).await;
    confirm_action(&c, "Disable").await;
    assert!(body_text(&c).await.contains("The user was disabled."));
    assert_eq!(env.target.user(&victim).unwrap()["active"], json!(false));

    // Two users leave the directory: the sync moves them to pending deletion.
    env.slapd
        .delete(&[&env.user_dn(&gen_uid(11)), &env.user_dn(&gen_uid(12))])
        .unwrap();
    let run = env.sync(&config, &[]);
    assert_eq!(run.code, 0, "{:#}", run.report);
    env.target.assert_pending(&gen_user(11));

    // Restore one from the pending list…
    open_user(&c, "", Some("pendingDeletion"), &gen_user(11)).await;
    assert!(body_text(&c).await.contains("Purged on"));
    confirm_action(&c, "Restore").await;
    assert!(body_text(&c).await.contains("The user was restored."));
    assert_eq!(
        env.target.user(&gen_user(11)).unwrap()["active"],
        json!(true)
    );

    // …and purge the other now.
    open_user(&c, &gen_uid(12), Some("pendingDeletion"), &gen_user(12)).await;
    confirm_action(&c, "Purge now").await;
    assert!(body_text(&c).await.contains("The user was purged."));
    let pending = env.target.pending_list();
    assert!(!pending.contains(&gen_user(12)), "{pending}");

    // The audit log has each action.
    let target = c.find(Locator::LinkText("Audit log")).await.unwrap();
    click_to_next_page(&c, target).await;
    assert_accessible(&c, "audit log").await;
    let audit = body_text(&c).await;
    for action in ["disable", "restore", "purge"] {
        assert!(audit.contains(action), "{action}: {audit}");
    }
    screenshot(&c, "console-audit-log").await;

    // The users page, for the README.
    c.goto(&format!("{root}/admin/users")).await.unwrap();
    assert_accessible(&c, "users page").await;
    screenshot(&c, "console-users").await;
    c.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn helpdesk_sees_no_purge_button_and_is_refused() {
    let (env, config) = synced(20);
    env.slapd.delete(&[&env.user_dn(&gen_uid(3))]).unwrap();
    assert_eq!(env.sync(&config, &[]).code, 0);
    let root = root(&env);
    let browser = Browser::start().unwrap();
    let c = open(&browser, "en").await;
    sign_in(&c, &root, "helen", HELP_PW).await;
    open_user(&c, &gen_uid(3), Some("pendingDeletion"), &gen_user(3)).await;
    let page = c.source().await.unwrap();
    assert!(
        !page.contains("Purge now") && !page.contains("Restore"),
        "{page}"
    );

    // Typing the action's address gets 403 and changes nothing.
    let user_url = c.current_url().await.unwrap();
    c.goto(&format!("{}/purge", user_url.as_str()))
        .await
        .unwrap();
    assert_eq!(heading(&c).await, "Not allowed");
    assert_accessible(&c, "the 403 page").await;
    screenshot(&c, "console-helpdesk-refused").await;
    env.target.assert_pending(&gen_user(3));
    c.close().await.unwrap();
}

/// The end user's side in the same browser: `/` leads to the sign-in page, which names the
/// service, and the form signs in (its post carries a real `Origin`, which the same-origin
/// check accepts).
#[tokio::test(flavor = "multi_thread")]
async fn a_synced_user_signs_in_from_the_root_page() {
    let (env, _config) = synced(5);
    let root = root(&env);
    let user = env.target.user(&gen_user(2)).unwrap();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let r = http
        .patch(format!(
            "{}/Users/{}",
            env.target.url(),
            user["id"].as_str().unwrap()
        ))
        .bearer_auth(env.target.token())
        .header("content-type", "application/scim+json")
        .body(
            json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                   "Operations": [{"op": "replace", "path": "password",
                                   "value": "a user's own password 9"}]})
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());

    let browser = Browser::start().unwrap();
    let c = open(&browser, "en").await;
    c.goto(&format!("{root}/")).await.unwrap();
    assert!(c.current_url().await.unwrap().as_str().ends_with("/signin"));
    assert_eq!(c.title().await.unwrap(), "Sign in – idservice");
    assert_accessible(&c, "the users' sign-in page").await;
    c.find(Locator::Id("username"))
        .await
        .unwrap()
        .send_keys(&gen_user(2))
        .await
        .unwrap();
    c.find(Locator::Id("password"))
        .await
        .unwrap()
        .send_keys("a user's own password 9")
        .await
        .unwrap();
    let target = c.find(Locator::Css("button[type=submit]")).await.unwrap();
    click_to_next_page(&c, target).await;
    let text = body_text(&c).await;
    assert!(
        text.contains(&format!("Signed in as {}", gen_user(2))),
        "{text}"
    );
    assert_accessible(&c, "the account page").await;
    screenshot(&c, "account-signed-in").await;
    c.close().await.unwrap();
}

/// Status of `GET /Users` with `token`.
async fn users_status(env: &Env, token: &str) -> u16 {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    http.get(format!("{}/Users?count=1", env.target.url()))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_creates_and_revokes_a_token() {
    let (env, _config) = synced(5);
    let root = root(&env);
    let browser = Browser::start().unwrap();
    let c = open(&browser, "en").await;
    sign_in(&c, &root, "alice", ADMIN_PW).await;
    let target = c.find(Locator::LinkText("API tokens")).await.unwrap();
    click_to_next_page(&c, target).await;
    assert_accessible(&c, "tokens page").await;
    for scope in ["escim_read_users", "escim_read_groups"] {
        c.find(Locator::Id(&format!("scope-{scope}")))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
    }
    let target = c
        .find(Locator::Css("main form button[type=submit]"))
        .await
        .unwrap();
    click_to_next_page(&c, target).await;
    let value = c
        .find(Locator::Id("token-value"))
        .await
        .unwrap()
        .prop("value")
        .await
        .unwrap()
        .unwrap();
    assert!(value.starts_with("ids_"), "{value}");
    assert_accessible(&c, "tokens page with a new token").await;
    assert_eq!(users_status(&env, &value).await, 200);

    // The newest token is listed first: revoke it.
    let target = c.find(Locator::LinkText("Revoke")).await.unwrap();
    click_to_next_page(&c, target).await;
    assert!(heading(&c).await.starts_with("Revoke token"));
    let target = c
        .find(Locator::Css("main form button[type=submit]"))
        .await
        .unwrap();
    click_to_next_page(&c, target).await;
    assert!(body_text(&c).await.contains("The token was revoked."));
    assert_eq!(users_status(&env, &value).await, 401);
    screenshot(&c, "console-tokens").await;
    c.close().await.unwrap();
}

/// The agent reports each run to idservice; a run refused by the deletion threshold is marked
/// on the console's runs page with its reason.
#[tokio::test(flavor = "multi_thread")]
async fn a_refused_run_shows_on_the_runs_page() {
    let (env, config) = synced(10);
    env.slapd
        .delete(&[&env.user_dn(&gen_uid(1)), &env.user_dn(&gen_uid(2))])
        .unwrap();
    let run = env.sync(&config, &[]);
    assert_eq!(run.code, 2, "{:#}", run.report);
    let reason = run.report["refused"].as_str().unwrap().to_string();

    let root = root(&env);
    let browser = Browser::start().unwrap();
    let c = open(&browser, "en").await;
    sign_in(&c, &root, "alice", ADMIN_PW).await;
    let target = c.find(Locator::LinkText("Sync runs")).await.unwrap();
    click_to_next_page(&c, target).await;
    assert_accessible(&c, "runs page").await;
    let text = body_text(&c).await;
    assert!(text.contains("Refused (exit 2)"), "{text}");
    assert!(text.contains(&reason), "{reason:?} not in {text}");
    assert!(
        text.contains("Synced (exit 0)"),
        "the first run too: {text}"
    );
    let refused = c
        .find(Locator::XPath("//td[contains(., 'Refused (exit 2)')]"))
        .await
        .unwrap();
    assert_eq!(
        refused.attr("class").await.unwrap().as_deref(),
        Some("warn-text")
    );
    screenshot(&c, "console-runs").await;
    c.close().await.unwrap();
}

/// The text of the console's navigation.
async fn nav_text(c: &Client) -> String {
    c.find(Locator::Css("header nav"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Types `text` into the field with id `id`.
async fn fill(c: &Client, id: &str, text: &str) {
    c.find(Locator::Id(id))
        .await
        .unwrap()
        .send_keys(text)
        .await
        .unwrap();
}

/// Submits the page's form (its submit button inside `main`) and waits for the next page.
async fn submit(c: &Client) {
    let button = c
        .find(Locator::Css("main button[type=submit]"))
        .await
        .unwrap();
    click_to_next_page(c, button).await;
}

/// An idservice named "Example ID" that mails through a real SMTP sink, filled by a dirsync
/// run from slapd in which user 1 has `preferredLanguage: ja-JP` (mapped to the SCIM
/// attribute of the same name) and user 2 has none.
fn japanese_user_env() -> (Env, SmtpSink) {
    let sink = SmtpSink::start().unwrap_or_else(|e| panic!("smtp sink: {e}"));
    let cfg_dir = tempfile::tempdir().unwrap();
    let cfg = cfg_dir.path().join("idservice.yml");
    std::fs::write(
        &cfg,
        format!(
            "service_name: Example ID\nsmtp:\n  host: 127.0.0.1\n  port: {}\n  starttls: false\n  from: noreply@example.test\noutbox:\n  poll_seconds: 1\n",
            sink.port
        ),
    )
    .unwrap();
    let ids = IdService::start_with(&["--config", cfg.to_str().unwrap()])
        .unwrap_or_else(|e| panic!("idservice: {e}"));
    let env = Env::start_on(Target::Id(ids));
    env.slapd.load_generated(3, 1, &[]).unwrap();
    env.slapd
        .modify(&format!(
            "dn: {}\nchangetype: modify\nadd: preferredLanguage\npreferredLanguage: ja-JP\n\n",
            env.user_dn(&gen_uid(1))
        ))
        .unwrap();
    let config = env.config(
        "main",
        json!({"iid": {"scim": {"attribute": {"user": {"ad_bind": {
            "preferredLanguage": "preferredLanguage",
        }}}}}}),
    );
    let run = env.sync(&config, &[]);
    assert_eq!(run.code, 0, "{:#}", run.report);
    let user = env.target.user(&gen_user(1)).unwrap();
    assert_eq!(user["preferredLanguage"], "ja-JP", "{user:#}");
    (env, sink)
}

/// The reset link in a mail body.
fn reset_link(body: &str) -> String {
    let start = body
        .find("http")
        .unwrap_or_else(|| panic!("no link in {body}"));
    body[start..].split_whitespace().next().unwrap().to_string()
}

/// A user whose browser asks for Japanese: the forgot-password page, the reset email (the
/// user's `preferredLanguage` is ja-JP), the reset page, the sign-in page and `/account` are
/// all in Japanese, name the service in the title and the heading, and pass axe; the switch
/// to English is remembered. A user without `preferredLanguage` gets the English email.
#[tokio::test(flavor = "multi_thread")]
async fn a_japanese_user_resets_a_password_and_signs_in_in_japanese() {
    let (env, sink) = japanese_user_env();
    let root = root(&env);
    let browser = Browser::start().unwrap();
    let c = open(&browser, "ja").await;

    c.goto(&format!("{root}/forgot")).await.unwrap();
    assert_eq!(
        c.title().await.unwrap(),
        "パスワードをお忘れですか? – Example ID"
    );
    assert_eq!(heading(&c).await, "Example ID");
    assert_accessible(&c, "the forgot page in Japanese").await;
    fill(&c, "username", &gen_user(1)).await;
    submit(&c).await;
    let text = body_text(&c).await;
    assert!(
        text.contains("リンクを登録されているメールアドレスに送信しました"),
        "{text}"
    );

    let mails = sink
        .wait_for(1, std::time::Duration::from_secs(30))
        .unwrap();
    assert_eq!(mails[0].subject, "[Example ID] パスワード再設定のご依頼");
    assert!(
        mails[0].body.contains("分以内に次のリンクを開いてください"),
        "{}",
        mails[0].body
    );
    let link = reset_link(&mails[0].body);

    c.goto(&link).await.unwrap();
    assert_eq!(
        c.title().await.unwrap(),
        "新しいパスワードの設定 – Example ID"
    );
    assert_accessible(&c, "the reset page in Japanese").await;
    fill(&c, "password", "short").await;
    fill(&c, "confirm", "short").await;
    submit(&c).await;
    let text = body_text(&c).await;
    assert!(text.contains("パスワードが短すぎます"), "{text}");
    let new_password = "新しいパスワード long enough 7";
    fill(&c, "password", new_password).await;
    fill(&c, "confirm", new_password).await;
    submit(&c).await;
    let text = body_text(&c).await;
    assert!(text.contains("新しいパスワードを設定しました"), "{text}");
    let mails = sink
        .wait_for(2, std::time::Duration::from_secs(30))
        .unwrap();
    assert_eq!(
        mails[1].subject,
        "[Example ID] パスワードが再設定されました"
    );

    c.goto(&format!("{root}/signin")).await.unwrap();
    assert_eq!(c.title().await.unwrap(), "サインイン – Example ID");
    fill(&c, "username", &gen_user(1)).await;
    fill(&c, "password", new_password).await;
    submit(&c).await;
    assert!(
        c.current_url()
            .await
            .unwrap()
            .as_str()
            .ends_with("/account")
    );
    let text = body_text(&c).await;
    assert!(
        text.contains(&format!("{} としてサインインしています", gen_user(1))),
        "{text}"
    );
    assert_eq!(c.title().await.unwrap(), "アカウント – Example ID");
    assert_accessible(&c, "the account page in Japanese").await;
    screenshot(&c, "account-ja").await;

    // the switch: English, and it stays English on the next page
    let english = c.find(Locator::Css("nav.lang a[lang=en]")).await.unwrap();
    click_to_next_page(&c, english).await;
    assert!(
        body_text(&c)
            .await
            .contains(&format!("Signed in as {}", gen_user(1)))
    );
    c.goto(&format!("{root}/account")).await.unwrap();
    assert_eq!(c.title().await.unwrap(), "Your account – Example ID");
    c.close().await.unwrap();

    // a user with no preferredLanguage gets the configured default, English, whatever the
    // browser asked for
    let c = open(&browser, "ja").await;
    c.goto(&format!("{root}/forgot")).await.unwrap();
    fill(&c, "username", &gen_user(2)).await;
    submit(&c).await;
    let mails = sink
        .wait_for(3, std::time::Duration::from_secs(30))
        .unwrap();
    assert_eq!(mails[2].subject, "[Example ID] Password reset requested");
    c.close().await.unwrap();
}

/// The console in Japanese, with the times in the viewer's time zone: a browser in Tokyo
/// (`TZ=Asia/Tokyo`) asking for Japanese signs in, sees Japanese navigation, and the times of
/// a user's state history shown with +09:00; the English switch turns the console English.
#[tokio::test(flavor = "multi_thread")]
async fn the_console_speaks_japanese_with_times_in_the_viewers_zone() {
    let (env, _config) = synced(3);
    let root = root(&env);
    let browser = Browser::start_in_zone(Some("Asia/Tokyo")).unwrap();
    let c = open(&browser, "ja").await;
    c.goto(&format!("{root}/admin/")).await.unwrap();
    assert_eq!(heading(&c).await, "コンソールへのサインイン");
    assert_accessible(&c, "the console sign-in in Japanese").await;
    fill(&c, "username", "alice").await;
    fill(&c, "password", ADMIN_PW).await;
    submit(&c).await;
    let nav = nav_text(&c).await;
    assert!(
        nav.contains("ユーザー") && nav.contains("監査ログ"),
        "{nav}"
    );
    c.goto(&format!(
        "{root}/admin/users/{}",
        env.target.user(&gen_user(1)).unwrap()["id"]
            .as_str()
            .unwrap()
    ))
    .await
    .unwrap();
    assert_accessible(&c, "a user's page in Japanese").await;
    let times = c
        .find_all(Locator::Css("main time[datetime]"))
        .await
        .unwrap();
    assert!(!times.is_empty(), "{}", body_text(&c).await);
    for t in times {
        let shown = t.text().await.unwrap();
        let stored = t.attr("datetime").await.unwrap().unwrap();
        let utc = chrono::DateTime::parse_from_rfc3339(&stored).unwrap();
        let tokyo = utc.with_timezone(&chrono::FixedOffset::east_opt(9 * 3600).unwrap());
        assert_eq!(
            shown,
            format!("{} (UTC+09:00)", tokyo.format("%Y-%m-%d %H:%M:%S")),
            "stored {stored}"
        );
    }
    screenshot(&c, "console-user-ja").await;
    let english = c.find(Locator::Css("nav.lang a[lang=en]")).await.unwrap();
    click_to_next_page(&c, english).await;
    let nav = nav_text(&c).await;
    assert!(nav.contains("Users") && nav.contains("Audit log"), "{nav}");
    c.close().await.unwrap();
}

/// Every page of the console's navigation, and a group's page, in English and in Japanese:
/// each opens from its link, is in the language asked for, and has no serious or critical
/// accessibility violation.
#[tokio::test(flavor = "multi_thread")]
async fn every_console_page_passes_axe_in_both_languages() {
    let (env, _config) = synced(5);
    let root = root(&env);
    let browser = Browser::start().unwrap();
    let c = open(&browser, "en").await;
    sign_in(&c, &root, "alice", ADMIN_PW).await;
    let group = env.target.group("group00001").unwrap();
    let group_page = format!("/admin/groups/{}", group["id"].as_str().unwrap());
    let pages = [
        "/admin/users",
        "/admin/pending",
        "/admin/groups",
        group_page.as_str(),
        "/admin/tokens",
        "/admin/apps",
        "/admin/outbox",
        "/admin/runs",
        "/admin/audit",
    ];
    for (lang, html_lang) in [("en", "en"), ("ja", "ja")] {
        for page in pages {
            c.goto(&format!("{root}{page}?lang={lang}")).await.unwrap();
            let shown = c
                .find(Locator::Css("html"))
                .await
                .unwrap()
                .attr("lang")
                .await
                .unwrap();
            assert_eq!(shown.as_deref(), Some(html_lang), "{page}");
            let text = body_text(&c).await;
            assert!(
                !text.contains("Unknown localization"),
                "{page} ({lang}): {text}"
            );
            assert_accessible(&c, &format!("{page} ({lang})")).await;
        }
    }
    screenshot(&c, "console-audit-ja").await;
    c.close().await.unwrap();
}
