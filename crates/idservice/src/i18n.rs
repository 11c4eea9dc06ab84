//! The languages of the pages and the emails: English and Japanese.
//!
//! Texts live in Fluent files, `crates/idservice/locales/LANG/*.ftl`, compiled in; a text
//! missing in Japanese falls back to English (a test keeps the two sets of keys equal). A page
//! is in the language the viewer chose with the switch on the page (`?lang=`, remembered in
//! the `idservice_lang` cookie), else the first of `Accept-Language` that the service speaks,
//! else the configured `default_language`. An email is in the recipient's `preferredLanguage`,
//! else `locale`, else the configured default.
//!
//! Callers hand it header values and attribute values; it reads neither requests nor the
//! database itself.

use std::borrow::Cow;
use std::collections::HashMap;

use fluent_templates::fluent_bundle::FluentValue;
use fluent_templates::{LanguageIdentifier, Loader, langid};
use serde::Deserialize;

fluent_templates::static_loader! {
    static LOCALES = {
        locales: "./locales",
        fallback_language: "en",
        // no Unicode isolation marks around arguments: the texts go into HTML and plain-text mail
        customise: |bundle| bundle.set_use_isolating(false),
    };
}

static EN: LanguageIdentifier = langid!("en");
static JA: LanguageIdentifier = langid!("ja");

/// A language the service speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    #[default]
    En,
    Ja,
}

impl Lang {
    pub const ALL: [Lang; 2] = [Lang::En, Lang::Ja];

    /// The language tag (`en`, `ja`), as in `<html lang>`, `?lang=` and the cookie.
    pub fn tag(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Ja => "ja",
        }
    }

    /// The language's own name, for the switch ("English", "日本語").
    pub fn own_name(self) -> &'static str {
        match self {
            Lang::En => "English",
            Lang::Ja => "日本語",
        }
    }

    fn id(self) -> &'static LanguageIdentifier {
        match self {
            Lang::En => &EN,
            Lang::Ja => &JA,
        }
    }

    /// The language a tag names by its primary subtag, ignoring case and region:
    /// `ja`, `ja-JP`, `ja_JP` (a SCIM `locale`) → Japanese.
    pub fn from_tag(tag: &str) -> Option<Lang> {
        let primary = tag.trim().split(['-', '_']).next()?;
        Lang::ALL
            .into_iter()
            .find(|l| l.tag().eq_ignore_ascii_case(primary))
    }

    /// The first language of an `Accept-Language` header (by its q-values) that the service
    /// speaks.
    pub fn from_accept_language(header: &str) -> Option<Lang> {
        accept_language::parse(header)
            .iter()
            .find_map(|tag| Lang::from_tag(tag))
    }

    /// The language of an email to a user with this stored SCIM resource: `preferredLanguage`,
    /// else `locale`, else `default`.
    pub fn of_user(resource: &serde_json::Value, default: Lang) -> Lang {
        ["preferredLanguage", "locale"]
            .iter()
            .filter_map(|a| resource.get(*a).and_then(serde_json::Value::as_str))
            .find_map(Lang::from_tag)
            .unwrap_or(default)
    }

    /// The text `key` in this language.
    pub fn t(self, key: &str) -> String {
        LOCALES.lookup(self.id(), key)
    }

    /// The text `key` with its `{ $name }` arguments filled in.
    pub fn ta(self, key: &str, args: &[(&'static str, Arg<'_>)]) -> String {
        let map: HashMap<Cow<'static, str>, FluentValue<'_>> = args
            .iter()
            .map(|(k, v)| {
                let value = match v {
                    Arg::Str(s) => FluentValue::from(*s),
                    Arg::Num(n) => FluentValue::from(*n),
                };
                (Cow::Borrowed(*k), value)
            })
            .collect();
        LOCALES.lookup_with_args(self.id(), key, &map)
    }
}

