//! What `samba-tool user syncpasswords --script` writes on the hook's stdin (one object's
//! LDIF) through `dirsync::password_sync::capture::parse`. Beyond not panicking: no secret
//! attribute (any `virtual…` attribute, the hashes) survives into the entry that is queued,
//! and every attribute kept has a name.
//! (The error variants carry line numbers only, so an error cannot quote the input.)

const SECRET_ATTRS: &[&str] = &[
    "unicodepwd",
    "dbcspwd",
    "ntpwdhistory",
    "lmpwdhistory",
    "supplementalcredentials",
    "userpassword",
    "cleartextpassword",
];

/// One input.
pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match dirsync::password_sync::capture::parse(text) {
        Ok(captured) => {
            for name in captured.entry.names() {
                assert!(!name.is_empty(), "an attribute without a name");
                let lower = name.to_ascii_lowercase();
                assert!(
                    !lower.starts_with("virtual") && !SECRET_ATTRS.contains(&lower.as_str()),
                    "secret attribute {name} kept"
                );
            }
        }
        // The error variants carry line numbers only: nothing of the input to check.
        Err(e) => {
            let _ = e.to_string();
        }
    }
}
