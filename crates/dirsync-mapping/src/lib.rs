//! Directory entries → SCIM resources: `ad_bind` bindings (with flavor defaults when a
//! binding is absent), `default` constants, `convert` rewrites, and the value rules of
//! behaviour §2.1 (emails from proxyAddresses, account state, phone numbers, GUID/SID text).
//!
//! Pure: no I/O, and the clock is a parameter. It does not know the target, the state, or
//! what is already there; a bad value fails that one object ([`MappingError`]) and never the
//! run. Group membership is resolved to user anchors in [`members`]; which directory
//! attributes all this reads (what an LDAP read asks for) is [`source_attributes`].

mod attributes;
pub mod members;
pub mod values;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use dirsync_config::{
    AttrList, ConvertRule, ConvertTarget, GroupAttributes, MultiValueFlags, NameBindings,
    UserAttributes, ValueBinding,
};
use dirsync_model::entry::Entry;

pub use dirsync_model::kind::{DirectoryKind, FlavorDefaults};
pub use dirsync_model::mapped::{MappedGroup, MappedUser, MappingError};

pub use attributes::source_attributes;
pub use members::{MemberSpec, member_keys, resolve_members, resolve_members_by_key};

/// The user attribute mapping (`iid.scim.attribute.user`).
pub type UserMapping = UserAttributes;
/// The group attribute mapping (`iid.scim.attribute.group`).
pub type GroupMapping = GroupAttributes;

/// At most 1 primary + 4 other emails (behaviour §2.1, 7.1).
const MAX_EMAILS: usize = 5;
/// behaviour §7.1.
const MAX_PHONES: usize = 10;

/// The bindings that apply: what was written, else the flavor default.
struct Effective {
    external_id: AttrList,
    user_name: AttrList,
    name: Option<NameBindings>,
    active: AttrList,
    emails: Vec<ValueBinding>,
    emails_explicit: bool,
}

fn list(names: &[&str]) -> AttrList {
    AttrList(names.iter().map(|s| s.to_string()).collect())
}

fn effective(m: &UserMapping, kind: DirectoryKind) -> Effective {
    let b = &m.ad_bind;
    let (ext, un, active) = match kind {
        DirectoryKind::ActiveDirectory => (
            list(&["objectGUID"]),
            list(&["userPrincipalName"]),
            list(&["userAccountControl", "accountExpires"]),
        ),
        DirectoryKind::OpenLdap => (list(&["entryUUID"]), list(&["mail", "uid"]), list(&[])),
    };
    let default_name = NameBindings {
        family_name: Some(list(&["sn"])),
        given_name: Some(list(&["givenName"])),
        ..NameBindings::default()
    };
    Effective {
        external_id: b.external_id.clone().unwrap_or(ext),
        user_name: b.user_name.clone().unwrap_or(un),
        name: Some(b.name.clone().unwrap_or(default_name)),
        active: b.active.clone().unwrap_or(active),
        emails: b.emails.clone().map(|e| e.0).unwrap_or_else(|| {
            vec![ValueBinding {
                value: list(&["mail"]),
            }]
        }),
        emails_explicit: b.emails.is_some(),
    }
}

struct Ctx<'a> {
    entry: &'a Entry,
    mapping: &'a UserMapping,
    anchor: Option<String>,
    user_name: Option<String>,
    warnings: Vec<String>,
}

