//! The LDIF file source: an RFC 2849 reader for content records, and the selection of users
//! and groups from the records with the configured object classes, filters and base DN.
//!
//! No maintained LDIF crate exists in the registry (checked `cargo info ldif` on
//! 2026-11-27), and the subset needed is small, so the reader is written here. It reads
//! content records only: change records (`changetype:`) and URL values (`attr:< file://…`)
//! are rejected with the line number, because a sample directory has no use for them and
//! following URLs from a data file would be a surprise. It does not know LDAP servers or SCIM.

use std::path::Path;

use base64::Engine;

use super::{DirectoryRead, Entry, EntryBuilder, Selection, dn_within};

/// A malformed LDIF file: the line (1-based, of the physical line that starts the problem)
/// and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct LdifError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

/// Reads every content record of an LDIF text. `file` only labels errors.
pub fn parse(text: &str, file: &str) -> Result<Vec<Entry>, LdifError> {
    let mut records = Records {
        file,
        entries: Vec::new(),
        current: None,
        seen_version: false,
    };
    for (number, line) in unfold(text, file)? {
        records.line(number, &line)?;
    }
    Ok(records.finish())
}

/// An [`LdifError`] for `file` at `line`.
fn ldif_error(file: &str, line: usize, message: String) -> LdifError {
    LdifError {
        file: file.to_string(),
        line,
        message,
    }
}

/// Unfolds the text: a line that starts with one space continues the previous line. Each
/// logical line keeps the number of the physical line it started on.
fn unfold(text: &str, file: &str) -> Result<Vec<(usize, String)>, LdifError> {
    let mut logical: Vec<(usize, String)> = Vec::new();
    for (i, raw) in text.split('\n').enumerate() {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        let number = i + 1;
        if let Some(cont) = line.strip_prefix(' ') {
            match logical.last_mut() {
                Some((_, prev)) if !prev.is_empty() => prev.push_str(cont),
                _ => {
                    return Err(ldif_error(
                        file,
                        number,
                        "a continuation line (starting with a space) follows nothing".into(),
                    ));
                }
            }
        } else {
            logical.push((number, line.to_string()));
        }
    }
    Ok(logical)
}

/// Splits an `attribute: value` line (value plain or `::` base64) into name and value bytes.
fn attribute_line<'l>(
    file: &str,
    number: usize,
    line: &'l str,
) -> Result<(&'l str, Vec<u8>), LdifError> {
    let err = |message: String| ldif_error(file, number, message);
    let Some(colon) = line.find(':') else {
        return Err(err(format!("expected 'attribute: value', found {line:?}")));
    };
    let name = &line[..colon];
    let rest = &line[colon + 1..];
    // The attribute type before any options (`cn;lang-ja`) must be there: `;x: v` names none.
    if dirsync_model::entry::attribute_base(name).is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == ';' || c == '.')
    {
        return Err(err(format!("invalid attribute name {name:?}")));
    }
    let value: Vec<u8> = if let Some(b64) = rest.strip_prefix(':') {
        base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(|e| err(format!("invalid base64 value for {name}: {e}")))?
    } else if rest.starts_with('<') {
        return Err(err(format!(
            "URL values ({name}:< ...) are not supported; put the value inline"
        )));
    } else {
        rest.strip_prefix(' ')
            .unwrap_or(rest)
            .trim_start_matches(' ')
            .as_bytes()
            .to_vec()
    };
    Ok((name, value))
}

/// The records read so far and the one being read.
struct Records<'f> {
    /// Labels errors.
    file: &'f str,
    entries: Vec<Entry>,
    /// Records are built in a map and packed once at their end (a big group is one push per
    /// member line).
    current: Option<EntryBuilder>,
    seen_version: bool,
}

