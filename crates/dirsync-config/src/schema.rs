//! The JSON Schema of `config.yml` (`dirsync config schema`), generated with `schemars` from
//! the same types the loader reads.
//!
//! The structs derive `JsonSchema`; their `deny_unknown_fields` becomes
//! `additionalProperties: false`. The value types that deserialise by hand (durations, ratios,
//! URLs, filters, attribute lists, …) and the sections checked as a whole (`try_from`) get a
//! matching schema here: the syntax a schema can say (a pattern, a range, one name or a list),
//! with the rest in the description. The schema is a first check for editors and CI; the
//! loader stays the judge (a filter's syntax, the issuer rule, a bind password). secret.yml
//! is not described: it holds secrets and has a schema of its own in no file.

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};

use crate::notify::{MailAddress, Recipients};
use crate::values::{
    AttrList, Bounded, ByteSize, DurationText, HttpUrl, KdcAddress, KerberosPrincipal,
    LdapFilterText, OneOrMany, PollInterval, Ratio, RubyRegex, RubyReplacement, Schedule,
    ScimFilterText, TimeoutSecs,
};
use crate::{
    AuthConfig, ConfigFile, ConvertRule, ConvertTarget, LdapAuth, RawAuth, RawLdapAuth,
    RawUserAttributes, UserAttributes,
};

/// The JSON Schema (draft 2020-12) of `config.yml`.
pub fn config_schema() -> Schema {
    let mut schema = schemars::schema_for!(ConfigFile);
    schema.insert("title".into(), "dirsync config.yml".into());
    schema.insert(
        "description".into(),
        "The configuration of the dirsync agent (docs/behaviour.md §2). Secrets live in \
         secret.yml, which this schema does not describe."
            .into(),
    );
    schema
}

/// A string schema with a description and, where the syntax allows one, a pattern.
fn text(description: &str, pattern: Option<&str>) -> Schema {
    match pattern {
        Some(p) => json_schema!({"type": "string", "description": description, "pattern": p}),
        None => json_schema!({"type": "string", "description": description}),
    }
}

/// A duration in the configuration's grammar: numbers each followed by a unit s, m, h, d, w.
const DURATION: &str = r"^\s*([0-9]+[smhdw])+\s*$";

macro_rules! string_schema {
    ($ty:ty, $name:literal, $description:literal, $pattern:expr) => {
        impl JsonSchema for $ty {
            fn schema_name() -> Cow<'static, str> {
                $name.into()
            }
            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                text($description, $pattern)
            }
        }
    };
}

string_schema!(
    LdapFilterText,
    "LdapFilter",
    "An LDAP filter (RFC 4515), with or without outer parentheses.",
    None
);
string_schema!(
    ScimFilterText,
    "ScimFilter",
    "A SCIM filter (RFC 7644 §3.4.2.2), e.g. `externalId pr`.",
    None
);
string_schema!(
    RubyRegex,
    "RubyRegex",
    "A regular expression in Ruby's syntax (`\\A`, `\\z`, `\\Z`, `\\h`, `^`/`$` per line).",
    None
);
string_schema!(
    RubyReplacement,
    "RubyReplacement",
    "A replacement in Ruby's gsub syntax (`\\1`, `\\0`, `\\&`, `\\k<name>`).",
    None
);
string_schema!(
    KerberosPrincipal,
    "KerberosPrincipal",
    "A Kerberos principal `name@REALM`, e.g. `sync@EXAMPLE.JP`.",
    Some(r#"^[^@\s"'{}\\]+@[A-Za-z0-9._-]+$"#)
);
string_schema!(
    KdcAddress,
    "KdcAddress",
    "A KDC: `host`, `host:port` or `[IPv6]:port`, e.g. `dc1.example.jp` or `192.0.2.10:88`.",
    Some(r"^([A-Za-z0-9._-]+|\[[0-9A-Fa-f:]+\])(:[0-9]{1,5})?$")
);
string_schema!(
    DurationText,
    "Duration",
    "A duration: numbers with a unit s, m, h, d or w (e.g. `30d`, `1h30m`); a unit is required.",
    Some(DURATION)
);
string_schema!(
    Schedule,
    "Schedule",
    "When `dirsync run` starts a run: an interval of at least 1s (e.g. `15m`) or a five-field \
     cron expression in local time (e.g. `*/15 * * * *`, `@hourly`).",
    None
);
string_schema!(
    PollInterval,
    "PollInterval",
    "A duration of at least 1s: numbers with a unit s, m, h, d or w (e.g. `5s`).",
    Some(DURATION)
);
string_schema!(
    MailAddress,
    "MailAddress",
    "A mail address: `local@domain` or `Display Name <local@domain>`.",
    Some(r"@")
);
string_schema!(
    HttpUrl,
    "HttpUrl",
    "An http:// or https:// URL.",
    Some(r"^\s*https?://[^/\s]\S*\s*$")
);

impl JsonSchema for TimeoutSecs {
    fn schema_name() -> Cow<'static, str> {
        "TimeoutSecs".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "integer",
            "minimum": 1,
            "maximum": 36000,
            "description": "Seconds, 1..36000 (default 3600)."
        })
    }
}