impl Ctx<'_> {
    fn error(&self, attribute: &str, message: impl Into<String>) -> MappingError {
        MappingError {
            dn: self.entry.dn.clone(),
            attribute: attribute.to_string(),
            message: message.into(),
            anchor: self.anchor.clone(),
            user_name: self.user_name.clone(),
        }
    }

    fn rules(&self, target: ConvertTarget) -> &[ConvertRule] {
        self.mapping
            .convert
            .iter()
            .find(|(t, _)| *t == target)
            .map(|(_, r)| r.as_slice())
            .unwrap_or(&[])
    }

    fn convert(&self, target: Option<ConvertTarget>, value: String) -> String {
        let Some(target) = target else {
            return value;
        };
        self.rules(target)
            .iter()
            .fold(value, |v, rule| rule.apply(&v))
    }

    /// The first non-empty value of the first attribute in the list that has one.
    fn first(
        &self,
        scim_attr: &str,
        attrs: &AttrList,
        target: Option<ConvertTarget>,
    ) -> Result<Option<String>, MappingError> {
        for name in &attrs.0 {
            for raw in self.entry.bytes(name) {
                let text =
                    values::render(name, raw).map_err(|e| self.error(scim_attr, e.to_string()))?;
                if !text.trim().is_empty() {
                    let converted = self.convert(target, text);
                    if !converted.is_empty() {
                        return Ok(Some(converted));
                    }
                }
            }
        }
        Ok(None)
    }

    /// All values of the first attribute in the list that has any.
    fn all(
        &self,
        scim_attr: &str,
        attrs: &AttrList,
    ) -> Result<(String, Vec<String>), MappingError> {
        for name in &attrs.0 {
            let mut out = Vec::new();
            for raw in self.entry.bytes(name) {
                let text =
                    values::render(name, raw).map_err(|e| self.error(scim_attr, e.to_string()))?;
                if !text.trim().is_empty() {
                    out.push(text.trim().to_string());
                }
            }
            if !out.is_empty() {
                return Ok((name.clone(), out));
            }
        }
        Ok((String::new(), Vec::new()))
    }
}

/// Maps one directory entry to a SCIM User.
pub fn map_user(
    entry: &Entry,
    mapping: &UserMapping,
    kind: DirectoryKind,
    now: DateTime<Utc>,
) -> Result<MappedUser, MappingError> {
    let eff = effective(mapping, kind);
    let mut ctx = Ctx {
        entry,
        mapping,
        anchor: None,
        user_name: None,
        warnings: Vec::new(),
    };
    let (anchor, user_name) = identity(&mut ctx, &eff)?;
    let active = !eff
        .active
        .0
        .iter()
        .any(|name| values::account_disabled(name, &entry.bytes(name), now) == Some(true));

    let mut core = Map::new();
    core.insert("externalId".into(), json!(anchor));
    core.insert("userName".into(), json!(user_name));
    core.insert("active".into(), json!(active));
    core_attributes(&mut ctx, &eff, &mut core)?;
    let enterprise = enterprise_attributes(&ctx)?;
    let iij = iij_attributes(&ctx)?;

    let mut schemas = vec![json!(scim::urn::USER)];
    if !enterprise.is_empty() {
        schemas.push(json!(scim::urn::ENTERPRISE_USER));
        core.insert(scim::urn::ENTERPRISE_USER.into(), Value::Object(enterprise));
    }
    if !iij.is_empty() {
        schemas.push(json!(scim::urn::IIJ_USER));
        core.insert(scim::urn::IIJ_USER.into(), Value::Object(iij));
    }
    core.insert("schemas".into(), Value::Array(schemas));

    Ok(MappedUser {
        dn: entry.dn.clone(),
        anchor,
        user_name,
        active,
        resource: dirsync_model::json_text::JsonText::new(&Value::Object(core)),
        warnings: ctx.warnings,
    })
}

/// externalId and userName: both required (the error names the attributes tried).
fn identity(ctx: &mut Ctx<'_>, eff: &Effective) -> Result<(String, String), MappingError> {
    let anchor = ctx
        .first(
            "externalId",
            &eff.external_id,
            Some(ConvertTarget::ExternalId),
        )?
        .ok_or_else(|| {
            ctx.error(
                "externalId",
                format!("no value in {}", eff.external_id.0.join(", ")),
            )
        })?;
    ctx.anchor = Some(anchor.clone());
    let user_name = ctx
        .first("userName", &eff.user_name, Some(ConvertTarget::UserName))?
        .ok_or_else(|| {
            ctx.error(
                "userName",
                format!("no value in {}", eff.user_name.0.join(", ")),
            )
        })?;
    ctx.user_name = Some(user_name.clone());
    Ok((anchor, user_name))
}

