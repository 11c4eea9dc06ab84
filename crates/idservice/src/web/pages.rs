//! The HTML of the pages: plain forms, no script. Every value put into the HTML goes through
//! [`esc`].

/// Escapes text for HTML element content and double-quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn layout(service: &str, title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{t} – {s}</title>\
         <style>body{{font-family:sans-serif;max-width:28em;margin:3em auto;padding:0 1em}}\
         label{{display:block;margin:.8em 0 .2em}}input{{width:100%;padding:.4em}}\
         button{{margin-top:1em;padding:.5em 1.2em}}.msg{{padding:.6em;border:1px solid #999}}</style>\
         </head><body><h1>{t}</h1>\n{body}\n</body></html>\n",
        t = esc(title),
        s = esc(service),
    )
}

fn message(msg: Option<&str>) -> String {
    msg.map(|m| format!("<p class=\"msg\" role=\"alert\">{}</p>", esc(m)))
        .unwrap_or_default()
}

pub fn signin(service: &str, msg: Option<&str>, username: &str) -> String {
    layout(
        service,
        "Sign in",
        &format!(
            "{m}<form method=\"post\" action=\"/signin\">\
             <label for=\"username\">User name</label>\
             <input id=\"username\" name=\"username\" autocomplete=\"username\" value=\"{u}\" required>\
             <label for=\"password\">Password</label>\
             <input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" required>\
             <button type=\"submit\">Sign in</button></form>\
             <p><a href=\"/forgot\">Forgot your password?</a> (also for a first password)</p>",
            m = message(msg),
            u = esc(username),
        ),
    )
}

pub fn account(service: &str, user_name: &str) -> String {
    layout(
        service,
        "Your account",
        &format!(
            "<p>Signed in as <strong>{}</strong>.</p>\
             <form method=\"post\" action=\"/signout\"><button type=\"submit\">Sign out</button></form>",
            esc(user_name)
        ),
    )
}

pub fn forgot(service: &str, msg: Option<&str>) -> String {
    let form = if msg.is_some() {
        "<p><a href=\"/signin\">Back to sign-in</a></p>".to_string()
    } else {
        "<form method=\"post\" action=\"/forgot\">\
         <p>Enter your user name. A link to set a new password will be sent to your email addresses.</p>\
         <label for=\"username\">User name</label>\
         <input id=\"username\" name=\"username\" autocomplete=\"username\" required>\
         <button type=\"submit\">Send link</button></form>"
            .to_string()
    };
    layout(
        service,
        "Forgot your password?",
        &format!("{}{form}", message(msg)),
    )
}

pub fn reset(service: &str, msg: Option<&str>, token: &str, min_length: usize) -> String {
    layout(
        service,
        "Set a new password",
        &format!(
            "{m}<form method=\"post\" action=\"/reset\">\
             <input type=\"hidden\" name=\"token\" value=\"{t}\">\
             <label for=\"password\">New password (at least {min_length} characters)</label>\
             <input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"new-password\" required>\
             <label for=\"confirm\">Repeat it</label>\
             <input id=\"confirm\" name=\"confirm\" type=\"password\" autocomplete=\"new-password\" required>\
             <button type=\"submit\">Set password</button></form>",
            m = message(msg),
            t = esc(token),
        ),
    )
}

pub fn notice(service: &str, title: &str, msg: &str) -> String {
    layout(
        service,
        title,
        &format!(
            "{}<p><a href=\"/signin\">Sign in</a> · <a href=\"/forgot\">Forgot your password?</a></p>",
            message(Some(msg))
        ),
    )
}
