//! Every checked-in seed (`fuzz/seeds/TARGET/*`: inputs taken from the tests, and every input a
//! fuzzer found a bug with) through its target's checks, in the test suite: the short form of
//! `scripts/fuzz`, which needs the nightly toolchain and a build of its own (docs/reliability.md).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// The seeds of `target`, in name order.
fn seeds(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = fuzz_dir().join("seeds").join(target);
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no seeds in {}", dir.display());
    paths
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect()
}

/// Runs every seed of `target` through `run`, naming the seed first (a failed check panics).
fn replay(target: &str, run: fn(&[u8])) {
    for (path, bytes) in seeds(target) {
        eprintln!("{}", path.display());
        run(&bytes);
    }
}

macro_rules! seed_tests {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                replay(stringify!($name), fuzz_targets::$name::run);
            }
        )*
        /// Every target this file replays (syncrepl_control has its own test below).
        const TARGETS: &[&str] = &[$(stringify!($name),)* "syncrepl_control"];
    };
}

seed_tests!(
    config_load,
    dirsync_control,
    idservice_bulk,
    idservice_groups,
    idservice_search,
    idservice_users,
    ldap_filter,
    ldif,
    password_capture,
    scim_filter_sql,
    scim_patch,
);

#[test]
fn syncrepl_control() {
    fuzz_targets::syncrepl_control::init();
    replay("syncrepl_control", fuzz_targets::syncrepl_control::run);
}

/// A target added to fuzz/ without a test here would have its seeds skipped.
#[test]
fn every_fuzz_target_has_its_seeds_replayed() {
    let mut on_disk: Vec<String> = std::fs::read_dir(fuzz_dir().join("fuzz_targets"))
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            p.file_stem().unwrap().to_string_lossy().into_owned()
        })
        .collect();
    on_disk.sort();
    let mut here: Vec<String> = TARGETS.iter().map(|s| s.to_string()).collect();
    here.sort();
    assert_eq!(here, on_disk);
}