/// The core schema's single values, name, emails and phone numbers.
fn core_attributes(
    ctx: &mut Ctx<'_>,
    eff: &Effective,
    core: &mut Map<String, Value>,
) -> Result<(), MappingError> {
    let b = &ctx.mapping.ad_bind;
    let d = &ctx.mapping.default;
    let simple: [SimpleBinding<'_>; 7] = [
        (
            "displayName",
            &b.display_name,
            Some(ConvertTarget::DisplayName),
            &None,
        ),
        (
            "nickName",
            &b.nick_name,
            Some(ConvertTarget::NickName),
            &None,
        ),
        ("title", &b.title, Some(ConvertTarget::Title), &d.title),
        ("userType", &b.user_type, None, &d.user_type),
        (
            "preferredLanguage",
            &b.preferred_language,
            Some(ConvertTarget::PreferredLanguage),
            &d.preferred_language,
        ),
        ("locale", &b.locale, None, &d.locale),
        ("timezone", &b.timezone, None, &d.timezone),
    ];
    for (attr, binding, target, default) in simple {
        if let Some(v) = bound_or_default(ctx, attr, binding, target, default)? {
            core.insert(attr.into(), json!(v));
        }
    }
    if let Some(name) = &eff.name
        && let Some(obj) = name_object(ctx, "name", name)?
    {
        core.insert("name".into(), obj);
    }

    let emails = emails(ctx, eff)?;
    if !emails.is_empty() {
        core.insert("emails".into(), Value::Array(emails));
    }
    let phones = phones(ctx)?;
    if !phones.is_empty() {
        core.insert("phoneNumbers".into(), Value::Array(phones));
    }
    Ok(())
}

/// The enterprise extension's values.
fn enterprise_attributes(ctx: &Ctx<'_>) -> Result<Map<String, Value>, MappingError> {
    let b = &ctx.mapping.ad_bind;
    let d = &ctx.mapping.default;
    let mut enterprise = Map::new();
    let ent: [SimpleBinding<'_>; 5] = [
        (
            "employeeNumber",
            &b.employee_number,
            Some(ConvertTarget::EmployeeNumber),
            &None,
        ),
        ("costCenter", &b.cost_center, None, &None),
        (
            "organization",
            &b.organization,
            Some(ConvertTarget::Organization),
            &d.organization,
        ),
        (
            "division",
            &b.division,
            Some(ConvertTarget::Division),
            &None,
        ),
        (
            "department",
            &b.department,
            Some(ConvertTarget::Department),
            &d.department,
        ),
    ];
    for (attr, binding, target, default) in ent {
        if let Some(v) = bound_or_default(ctx, attr, binding, target, default)? {
            enterprise.insert(attr.into(), json!(v));
        }
    }

    Ok(enterprise)
}

/// The IIJ extension's values: downstreamId, externalUserName, localNames, idTokenClaims.
fn iij_attributes(ctx: &Ctx<'_>) -> Result<Map<String, Value>, MappingError> {
    let b = &ctx.mapping.ad_bind;
    let d = &ctx.mapping.default;
    let mut iij = Map::new();
    if let Some(v) = bound_or_default(
        ctx,
        "downstreamId",
        &b.downstream_id,
        Some(ConvertTarget::DownstreamId),
        &None,
    )? {
        iij.insert("downstreamId".into(), json!(v));
    }
    if let Some(v) = bound_or_default(
        ctx,
        "externalUserName",
        &b.external_user_name,
        Some(ConvertTarget::ExternalUserName),
        &d.external_user_name,
    )? {
        iij.insert("externalUserName".into(), json!(v));
    }
    if let Some(local) = &b.local_names
        && let Some(obj) = name_object(ctx, "localNames", local)?
    {
        iij.insert("localNames".into(), obj);
    }
    let mut claims = Map::new();
    if let Some(issuer) = d.id_token_claims.as_ref().and_then(|c| c.issuer.clone()) {
        claims.insert("issuer".into(), json!(issuer));
    }
    let subject_binding = b.id_token_claims.as_ref().and_then(|c| c.subject.clone());
    let subject_default = d.id_token_claims.as_ref().and_then(|c| c.subject.clone());
    if let Some(s) = bound_or_default(
        ctx,
        "idTokenClaims.subject",
        &subject_binding,
        None,
        &subject_default,
    )? {
        claims.insert("subject".into(), json!(s));
    }
    if !claims.is_empty() {
        iij.insert("idTokenClaims".into(), Value::Object(claims));
    }

    Ok(iij)
}