impl Records<'_> {
    /// Takes one logical line: a comment, a blank line ending a record, or an attribute.
    fn line(&mut self, number: usize, line: &str) -> Result<(), LdifError> {
        if line.starts_with('#') {
            return Ok(());
        }
        if line.trim().is_empty() {
            self.end_record();
            return Ok(());
        }
        let (name, value) = attribute_line(self.file, number, line)?;
        let base = dirsync_model::entry::attribute_base(name);
        match self.current.as_mut() {
            None => self.outside_record(number, name, base, value),
            Some(entry) => {
                if base.eq_ignore_ascii_case("changetype") {
                    return Err(ldif_error(
                        self.file,
                        number,
                        "change records (changetype:) are not supported; write content records"
                            .into(),
                    ));
                }
                if base.eq_ignore_ascii_case("dn") {
                    return Err(ldif_error(
                        self.file,
                        number,
                        "a second 'dn:' in one record (missing blank line between records?)".into(),
                    ));
                }
                entry.push(base, value);
                Ok(())
            }
        }
    }

    /// An attribute between records: the `version: 1` line before the first record, or the
    /// `dn:` that starts a record.
    fn outside_record(
        &mut self,
        number: usize,
        name: &str,
        base: &str,
        value: Vec<u8>,
    ) -> Result<(), LdifError> {
        if base.eq_ignore_ascii_case("version") && !self.seen_version && self.entries.is_empty() {
            self.seen_version = true;
            if value != b"1" {
                return Err(ldif_error(
                    self.file,
                    number,
                    "only LDIF version 1 is supported".into(),
                ));
            }
            return Ok(());
        }
        if !base.eq_ignore_ascii_case("dn") {
            return Err(ldif_error(
                self.file,
                number,
                format!("a record must start with 'dn:', found '{name}:'"),
            ));
        }
        let dn = String::from_utf8(value)
            .map_err(|_| ldif_error(self.file, number, "the DN is not valid UTF-8".into()))?;
        self.current = Some(EntryBuilder::new(dn));
        Ok(())
    }

    /// Packs the record being read, if any.
    fn end_record(&mut self) {
        if let Some(e) = self.current.take() {
            self.entries.push(e.build());
        }
    }

    /// Every record, the last one included.
    fn finish(mut self) -> Vec<Entry> {
        self.end_record();
        self.entries
    }
}

/// Why an LDIF read failed.
#[derive(Debug, thiserror::Error)]
pub enum LdifSourceError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Syntax(#[from] LdifError),
}

/// Reads an LDIF file and selects users and groups.
pub fn read_file(path: &Path, selection: &Selection) -> Result<DirectoryRead, LdifSourceError> {
    let label = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| LdifSourceError::Io {
        path: label.clone(),
        source,
    })?;
    Ok(select(parse(&text, &label)?, selection))
}

