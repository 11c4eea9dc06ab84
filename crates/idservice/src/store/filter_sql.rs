//! Translation of a SCIM filter (RFC 7644 §3.4.2.2) and `sortBy` into SQL with bound
//! parameters, so that searches run in SQLite instead of loading every row.
//!
//! Hot attributes map to indexed columns (`userName`, `externalId`, `displayName`, `active`,
//! `id`, `meta.created`, `meta.lastModified`, the IIJ `state`); other attributes use SQLite's
//! JSON functions on the stored resource; multi-valued attributes and value paths become
//! `EXISTS (SELECT 1 FROM json_each(...))`; `members` and a user's `groups` use the membership
//! table. The logical operators are sea-query `Condition`s; leaves are custom expressions.
//!
//! Null handling: every leaf is written so it is never SQL NULL (`x IS NOT NULL AND x = ?`,
//! `x IS NULL OR x <> ?`), so `not (...)` behaves as SCIM expects (a user without a `title`
//! matches `not (title eq "x")`).
//!
//! Case: attributes with `caseExact=false` compare lower-cased on both sides. Indexed
//! lower-case columns hold Rust's Unicode lower-case; JSON values are lowered with SQLite's
//! `lower()`, which folds ASCII only, so for those the value is ASCII-folded to match.

use scim::schema::{AttrType, AttributeDef, ResourceSchema};
use scim::{AttrExp, AttrPath, CompValue, CompareOp, Filter, ScimError, ValFilter};
use sea_query::{Condition, Expr, Value};

use super::Engine;

/// Constant conditions written so that both engines take them as booleans.
const NEVER: &str = "(1 = 0)";
const ALWAYS: &str = "(1 = 1)";

/// Which table a filter applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    User,
    Group,
}

impl Kind {
    pub fn table(self) -> &'static str {
        match self {
            Kind::User => "users",
            Kind::Group => "groups",
        }
    }
    pub fn schema(self) -> &'static ResourceSchema {
        match self {
            Kind::User => scim::schema::user(),
            Kind::Group => scim::schema::group(),
        }
    }
}

/// A SQL fragment with its bound values, in placeholder order.
#[derive(Debug, Clone, Default)]
pub struct Frag {
    pub sql: String,
    pub values: Vec<Value>,
}

impl Frag {
    fn new(sql: impl Into<String>) -> Frag {
        Frag {
            sql: sql.into(),
            values: Vec::new(),
        }
    }
    fn with(sql: impl Into<String>, values: Vec<Value>) -> Frag {
        Frag {
            sql: sql.into(),
            values,
        }
    }
    /// Turns the fragment into a sea-query expression for `engine`. Fragments are written
    /// with `?` placeholders; sea-query's PostgreSQL builder takes `$` instead.
    pub fn into_expr(self, engine: Engine) -> Expr {
        Expr::cust_with_values(placeholders(&self.sql, engine), self.values)
    }
}

/// How a column is compared.
#[derive(Debug, Clone, Copy)]
struct ColumnInfo {
    sql: &'static str,
    nullable: bool,
    /// The column already holds the lower-cased value (Unicode lower-case).
    lowered: bool,
}