/// A single-valued attribute: SCIM name, binding, rewrite target, constant default.
type SimpleBinding<'a> = (
    &'static str,
    &'a Option<AttrList>,
    Option<ConvertTarget>,
    &'a Option<String>,
);

fn bound_or_default(
    ctx: &Ctx<'_>,
    attr: &str,
    binding: &Option<AttrList>,
    target: Option<ConvertTarget>,
    default: &Option<String>,
) -> Result<Option<String>, MappingError> {
    if let Some(b) = binding
        && let Some(v) = ctx.first(attr, b, target)?
    {
        return Ok(Some(v));
    }
    Ok(default.clone().map(|v| ctx.convert(target, v)))
}

fn name_object(ctx: &Ctx<'_>, attr: &str, n: &NameBindings) -> Result<Option<Value>, MappingError> {
    let mut obj = Map::new();
    let parts = [
        ("formatted", &n.formatted),
        ("familyName", &n.family_name),
        ("givenName", &n.given_name),
        ("middleName", &n.middle_name),
        ("honorificPrefix", &n.honorific_prefix),
        ("honorificSuffix", &n.honorific_suffix),
    ];
    for (sub, binding) in parts {
        if let Some(b) = binding
            && let Some(v) = ctx.first(&format!("{attr}.{sub}"), b, None)?
        {
            obj.insert(sub.into(), json!(v));
        }
    }
    Ok((!obj.is_empty()).then_some(Value::Object(obj)))
}

/// One address found for the emails, with its primary mark and type.
struct EmailCandidate {
    value: String,
    primary: bool,
    kind: Option<String>,
}

/// Emails (behaviour §2.1, A.3). Bindings are read in order; the i-th `default.emails` entry gives
/// the flags of the i-th binding. From `proxyAddresses` only `SMTP:`/`smtp:` entries are kept
/// and upper-case `SMTP:` marks the primary; for other attributes a `primary: true` flag marks
/// the binding's first value. The first primary wins. Values that are not addresses are
/// skipped with a warning; duplicates are removed case-insensitively (the first occurrence
/// stays, keeping a primary mark from any copy). The result is the primary followed by the
/// others in alphabetical order, at most 5 (extras dropped with a warning). No address left
/// is an error only when emails are bound explicitly in `ad_bind` (a user the administrator
/// said must have an address); with the flavor default (`mail`) the user simply has none.
fn emails(ctx: &mut Ctx<'_>, eff: &Effective) -> Result<Vec<Value>, MappingError> {
    let (candidates, saw_any) = email_candidates(ctx, eff)?;
    if candidates.is_empty() {
        return no_emails(ctx, eff, saw_any);
    }
    let (primary, others) = primary_and_others(ctx, candidates);
    let mut out = Vec::new();
    if let Some(p) = primary {
        out.push(render_email(p, true));
    }
    out.extend(others.into_iter().map(|c| render_email(c, false)));
    Ok(out)
}

