//! Files that hold secrets (an application's bearer token, the database password, the SMTP
//! relay password) must be readable by their owner only: a group- or world-readable one is
//! refused, not warned about, so that a secret is never left readable by accident.

use std::path::{Path, PathBuf};

/// A secret file that others can read.
#[derive(Debug, thiserror::Error)]
#[error(
    "{path} holds a secret but is readable by its group or others (mode {mode:o}); \
     make it private: chmod 600 {path}"
)]
pub struct NotPrivate {
    path: PathBuf,
    mode: u32,
}

/// Refuses `path` when its group or others have any access to it. A file that cannot be
/// inspected passes here; reading it then reports the problem.
pub fn check_private(path: &Path) -> Result<(), NotPrivate> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path) {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(NotPrivate {
                    path: path.to_path_buf(),
                    mode,
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn group_or_world_readable_secret_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("token");
        std::fs::write(&f, "secret\n").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = check_private(&f).unwrap_err().to_string();
        assert!(e.contains("mode 644") && e.contains("chmod 600"), "{e}");
        assert!(!e.contains("secret\n"));
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(check_private(&f).is_ok());
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(check_private(&f).is_err());
    }
}