/// Selects users and groups from parsed entries: inside `base_dn`, with the object class, and
/// matching the filter. An entry may be neither. A filter that cannot be evaluated locally
/// (an extensible match) selects nothing and marks the read incomplete, so nothing is ever
/// deleted because of it; the note names the problem.
pub fn select(entries: Vec<Entry>, selection: &Selection) -> DirectoryRead {
    let mut read = DirectoryRead {
        complete: true,
        ..DirectoryRead::default()
    };
    let mut user_failed = false;
    let mut group_failed = false;
    for entry in entries {
        if !dn_within(&entry.dn, &selection.base_dn) {
            continue;
        }
        if entry.has_object_class(&selection.user_object_class) && !user_failed {
            match selection.user_filter.as_ref().map(|f| f.matches(&entry)) {
                None | Some(Ok(true)) => {
                    read.users.push(entry);
                    continue;
                }
                Some(Ok(false)) => {}
                Some(Err(e)) => {
                    user_failed = true;
                    read.complete = false;
                    read.users.clear();
                    read.notes.push(format!("user filter: {e}"));
                }
            }
        }
        if entry.has_object_class(&selection.group_object_class) && !group_failed {
            match selection.group_filter.as_ref().map(|f| f.matches(&entry)) {
                None | Some(Ok(true)) => read.groups.push(entry),
                Some(Ok(false)) => {}
                Some(Err(e)) => {
                    group_failed = true;
                    read.complete = false;
                    read.groups.clear();
                    read.notes.push(format!("group filter: {e}"));
                }
            }
        }
    }
    read
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use dirsync_ldap_filter as ldap_filter;

    const SAMPLE: &str = "version: 1\n\
# a comment\n\
dn: dc=example,dc=jp\n\
objectClass: domain\n\
dc: example\n\
\n\
dn: uid=taro,ou=People,dc=example,dc=jp\n\
objectClass: inetOrgPerson\n\
uid: taro\n\
cn: IIJ\n  Taro\n\
description:: 5aSq6YOO\n\
entryUUID: 0b7e1f9a-1111-2222-3333-444455556666\n\
mail: taro@example.jp\n\
\n\
\n\
dn: cn=staff,ou=Groups,dc=example,dc=jp\n\
objectClass: groupOfNames\n\
cn: staff\n\
member: uid=taro,ou=People,dc=example,dc=jp\n";

    #[test]
    fn parses_records_folding_base64_comments() {
        let entries = parse(SAMPLE, "sample.ldif").unwrap();
        assert_eq!(entries.len(), 3);
        let taro = &entries[1];
        assert_eq!(taro.dn, "uid=taro,ou=People,dc=example,dc=jp");
        assert_eq!(taro.first_str("cn"), Some("IIJ Taro"));
        assert_eq!(taro.first_str("description"), Some("太郎"));
        assert_eq!(entries[2].strs("member").len(), 1);
    }

    #[test]
    fn errors_name_lines() {
        let cases = [
            ("dn: a=b\nphoto:< file:///etc/passwd\n", 2, "URL values"),
            ("cn: x\n", 1, "must start with 'dn:'"),
            ("dn: a=b\nchangetype: add\n", 2, "change records"),
            ("dn: a=b\ncn:: !!!\n", 2, "base64"),
            ("dn: a=b\njunk\n", 2, "expected 'attribute: value'"),
            (" folded\n", 1, "continuation"),
            ("dn: a=b\ncn: x\ndn: c=d\n", 3, "second 'dn:'"),
        ];
        for (text, line, msg) in cases {
            let e = parse(text, "f.ldif").unwrap_err();
            assert_eq!(e.line, line, "{text:?}: {e}");
            assert!(e.message.contains(msg), "{text:?}: {e}");
            assert!(e.to_string().starts_with(&format!("f.ldif:{line}: ")));
        }
    }

    /// Found by the `ldif` fuzz target: `;option: value` was read as an attribute with an
    /// empty name, which no LDIF written back out could carry.
    #[test]
    fn regression_fuzz_an_attribute_needs_a_name_before_its_options() {
        let e = parse("dn: cn=a,)c=x\n;hingetype:n=a,dc=x\ncn: a\n", "f.ldif").unwrap_err();
        assert_eq!(e.line, 2, "{e}");
        assert!(e.message.contains("invalid attribute name"), "{e}");
        let ok = parse("dn: cn=a,dc=x\ncn;lang-ja: a\n", "f.ldif").unwrap();
        assert_eq!(ok[0].first_str("cn"), Some("a"));
    }

    fn selection(user_filter: Option<&str>, group_filter: Option<&str>) -> Selection {
        Selection {
            base_dn: "dc=example,dc=jp".into(),
            user_object_class: "inetOrgPerson".into(),
            user_filter: user_filter.map(|f| ldap_filter::parse(f).unwrap()),
            group_object_class: "groupOfNames".into(),
            group_filter: group_filter.map(|f| ldap_filter::parse(f).unwrap()),
        }
    }

    #[test]
    fn selects_users_and_groups() {
        let entries = parse(SAMPLE, "s").unwrap();
        let read = select(entries.clone(), &selection(None, None));
        assert!(read.complete);
        assert_eq!((read.users.len(), read.groups.len()), (1, 1));

        let read = select(
            entries.clone(),
            &selection(Some("uid=jiro"), Some("!(cn=*)")),
        );
        assert_eq!((read.users.len(), read.groups.len()), (0, 0));
        assert!(read.complete);

        let read = select(
            entries,
            &selection(Some("memberOf:1.2.840.113556.1.4.1941:=cn=x"), None),
        );
        assert!(!read.complete);
        assert!(read.users.is_empty());
        assert!(read.notes[0].contains("extensible"));
    }
}