/// An argument of a text: words, or a number (which selects plural forms).
#[derive(Debug, Clone, Copy)]
pub enum Arg<'a> {
    Str(&'a str),
    Num(i64),
}

impl<'a> From<&'a str> for Arg<'a> {
    fn from(s: &'a str) -> Self {
        Arg::Str(s)
    }
}

impl<'a> From<&'a String> for Arg<'a> {
    fn from(s: &'a String) -> Self {
        Arg::Str(s)
    }
}

impl From<i64> for Arg<'_> {
    fn from(n: i64) -> Self {
        Arg::Num(n)
    }
}

impl From<usize> for Arg<'_> {
    fn from(n: usize) -> Self {
        Arg::Num(i64::try_from(n).unwrap_or(i64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_and_headers() {
        assert_eq!(Lang::from_tag("ja_JP"), Some(Lang::Ja));
        assert_eq!(Lang::from_tag("JA-jp"), Some(Lang::Ja));
        assert_eq!(Lang::from_tag("en-GB"), Some(Lang::En));
        assert_eq!(Lang::from_tag("fr"), None);
        assert_eq!(Lang::from_tag(""), None);
        assert_eq!(
            Lang::from_accept_language("fr-CH, fr;q=0.9, ja;q=0.8, en;q=0.7"),
            Some(Lang::Ja)
        );
        assert_eq!(
            Lang::from_accept_language("en;q=0.5, ja-JP"),
            Some(Lang::Ja)
        );
        assert_eq!(Lang::from_accept_language("de, fr"), None);
        assert_eq!(Lang::from_accept_language(""), None);
    }

    #[test]
    fn a_user_language_comes_from_preferred_language_then_locale() {
        let both = serde_json::json!({"preferredLanguage": "ja", "locale": "en-US"});
        assert_eq!(Lang::of_user(&both, Lang::En), Lang::Ja);
        let locale = serde_json::json!({"preferredLanguage": "fr", "locale": "ja_JP"});
        assert_eq!(Lang::of_user(&locale, Lang::En), Lang::Ja);
        let none = serde_json::json!({"userName": "x"});
        assert_eq!(Lang::of_user(&none, Lang::Ja), Lang::Ja);
    }

    /// Every text exists in both languages, and every file parses.
    #[test]
    fn both_languages_have_the_same_texts() {
        let keys = |lang: &str| -> std::collections::BTreeSet<String> {
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("locales")
                .join(lang);
            let mut keys = std::collections::BTreeSet::new();
            let mut files: Vec<_> = std::fs::read_dir(&dir)
                .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
                .unwrap_or_default();
            files.sort();
            assert!(!files.is_empty(), "no files in {}", dir.display());
            for f in files {
                let text = std::fs::read_to_string(&f).unwrap_or_default();
                let res = fluent_templates::fluent_bundle::FluentResource::try_new(text)
                    .unwrap_or_else(|(_, errors)| {
                        panic!("{} does not parse: {errors:?}", f.display())
                    });
                for entry in res.entries() {
                    if let fluent_syntax::ast::Entry::Message(m) = entry {
                        keys.insert(m.id.name.to_string());
                    }
                }
            }
            keys
        };
        let (en, ja) = (keys("en"), keys("ja"));
        let only_en: Vec<_> = en.difference(&ja).collect();
        let only_ja: Vec<_> = ja.difference(&en).collect();
        assert!(
            only_en.is_empty() && only_ja.is_empty(),
            "only in English: {only_en:?}; only in Japanese: {only_ja:?}"
        );
    }

    #[test]
    fn texts_with_arguments_and_plurals() {
        assert_eq!(
            Lang::En.ta("web-signed-in-as", &[("name", "alice".into())]),
            "Signed in as alice."
        );
        assert!(Lang::Ja.t("web-signin-title").contains("サインイン"));
        assert_eq!(
            Lang::Ja.t("no-such-text-anywhere"),
            "Unknown localization key: \"no-such-text-anywhere\""
        );
    }
}
