//! One run per instance at a time (behaviour §4.4): an OS file lock on `<state_dir>/dirsync.lock`.
//! The kernel releases it when the process dies, so a crash never leaves a stale lock.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

use super::StateError;

/// Held for the duration of a run; dropping it releases the lock.
#[derive(Debug)]
pub struct RunLock {
    _file: File,
    path: PathBuf,
}

impl RunLock {
    /// Takes the lock without waiting; `StateError::Locked` if another run holds it.
    pub fn acquire(state_dir: &Path) -> Result<RunLock, StateError> {
        std::fs::create_dir_all(state_dir)
            .map_err(|e| StateError::Io(format!("cannot create {}: {e}", state_dir.display())))?;
        let path = state_dir.join("dirsync.lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| StateError::Io(format!("cannot open {}: {e}", path.display())))?;
        match file.try_lock() {
            Ok(()) => Ok(RunLock { _file: file, path }),
            Err(TryLockError::WouldBlock) => Err(StateError::Locked(path)),
            Err(TryLockError::Error(e)) => Err(StateError::Io(format!(
                "cannot lock {}: {e}",
                path.display()
            ))),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}
