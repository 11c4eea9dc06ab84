//! The HTML of the end-user pages (maud: every value is escaped by the template): plain forms,
//! no script, in the viewer's language. Pure rendering: nothing here reads the database.

use maud::{DOCTYPE, Markup, html};

use crate::i18n::Lang;

/// What every page needs: the service's name (in the title and the heading), the viewer's
/// language, and the page's own address (path and query), which the language switch links
/// back to.
#[derive(Debug, Clone, Copy)]
pub struct Ctx<'a> {
    pub service: &'a str,
    pub lang: Lang,
    pub uri: &'a str,
}

impl Ctx<'_> {
    pub fn t(&self, key: &str) -> String {
        self.lang.t(key)
    }
}

const CSS: &str = "body{font-family:sans-serif;max-width:28em;margin:3em auto;padding:0 1em}\
label{display:block;margin:.8em 0 .2em}input{width:100%;padding:.4em}\
button{margin-top:1em;padding:.5em 1.2em}.msg{padding:.6em;border:1px solid #999}\
header{display:flex;flex-wrap:wrap;justify-content:space-between;align-items:baseline}\
header h1{font-size:1.3em;margin:0}nav.lang a{margin-left:.6em}";

/// `uri` with its `lang` query parameter set to `lang` (other parameters, such as a reset
/// page's token, kept).
pub fn switch_href(uri: &str, lang: Lang) -> String {
    let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
    let mut parts: Vec<&str> = query
        .split('&')
        .filter(|p| !p.is_empty() && !p.starts_with("lang="))
        .collect();
    let tag = format!("lang={}", lang.tag());
    parts.push(&tag);
    format!("{path}?{}", parts.join("&"))
}

/// The links to the other languages.
pub fn language_switch(lang: Lang, uri: &str) -> Markup {
    html! {
        nav.lang aria-label=(lang.t("lang-switch-label")) {
            @for other in Lang::ALL.into_iter().filter(|l| *l != lang) {
                a href=(switch_href(uri, other)) lang=(other.tag()) hreflang=(other.tag()) {
                    (other.own_name())
                }
            }
        }
    }
}

fn layout(cx: &Ctx<'_>, title: &str, body: Markup) -> String {
    html! {
        (DOCTYPE)
        html lang=(cx.lang.tag()) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " – " (cx.service) }
                style { (maud::PreEscaped(CSS)) }
            }
            body {
                header {
                    h1 { (cx.service) }
                    (language_switch(cx.lang, cx.uri))
                }
                main {
                    h2 { (title) }
                    (body)
                }
            }
        }
    }
    .into_string()
}

fn message(msg: Option<&str>) -> Markup {
    html! { @if let Some(m) = msg { p.msg role="alert" { (m) } } }
}

pub fn signin(cx: &Ctx<'_>, msg: Option<&str>, username: &str) -> String {
    let body = html! {
        (message(msg))
        form method="post" action="/signin" {
            label for="username" { (cx.t("web-user-name")) }
            input #username name="username" autocomplete="username" value=(username) required;
            label for="password" { (cx.t("web-password")) }
            input #password name="password" type="password" autocomplete="current-password" required;
            button type="submit" { (cx.t("web-signin-button")) }
        }
        p { a href="/forgot" { (cx.t("web-forgot-link")) } " " (cx.t("web-forgot-first")) }
    };
    layout(cx, &cx.t("web-signin-title"), body)
}

pub fn account(cx: &Ctx<'_>, user_name: &str) -> String {
    let body = html! {
        p { (cx.lang.ta("web-signed-in-as", &[("name", user_name.into())])) }
        form method="post" action="/signout" {
            button type="submit" { (cx.t("web-signout-button")) }
        }
    };
    layout(cx, &cx.t("web-account-title"), body)
}

pub fn forgot(cx: &Ctx<'_>, msg: Option<&str>) -> String {
    let body = html! {
        (message(msg))
        @if msg.is_some() {
            p { a href="/signin" { (cx.t("web-back-to-signin")) } }
        } @else {
            form method="post" action="/forgot" {
                p { (cx.t("web-forgot-explain")) }
                label for="username" { (cx.t("web-user-name")) }
                input #username name="username" autocomplete="username" required;
                button type="submit" { (cx.t("web-send-link-button")) }
            }
        }
    };
    layout(cx, &cx.t("web-forgot-title"), body)
}

pub fn reset(cx: &Ctx<'_>, msg: Option<&str>, token: &str, min_length: usize) -> String {
    let body = html! {
        (message(msg))
        form method="post" action="/reset" {
            input type="hidden" name="token" value=(token);
            label for="password" {
                (cx.lang.ta("web-new-password", &[("min", min_length.into())]))
            }
            input #password name="password" type="password" autocomplete="new-password" required;
            label for="confirm" { (cx.t("web-repeat-password")) }
            input #confirm name="confirm" type="password" autocomplete="new-password" required;
            button type="submit" { (cx.t("web-set-password-button")) }
        }
    };
    layout(cx, &cx.t("web-reset-title"), body)
}

/// A message page with the ways on: sign in, or ask for a reset link. `title` and `msg` are
/// already in the viewer's language.
pub fn notice(cx: &Ctx<'_>, title: &str, msg: &str) -> String {
    let body = html! {
        (message(Some(msg)))
        p {
            a href="/signin" { (cx.t("web-signin-link")) }
            " · "
            a href="/forgot" { (cx.t("web-forgot-link")) }
        }
    };
    layout(cx, title, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_switch_keeps_the_other_parameters() {
        assert_eq!(switch_href("/signin", Lang::Ja), "/signin?lang=ja");
        assert_eq!(
            switch_href("/reset?token=abc&lang=en", Lang::Ja),
            "/reset?token=abc&lang=ja"
        );
    }

    #[test]
    fn pages_name_the_service_and_speak_the_language() {
        let cx = Ctx {
            service: "Acme <ID>",
            lang: Lang::Ja,
            uri: "/signin",
        };
        let page = signin(&cx, None, "o'brien\"");
        assert!(page.contains("<html lang=\"ja\">"));
        assert!(page.contains("<h1>Acme &lt;ID&gt;</h1>"), "{page}");
        assert!(
            page.contains("<title>サインイン – Acme &lt;ID&gt;</title>"),
            "{page}"
        );
        assert!(page.contains("value=\"o'brien&quot;\""), "{page}");
        assert!(page.contains("href=\"/signin?lang=en\""), "{page}");
    }
}
