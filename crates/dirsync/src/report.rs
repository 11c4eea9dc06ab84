//! The end-of-run report (behaviour §5): counts, duration, failures with reasons, safety notes;
//! human-readable text for a terminal and JSON for machines. It never holds secrets: it is
//! built from names, counts and the target's messages.

use serde::Serialize;

use crate::apply::{Counts, Failure};
use crate::plan::PlanError;

/// Exit codes (behaviour §5).
pub const EXIT_OK: i32 = 0;
pub const EXIT_SOME_FAILED: i32 = 1;
pub const EXIT_REFUSED: i32 = 2;
pub const EXIT_UNREACHABLE: i32 = 3;
/// The local state (ownership records, directory image, target cache, run history) could not
/// be read or written: the run stops before it deletes or creates anything on a guess.
pub const EXIT_STATE_UNREADABLE: i32 = 5;

/// How a run ended. [`Outcome::exit_code`] is the one table from outcome to exit code: the
/// binary exits with it and the report shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Outcome {
    /// Everything planned was applied (or nothing needed to be).
    #[default]
    Synced,
    /// Some objects failed or were skipped (listed in the report).
    Partial,
    /// A deletion threshold stopped the run before it wrote anything.
    SafetyStop,
    /// The run could not start or go on: another run holds the lock, the local state could
    /// not be reset, the audit journal could not be opened.
    Refused,
    /// The configuration cannot be used (e.g. the target client cannot be set up from it).
    ConfigError,
    /// The directory or the target could not be reached (or refused the credentials).
    Unreachable,
    /// The local state could not be read: nothing was created or deleted on a guess.
    StateUnreadable,
}

impl Outcome {
    /// The documented exit code (behaviour §5).
    pub fn exit_code(self) -> i32 {
        match self {
            Outcome::Synced => EXIT_OK,
            Outcome::Partial => EXIT_SOME_FAILED,
            Outcome::SafetyStop | Outcome::Refused | Outcome::ConfigError => EXIT_REFUSED,
            Outcome::Unreachable => EXIT_UNREACHABLE,
            Outcome::StateUnreadable => EXIT_STATE_UNREADABLE,
        }
    }
}

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub run_id: String,
    /// "full" (the whole directory and target were read) or "incremental" (only the
    /// directory's changes since the stored cursor, planned against the target cache).
    pub mode: String,
    /// Why this run was full ("first run", "--full", "sync.full_every elapsed",
    /// "cursor invalid: …", "configuration changed", "--recovery", "LDIF source").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub full_reason: Option<String>,
    /// Incremental runs that planned: "changed users" (only the users the changes touch,
    /// every group), or "whole image: <why>" (see docs/dirsync.md, "Incremental sync").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub planned_over: Option<String>,
    /// `--recovery`: the local state was discarded first.
    pub recovery: bool,
    /// Full runs with a previous cache: objects the incremental path had missed or the
    /// target had changed behind the agent's back (repaired by this run). Above zero it is
    /// also a warning.
    pub drift: usize,
    pub drift_objects: Vec<String>,
    pub dry_run: bool,
    /// The run did not start: another run held the state's lock. Not part of the JSON
    /// report; notifications leave such a run out (the run holding the lock speaks).
    #[serde(skip)]
    pub lock_busy: bool,
    pub started_at: String,
    pub duration_ms: u128,
    pub source: String,
    pub target: String,
    pub read_users: usize,
    pub read_groups: usize,
    pub read_complete: bool,
    pub counts: Counts,
    pub unchanged_users: usize,
    pub unchanged_groups: usize,
    /// Objects the plan refused to touch (mapping errors, duplicates, conflicts).
    pub skipped: Vec<PlanError>,
    /// Writes the target rejected.
    pub failures: Vec<Failure>,
    pub warnings: Vec<String>,
    pub notes: Vec<String>,
    /// Why the run wrote nothing (deletion threshold).
    pub refused: Option<String>,
    /// Why the run stopped early (credentials refused, target or source unreachable).
    pub stopped: Option<String>,
    /// How the run ended (the exit code below is made from it).
    #[serde(skip)]
    pub outcome: Outcome,
    pub exit_code: i32,
}

