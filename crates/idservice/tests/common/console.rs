//! A browser-like client of the console (`/admin/`) for the tests: no redirects followed,
//! cookies kept by hand, form tokens read from the pages.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use reqwest::StatusCode;

/// A browser-like client of the console: no redirects followed, cookies kept by hand.
pub struct Console {
    pub http: reqwest::Client,
    pub root: String,
    pub cookie: Option<String>,
}

/// A page: status, body, Location.
pub struct Page {
    pub status: StatusCode,
    pub body: String,
    pub location: Option<String>,
    pub set_cookies: Vec<String>,
}

impl Page {
    /// The value of the first `name="csrf_token"` field.
    pub fn csrf(&self) -> String {
        hidden(&self.body, "csrf_token").unwrap_or_else(|| panic!("no csrf_token in {}", self.body))
    }
}

pub fn hidden(body: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = body.find(&marker)? + marker.len();
    let end = body[start..].find('"')?;
    Some(body[start..start + end].to_string())
}

/// The `name=value` of cookie `name` among Set-Cookie values, with its attributes.
pub fn set_cookie<'a>(set: &'a [String], name: &str) -> Option<&'a str> {
    set.iter()
        .map(String::as_str)
        .find(|c| c.starts_with(&format!("{name}=")))
}

pub fn cookie_value(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().to_string()
}

impl Console {
    pub fn new(root: &str) -> Console {
        Console {
            http: reqwest::Client::builder()
                .no_proxy()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            root: root.trim_end_matches('/').to_string(),
            cookie: None,
        }
    }

    pub async fn request(&self, rb: reqwest::RequestBuilder, cookie: Option<&str>) -> Page {
        let rb = match cookie.or(self.cookie.as_deref()) {
            Some(c) => rb.header("cookie", c),
            None => rb,
        };
        let resp = rb.send().await.unwrap();
        let status = resp.status();
        let location = resp
            .headers()
            .get("location")
            .map(|v| v.to_str().unwrap().to_string());
        let set_cookies = resp
            .headers()
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect();
        Page {
            status,
            body: resp.text().await.unwrap(),
            location,
            set_cookies,
        }
    }

    pub async fn get(&self, path: &str) -> Page {
        self.request(self.http.get(format!("{}{path}", self.root)), None)
            .await
    }

    pub async fn post(&self, path: &str, form: &[(&str, &str)]) -> Page {
        self.request(
            self.http.post(format!("{}{path}", self.root)).form(form),
            None,
        )
        .await
    }

    /// Signs in; on success keeps the session cookie. Returns the answer to the POST.
    pub async fn signin(&mut self, name: &str, password: &str) -> Page {
        let form = self.get("/admin/signin").await;
        assert_eq!(form.status, 200, "{}", form.body);
        let csrf_cookie = cookie_value(
            set_cookie(&form.set_cookies, "idservice_admin_csrf").expect("sign-in csrf cookie"),
        );
        let token = form.csrf();
        let resp = self
            .request(
                self.http
                    .post(format!("{}/admin/signin", self.root))
                    .form(&[
                        ("username", name),
                        ("password", password),
                        ("csrf_token", &token),
                    ]),
                Some(&csrf_cookie),
            )
            .await;
        if let Some(c) = set_cookie(&resp.set_cookies, "idservice_admin") {
            self.cookie = Some(cookie_value(c));
        }
        resp
    }

    /// The form token of a signed-in page.
    pub async fn token(&self) -> String {
        self.get("/admin/users").await.csrf()
    }
}

/// The userNames a list page links to.
pub fn listed_users(body: &str) -> Vec<String> {
    body.match_indices("<a href=\"/admin/users/")
        .filter_map(|(i, _)| {
            let rest = &body[i..];
            let start = rest.find('>')? + 1;
            let end = rest.find("</a>")?;
            Some(rest[start..end].to_string())
        })
        .collect()
}

/// The `href` of the first link with `attr`.
pub fn hidden_link(body: &str, attr: &str) -> Option<String> {
    let at = body.find(attr)?;
    let start = body[..at].rfind("href=\"")? + 6;
    let end = body[start..].find('"')?;
    Some(body[start..start + end].to_string())
}
