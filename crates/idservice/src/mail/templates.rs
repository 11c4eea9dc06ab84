//! Email templates: plain-text files, `Subject: …` on the first line, a blank line, then the
//! body. `{{name}}` placeholders are replaced; the service name prefix is added to the
//! subject by the caller. The built-in files (crates/idservice/templates/, English, and
//! templates/ja/, Japanese) are compiled in; a `templates_dir` may replace any of them by a
//! file of the same name: `DIR/NAME.txt` the English one, `DIR/ja/NAME.txt` the Japanese one.

use std::collections::HashMap;
use std::path::Path;

use super::{Error, Kind};
use crate::i18n::Lang;

fn builtin(lang: Lang, kind: Kind) -> &'static str {
    match (lang, kind) {
        (Lang::En, Kind::ResetRequested) => include_str!("../../templates/reset_requested.txt"),
        (Lang::En, Kind::PasswordReset) => include_str!("../../templates/password_reset.txt"),
        (Lang::En, Kind::PasswordExpired) => include_str!("../../templates/password_expired.txt"),
        (Lang::En, Kind::AccountLocked) => include_str!("../../templates/account_locked.txt"),
        (Lang::En, Kind::TokenExpiring) => include_str!("../../templates/token_expiring.txt"),
        (Lang::Ja, Kind::ResetRequested) => {
            include_str!("../../templates/ja/reset_requested.txt")
        }
        (Lang::Ja, Kind::PasswordReset) => include_str!("../../templates/ja/password_reset.txt"),
        (Lang::Ja, Kind::PasswordExpired) => {
            include_str!("../../templates/ja/password_expired.txt")
        }
        (Lang::Ja, Kind::AccountLocked) => include_str!("../../templates/ja/account_locked.txt"),
        (Lang::Ja, Kind::TokenExpiring) => include_str!("../../templates/ja/token_expiring.txt"),
    }
}

/// Where `DIR` keeps the replacement of a template: English at the top, other languages in a
/// folder named by their tag.
fn override_path(dir: &Path, lang: Lang, kind: Kind) -> std::path::PathBuf {
    let file = format!("{}.txt", kind.name());
    match lang {
        Lang::En => dir.join(file),
        other => dir.join(other.tag()).join(file),
    }
}

/// One parsed template.
#[derive(Debug, Clone)]
struct Template {
    subject: String,
    body: String,
}

fn parse(text: &str) -> Option<Template> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let (first, rest) = text.split_once('\n')?;
    let subject = first
        .trim_end_matches('\r')
        .strip_prefix("Subject:")?
        .trim();
    if subject.is_empty() {
        return None;
    }
    let body = rest
        .strip_prefix("\r\n")
        .or_else(|| rest.strip_prefix('\n'))
        .unwrap_or(rest);
    Some(Template {
        subject: subject.to_string(),
        body: body.to_string(),
    })
}

/// The templates in use.
#[derive(Debug, Clone)]
pub struct Templates {
    by_kind: HashMap<(Lang, &'static str), Template>,
}

impl Templates {
    /// The built-in templates, each replaced by its file in `DIR` when that file exists.
    pub fn load(dir: Option<&Path>) -> Result<Templates, Error> {
        let mut by_kind = HashMap::new();
        for (lang, kind) in Lang::ALL
            .into_iter()
            .flat_map(|l| Kind::ALL.into_iter().map(move |k| (l, k)))
        {
            let file = dir.map(|d| override_path(d, lang, kind));
            let (text, origin) = match &file {
                Some(f) if f.exists() => (
                    std::fs::read_to_string(f).map_err(|source| Error::TemplateRead {
                        path: f.clone(),
                        source,
                    })?,
                    f.display().to_string(),
                ),
                _ => (
                    builtin(lang, kind).to_string(),
                    format!("built-in {} ({})", kind.name(), lang.tag()),
                ),
            };
            let t = parse(&text).ok_or(Error::TemplateFormat { origin })?;
            by_kind.insert((lang, kind.name()), t);
        }
        Ok(Templates { by_kind })
    }