impl Report {
    /// The outcome of a run that was not stopped by a decision of its own.
    pub fn settled_outcome(&self) -> Outcome {
        if self.stopped.is_some() {
            Outcome::Unreachable
        } else if self.refused.is_some() {
            Outcome::SafetyStop
        } else if !self.failures.is_empty() || !self.skipped.is_empty() {
            Outcome::Partial
        } else {
            Outcome::Synced
        }
    }

    /// True when the run changed nothing and found nothing to change.
    pub fn no_changes(&self) -> bool {
        self.counts == Counts::default()
    }

    /// The report as text for a terminal.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        self.push_header(&mut out);
        if !self.dry_run {
            self.push_counts(&mut out);
        }
        self.push_details(&mut out);
        out.push_str(&format!("  exit code: {}\n", self.exit_code));
        out
    }

    /// The run line (id, mode, duration), source, target and what was read.
    fn push_header(&self, out: &mut String) {
        let mut mode = self.mode.clone();
        if let Some(reason) = &self.full_reason {
            mode.push_str(&format!(" ({reason})"));
        }
        if self.recovery {
            mode.push_str(", recovery");
        }
        if self.dry_run {
            mode.push_str(" (dry run)");
        }
        out.push_str(&format!(
            "dirsync run {} — {mode}, {:.1} s\n",
            self.run_id,
            self.duration_ms as f64 / 1000.0
        ));
        out.push_str(&format!(
            "  source: {}\n  target: {}\n",
            self.source, self.target
        ));
        out.push_str(&format!(
            "  read:    {} users, {} groups{}\n",
            self.read_users,
            self.read_groups,
            if self.read_complete {
                ""
            } else {
                " (INCOMPLETE: nothing deleted)"
            }
        ));
    }

    /// What was written: user, group and member counts, failures and skips.
    fn push_counts(&self, out: &mut String) {
        let c = &self.counts;
        out.push_str(&format!(
            "  users:   {} created, {} updated, {} enabled, {} disabled, {} pending deletion, {} restored, {} deleted, {} adopted, {} unchanged\n",
            c.created, c.updated, c.enabled, c.disabled, c.pending_deletion, c.restored, c.deleted, c.adopted, self.unchanged_users
        ));
        out.push_str(&format!(
            "  groups:  {} created, {} updated, {} deleted, {} unchanged; members: {} added, {} removed\n",
            c.groups_created, c.groups_updated, c.groups_deleted, self.unchanged_groups, c.members_added, c.members_removed
        ));
        out.push_str(&format!(
            "  failed:  {}   skipped: {}\n",
            self.failures.len(),
            self.skipped.len()
        ));
        if self.no_changes() && self.failures.is_empty() && self.refused.is_none() {
            out.push_str("  no changes\n");
        }
    }

    /// Drift, each skipped and failed object, warnings, notes, and why the run refused or
    /// stopped.
    fn push_details(&self, out: &mut String) {
        if self.drift > 0 {
            out.push_str(&format!(
                "  drift:   {} (repaired): {}\n",
                self.drift,
                self.drift_objects.join(", ")
            ));
        }
        for s in &self.skipped {
            out.push_str(&format!("  skipped {}: {}\n", s.object, s.message));
        }
        for f in &self.failures {
            out.push_str(&format!(
                "  FAILED {} {}: {}\n",
                f.operation, f.object, f.message
            ));
        }
        for w in &self.warnings {
            out.push_str(&format!("  warning: {w}\n"));
        }
        for n in &self.notes {
            out.push_str(&format!("  note: {n}\n"));
        }
        if let Some(r) = &self.refused {
            out.push_str(&format!("  REFUSED: {r}\n"));
        }
        if let Some(s) = &self.stopped {
            out.push_str(&format!("  STOPPED: {s}\n"));
        }
    }
}
