#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Named regression tests of cases where an incremental run once decided differently from a
//! full run (issue 22). Each test replays the directory history that showed the difference on
//! a real slapd, runs the `dirsync` binary into our `idservice`, and asserts both that the
//! incremental run did the right thing and that a full dry run right after plans nothing.

mod common;

use common::{Env, TargetKind};
use serde_json::json;
use testenv::SlapdOptions;

/// The sync base is `ou=corp`; `ou=outside` is a sibling a user can be moved to.
fn corp_env() -> (Env, std::path::PathBuf) {
    let env = Env::start_with(
        TargetKind::IdService,
        SlapdOptions {
            memberof: true,
            ..SlapdOptions::default()
        },
    );
    let base = env.slapd.base.clone();
    env.slapd
        .add(&format!(
            "dn: ou=corp,{base}\nobjectClass: organizationalUnit\nou: corp\n\n\
             dn: ou=people,ou=corp,{base}\nobjectClass: organizationalUnit\nou: people\n\n\
             dn: ou=groups,ou=corp,{base}\nobjectClass: organizationalUnit\nou: groups\n\n\
             dn: ou=outside,{base}\nobjectClass: organizationalUnit\nou: outside\n\n"
        ))
        .unwrap();
    let config = env.config(
        "main",
        json!({
            "ad": {"ldap": {"base_dn": format!("ou=corp,{base}")}},
            "sync": {"max_deletion_ratio": 1.0},
        }),
    );
    (env, config)
}

fn add_person(env: &Env, uid: &str) -> String {
    let dn = format!("uid={uid},ou=people,ou=corp,{}", env.slapd.base);
    env.slapd
        .add(&format!(
            "dn: {dn}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {uid}\nsn: Test\n\
             mail: {uid}@example.test\n"
        ))
        .unwrap();
    dn
}

/// `corp_env` with alice and bob, both members of `platform-core`; returns alice's DN.
fn alice_and_bob_in_platform_core() -> (Env, std::path::PathBuf, String) {
    let (env, config) = corp_env();
    let alice = add_person(&env, "alice");
    let bob = add_person(&env, "bob");
    env.slapd
        .add(&format!(
            "dn: cn=platform-core,ou=groups,ou=corp,{}\nobjectClass: groupOfNames\n\
             cn: platform-core\nmember: {alice}\nmember: {bob}\n",
            env.slapd.base
        ))
        .unwrap();
    (env, config, alice)
}

/// Members of the target group by userName, sorted.
fn members(env: &Env, group: &str) -> Vec<String> {
    env.target.member_names(group)
}

/// `dirsync sync --full --dry-run` plans no operation.
fn assert_full_plans_nothing(env: &Env, config: &std::path::Path, step: &str) {
    let run = env.sync(config, &["--full", "--dry-run"]);
    assert_eq!(run.code, 0, "{step}: {:#}", run.report);
    let ops = run.plan["operations"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(ops.is_empty(), "{step}: a full run would still do {ops:#?}");
}

/// Issue 22: a user in a group is moved out of the sync base and back in again, with refint
/// rewriting the group's `member` value each time. The incremental run that restores the user
/// must also give it back its membership (it once planned `members: 0 added`).
#[test]
fn restored_user_regains_its_groups_after_a_move_out_and_back() {
    let (env, config, alice) = alice_and_bob_in_platform_core();
    let base = env.slapd.base.clone();
    let run = env.sync(&config, &[]);
    assert_eq!(run.code, 0, "{:#}", run.report);
    assert_eq!(
        members(&env, "platform-core"),
        ["alice@example.test", "bob@example.test"]
    );

    // Out of the base: pending deletion, membership dropped.
    env.slapd
        .modrdn(&alice, "uid=alice", Some(&format!("ou=outside,{base}")))
        .unwrap();
    wait_for_member(
        &env,
        "platform-core",
        &format!("uid=alice,ou=outside,{base}"),
    );
    let run = env.sync(&config, &[]);
    assert_eq!(run.code, 0, "{:#}", run.report);
    assert_eq!(run.count("pending_deletion"), 1, "{:#}", run.report);
    env.target.assert_pending("alice@example.test");
    assert_eq!(members(&env, "platform-core"), ["bob@example.test"]);
    assert_full_plans_nothing(&env, &config, "after the move out");

    // Back in: restored, and a member again in the same run.
    env.slapd
        .modrdn(
            &format!("uid=alice,ou=outside,{base}"),
            "uid=alice",
            Some(&format!("ou=people,ou=corp,{base}")),
        )
        .unwrap();
    wait_for_member(&env, "platform-core", &alice);
    let run = env.sync(&config, &[]);
    assert_eq!(run.code, 0, "{:#}", run.report);
    assert_eq!(run.count("restored"), 1, "{:#}", run.report);
    assert_eq!(run.count("members_added"), 1, "{:#}", run.report);
    assert_eq!(
        members(&env, "platform-core"),
        ["alice@example.test", "bob@example.test"]
    );
    assert_full_plans_nothing(&env, &config, "after the move back");
}

/// refint rewrites member values in a task of its own after the rename: wait until the group
/// lists `dn` (compared case-insensitively), so the next read sees the settled directory.
fn wait_for_member(env: &Env, group: &str, dn: &str) {
    let group_dn = format!("cn={group},ou=groups,ou=corp,{}", env.slapd.base);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let listed = env.slapd.values(&group_dn, "member").unwrap();
        if listed.iter().any(|v| v.eq_ignore_ascii_case(dn)) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "refint did not rewrite {group_dn} to list {dn}: {listed:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The same history without waiting for refint: the run right after the move back may read
/// the group before refint rewrote it. The run after that must add the member.
#[test]
fn restored_user_regains_its_groups_when_refint_lags() {
    let (env, config, alice) = alice_and_bob_in_platform_core();
    let base = env.slapd.base.clone();
    assert_eq!(env.sync(&config, &[]).code, 0);
    env.slapd
        .modrdn(&alice, "uid=alice", Some(&format!("ou=outside,{base}")))
        .unwrap();
    let run = env.sync(&config, &[]);
    assert_eq!(run.code, 0, "{:#}", run.report);
    env.slapd
        .modrdn(
            &format!("uid=alice,ou=outside,{base}"),
            "uid=alice",
            Some(&format!("ou=people,ou=corp,{base}")),
        )
        .unwrap();
    let run = env.sync(&config, &[]);
    assert_eq!(run.code, 0, "{:#}", run.report);
    wait_for_member(&env, "platform-core", &alice);
    let run = env.sync(&config, &[]);
    assert_eq!(run.code, 0, "{:#}", run.report);
    assert_eq!(
        members(&env, "platform-core"),
        ["alice@example.test", "bob@example.test"],
        "{:#}",
        run.report
    );
    assert_full_plans_nothing(&env, &config, "after the move back");
}