/// Where the attribute a path names lives.
enum Target {
    /// A real column (possibly an expression over columns).
    Column(ColumnInfo, &'static AttributeDef),
    /// A scalar inside the resource JSON at a path.
    Json {
        path: String,
        ty: AttrType,
        case_exact: bool,
    },
    /// A multi-valued attribute in the JSON; `sub` is the sub-attribute compared on each
    /// element (`None`: the element itself, for multi-valued simple attributes).
    JsonArray {
        path: String,
        sub: Option<String>,
        ty: AttrType,
        case_exact: bool,
        complex: bool,
    },
    /// The membership relation (`members` of a group, `groups` of a user).
    Relation(Relation),
    /// An attribute no row ever has (e.g. `meta.location`, computed on output).
    Never,
}

#[derive(Clone, Copy)]
enum Relation {
    GroupMembers,
    UserGroups,
}

impl Relation {
    fn exists_prefix(self) -> &'static str {
        match self {
            Relation::GroupMembers => {
                "EXISTS (SELECT 1 FROM group_members gm WHERE gm.group_id = groups.id \
                 AND NOT EXISTS (SELECT 1 FROM users pu WHERE pu.id = gm.member_id \
                 AND pu.state = 'pendingDeletion') AND "
            }
            Relation::UserGroups => {
                "EXISTS (SELECT 1 FROM group_members gm JOIN groups gg ON gg.id = gm.group_id \
                 WHERE gm.member_id = users.id AND "
            }
        }
    }
    /// SQL for a sub-attribute of one membership; `None` for unknown sub-attributes.
    fn sub_sql(self, sub: &str) -> Option<(&'static str, bool)> {
        let sub = sub.to_ascii_lowercase();
        match (self, sub.as_str()) {
            (Relation::GroupMembers, "value") => Some(("gm.member_id", true)),
            (Relation::GroupMembers, "type") => Some(("gm.member_type", false)),
            (Relation::GroupMembers, "display") => Some((
                "(SELECT COALESCE(json_extract(u.resource, '$.displayName'), u.user_name) \
                 FROM users u WHERE u.id = gm.member_id UNION ALL SELECT g.display_name \
                 FROM groups g WHERE g.id = gm.member_id LIMIT 1)",
                false,
            )),
            (Relation::UserGroups, "value") => Some(("gm.group_id", true)),
            (Relation::UserGroups, "display") => Some(("gg.display_name", false)),
            (Relation::UserGroups, "type") => Some(("'direct'", false)),
            _ => None,
        }
    }
}

/// JSON path (`$."a"."b"`) for an attribute, inside its extension object if any.
fn json_path(extension: Option<&str>, name: &str, sub: Option<&str>) -> String {
    let mut p = String::from("$");
    for part in extension
        .into_iter()
        .chain(std::iter::once(name))
        .chain(sub)
    {
        p.push_str(".\"");
        p.push_str(part);
        p.push('"');
    }
    p
}

fn column_for(kind: Kind, ext: Option<&str>, name: &str, sub: Option<&str>) -> Option<ColumnInfo> {
    let lc = |s: &str| s.to_ascii_lowercase();
    let name = lc(name);
    let sub = sub.map(lc);
    let col = |sql, nullable, lowered| {
        Some(ColumnInfo {
            sql,
            nullable,
            lowered,
        })
    };
    match (ext, name.as_str(), sub.as_deref()) {
        (None, "id", None) => col("id", false, false),
        (None, "externalid", None) => col("external_id", true, false),
        (None, "meta", Some("created")) => col("created", false, false),
        (None, "meta", Some("lastmodified")) => col("last_modified", false, false),
        (None, "meta", Some("version")) => col("('W/\"' || version || '\"')", false, false),
        (None, "meta", Some("resourcetype")) => match kind {
            Kind::User => col("'User'", false, false),
            Kind::Group => col("'Group'", false, false),
        },
        (None, "username", None) if kind == Kind::User => col("user_name_lc", false, true),
        (None, "active", None) if kind == Kind::User => col("active", false, false),
        (None, "displayname", None) if kind == Kind::Group => col("display_name_lc", false, true),
        (Some(e), "state", None) if kind == Kind::User && e == scim::urn::IIJ_USER => {
            col("state", false, false)
        }
        (Some(e), "pendingdeletionsince", None)
            if kind == Kind::User && e == scim::urn::IIJ_USER =>
        {
            col("pending_since", true, false)
        }
        _ => None,
    }
}