impl JsonSchema for Ratio {
    fn schema_name() -> Cow<'static, str> {
        "Ratio".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "number",
            "minimum": 0,
            "maximum": 1,
            "description": "A fraction between 0 and 1 (0.10 = 10%)."
        })
    }
}

impl<const MAX: u32> JsonSchema for Bounded<MAX> {
    fn schema_name() -> Cow<'static, str> {
        format!("Count1To{MAX}").into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "integer",
            "minimum": 1,
            "maximum": MAX,
            "description": format!("A count, 1..{MAX}.")
        })
    }
}

impl JsonSchema for AttrList {
    fn schema_name() -> Cow<'static, str> {
        "AttrList".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        let name = json_schema!({"type": "string", "pattern": "^[A-Za-z0-9.;-]+$"});
        json_schema!({
            "description": "A directory attribute name or a list of names (the first with a \
                            value wins; an empty list binds nothing).",
            "anyOf": [name, {"type": "array", "items": name}]
        })
    }
}

impl<T: JsonSchema> JsonSchema for OneOrMany<T> {
    fn schema_name() -> Cow<'static, str> {
        format!("OneOrMany_{}", T::schema_name()).into()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let one = generator.subschema_for::<T>();
        json_schema!({
            "description": "One mapping or a list of mappings.",
            "anyOf": [one, {"type": "array", "items": one}]
        })
    }
}

/// `iid.scim.attribute.user.convert`: rewrite rules under the name of each convertible SCIM
/// attribute, and no other key.
pub(crate) fn convert_rules(generator: &mut SchemaGenerator) -> Schema {
    let rules = generator.subschema_for::<Vec<ConvertRule>>();
    let properties: serde_json::Map<String, serde_json::Value> = ConvertTarget::ALL
        .iter()
        .map(|(_, name)| ((*name).to_string(), serde_json::Value::from(rules.clone())))
        .collect();
    json_schema!({
        "type": "object",
        "properties": properties,
        "additionalProperties": false
    })
}

/// The sections read through a raw form and checked as a whole (`#[serde(try_from)]`) have
/// the raw form's schema.
macro_rules! raw_schema {
    ($ty:ty, $raw:ty, $name:literal) => {
        impl JsonSchema for $ty {
            fn schema_name() -> Cow<'static, str> {
                $name.into()
            }
            fn json_schema(generator: &mut SchemaGenerator) -> Schema {
                <$raw>::json_schema(generator)
            }
        }
    };
}

raw_schema!(LdapAuth, RawLdapAuth, "LdapAuth");
raw_schema!(AuthConfig, RawAuth, "AuthConfig");
raw_schema!(UserAttributes, RawUserAttributes, "UserAttributes");

impl JsonSchema for ByteSize {
    fn schema_name() -> Cow<'static, str> {
        "ByteSize".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A size: a number of bytes, or a number with a unit B, KiB, MiB, \
                            GiB, kB, MB or GB (e.g. `10MiB`); at least 1KiB.",
            "anyOf": [
                {"type": "integer", "minimum": 1024},
                {"type": "string", "pattern": r"^\s*[0-9]+\s*(B|KiB|MiB|GiB|kB|KB|MB|GB)?\s*$"}
            ]
        })
    }
}

impl JsonSchema for Recipients {
    fn schema_name() -> Cow<'static, str> {
        "Recipients".into()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let one = generator.subschema_for::<MailAddress>();
        json_schema!({
            "description": "One mail address or a non-empty list of them.",
            "anyOf": [one, {"type": "array", "items": one, "minItems": 1}]
        })
    }
}