/// The valid, de-duplicated addresses of every email binding in order, and whether any
/// value (valid or not) was read.
fn email_candidates(
    ctx: &mut Ctx<'_>,
    eff: &Effective,
) -> Result<(Vec<EmailCandidate>, bool), MappingError> {
    // default: no email flags configured means no primary/type marks.
    let flags: Vec<MultiValueFlags> = ctx.mapping.default.emails.clone().unwrap_or_default();
    let mut candidates: Vec<EmailCandidate> = Vec::new();
    let mut saw_any = false;
    for (i, binding) in eff.emails.iter().enumerate() {
        // default: an address beyond the configured flags has none.
        let flag = flags.get(i).cloned().unwrap_or_default();
        let (attr, vals) = ctx.all("emails", &binding.value)?;
        let proxy = attr.eq_ignore_ascii_case("proxyAddresses");
        let mut first_of_binding = true;
        for raw in vals {
            let Some((addr, primary)) = email_address(raw, proxy, &flag, first_of_binding) else {
                continue;
            };
            first_of_binding = false;
            saw_any = true;
            let addr = ctx.convert(Some(ConvertTarget::Emails), addr.trim().to_string());
            if !values::is_email(&addr) {
                ctx.warnings.push(format!(
                    "emails: skipped {addr:?} from {attr}: not an email address"
                ));
                continue;
            }
            add_email_candidate(&mut candidates, addr, primary, &flag);
        }
    }
    Ok((candidates, saw_any))
}

/// One raw value as an address and its primary mark: from `proxyAddresses` only
/// `SMTP:`/`smtp:` values (`None` otherwise), else the value itself.
fn email_address(
    raw: String,
    proxy: bool,
    flag: &MultiValueFlags,
    first_of_binding: bool,
) -> Option<(String, bool)> {
    if proxy {
        match raw.split_once(':') {
            Some(("SMTP", a)) => Some((a.to_string(), true)),
            Some((p, a)) if p.eq_ignore_ascii_case("smtp") => Some((a.to_string(), false)),
            // X500:, SIP:, x400: … are not email addresses.
            _ => None,
        }
    } else {
        Some((raw, flag.primary == Some(true) && first_of_binding))
    }
}

/// Adds an address unless a copy is listed (case-insensitively), which then keeps its mark.
fn add_email_candidate(
    candidates: &mut Vec<EmailCandidate>,
    addr: String,
    primary: bool,
    flag: &MultiValueFlags,
) {
    if let Some(existing) = candidates
        .iter_mut()
        .find(|c| c.value.eq_ignore_ascii_case(&addr))
    {
        existing.primary |= primary;
        return;
    }
    candidates.push(EmailCandidate {
        value: addr,
        primary,
        kind: flag.kind.clone(),
    });
}

/// No address left: an error when emails are bound explicitly, else no emails.
fn no_emails(ctx: &Ctx<'_>, eff: &Effective, saw_any: bool) -> Result<Vec<Value>, MappingError> {
    if eff.emails_explicit {
        let why = if saw_any {
            "no valid email address among the bound values"
        } else {
            "no email address in the bound attributes"
        };
        return Err(ctx.error("emails", why));
    }
    Ok(Vec::new())
}

/// The first primary, and the others sorted alphabetically and cut to what `MAX_EMAILS`
/// leaves room for (extras dropped with a warning).
fn primary_and_others(
    ctx: &mut Ctx<'_>,
    mut candidates: Vec<EmailCandidate>,
) -> (Option<EmailCandidate>, Vec<EmailCandidate>) {
    let primary_at = candidates.iter().position(|c| c.primary);
    let primary = primary_at.map(|i| candidates.remove(i));
    let mut others = candidates;
    others.sort_by_key(|c| c.value.to_lowercase());
    let room = MAX_EMAILS - usize::from(primary.is_some());
    if others.len() > room {
        let dropped: Vec<String> = others.drain(room..).map(|c| c.value).collect();
        ctx.warnings.push(format!(
            "emails: at most {MAX_EMAILS} addresses; dropped {}",
            dropped.join(", ")
        ));
    }
    (primary, others)
}