fn target(kind: Kind, path: &AttrPath) -> Result<Target, ScimError> {
    let schema = kind.schema();
    // Unknown attributes never match (as in `scim::filter::matches`): they narrow a search
    // rather than failing it.
    let Some(loc) = schema.locate(path) else {
        return Ok(Target::Never);
    };
    let Some(def) = loc.def else {
        // An undefined member of an open extension: a case-insensitive string.
        return Ok(Target::Json {
            path: json_path(loc.extension, &loc.name, loc.sub.as_deref()),
            ty: AttrType::String,
            case_exact: false,
        });
    };
    if let Some(c) = column_for(kind, loc.extension, &loc.name, loc.sub.as_deref()) {
        let leaf = loc.sub_def.unwrap_or(def);
        return Ok(Target::Column(c, leaf));
    }
    if loc.extension.is_none() && loc.name == "meta" {
        return Ok(Target::Never);
    }
    if loc.extension.is_none() && kind == Kind::Group && loc.name == "members" {
        return Ok(Target::Relation(Relation::GroupMembers));
    }
    if loc.extension.is_none() && kind == Kind::User && loc.name == "groups" {
        return Ok(Target::Relation(Relation::UserGroups));
    }
    let array_path = json_path(loc.extension, &loc.name, None);
    if def.multi_valued {
        if def.ty == AttrType::Complex {
            // RFC 7644 §3.4.2.2: a complex multi-valued attribute without a sub-attribute
            // compares its `value`.
            let sub_name = loc.sub.clone().unwrap_or_else(|| "value".to_string());
            let Some(sub_def) = def.sub_attribute(&sub_name) else {
                return Ok(Target::Never);
            };
            return Ok(Target::JsonArray {
                path: array_path,
                sub: Some(sub_def.name.to_string()),
                ty: sub_def.ty,
                case_exact: sub_def.case_exact,
                complex: true,
            });
        }
        return Ok(Target::JsonArray {
            path: array_path,
            sub: None,
            ty: def.ty,
            case_exact: def.case_exact,
            complex: false,
        });
    }
    match (&loc.sub, loc.sub_def) {
        (Some(_), Some(sd)) => Ok(Target::Json {
            path: json_path(loc.extension, &loc.name, loc.sub.as_deref()),
            ty: sd.ty,
            case_exact: sd.case_exact,
        }),
        (None, _) if def.ty == AttrType::Complex => Ok(Target::Json {
            // Comparing a whole complex attribute only makes sense for `pr`.
            path: array_path,
            ty: AttrType::Complex,
            case_exact: false,
        }),
        _ => Ok(Target::Json {
            path: array_path,
            ty: def.ty,
            case_exact: def.case_exact,
        }),
    }
}

/// Prefixes a plain column name with its table; expressions and literals stay as they are.
fn qualify(table: &str, sql: &str) -> String {
    if sql.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        format!("{table}.{sql}")
    } else {
        sql.to_string()
    }
}

/// Normalises a dateTime literal to the stored form (UTC, milliseconds, `Z`) so that string
/// comparison orders instants correctly.
pub fn normalise_datetime(s: &str) -> Option<String> {
    chrono::DateTime::parse_from_rfc3339(s).ok().map(|d| {
        d.with_timezone(&chrono::Utc)
            .format("%Y-%m-%dT%H:%M:%S%.3fZ")
            .to_string()
    })
}

/// Escapes `%`, `_` and `\` for `LIKE ... ESCAPE '\'`.
fn like_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// How the value side of a comparison is folded.
#[derive(Clone, Copy)]
enum Fold {
    None,
    /// Rust Unicode lower-case (for pre-lowered columns).
    Unicode,
    /// ASCII lower-case, matching SQLite's `lower()`.
    Ascii,
}

/// `inner` (over the elements `e`) holds for some element of the JSON array at `path` in
/// `table.resource`.
fn any_element(table: &str, path: String, inner: Frag) -> Frag {
    let mut values = vec![Value::from(path)];
    values.extend(inner.values);
    Frag::with(
        format!(
            "EXISTS (SELECT 1 FROM json_each({table}.resource, ?) AS e WHERE {})",
            inner.sql
        ),
        values,
    )
}

/// The scalar SQL expression a comparison is made on, with its bound values and nullability.
#[derive(Clone, Copy)]
struct Operand<'a> {
    x: &'a str,
    xv: &'a [Value],
    nullable: bool,
}

