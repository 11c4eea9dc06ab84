//! An LDIF file through `dirsync_source::ldif::parse`, the reader of `ad.ldif_file`. Beyond
//! not panicking: every record read, written back out (each DN and value base64), reads back
//! as the same entries, and an error names a line of the file.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use dirsync_model::entry::Entry;

fn write(entries: &[Entry]) -> String {
    let mut out = String::new();
    for e in entries {
        out.push_str(&format!("dn:: {}\n", B64.encode(&e.dn)));
        for (name, values) in e.attributes() {
            for v in values {
                out.push_str(&format!("{name}:: {}\n", B64.encode(v)));
            }
        }
        out.push('\n');
    }
    out
}

/// One input.
pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match dirsync_source::ldif::parse(text, "fuzz.ldif") {
        Ok(entries) => {
            let again = write(&entries);
            let reread = dirsync_source::ldif::parse(&again, "again.ldif")
                .unwrap_or_else(|e| panic!("{again:?} does not read back: {e}"));
            assert!(
                reread == entries,
                "{text:?} → {again:?} reads back differently"
            );
        }
        Err(e) => {
            let lines = text.split('\n').count();
            assert!(
                e.line >= 1 && e.line <= lines,
                "line {} of {lines}: {e}",
                e.line
            );
        }
    }
}
