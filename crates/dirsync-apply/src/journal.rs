//! The audit journal (behaviour §5): every write to the target, appended as one JSON line — time,
//! run id, operation, object, and the before/after of the attributes it changed.
//!
//! Passwords never reach it: any attribute named `password` is removed, at any depth, before
//! a line is written. The journal does not decide what is written to the target; `apply`
//! tells it what was confirmed.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

/// One confirmed (or failed) write.
#[derive(Debug, Serialize)]
pub struct JournalEntry<'a> {
    pub time: DateTime<Utc>,
    pub run_id: &'a str,
    /// `create_user`, `update_user`, `pend_user`, `add_members`, ...
    pub operation: &'a str,
    /// userName or displayName.
    pub object: &'a str,
    /// The source anchor (externalId).
    pub anchor: Option<&'a str>,
    pub target_id: Option<&'a str>,
    /// `ok`, or the target's error.
    pub outcome: &'a str,
    /// Attributes before the write (only those that changed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<Value>,
    /// Attributes after the write (only those that changed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<Value>,
}

pub struct Journal {
    file: File,
    path: PathBuf,
}

impl Journal {
    /// Opens `<state_dir>/journal.jsonl` for appending (created if missing, mode 0600).
    pub fn open(state_dir: &Path) -> std::io::Result<Journal> {
        std::fs::create_dir_all(state_dir)?;
        let path = state_dir.join("journal.jsonl");
        let mut options = OpenOptions::new();
        options.create(true).append(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let file = options.open(&path)?;
        Ok(Journal { file, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one line. A line is written whole with one `write_all`, so a crash leaves at
    /// most a torn last line, never a mixed one.
    pub fn record(&mut self, entry: &JournalEntry<'_>) -> std::io::Result<()> {
        let mut value = serde_json::to_value(entry).map_err(std::io::Error::other)?;
        strip_passwords(&mut value);
        let mut line = serde_json::to_vec(&value).map_err(std::io::Error::other)?;
        line.push(b'\n');
        self.file.write_all(&line)
    }
}

/// Removes every `password` attribute (any case, any depth), including PATCH operations
/// whose path names it.
pub fn strip_passwords(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|k, _| !k.eq_ignore_ascii_case("password"));
            let names_password = map
                .get("path")
                .and_then(Value::as_str)
                .is_some_and(|p| p.to_ascii_lowercase().contains("password"));
            if names_password {
                map.remove("value");
            }
            map.values_mut().for_each(strip_passwords);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_passwords),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lines_are_appended_and_passwords_never_written() {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = Journal::open(dir.path()).unwrap();
        for object in ["alice", "bob"] {
            journal
                .record(&JournalEntry {
                    time: Utc::now(),
                    run_id: "r1",
                    operation: "create_user",
                    object,
                    anchor: Some("a1"),
                    target_id: Some("t1"),
                    outcome: "ok",
                    before: None,
                    after: Some(json!({
                        "userName": object, "password": "Secr3t!",
                        "ops": [{"op": "replace", "path": "password", "value": "Secr3t!"}]
                    })),
                })
                .unwrap();
        }
        let text = std::fs::read_to_string(journal.path()).unwrap();
        assert_eq!(text.lines().count(), 2);
        assert!(!text.contains("Secr3t!"), "{text}");
        let first: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(first["after"]["userName"], "alice");
        assert_eq!(first["run_id"], "r1");
    }
}