impl Operand<'_> {
    /// Joins a null guard (`IS NOT NULL AND` or `IS NULL OR`) to `cmp`, repeating `x`'s values.
    fn with_null(self, null_test: &str, cmp: String, cmp_values: Vec<Value>) -> Frag {
        // `x` may appear twice (null guard + comparison); its values are repeated to match.
        let x = self.x;
        let mut values = self.xv.to_vec();
        if self.nullable {
            values.extend(self.xv.iter().cloned());
            values.extend(cmp_values);
            Frag::with(format!("({x} {null_test} {cmp})"), values)
        } else {
            values.extend(cmp_values);
            Frag::with(format!("({cmp})"), values)
        }
    }
    /// `cmp`, false when `x` is NULL.
    fn guard(self, cmp: String, cmp_values: Vec<Value>) -> Frag {
        self.with_null("IS NOT NULL AND", cmp, cmp_values)
    }
    /// `cmp`, true when `x` is NULL (for `ne`).
    fn ne(self, cmp: String, cmp_values: Vec<Value>) -> Frag {
        self.with_null("IS NULL OR", cmp, cmp_values)
    }
}

/// A comparison of the scalar SQL expression `x` (with its own bound values `xv`).
fn compare(
    x: &str,
    xv: &[Value],
    nullable: bool,
    ty: AttrType,
    fold: Fold,
    op: &CompareOp,
    value: &CompValue,
) -> Result<Frag, ScimError> {
    let operand = Operand { x, xv, nullable };
    match value {
        CompValue::Null => compare_null(operand, op),
        CompValue::True | CompValue::False => {
            compare_bool(operand, op, matches!(value, CompValue::True))
        }
        CompValue::Number(n) => compare_number(operand, op, n),
        CompValue::Str(s) => compare_str(operand, ty, fold, op, s),
    }
}

/// Compares with `null`: only `eq` (absent) and `ne` (present) are allowed.
fn compare_null(operand: Operand<'_>, op: &CompareOp) -> Result<Frag, ScimError> {
    let Operand { x, xv, .. } = operand;
    match op {
        CompareOp::Eq => Ok(Frag::with(format!("({x} IS NULL)"), xv.to_vec())),
        CompareOp::Ne => Ok(Frag::with(format!("({x} IS NOT NULL)"), xv.to_vec())),
        _ => Err(ScimError::invalid_filter(
            "null can only be compared with eq or ne",
        )),
    }
}

/// Compares with `true`/`false`: only `eq` and `ne` are allowed.
fn compare_bool(operand: Operand<'_>, op: &CompareOp, truth: bool) -> Result<Frag, ScimError> {
    let x = operand.x;
    // A boolean is 1/0 in SQLite's JSON and columns, true/false in PostgreSQL's JSON:
    // compared as text, the same SQL serves both.
    let set = if truth {
        "('1', 'true')"
    } else {
        "('0', 'false')"
    };
    match op {
        CompareOp::Eq => Ok(operand.guard(format!("CAST({x} AS TEXT) IN {set}"), vec![])),
        CompareOp::Ne => Ok(operand.ne(format!("CAST({x} AS TEXT) NOT IN {set}"), vec![])),
        _ => Err(ScimError::invalid_filter(
            "booleans can only be compared with eq or ne",
        )),
    }
}

/// Compares with a number: ordering and equality, never `co`/`sw`/`ew`.
fn compare_number(
    operand: Operand<'_>,
    op: &CompareOp,
    n: &serde_json::Number,
) -> Result<Frag, ScimError> {
    let x = operand.x;
    let v = if let Some(i) = n.as_i64() {
        Value::from(i)
    } else {
        Value::from(n.as_f64().unwrap_or(0.0))
    };
    // JSON text on PostgreSQL: compared as a number on both engines.
    let n = format!("CAST({x} AS DOUBLE PRECISION)");
    match op {
        CompareOp::Eq => Ok(operand.guard(format!("{n} = ?"), vec![v])),
        CompareOp::Ne => Ok(operand.ne(format!("{n} <> ?"), vec![v])),
        CompareOp::Gt => Ok(operand.guard(format!("{n} > ?"), vec![v])),
        CompareOp::Ge => Ok(operand.guard(format!("{n} >= ?"), vec![v])),
        CompareOp::Lt => Ok(operand.guard(format!("{n} < ?"), vec![v])),
        CompareOp::Le => Ok(operand.guard(format!("{n} <= ?"), vec![v])),
        CompareOp::Co | CompareOp::Sw | CompareOp::Ew => Err(ScimError::invalid_filter(
            "co, sw and ew need a string value",
        )),
    }
}