/// One email as a SCIM multi-valued attribute value.
fn render_email(c: EmailCandidate, primary: bool) -> Value {
    let mut o = Map::new();
    o.insert("value".into(), json!(c.value));
    if let Some(k) = c.kind {
        o.insert("type".into(), json!(k));
    }
    if primary {
        o.insert("primary".into(), json!(true));
    }
    Value::Object(o)
}

/// Phone numbers: every value of each binding, positional flags from
/// `default.phoneNumbers`, each normalised by [`values::phone_uri`]. A value that is not an
/// RFC 3966 global number fails the user (behaviour §2.1).
fn phones(ctx: &mut Ctx<'_>) -> Result<Vec<Value>, MappingError> {
    let Some(bindings) = ctx.mapping.ad_bind.phone_numbers.clone() else {
        return Ok(Vec::new());
    };
    let flags: Vec<MultiValueFlags> = ctx
        .mapping
        .default
        .phone_numbers
        .clone()
        .map(|f| f.0)
        // default: no phone flags configured means no primary/type marks.
        .unwrap_or_default();
    let mut out: Vec<Value> = Vec::new();
    for (i, binding) in bindings.0.iter().enumerate() {
        // default: a number beyond the configured flags has none.
        let flag = flags.get(i).cloned().unwrap_or_default();
        let (_, vals) = ctx.all("phoneNumbers", &binding.value)?;
        for (j, raw) in vals.into_iter().enumerate() {
            let raw = ctx.convert(Some(ConvertTarget::PhoneNumbers), raw);
            let uri =
                values::phone_uri(&raw).map_err(|e| ctx.error("phoneNumbers", e.to_string()))?;
            if out.iter().any(|p| p.get("value") == Some(&json!(uri))) {
                continue;
            }
            let mut o = Map::new();
            o.insert("value".into(), json!(uri));
            if let Some(k) = &flag.kind {
                o.insert("type".into(), json!(k));
            }
            if flag.primary == Some(true) && j == 0 {
                o.insert("primary".into(), json!(true));
            }
            out.push(Value::Object(o));
        }
    }
    if out.len() > MAX_PHONES {
        out.truncate(MAX_PHONES);
        ctx.warnings.push(format!(
            "phoneNumbers: at most {MAX_PHONES}; extras dropped"
        ));
    }
    Ok(out)
}

/// The user attributes this mapping manages, for `PlanInput::managed_user_attributes`:
/// what is bound (explicitly or by the flavor default) or given a constant. Extension
/// attributes are written `urn:…:attr`.
pub fn managed_user_attributes(m: &UserMapping, kind: DirectoryKind) -> Vec<String> {
    let eff = effective(m, kind);
    let b = &m.ad_bind;
    let d = &m.default;
    let mut out: Vec<String> = vec!["externalId".into(), "userName".into(), "active".into()];
    let mut add = |cond: bool, name: &str| {
        if cond {
            out.push(name.to_string());
        }
    };
    add(eff.name.is_some(), "name");
    add(!eff.emails.is_empty(), "emails");
    add(b.phone_numbers.is_some(), "phoneNumbers");
    add(b.display_name.is_some(), "displayName");
    add(b.nick_name.is_some(), "nickName");
    add(b.title.is_some() || d.title.is_some(), "title");
    add(b.user_type.is_some() || d.user_type.is_some(), "userType");
    add(
        b.preferred_language.is_some() || d.preferred_language.is_some(),
        "preferredLanguage",
    );
    add(b.locale.is_some() || d.locale.is_some(), "locale");
    add(b.timezone.is_some() || d.timezone.is_some(), "timezone");
    let ent = scim::urn::ENTERPRISE_USER;
    let iij = scim::urn::IIJ_USER;
    add(
        b.employee_number.is_some(),
        &format!("{ent}:employeeNumber"),
    );
    add(b.cost_center.is_some(), &format!("{ent}:costCenter"));
    add(
        b.organization.is_some() || d.organization.is_some(),
        &format!("{ent}:organization"),
    );
    add(b.division.is_some(), &format!("{ent}:division"));
    add(
        b.department.is_some() || d.department.is_some(),
        &format!("{ent}:department"),
    );
    add(b.downstream_id.is_some(), &format!("{iij}:downstreamId"));
    add(
        b.external_user_name.is_some() || d.external_user_name.is_some(),
        &format!("{iij}:externalUserName"),
    );
    add(b.local_names.is_some(), &format!("{iij}:localNames"));
    add(
        b.id_token_claims.is_some() || d.id_token_claims.is_some(),
        &format!("{iij}:idTokenClaims"),
    );
    out
}

