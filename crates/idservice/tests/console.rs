#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The administrator's console (`/admin/`) over HTTP against the real `idservice` binary:
//! the `admins` commands, sign-in (form token, generic failure, lockout), the session cookie's
//! flags and idle expiry, the user list (prefix search on each field, state filter, pages),
//! every action through its confirmation step, the roles (helpdesk: 403 and no button), the
//! CSRF token (missing, another session's: nothing changes, checked in the database), a
//! user's session not opening the console, and the audit log.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::console::{Console, cookie_value, hidden_link, listed_users, set_cookie};
use common::{Server, user};
use reqwest::StatusCode;
use serde_json::json;

fn password_file(dir: &Path, name: &str, password: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, format!("{password}\n")).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    path.display().to_string()
}

fn add_admin(server: &Server, name: &str, password: &str, role: &str) {
    let file = password_file(server.dir.path(), &format!("{name}.pw"), password);
    let out = server.cli(&[
        "admins",
        "add",
        name,
        "--password-file",
        &file,
        "--role",
        role,
    ]);
    assert!(out.status.success(), "{out:?}");
}

const ADMIN_PW: &str = "console admin password 1";
const HELP_PW: &str = "console helpdesk password 2";

async fn user_state(server: &Server, id: &str) -> (StatusCode, bool) {
    let r = server.get(&format!("/Users/{id}")).await;
    (r.status, r.body["active"] == json!(true))
}