/// Compares with a string, after normalising (dateTime) or folding (case) the value.
fn compare_str(
    operand: Operand<'_>,
    ty: AttrType,
    fold: Fold,
    op: &CompareOp,
    s: &str,
) -> Result<Frag, ScimError> {
    let x = operand.x;
    let s = string_operand(ty, fold, op, s)?;
    let lx = match fold {
        Fold::Ascii => format!("lower({x})"),
        _ => x.to_string(),
    };
    match op {
        CompareOp::Eq => Ok(operand.guard(format!("{lx} = ?"), vec![Value::from(s)])),
        CompareOp::Ne => Ok(operand.ne(format!("{lx} <> ?"), vec![Value::from(s)])),
        CompareOp::Gt => Ok(operand.guard(format!("{lx} > ?"), vec![Value::from(s)])),
        CompareOp::Ge => Ok(operand.guard(format!("{lx} >= ?"), vec![Value::from(s)])),
        CompareOp::Lt => Ok(operand.guard(format!("{lx} < ?"), vec![Value::from(s)])),
        CompareOp::Le => Ok(operand.guard(format!("{lx} <= ?"), vec![Value::from(s)])),
        CompareOp::Co | CompareOp::Sw | CompareOp::Ew => Ok(operand.guard(
            format!("{lx} LIKE ? ESCAPE '\\'"),
            vec![Value::from(like_pattern(op, &s))],
        )),
    }
}

/// The string value to bind: a normalised dateTime for ordering/equality, else folded.
fn string_operand(ty: AttrType, fold: Fold, op: &CompareOp, s: &str) -> Result<String, ScimError> {
    if ty == AttrType::Boolean {
        return Err(ScimError::invalid_filter(format!(
            "a boolean attribute cannot be compared with the string \"{s}\""
        )));
    }
    let is_order = matches!(
        op,
        CompareOp::Gt | CompareOp::Ge | CompareOp::Lt | CompareOp::Le
    );
    let is_eq = matches!(op, CompareOp::Eq | CompareOp::Ne);
    if ty == AttrType::DateTime && (is_order || is_eq) {
        normalise_datetime(s).ok_or_else(|| {
            ScimError::invalid_filter(format!("\"{s}\" is not an RFC 3339 dateTime"))
        })
    } else {
        Ok(match fold {
            Fold::None => s.to_string(),
            Fold::Unicode => s.to_lowercase(),
            Fold::Ascii => s.to_ascii_lowercase(),
        })
    }
}

/// The escaped `LIKE` pattern for `co` (contains), `sw` (starts with) or `ew` (ends with).
fn like_pattern(op: &CompareOp, s: &str) -> String {
    let e = like_escape(s);
    match op {
        CompareOp::Co => format!("%{e}%"),
        CompareOp::Sw => format!("{e}%"),
        _ => format!("%{e}"),
    }
}

fn fold_for(case_exact: bool, ty: AttrType, lowered_column: bool) -> Fold {
    let textual = matches!(
        ty,
        AttrType::String | AttrType::Reference | AttrType::Binary
    );
    if lowered_column {
        Fold::Unicode
    } else if textual && !case_exact {
        Fold::Ascii
    } else {
        Fold::None
    }
}

/// `pr` on a scalar expression: present, not null, not an empty string.
fn present(x: &str, xv: &[Value]) -> Frag {
    let mut values = xv.to_vec();
    values.extend(xv.iter().cloned());
    Frag::with(format!("({x} IS NOT NULL AND {x} <> '')"), values)
}

