//! `config.yml` and `secret.yml` through `Config::load`, the loader `dirsync` runs: the input
//! up to the first NUL is config.yml, the rest (when there is a NUL) secret.yml, mode 0600.
//! Beyond not panicking: an error about secret.yml is one of the loader's fixed descriptions,
//! which never quote a value from the file.

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;
use std::sync::OnceLock;

use dirsync_config::{Config, ConfigError};

/// Messages the loader may give for secret.yml (load.rs: `redacted_message`, the duplicate key,
/// and the checks for a missing password).
const SECRET_MESSAGES: &[&str] = &[
    "unknown key `",
    "duplicate key",
    "invalid value: expected a string",
    "invalid YAML",
    "no bind password",
    "no SMTP relay password",
];

fn dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = std::env::temp_dir().join(format!("dirsync-fuzz-config-{}", std::process::id()));
        std::fs::create_dir_all(&base).unwrap();
        base
    })
}

fn write(path: &PathBuf, bytes: &[u8]) {
    let mut f = std::fs::File::create(path).unwrap();
    f.write_all(bytes).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// One input.
pub fn run(data: &[u8]) {
    let (config, secret) = crate::split_nul(data);
    let has_secret = data.contains(&0);
    let dir = dir();
    let config_path = dir.join("config.yml");
    let secret_path = dir.join("secret.yml");
    write(&config_path, config);
    if has_secret {
        write(&secret_path, secret);
    } else {
        let _ = std::fs::remove_file(&secret_path);
    }
    match Config::load(&config_path, None) {
        Ok((config, warnings)) => {
            let _ = format!("{config:?}");
            for w in warnings {
                let _ = w.to_string();
            }
        }
        Err(e) => {
            let shown = e.to_string();
            if let ConfigError::Invalid { file, message, .. } = &e
                && file == &secret_path
            {
                assert!(
                    SECRET_MESSAGES.iter().any(|m| message.starts_with(m)),
                    "secret.yml error not redacted: {shown}"
                );
            }
        }
    }
}