#[tokio::test]
async fn admins_commands_check_names_passwords_and_files() {
    let server = Server::start();
    add_admin(&server, "Alice", ADMIN_PW, "admin");
    add_admin(&server, "helen", HELP_PW, "helpdesk");
    let list = server.cli(&["admins", "list"]);
    let text = String::from_utf8(list.stdout).unwrap();
    assert!(
        text.contains("Alice\tadmin") && text.contains("helen\thelpdesk"),
        "{text}"
    );
    assert!(
        !text.contains(ADMIN_PW) && !text.contains("argon2"),
        "{text}"
    );

    let file = password_file(server.dir.path(), "dup.pw", ADMIN_PW);
    let dup = server.cli(&["admins", "add", "alice", "--password-file", &file]);
    assert!(!dup.status.success());
    assert!(String::from_utf8_lossy(&dup.stderr).contains("exists already"));

    let short = password_file(server.dir.path(), "short.pw", "x");
    let out = server.cli(&["admins", "add", "bob", "--password-file", &short]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("too short"), "{err}");

    let open = server.dir.path().join("open.pw");
    std::fs::write(&open, format!("{ADMIN_PW}\n")).unwrap();
    std::fs::set_permissions(&open, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let out = server.cli(&[
        "admins",
        "add",
        "bob",
        "--password-file",
        open.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("chmod 600"));

    let out = server.cli(&["admins", "remove", "HELEN"]);
    assert!(out.status.success(), "{out:?}");
    let out = server.cli(&["admins", "remove", "helen"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no administrator named helen"));
}

#[tokio::test]
async fn signin_needs_the_form_token_and_sets_a_strict_session_cookie() {
    let server = Server::start();
    add_admin(&server, "alice", ADMIN_PW, "admin");
    let mut c = Console::new(&format!("http://{}", server.addr));

    // `/` leads to the users' sign-in; the console sends strangers to its own.
    assert_eq!(c.get("/").await.location.as_deref(), Some("/signin"));
    assert_eq!(
        c.get("/admin/users").await.location.as_deref(),
        Some("/admin/signin")
    );
    let form = c.get("/admin/signin").await;
    assert!(
        form.body
            .contains("<title>Console sign-in – idservice console</title>"),
        "{}",
        form.body
    );

    // No form token: refused, even with the right password.
    let r = c
        .post(
            "/admin/signin",
            &[("username", "alice"), ("password", ADMIN_PW)],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(set_cookie(&r.set_cookies, "idservice_admin").is_none());

    let r = c.signin("alice", "wrong password").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.body.contains("Incorrect user name or password."));
    let r = c.signin("nobody", "wrong password").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.body.contains("Incorrect user name or password."));

    let r = c.signin("ALICE", ADMIN_PW).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(r.location.as_deref(), Some("/admin/users"));
    let session = set_cookie(&r.set_cookies, "idservice_admin").unwrap();
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/admin"] {
        assert!(session.contains(flag), "{session}");
    }
    assert!(!session.contains("Secure"), "plain http: {session}");
    let page = c.get("/admin/users").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("alice (admin)"), "{}", page.body);

    // Sign-out needs the token too, and ends the session.
    let r = c.post("/admin/signout", &[]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let token = c.token().await;
    let r = c.post("/admin/signout", &[("csrf_token", &token)]).await;
    assert_eq!(r.location.as_deref(), Some("/admin/signin"));
    assert_eq!(
        c.get("/admin/users").await.location.as_deref(),
        Some("/admin/signin")
    );
}

#[tokio::test]
async fn repeated_failures_lock_the_account_until_a_new_password() {
    let server = Server::start();
    add_admin(&server, "alice", ADMIN_PW, "admin");
    let mut c = Console::new(&format!("http://{}", server.addr));
    for _ in 0..5 {
        assert_eq!(
            c.signin("alice", "wrong").await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    // Locked: the right password fails the same way.
    let r = c.signin("alice", ADMIN_PW).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let list = String::from_utf8(server.cli(&["admins", "list"]).stdout).unwrap();
    assert!(list.contains("locked"), "{list}");
    let file = password_file(server.dir.path(), "new.pw", "a new console password");
    let out = server.cli(&["admins", "set-password", "alice", "--password-file", &file]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        c.signin("alice", "a new console password").await.status,
        StatusCode::SEE_OTHER
    );
}

#[tokio::test]
async fn search_filters_and_pages_find_every_user_once() {
    let server = Server::start();
    add_admin(&server, "alice", ADMIN_PW, "admin");
    let mut ids = Vec::new();
    for i in 0..120 {
        let mut body = user(&format!("user{i:03}@example.com"), &format!("EXT-{i:03}"));
        body["displayName"] = json!(format!("Person {i:03}"));
        body["emails"] = json!([{ "value": format!("mail{i:03}@corp.example"), "primary": true }]);
        ids.push(
            server.create_user(body).await["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let mut c = Console::new(&format!("http://{}", server.addr));
    assert_eq!(
        c.signin("alice", ADMIN_PW).await.status,
        StatusCode::SEE_OTHER
    );

    // Pages of 50 in userName order, through the "Next page" links: every user once.
    let mut seen = BTreeSet::new();
    let mut path = "/admin/users".to_string();
    let mut pages = 0;
    loop {
        let page = c.get(&path).await;
        assert_eq!(page.status, 200);
        pages += 1;
        for name in listed_users(&page.body) {
            assert!(seen.insert(name.clone()), "{name} twice");
        }
        match hidden_link(&page.body, "rel=\"next\"") {
            Some(next) => path = next.replace("&amp;", "&"),
            None => break,
        }
    }
    assert_eq!((seen.len(), pages), (120, 3));

    // A prefix of each searched field, ASCII case ignored (externalId: exact case).
    for (q, expect) in [
        ("USER11", 10),    // userName user110…user119
        ("person 00", 10), // displayName
        ("mail05", 10),    // first email
        ("EXT-1", 20),     // externalId
        ("ext-1", 0),      // externalId is case-exact
        ("nobody", 0),
    ] {
        let page = c
            .get(&format!("/admin/users?q={}", q.replace(' ', "+")))
            .await;
        assert_eq!(page.status, 200);
        assert_eq!(listed_users(&page.body).len(), expect, "q={q}");
    }

    // State filter: one user disabled, one pending deletion.
    server
        .patch(
            &format!("/Users/{}", ids[7]),
            json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                   "Operations": [{"op": "replace", "path": "active", "value": false}]}),
        )
        .await;
    server.delete(&format!("/Users/{}", ids[8])).await;
    let disabled = c.get("/admin/users?state=disabled").await.body;
    assert!(
        disabled.contains(">user007@example.com<") && !disabled.contains(">user008"),
        "{disabled}"
    );
    let pending = c.get("/admin/users?state=pendingDeletion").await.body;
    assert!(pending.contains(">user008@example.com<") && !pending.contains(">user007"));
    assert_eq!(
        c.get("/admin/users?state=bogus").await.status,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn actions_go_through_confirmation_and_the_audit_log() {
    let server = Server::start();
    add_admin(&server, "alice", ADMIN_PW, "admin");
    let id = server
        .create_user(user("carol@example.com", "E-CAROL"))
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut c = Console::new(&format!("http://{}", server.addr));
    c.signin("alice", ADMIN_PW).await;

    let page = c.get(&format!("/admin/users/{id}")).await;
    assert_eq!(page.status, 200);
    assert!(
        page.body
            .contains(&format!("href=\"/admin/users/{id}/disable\""))
    );
    assert!(
        !page.body.contains(&format!("/admin/users/{id}/purge")),
        "not pending"
    );

    // The confirmation step changes nothing; its form does.
    let confirm = c.get(&format!("/admin/users/{id}/disable")).await;
    assert_eq!(confirm.status, 200);
    assert_eq!(user_state(&server, &id).await, (StatusCode::OK, true));
    let r = c
        .post(
            &format!("/admin/users/{id}/disable"),
            &[("csrf_token", &confirm.csrf())],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(user_state(&server, &id).await, (StatusCode::OK, false));
    let shown = c.get(r.location.as_deref().unwrap()).await.body;
    assert!(shown.contains("The user was disabled."), "{shown}");

    let token = c.token().await;
    c.post(
        &format!("/admin/users/{id}/enable"),
        &[("csrf_token", &token)],
    )
    .await;
    assert_eq!(user_state(&server, &id).await, (StatusCode::OK, true));
    // An action that does not fit the state is refused.
    let r = c
        .post(
            &format!("/admin/users/{id}/restore"),
            &[("csrf_token", &token)],
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);

    // Pending deletion → restore → pending again → purge.
    server.delete(&format!("/Users/{id}")).await;
    let page = c.get(&format!("/admin/users/{id}")).await.body;
    assert!(
        page.contains("Pending since") && page.contains("Purged on"),
        "{page}"
    );
    let r = c
        .post(
            &format!("/admin/users/{id}/restore"),
            &[("csrf_token", &token)],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(user_state(&server, &id).await, (StatusCode::OK, true));
    server.delete(&format!("/Users/{id}")).await;
    let r = c
        .post(
            &format!("/admin/users/{id}/purge"),
            &[("csrf_token", &token)],
        )
        .await;
    assert_eq!(r.location.as_deref(), Some("/admin/users?done=purge"));
    assert_eq!(user_state(&server, &id).await.0, StatusCode::NOT_FOUND);
    let history = server.cli(&["users", "history", "--user", "carol@example.com"]);
    let history = String::from_utf8(history.stdout).unwrap();
    assert!(history.contains("purged"), "{history}");

    // Every action is in the audit log, with who and from where.
    let audit = c.get("/admin/audit").await.body;
    for action in ["signin", "disable", "enable", "restore", "purge"] {
        assert!(
            audit.contains(&format!("<td>{action}</td>")),
            "{action}: {audit}"
        );
    }
    assert!(audit.contains("carol@example.com") && audit.contains("127.0.0.1"));
}

#[tokio::test]
async fn forms_without_this_sessions_token_change_nothing() {
    let server = Server::start();
    add_admin(&server, "alice", ADMIN_PW, "admin");
    add_admin(&server, "bob", "bob's console password", "admin");
    let id = server.create_user(user("dave@example.com", "E-DAVE")).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut alice = Console::new(&format!("http://{}", server.addr));
    alice.signin("alice", ADMIN_PW).await;
    let mut bob = Console::new(&format!("http://{}", server.addr));
    bob.signin("bob", "bob's console password").await;
    let bobs_token = bob.token().await;
    assert_ne!(bobs_token, alice.token().await);

    for form in [
        vec![],
        vec![("csrf_token", "")],
        vec![("csrf_token", bobs_token.as_str())],
    ] {
        let r = alice
            .post(&format!("/admin/users/{id}/disable"), &form)
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{form:?}");
        assert_eq!(
            user_state(&server, &id).await,
            (StatusCode::OK, true),
            "{form:?}"
        );
    }
    // Checked in the database itself: no state change was recorded.
    let history = server.cli(&["users", "history", "--user", "dave@example.com"]);
    let history = String::from_utf8(history.stdout).unwrap();
    assert_eq!(history.lines().count(), 1, "only the heading: {history}");
}

#[tokio::test]
async fn helpdesk_may_unlock_and_send_resets_but_not_disable_or_purge() {
    let server = Server::start();
    add_admin(&server, "helen", HELP_PW, "helpdesk");
    let id = server.create_user(user("erin@example.com", "E-ERIN")).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut c = Console::new(&format!("http://{}", server.addr));
    c.signin("helen", HELP_PW).await;
    let page = c.get(&format!("/admin/users/{id}")).await.body;
    assert!(page.contains("/send-reset\""), "{page}");
    assert!(!page.contains("/disable\""), "{page}");
    let token = c.token().await;
    for action in ["disable", "purge"] {
        assert_eq!(
            c.get(&format!("/admin/users/{id}/{action}")).await.status,
            StatusCode::FORBIDDEN
        );
        let r = c
            .post(
                &format!("/admin/users/{id}/{action}"),
                &[("csrf_token", &token)],
            )
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{action}");
    }
    assert_eq!(user_state(&server, &id).await, (StatusCode::OK, true));
    server.delete(&format!("/Users/{id}")).await;
    let page = c.get(&format!("/admin/users/{id}")).await.body;
    assert!(
        !page.contains("/purge\"") && !page.contains("/restore\""),
        "{page}"
    );
    let r = c
        .post(
            &format!("/admin/users/{id}/purge"),
            &[("csrf_token", &token)],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(
        user_state(&server, &id).await.0,
        StatusCode::NOT_FOUND,
        "pending, hidden"
    );
    let pending = String::from_utf8(server.cli(&["users", "list-pending"]).stdout).unwrap();
    assert!(
        pending.contains("erin@example.com"),
        "still pending: {pending}"
    );
}

#[tokio::test]
async fn a_users_session_does_not_open_the_console_and_idle_sessions_end() {
    let server = Server::start();
    add_admin(&server, "alice", ADMIN_PW, "admin");
    let mut body = user("frank@example.com", "E-FRANK");
    body["password"] = json!("frank's own password 1");
    server.create_user(body).await;
    let c = Console::new(&format!("http://{}", server.addr));
    let r = c
        .post(
            "/signin",
            &[
                ("username", "frank@example.com"),
                ("password", "frank's own password 1"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let user_cookie = cookie_value(set_cookie(&r.set_cookies, "idservice_session").unwrap());
    let page = c
        .request(
            c.http.get(format!("{}/admin/users", c.root)),
            Some(&user_cookie),
        )
        .await;
    assert_eq!(page.location.as_deref(), Some("/admin/signin"));
    // The user's password is no administrator's either.
    let mut c = Console::new(&format!("http://{}", server.addr));
    assert_eq!(
        c.signin("frank@example.com", "frank's own password 1")
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );

    // A session whose idle time ran out (moved into the past in the database) is over.
    assert_eq!(
        c.signin("alice", ADMIN_PW).await.status,
        StatusCode::SEE_OTHER
    );
    assert_eq!(c.get("/admin/users").await.status, 200);
    expire_sessions(&server.dir.path().join("idservice.db")).await;
    assert_eq!(
        c.get("/admin/users").await.location.as_deref(),
        Some("/admin/signin")
    );
}

/// Moves every console session's idle expiry into the past, in the database.
async fn expire_sessions(db: &Path) {
    use sqlx::Connection;
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    sqlx::query("UPDATE admin_sessions SET expires = '2000-01-01T00:00:00.000Z'")
        .execute(&mut conn)
        .await
        .unwrap();
}

#[tokio::test]
async fn groups_show_member_counts_and_page_their_members() {
    let server = Server::start();
    add_admin(&server, "alice", ADMIN_PW, "admin");
    let mut members = Vec::new();
    for i in 0..120 {
        let id = server
            .create_user(user(&format!("m{i:03}@example.com"), &format!("M-{i:03}")))
            .await["id"]
            .as_str()
            .unwrap()
            .to_string();
        members.push(json!({"value": id}));
    }
    let big = server
        .post(
            "/Groups",
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                   "displayName": "Engineering", "members": members}),
        )
        .await;
    assert_eq!(big.status, 201, "{}", big.body);
    let small = server
        .post(
            "/Groups",
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                   "displayName": "Engineers on call",
                   "members": [{"value": big.id(), "type": "Group"}, members[5].clone()]}),
        )
        .await;
    assert_eq!(small.status, 201, "{}", small.body);
    let mut c = Console::new(&format!("http://{}", server.addr));
    c.signin("alice", ADMIN_PW).await;

    let list = c.get("/admin/groups?q=ENGINEER").await;
    assert_eq!(list.status, 200);
    assert!(
        list.body.contains("<td>120</td>") && list.body.contains("<td>2</td>"),
        "{}",
        list.body
    );
    assert!(!c.get("/admin/groups?q=sales").await.body.contains("<td>"));

    let first = c.get(&format!("/admin/groups/{}", big.id())).await;
    assert_eq!(first.status, 200);
    let mut seen: BTreeSet<String> = listed_users(&first.body).into_iter().collect();
    assert_eq!(seen.len(), 100);
    let next = hidden_link(&first.body, "rel=\"next\"").unwrap();
    let second = c.get(&next.replace("&amp;", "&")).await;
    seen.extend(listed_users(&second.body));
    assert_eq!(seen.len(), 120);
    assert!(hidden_link(&second.body, "rel=\"next\"").is_none());

    let nested = c.get(&format!("/admin/groups/{}", small.id())).await.body;
    assert!(
        nested.contains("Member groups") && nested.contains(">Engineering<"),
        "{nested}"
    );
    assert_eq!(listed_users(&nested), vec!["m005@example.com".to_string()]);
}

#[tokio::test]
async fn tokens_are_created_shown_once_and_revoked() {
    let server = Server::start();
    add_admin(&server, "alice", ADMIN_PW, "admin");
    add_admin(&server, "helen", HELP_PW, "helpdesk");
    // A token nearing expiry carries the owner's warning on the page.
    let out = server.cli(&[
        "token",
        "create",
        "--scope",
        "escim_read_users",
        "--expires",
        "10d",
        "--owner",
        "ops@example.com",
    ]);
    assert!(out.status.success());
    let mut c = Console::new(&format!("http://{}", server.addr));
    c.signin("alice", ADMIN_PW).await;
    let page = c.get("/admin/tokens").await;
    assert!(
        page.body.contains("Expires within 14 days"),
        "{}",
        page.body
    );

    let token = page.csrf();
    let created = c
        .post(
            "/admin/tokens",
            &[
                ("csrf_token", &token),
                ("scope", "escim_read_users"),
                ("scope", "escim_read_groups"),
                ("expires", "30d"),
                ("owner", "app@example.com"),
            ],
        )
        .await;
    assert_eq!(created.status, 200, "{}", created.body);
    // The value, in the read-only field of the answer.
    let at = created.body.find("value=\"ids_").unwrap() + "value=\"".len();
    let secret: String = created.body[at..]
        .chars()
        .take_while(|c| *c != '"')
        .collect();
    assert!(secret.starts_with("ids_"), "{secret}");
    let r = server
        .send(Some(&secret), reqwest::Method::GET, "/Users", None, &[])
        .await;
    assert_eq!(r.status, 200);
    let r = server
        .send(
            Some(&secret),
            reqwest::Method::POST,
            "/Users",
            Some(user("x@example.com", "X")),
            &[],
        )
        .await;
    assert_eq!(r.status, 403, "read scopes only");
    // Shown once: the list never has it.
    let listed = c.get("/admin/tokens").await.body;
    assert!(!listed.contains(&secret));
    assert!(
        listed.contains("escim_read_users, escim_read_groups"),
        "{listed}"
    );

    // No scope: refused, nothing created.
    let before = listed.matches("<code>").count();
    let r = c
        .post(
            "/admin/tokens",
            &[("csrf_token", &token), ("expires", "30d")],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        c.get("/admin/tokens").await.body.matches("<code>").count(),
        before
    );

    // The helpdesk may look but not create or revoke.
    let mut h = Console::new(&format!("http://{}", server.addr));
    h.signin("helen", HELP_PW).await;
    let help_page = h.get("/admin/tokens").await;
    assert!(!help_page.body.contains("Create a token") && !help_page.body.contains("/revoke"));
    let r = h
        .post(
            "/admin/tokens",
            &[
                ("csrf_token", &help_page.csrf()),
                ("scope", "escim_read_users"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    // Revoke through the confirmation page: the token stops working.
    let id = created
        .body
        .split("Token <code>")
        .nth(1)
        .unwrap()
        .split('<')
        .next()
        .unwrap()
        .to_string();
    let confirm = c.get(&format!("/admin/tokens/{id}/revoke")).await;
    assert_eq!(confirm.status, 200);
    let r = c
        .post(
            &format!("/admin/tokens/{id}/revoke"),
            &[("csrf_token", &confirm.csrf())],
        )
        .await;
    assert_eq!(r.location.as_deref(), Some("/admin/tokens?done=revoked"));
    let r = server
        .send(Some(&secret), reqwest::Method::GET, "/Users", None, &[])
        .await;
    assert_eq!(r.status, 401);
    let audit = c.get("/admin/audit").await.body;
    assert!(
        audit.contains("token-create") && audit.contains("token-revoke"),
        "{audit}"
    );
}

#[tokio::test]
async fn pending_users_are_listed_with_purge_dates_and_bulk_purged_after_confirmation() {
    let server = Server::start();
    add_admin(&server, "alice", ADMIN_PW, "admin");
    add_admin(&server, "helen", HELP_PW, "helpdesk");
    let mut ids = Vec::new();
    for i in 0..5 {
        let id = server
            .create_user(user(&format!("p{i}@example.com"), &format!("P-{i}")))
            .await["id"]
            .as_str()
            .unwrap()
            .to_string();
        server.delete(&format!("/Users/{id}")).await;
        ids.push(id);
    }
    let mut c = Console::new(&format!("http://{}", server.addr));
    c.signin("alice", ADMIN_PW).await;
    let page = c.get("/admin/pending").await;
    assert_eq!(listed_users(&page.body).len(), 5, "{}", page.body);
    assert!(
        page.body.contains("Purged on") && page.body.contains("(30 days)"),
        "{}",
        page.body
    );

    // Two ticked: the confirmation names exactly them; nothing is purged yet.
    let token = page.csrf();
    let confirm = c
        .post(
            "/admin/pending/confirm",
            &[("csrf_token", &token), ("id", &ids[1]), ("id", &ids[3])],
        )
        .await;
    assert_eq!(confirm.status, 200, "{}", confirm.body);
    assert!(confirm.body.contains("p1@example.com") && confirm.body.contains("p3@example.com"));
    assert!(!confirm.body.contains("p2@example.com"));
    let pending = String::from_utf8(server.cli(&["users", "list-pending"]).stdout).unwrap();
    assert_eq!(pending.matches("@example.com").count(), 5, "{pending}");

    // Without the token: nothing. With it: the two are purged, the others stay.
    let r = c
        .post("/admin/pending/purge", &[("id", &ids[1]), ("id", &ids[3])])
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = c
        .post(
            "/admin/pending/purge",
            &[("csrf_token", &token), ("id", &ids[1]), ("id", &ids[3])],
        )
        .await;
    assert_eq!(r.location.as_deref(), Some("/admin/pending?purged=2"));
    let pending = String::from_utf8(server.cli(&["users", "list-pending"]).stdout).unwrap();
    assert!(
        !pending.contains("p1@") && !pending.contains("p3@") && pending.contains("p2@"),
        "{pending}"
    );
    let history = String::from_utf8(server.cli(&["users", "history"]).stdout).unwrap();
    assert_eq!(history.matches("purged").count(), 2, "{history}");

    // The helpdesk sees the list without boxes and cannot purge.
    let mut h = Console::new(&format!("http://{}", server.addr));
    h.signin("helen", HELP_PW).await;
    let page = h.get("/admin/pending").await;
    assert!(!page.body.contains("type=\"checkbox\"") && !page.body.contains("Purge selected"));
    let r = h
        .post(
            "/admin/pending/purge",
            &[("csrf_token", &h.token().await), ("id", &ids[0])],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let pending = String::from_utf8(server.cli(&["users", "list-pending"]).stdout).unwrap();
    assert!(pending.contains("p0@"), "{pending}");
}

#[tokio::test]
async fn the_outbox_shows_waiting_mail_and_retries_it_now() {
    // The relay is down (nothing listens on its port) and retries wait an hour: a reset
    // email stays waiting until someone retries it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("idservice.yml");
    std::fs::write(
        &config,
        format!(
            "smtp:\n  host: 127.0.0.1\n  port: {port}\n  starttls: false\n  from: id@example.com\n\
             outbox:\n  poll_seconds: 1\n  retry_base_seconds: 3600\n"
        ),
    )
    .unwrap();
    let server = Server::start_with(&["--config", config.to_str().unwrap()]);
    add_admin(&server, "alice", ADMIN_PW, "admin");
    add_admin(&server, "helen", HELP_PW, "helpdesk");
    let mut body = user("gina@example.com", "E-GINA");
    body["emails"] = json!([{"value": "gina@example.com", "primary": true}]);
    let id = server.create_user(body).await["id"]
        .as_str()
        .unwrap()
        .to_string();

    let mut h = Console::new(&format!("http://{}", server.addr));
    h.signin("helen", HELP_PW).await;
    let token = h.token().await;
    let r = h
        .post(
            &format!("/admin/users/{id}/send-reset"),
            &[("csrf_token", &token)],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert!(
        h.get(r.location.as_deref().unwrap())
            .await
            .body
            .contains("A reset email was queued.")
    );

    let mut c = Console::new(&format!("http://{}", server.addr));
    c.signin("alice", ADMIN_PW).await;
    let attempts = |body: &str| -> Option<u32> {
        let row = body.split("<td>gina@example.com</td>").nth(1)?;
        row.split("<td>").nth(2)?.split('<').next()?.parse().ok()
    };
    let mut page = c.get("/admin/outbox").await;
    for _ in 0..100 {
        if attempts(&page.body) == Some(1) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        page = c.get("/admin/outbox").await;
    }
    assert_eq!(attempts(&page.body), Some(1), "{}", page.body);
    assert!(page.body.contains("1 waiting"), "{}", page.body);
    assert!(!page.body.contains("reset?token="), "no body on the page");

    // The helpdesk may not retry; the administrator's retry makes it due now: a second
    // attempt follows within seconds instead of an hour.
    let retry = page
        .body
        .split("action=\"/admin/outbox/")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    let retry = format!("/admin/outbox/{retry}");
    assert_eq!(
        h.post(&retry, &[("csrf_token", &token)]).await.status,
        StatusCode::FORBIDDEN
    );
    let r = c.post(&retry, &[("csrf_token", &page.csrf())]).await;
    assert_eq!(
        r.location.as_deref(),
        Some("/admin/outbox?done=retried"),
        "{}",
        r.body
    );
    let mut tries = None;
    for _ in 0..100 {
        tries = attempts(&c.get("/admin/outbox").await.body);
        if tries == Some(2) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(tries, Some(2));
    assert!(c.get("/admin/audit").await.body.contains("mail-retry"));
}

fn run_report(
    instance: &str,
    ended: &str,
    exit_code: i32,
    interval: Option<u64>,
) -> serde_json::Value {
    json!({"schemas": [scim::run_report::SCHEMA], "instance": instance, "runId": "r-1",
           "started": ended, "ended": ended, "mode": "full", "dryRun": false,
           "exitCode": exit_code, "reason": (exit_code == 2).then_some("deletion threshold"),
           "counts": {"created": 3, "updated": 0},
           "failures": [], "failedCount": 0, "expectedIntervalSeconds": interval})
}

#[tokio::test]
async fn run_reports_are_checked_stored_and_late_agents_flagged() {
    let server = Server::start();
    add_admin(&server, "alice", ADMIN_PW, "admin");
    // Only a token that may write users may report; only a well-formed report is kept.
    let reader = server.new_token("escim_read_users", "1d");
    let body = run_report("dc1 (dc=a)", "2026-12-07T10:00:00Z", 0, Some(600));
    let r = server
        .send(
            Some(&reader),
            reqwest::Method::POST,
            "/DirsyncRuns",
            Some(body.clone()),
            &[],
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    let mut bad = body.clone();
    bad["schemas"] = json!(["urn:ietf:params:scim:schemas:core:2.0:User"]);
    server
        .post("/DirsyncRuns", bad)
        .await
        .assert_error(400, Some("invalidValue"), None);
    assert_eq!(server.post("/DirsyncRuns", body).await.status, 201);
    let now = chrono::Utc::now().to_rfc3339();
    let r = server
        .post("/DirsyncRuns", run_report("dc2 (dc=b)", &now, 2, Some(600)))
        .await;
    assert_eq!(r.status, 201);

    let mut c = Console::new(&format!("http://{}", server.addr));
    c.signin("alice", ADMIN_PW).await;
    let page = c.get("/admin/runs").await.body;
    assert!(
        page.contains("dc1 (dc=a)") && page.contains("dc2 (dc=b)"),
        "{page}"
    );
    assert!(page.contains("Refused (exit 2)") && page.contains("deletion threshold"));
    assert!(page.contains("created 3"), "{page}");
    // dc1 said every 10 minutes and last reported long ago; dc2 just reported.
    assert_eq!(
        page.matches("Not reported for longer than expected")
            .count(),
        1,
        "{page}"
    );
    let dc1 = page.split("<td>dc1 (dc=a)</td>").nth(1).unwrap();
    assert!(
        dc1.split("</tr>").next().unwrap().contains("Not reported"),
        "{page}"
    );
}