/// Translates one attribute expression of the top-level filter.
fn attr_exp(kind: Kind, exp: &AttrExp) -> Result<Frag, ScimError> {
    let table = kind.table();
    let path = match exp {
        AttrExp::Present(p) | AttrExp::Comparison(p, _, _) => p,
    };
    match target(kind, path)? {
        Target::Never => Ok(Frag::new(NEVER)),
        Target::Column(c, def) => column_exp(table, c, def, exp),
        Target::Json {
            path,
            ty,
            case_exact,
        } => json_exp(table, path, ty, case_exact, exp),
        Target::JsonArray {
            path,
            sub,
            ty,
            case_exact,
            complex,
        } => {
            let array = ArrayTarget {
                path,
                sub,
                ty,
                case_exact,
                complex,
            };
            json_array_exp(table, array, exp)
        }
        Target::Relation(rel) => relation_exp(rel, path, exp),
    }
}

/// An attribute expression on an indexed column.
fn column_exp(
    table: &str,
    c: ColumnInfo,
    def: &AttributeDef,
    exp: &AttrExp,
) -> Result<Frag, ScimError> {
    let x = qualify(table, c.sql);
    match exp {
        AttrExp::Present(_) => Ok(if c.nullable {
            present(&x, &[])
        } else {
            Frag::new(ALWAYS)
        }),
        AttrExp::Comparison(_, op, v) => {
            let fold = fold_for(def.case_exact, def.ty, c.lowered);
            compare(&x, &[], c.nullable, def.ty, fold, op, v)
        }
    }
}

/// An attribute expression on a scalar (or whole complex value) inside the resource JSON.
fn json_exp(
    table: &str,
    path: String,
    ty: AttrType,
    case_exact: bool,
    exp: &AttrExp,
) -> Result<Frag, ScimError> {
    let x = format!("json_extract({table}.resource, ?)");
    let xv = vec![Value::from(path.clone())];
    match exp {
        AttrExp::Present(_) => Ok(json_present(table, &x, path)),
        AttrExp::Comparison(_, op, v) => {
            if ty == AttrType::Complex {
                return Err(ScimError::invalid_filter(
                    "a complex attribute can only be tested with pr; name a sub-attribute",
                ));
            }
            compare(&x, &xv, true, ty, fold_for(case_exact, ty, false), op, v)
        }
    }
}

/// `pr` on a JSON value `x` at `path`: not null, not empty text, array or object.
fn json_present(table: &str, x: &str, path: String) -> Frag {
    // Objects and arrays: present when non-empty.
    Frag::with(
        format!(
            "(json_type({table}.resource, ?) IS NOT NULL \
             AND json_type({table}.resource, ?) <> 'null' \
             AND NOT (json_type({table}.resource, ?) = 'text' AND {x} = '') \
             AND NOT (json_type({table}.resource, ?) = 'array' AND json_array_length({table}.resource, ?) = 0) \
             AND NOT (json_type({table}.resource, ?) = 'object' AND {x} = '{{}}'))"
        ),
        vec![
            Value::from(path.clone()),
            Value::from(path.clone()),
            Value::from(path.clone()),
            Value::from(path.clone()),
            Value::from(path.clone()),
            Value::from(path.clone()),
            Value::from(path.clone()),
            Value::from(path),
        ],
    )
}

/// The fields of `Target::JsonArray`: a multi-valued attribute in the resource JSON.
struct ArrayTarget {
    path: String,
    sub: Option<String>,
    ty: AttrType,
    case_exact: bool,
    complex: bool,
}

/// An attribute expression on a multi-valued JSON attribute: holds for some element.
fn json_array_exp(table: &str, array: ArrayTarget, exp: &AttrExp) -> Result<Frag, ScimError> {
    let ArrayTarget {
        path,
        sub,
        ty,
        case_exact,
        complex,
    } = array;
    let elem = match &sub {
        Some(s) => Frag::with(
            "json_extract(e.value, ?)",
            vec![Value::from(json_path(None, s, None))],
        ),
        None => Frag::new("e.value"),
    };
    let inner = match exp {
        // `emails pr`: at least one element.
        AttrExp::Present(p) if p.sub_attr.is_none() || !complex => Frag::new(ALWAYS),
        AttrExp::Present(_) => present(&elem.sql, &elem.values),
        AttrExp::Comparison(_, op, v) => compare(
            &elem.sql,
            &elem.values,
            true,
            ty,
            fold_for(case_exact, ty, false),
            op,
            v,
        )?,
    };
    Ok(any_element(table, path, inner))
}