    /// (subject, body) of `kind` in `lang` with the placeholders replaced.
    pub fn render(&self, kind: Kind, lang: Lang, vars: &[(&str, &str)]) -> (String, String) {
        let Some(t) = self.by_kind.get(&(lang, kind.name())) else {
            return (kind.name().to_string(), String::new());
        };
        (fill(&t.subject, vars), fill(&t.body, vars))
    }
}

/// Replaces `{{name}}` by its value; unknown names are left as they are (a typo shows up in
/// the message instead of silently vanishing).
fn fill(text: &str, vars: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(text.len() + 64);
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find("}}") {
            Some(end) => {
                let name = after[..end].trim();
                match vars.iter().find(|(k, _)| *k == name) {
                    Some((_, v)) => out.push_str(v),
                    None => out.push_str(&rest[start..start + 2 + end + 2]),
                }
                rest = &after[end + 2..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_parse_and_fill() {
        let t = Templates::load(None).unwrap();
        let (s, b) = t.render(
            Kind::ResetRequested,
            Lang::En,
            &[
                ("user_name", "alice@x.test"),
                ("link", "http://h/reset?token=T"),
            ],
        );
        assert_eq!(s, "Password reset requested");
        assert!(b.contains("http://h/reset?token=T") && b.contains("alice@x.test"));
        assert_eq!(
            fill("a {{x}} {{ y }} {{z", &[("x", "1"), ("y", "2")]),
            "a 1 2 {{z"
        );
        assert_eq!(fill("{{unknown}}", &[]), "{{unknown}}");
    }

    /// Every built-in template exists in every language with the same placeholders.
    #[test]
    fn japanese_templates_use_the_english_placeholders() {
        let names = |text: &str| -> std::collections::BTreeSet<String> {
            text.split("{{")
                .skip(1)
                .filter_map(|p| p.split_once("}}").map(|(n, _)| n.trim().to_string()))
                .collect()
        };
        for kind in Kind::ALL {
            let en = names(builtin(Lang::En, kind));
            let ja = names(builtin(Lang::Ja, kind));
            assert_eq!(en, ja, "{}", kind.name());
            assert!(parse(builtin(Lang::Ja, kind)).is_some(), "{}", kind.name());
        }
    }

    #[test]
    fn override_dir_replaces_one_template_and_bad_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("account_locked.txt"),
            "Subject: Locked out\n\nBody {{user_name}}\n",
        )
        .unwrap();
        let t = Templates::load(Some(dir.path())).unwrap();
        let (s, b) = t.render(Kind::AccountLocked, Lang::En, &[("user_name", "u")]);
        assert_eq!((s.as_str(), b.as_str()), ("Locked out", "Body u\n"));
        assert_eq!(
            t.render(Kind::PasswordReset, Lang::En, &[]).0,
            "Password has been reset"
        );
        // the Japanese one is still the built-in until ja/account_locked.txt exists
        assert_eq!(
            t.render(Kind::AccountLocked, Lang::Ja, &[]).0,
            "アカウントがロックされました"
        );
        std::fs::create_dir(dir.path().join("ja")).unwrap();
        std::fs::write(
            dir.path().join("ja/account_locked.txt"),
            "Subject: ロック\n\n本文 {{user_name}}\n",
        )
        .unwrap();
        let t = Templates::load(Some(dir.path())).unwrap();
        let (s, b) = t.render(Kind::AccountLocked, Lang::Ja, &[("user_name", "u")]);
        assert_eq!((s.as_str(), b.as_str()), ("ロック", "本文 u\n"));
        std::fs::write(dir.path().join("token_expiring.txt"), "no subject\n").unwrap();
        let e = Templates::load(Some(dir.path())).unwrap_err().to_string();
        assert!(e.contains("token_expiring.txt"), "{e}");
    }
}