/// The group bindings that apply when none is written: externalId and displayName.
fn group_defaults(kind: DirectoryKind) -> (AttrList, AttrList) {
    match kind {
        DirectoryKind::ActiveDirectory => (list(&["objectGUID"]), list(&["name", "cn"])),
        DirectoryKind::OpenLdap => (list(&["entryUUID"]), list(&["cn"])),
    }
}

/// Maps one directory entry to a SCIM Group (members are resolved separately).
/// Defaults when not bound: externalId ← objectGUID (AD) / entryUUID (OpenLDAP), displayName
/// ← name (AD) / cn (OpenLDAP). `member_attribute` is the group attribute listing members.
pub fn map_group(
    entry: &Entry,
    mapping: &GroupMapping,
    kind: DirectoryKind,
    member_attribute: &str,
) -> Result<MappedGroup, MappingError> {
    let b = &mapping.ad_bind;
    let (ext, dn_attr) = group_defaults(kind);
    let dummy = UserAttributes::default();
    let ctx = Ctx {
        entry,
        mapping: &dummy,
        anchor: None,
        user_name: None,
        warnings: Vec::new(),
    };
    let external_id = b.external_id.clone().unwrap_or(ext);
    let anchor = ctx
        .first("externalId", &external_id, None)?
        .ok_or_else(|| {
            ctx.error(
                "externalId",
                format!("no value in {}", external_id.0.join(", ")),
            )
        })?;
    let display_binding = b.display_name.clone().unwrap_or(dn_attr);
    let display_name = ctx
        .first("displayName", &display_binding, None)?
        .ok_or_else(|| MappingError {
            anchor: Some(anchor.clone()),
            ..ctx.error(
                "displayName",
                format!("no value in {}", display_binding.0.join(", ")),
            )
        })?;
    let mut core = Map::new();
    core.insert("schemas".into(), json!([scim::urn::GROUP]));
    core.insert("externalId".into(), json!(anchor));
    core.insert("displayName".into(), json!(display_name));
    let mut ext_obj = Map::new();
    if let Some(binding) = &b.email
        && let Some(v) = ctx.first("email", binding, None)?
    {
        ext_obj.insert("email".into(), json!(v));
    }
    let description = match &b.description {
        Some(binding) => ctx.first("description", binding, None)?,
        None => None,
    }
    .or_else(|| mapping.default.description.clone());
    if let Some(v) = description {
        ext_obj.insert("description".into(), json!(v));
    }
    if let Some(v) = &mapping.default.group_type {
        ext_obj.insert("groupType".into(), json!(v));
    }
    if !ext_obj.is_empty() {
        core.insert(
            "schemas".into(),
            json!([scim::urn::GROUP, scim::urn::IIJ_GROUP]),
        );
        core.insert(scim::urn::IIJ_GROUP.into(), Value::Object(ext_obj));
    }
    let member_values = entry
        .strs(member_attribute)
        .into_iter()
        .filter(|s| !s.trim().is_empty())
        .map(str::to_string)
        .collect();
    Ok(MappedGroup {
        dn: entry.dn.clone(),
        anchor,
        display_name,
        resource: Value::Object(core),
        member_values,
    })
}

#[cfg(test)]
mod tests;