/// An attribute expression on the membership relation: holds for some membership.
fn relation_exp(rel: Relation, path: &AttrPath, exp: &AttrExp) -> Result<Frag, ScimError> {
    let sub = path.sub_attr.clone().unwrap_or_else(|| "value".to_string());
    let Some((col, case_exact)) = rel.sub_sql(&sub) else {
        return Ok(Frag::new(NEVER));
    };
    let inner = match exp {
        AttrExp::Present(_) if path.sub_attr.is_none() => Frag::new(ALWAYS),
        AttrExp::Present(_) => present(col, &[]),
        AttrExp::Comparison(_, op, v) => compare(
            col,
            &[],
            true,
            AttrType::String,
            fold_for(case_exact, AttrType::String, false),
            op,
            v,
        )?,
    };
    Ok(Frag::with(
        format!("{}{})", rel.exists_prefix(), inner.sql),
        inner.values,
    ))
}

/// A sub-attribute of one element: its SQL, type, caseExact, and whether already lowered.
type ElemAttr = (Frag, AttrType, bool, bool);

/// Translates the inner filter of a value path, over one element `e` (or membership `gm`).
fn val_filter(
    f: &ValFilter,
    elem_sub: &dyn Fn(&AttrPath) -> Result<ElemAttr, ScimError>,
) -> Result<Frag, ScimError> {
    match f {
        ValFilter::Attr(exp) => {
            let p = match exp {
                AttrExp::Present(p) | AttrExp::Comparison(p, _, _) => p,
            };
            let (x, ty, case_exact, lowered) = elem_sub(p)?;
            match exp {
                AttrExp::Present(_) => Ok(present(&x.sql, &x.values)),
                AttrExp::Comparison(_, op, v) => compare(
                    &x.sql,
                    &x.values,
                    true,
                    ty,
                    fold_for(case_exact, ty, lowered),
                    op,
                    v,
                ),
            }
        }
        ValFilter::Not(inner) => {
            let i = val_filter(inner, elem_sub)?;
            Ok(Frag::with(format!("(NOT {})", i.sql), i.values))
        }
        ValFilter::And(ops) | ValFilter::Or(ops) => {
            let joiner = if matches!(f, ValFilter::And(_)) {
                " AND "
            } else {
                " OR "
            };
            let mut sqls = Vec::new();
            let mut values = Vec::new();
            for o in ops.as_slice() {
                let fr = val_filter(o, elem_sub)?;
                sqls.push(fr.sql);
                values.extend(fr.values);
            }
            Ok(Frag::with(format!("({})", sqls.join(joiner)), values))
        }
    }
}

fn value_path(kind: Kind, vp: &scim::ValuePath) -> Result<Frag, ScimError> {
    let table = kind.table();
    match target(kind, &vp.attr)? {
        Target::Relation(rel) => {
            let sub = |p: &AttrPath| {
                Ok(match rel.sub_sql(&p.name) {
                    Some((col, case_exact)) => {
                        (Frag::new(col), AttrType::String, case_exact, false)
                    }
                    None => (Frag::new("NULL"), AttrType::String, true, false),
                })
            };
            let inner = val_filter(&vp.filter, &sub)?;
            Ok(Frag::with(
                format!("{}{})", rel.exists_prefix(), inner.sql),
                inner.values,
            ))
        }
        Target::JsonArray {
            path,
            complex: true,
            ..
        } => {
            let schema = kind.schema();
            let Some(def) = schema.locate(&vp.attr).and_then(|l| l.def) else {
                return Ok(Frag::new(NEVER));
            };
            let sub = |p: &AttrPath| {
                Ok(match def.sub_attribute(&p.name) {
                    Some(sd) => (
                        Frag::with(
                            "json_extract(e.value, ?)",
                            vec![Value::from(json_path(None, sd.name, None))],
                        ),
                        sd.ty,
                        sd.case_exact,
                        false,
                    ),
                    // Unknown sub-attribute: never present, so comparisons are false.
                    None => (Frag::new("NULL"), AttrType::String, true, false),
                })
            };
            let inner = val_filter(&vp.filter, &sub)?;
            Ok(any_element(table, path, inner))
        }
        Target::Never => Ok(Frag::new(NEVER)),
        _ => Err(ScimError::invalid_filter(format!(
            "{} is not a multi-valued complex attribute; a value filter [...] cannot apply",
            vp.attr
        ))),
    }
}

