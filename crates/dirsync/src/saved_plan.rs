//! Saved plans: `dirsync sync --dry-run --plan-out FILE` writes the plan a person reviews, and
//! `dirsync apply FILE` applies exactly that plan or refuses.
//!
//! The file holds the operations (the same JSON as `--report json`'s plan: never a secret,
//! resources as the target would receive them), the configuration's fingerprint and when it
//! was made. `apply` refuses (exit 2) a plan of
//! another format, one older than `sync.plan_max_age`, one made with another configuration,
//! and, during the run, one whose operations a fresh plan no longer makes the same way: the
//! fresh plan is computed as a full run would (whole directory, live target), and every object
//! of the saved plan must have exactly the same operations in it. So the check needs no
//! stored versions: a change to a planned object, in the directory or in the target, that
//! would make the plan write anything else shows as a different operation; a change that
//! would not (an attribute the agent does not manage) is no conflict. Objects the saved plan does
//! not touch are left alone (their operations, if any, wait for the next run). A plan applied
//! once is remembered in the state directory, and applying it again does nothing.
//!
//! It knows the plan, the configuration file and the state directory; it does not read the
//! directory or the target itself (the run does).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::plan::{Operation, Plan};

/// The `format` of the files this version writes and reads.
pub const FORMAT: &str = "dirsync-plan/1";
/// The file in the state directory listing the ids of the plans applied.
const APPLIED: &str = "applied-plans";

/// A saved plan, as written to and read from its file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SavedPlan {
    pub format: String,
    /// The run id of the dry run that made it: the plan's id.
    pub id: String,
    pub created_at: DateTime<Utc>,
    /// SHA-256 of config.yml when the plan was made.
    pub config_fingerprint: String,
    /// For people: which instance and target the plan is for.
    pub config: PathBuf,
    pub target: String,
    /// `full` or `incremental`: how the dry run read the directory.
    pub mode: String,
    pub operations: Vec<Operation>,
}