/// `sql` with its `?` placeholders (outside quotes) written for `engine`'s sea-query builder.
pub fn placeholders(sql: &str, engine: Engine) -> String {
    if engine == Engine::Sqlite {
        return sql.to_string();
    }
    let mut out = String::with_capacity(sql.len());
    let mut quote: Option<char> = None;
    for c in sql.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '\'' || c == '"' => quote = Some(c),
            None if c == '?' => {
                // A lone `$` (not followed by a number) takes the next value in order.
                out.push_str("$ ");
                continue;
            }
            None => {}
        }
        out.push(c);
    }
    out
}

/// Translates a whole filter into a sea-query condition for `engine`.
pub fn condition(kind: Kind, f: &Filter, engine: Engine) -> Result<Condition, ScimError> {
    Ok(match f {
        Filter::Attr(exp) => Condition::all().add(attr_exp(kind, exp)?.into_expr(engine)),
        Filter::ValuePath(vp) => Condition::all().add(value_path(kind, vp)?.into_expr(engine)),
        Filter::Not(inner) => condition(kind, inner, engine)?.not(),
        Filter::And(ops) => {
            let mut c = Condition::all();
            for o in ops.as_slice() {
                c = c.add(condition(kind, o, engine)?);
            }
            c
        }
        Filter::Or(ops) => {
            let mut c = Condition::any();
            for o in ops.as_slice() {
                c = c.add(condition(kind, o, engine)?);
            }
            c
        }
    })
}

/// Whether the filter names the IIJ `state` attribute anywhere (then pending users are
/// visible to it).
pub fn mentions_state(f: &Filter) -> bool {
    fn is_state(p: &AttrPath) -> bool {
        let loc = scim::schema::user().locate(p);
        matches!(loc, Some(l) if l.extension == Some(scim::urn::IIJ_USER)
            && (l.name == "state" || l.name == "pendingDeletionSince"))
    }
    match f {
        Filter::Attr(AttrExp::Present(p)) | Filter::Attr(AttrExp::Comparison(p, _, _)) => {
            is_state(p)
        }
        Filter::ValuePath(_) => false,
        Filter::Not(inner) => mentions_state(inner),
        Filter::And(ops) | Filter::Or(ops) => ops.as_slice().iter().any(mentions_state),
    }
}

/// The SQL expression to sort by (RFC 7644 §3.4.2.3). Multi-valued attributes sort by their
/// first value (`primary` is usually first); unknown attributes leave the default order.
pub fn sort_expr(kind: Kind, path: &AttrPath) -> Result<Frag, ScimError> {
    let table = kind.table();
    let t = target(kind, path)?;
    Ok(match t {
        Target::Column(c, _) => Frag::new(qualify(table, c.sql)),
        Target::Json {
            path,
            ty,
            case_exact,
        } => {
            if fold_for(case_exact, ty, false).is_ascii() {
                Frag::with(
                    format!("lower(json_extract({table}.resource, ?))"),
                    vec![Value::from(path)],
                )
            } else {
                Frag::with(
                    format!("json_extract({table}.resource, ?)"),
                    vec![Value::from(path)],
                )
            }
        }
        Target::JsonArray { path, sub, .. } => {
            let p = match sub {
                Some(s) => format!("{path}[0].\"{s}\""),
                None => format!("{path}[0]"),
            };
            Frag::with(
                format!("json_extract({table}.resource, ?)"),
                vec![Value::from(p)],
            )
        }
        Target::Relation(_) | Target::Never => Frag::new("NULL"),
    })
}

impl Fold {
    fn is_ascii(self) -> bool {
        matches!(self, Fold::Ascii)
    }
}