/// Why a plan file cannot be written, read or applied.
#[derive(Debug, thiserror::Error)]
pub enum SavedPlanError {
    #[error("cannot write the plan to {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read the plan {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a dirsync plan: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path} is a plan of format {found:?}; this dirsync reads {FORMAT:?}")]
    Format { path: PathBuf, found: String },
    #[error(
        "the plan {id} was made at {created_at}, longer ago than sync.plan_max_age ({max_age}); \
         make a new one with `dirsync sync --dry-run --plan-out`"
    )]
    TooOld {
        id: String,
        created_at: DateTime<Utc>,
        max_age: String,
    },
    #[error(
        "the plan {id} was made with another configuration ({config} changed since); make a \
         new one with `dirsync sync --dry-run --plan-out`"
    )]
    OtherConfiguration { id: String, config: PathBuf },
    #[error("cannot record the applied plan in {path}: {source}")]
    Record {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl SavedPlan {
    /// The saved form of a dry run's plan.
    pub fn new(config: &Config, run_id: &str, mode: &str, plan: &Plan) -> SavedPlan {
        SavedPlan {
            format: FORMAT.to_string(),
            id: run_id.to_string(),
            created_at: Utc::now(),
            config_fingerprint: crate::run::config_fingerprint(config),
            config: config.config_path.clone(),
            target: config.iid.scim.base_url.0.clone(),
            mode: mode.to_string(),
            operations: plan.operations.clone(),
        }
    }

    /// Writes the plan as JSON to `path` (a temporary file renamed into place).
    pub fn write(&self, path: &Path) -> Result<(), SavedPlanError> {
        let failed = |source| SavedPlanError::Write {
            path: path.to_path_buf(),
            source,
        };
        let text = serde_json::to_vec_pretty(self).map_err(|e| failed(e.into()))?;
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).map_err(failed)?;
        std::fs::rename(&tmp, path).map_err(failed)
    }

    /// Reads a plan file and checks it is one this version applies.
    pub fn read(path: &Path) -> Result<SavedPlan, SavedPlanError> {
        let text = std::fs::read(path).map_err(|source| SavedPlanError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let plan: SavedPlan =
            serde_json::from_slice(&text).map_err(|source| SavedPlanError::Parse {
                path: path.to_path_buf(),
                source,
            })?;
        if plan.format != FORMAT {
            return Err(SavedPlanError::Format {
                path: path.to_path_buf(),
                found: plan.format,
            });
        }
        Ok(plan)
    }

    /// Whether this plan may be applied with `config` now: not too old, same configuration.
    pub fn check_applicable(&self, config: &Config) -> Result<(), SavedPlanError> {
        let max_age = config.sync.plan_max_age.0;
        let age = Utc::now().signed_duration_since(self.created_at);
        if age.to_std().is_ok_and(|age| age > max_age) {
            return Err(SavedPlanError::TooOld {
                id: self.id.clone(),
                created_at: self.created_at,
                max_age: humantime::format_duration(max_age).to_string(),
            });
        }
        if self.config_fingerprint != crate::run::config_fingerprint(config) {
            return Err(SavedPlanError::OtherConfiguration {
                id: self.id.clone(),
                config: config.config_path.clone(),
            });
        }
        Ok(())
    }

    /// Whether this plan was applied before (its id is in the state directory's list).
    pub fn applied_before(&self, config: &Config) -> bool {
        // default: no list yet is "never applied".
        std::fs::read_to_string(config.state_dir.join(APPLIED))
            .unwrap_or_default()
            .lines()
            .any(|line| line == self.id)
    }

    /// Remembers that this plan was applied.
    pub fn record_applied(&self, config: &Config) -> Result<(), SavedPlanError> {
        let path = config.state_dir.join(APPLIED);
        let failed = |source| SavedPlanError::Record {
            path: path.clone(),
            source,
        };
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(failed)?;
        writeln!(file, "{}", self.id).map_err(failed)?;
        file.sync_all().map_err(failed)
    }

    /// Compares a fresh plan with this one. `Ok`: the fresh plan restricted to this plan's
    /// objects, which then holds exactly this plan's operations, and how many fresh
    /// operations were left out (objects this plan does not touch). `Err`: the objects whose
    /// operations differ, by name.
    pub fn restrict(&self, fresh: Plan) -> Result<(Plan, usize), Vec<String>> {
        let saved = by_subject(&self.operations);
        let mut changed: BTreeSet<String> = BTreeSet::new();
        let mut kept = Vec::new();
        let mut left_out = 0;
        let mut fresh_subjects: BTreeMap<String, Vec<&Operation>> = BTreeMap::new();
        for op in &fresh.operations {
            fresh_subjects.entry(op.subject().0).or_default().push(op);
        }
        for (key, (name, ops)) in &saved {
            let now = fresh_subjects.get(key).map(Vec::as_slice).unwrap_or(&[]);
            if now != ops.as_slice() {
                changed.insert(format!("{name} ({key})"));
            }
        }
        if !changed.is_empty() {
            return Err(changed.into_iter().collect());
        }
        let Plan {
            operations,
            errors,
            notes,
            refused,
            unchanged_users,
            unchanged_groups,
        } = fresh;
        for op in operations {
            if saved.contains_key(&op.subject().0) {
                kept.push(op);
            } else {
                left_out += 1;
            }
        }
        let plan = Plan {
            operations: kept,
            errors,
            notes,
            refused,
            unchanged_users,
            unchanged_groups,
        };
        Ok((plan, left_out))
    }
}

/// The operations of a plan by object key, with the object's name.
fn by_subject(operations: &[Operation]) -> BTreeMap<String, (String, Vec<&Operation>)> {
    let mut out: BTreeMap<String, (String, Vec<&Operation>)> = BTreeMap::new();
    for op in operations {
        let (key, name) = op.subject();
        out.entry(key)
            .or_insert_with(|| (name.to_string(), Vec::new()))
            .1
            .push(op);
    }
    out
}
