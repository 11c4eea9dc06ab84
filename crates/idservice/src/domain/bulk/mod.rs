//! `/Bulk` (RFC 7644 §3.7): many operations in one request, run in one transaction with a
//! savepoint per operation, so a failed operation leaves no trace and the others still land.
//! Runs of new users are inserted many at a time, with the same answers ([`new_users`]).
//!
//! `bulkId:x` references (in `data` anywhere, e.g. a group's `members[].value`, and in `path`)
//! are resolved to the ids created earlier in the request; an operation whose reference is
//! not yet known waits until the operation that defines it has run, so order in the request
//! does not matter. References that never resolve (unknown, failed or circular) fail with 409.

mod new_users;

use std::collections::{HashMap, HashSet};

use scim::ScimError;
use serde_json::{Map, Value, json};
use sqlx::Acquire;

use super::password::Prehashed;
use super::{BULK_MAX_OPERATIONS, Scope, Scopes, Service, db, groups, users};
use crate::store::{Conn, Tx};

/// One parsed operation.
#[derive(Debug, Clone)]
struct Op {
    method: String,
    path: String,
    bulk_id: Option<String>,
    version: Option<String>,
    data: Option<Value>,
}

/// An operation still to run: its index in the request, the operation, and the bulkIds it
/// references.
struct Waiting {
    index: usize,
    op: Op,
    refs: HashSet<String>,
}

/// The outcome of one operation, as it appears in the response.
struct Outcome {
    index: usize,
    json: Value,
    failed: bool,
}

fn parse_op(v: &Value) -> Result<Op, ScimError> {
    let o = v
        .as_object()
        .ok_or_else(|| ScimError::invalid_syntax("each operation must be an object"))?;
    let s = |k: &str| {
        scim::resource::member(v, k)
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let method = s("method")
        .ok_or_else(|| ScimError::invalid_syntax("operation has no method"))?
        .to_ascii_uppercase();
    let path = s("path").ok_or_else(|| ScimError::invalid_syntax("operation has no path"))?;
    let data = o
        .get("data")
        .cloned()
        .or_else(|| scim::resource::member(v, "data").cloned());
    if method == "POST" && s("bulkId").is_none() {
        return Err(ScimError::invalid_syntax("a POST operation needs a bulkId"));
    }
    Ok(Op {
        method,
        path,
        bulk_id: s("bulkId"),
        version: s("version"),
        data,
    })
}

/// `bulkId:x` references in a JSON value.
fn references(v: &Value, out: &mut HashSet<String>) {
    match v {
        Value::String(s) => {
            if let Some(id) = s.strip_prefix("bulkId:") {
                out.insert(id.to_string());
            }
        }
        Value::Array(a) => a.iter().for_each(|x| references(x, out)),
        Value::Object(m) => m.values().for_each(|x| references(x, out)),
        _ => {}
    }
}

fn substitute(v: &mut Value, ids: &HashMap<String, String>) {
    match v {
        Value::String(s) => {
            if let Some(id) = s.strip_prefix("bulkId:").and_then(|b| ids.get(b)) {
                *s = id.clone();
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| substitute(x, ids)),
        Value::Object(m) => m.values_mut().for_each(|x| substitute(x, ids)),
        _ => {}
    }
}

fn substitute_path(path: &str, ids: &HashMap<String, String>) -> String {
    path.split('/')
        .map(
            |seg| match seg.strip_prefix("bulkId:").and_then(|b| ids.get(b)) {
                Some(id) => id.clone(),
                None => seg.to_string(),
            },
        )
        .collect::<Vec<_>>()
        .join("/")
}

fn error_outcome(index: usize, op: Option<&Op>, e: &ScimError) -> Outcome {
    let mut m = Map::new();
    if let Some(op) = op {
        m.insert("method".into(), json!(op.method));
        if let Some(b) = &op.bulk_id {
            m.insert("bulkId".into(), json!(b));
        }
    }
    m.insert("status".into(), json!(e.status.to_string()));
    m.insert("response".into(), e.to_json());
    Outcome {
        index,
        json: Value::Object(m),
        failed: true,
    }
}

/// The resource type (`true`: Users, `false`: Groups) and id an operation's path names, once
/// the token is known to hold the write scope for that type.
fn target(path: &str, scopes: Scopes) -> Result<(bool, Option<&str>), ScimError> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let unsupported = || ScimError::invalid_value(format!("unsupported bulk path {path}"));
    let (kind, id) = match segs.as_slice() {
        [k] => (*k, None),
        [k, id] => (*k, Some(*id)),
        _ => return Err(unsupported()),
    };
    let is_user = match kind {
        "Users" => true,
        "Groups" => false,
        _ => return Err(unsupported()),
    };
    let scope = if is_user {
        Scope::WriteUsers
    } else {
        Scope::WriteGroups
    };
    if !scopes.has(scope) {
        return Err(ScimError::new(
            403,
            None,
            format!("the token lacks the {} scope", scope.as_str()),
        ));
    }
    Ok((is_user, id))
}

/// What every operation of one request runs with.
#[derive(Clone, Copy)]
struct Request<'a> {
    scopes: Scopes,
    base: &'a str,
    /// The request's password hashes, computed before its transaction.
    pre: &'a Prehashed,
}

/// Runs one operation on `conn`; returns (status, resource) on success.
async fn execute(
    conn: &mut Conn,
    op: &Op,
    path: &str,
    data: Option<Value>,
    req: Request<'_>,
) -> Result<(u16, Option<Value>), ScimError> {
    let Request { scopes, base, pre } = req;
    let (is_user, id) = target(path, scopes)?;
    let need_data = || {
        data.clone()
            .ok_or_else(|| ScimError::invalid_syntax("operation has no data"))
    };
    let if_match = op.version.as_deref();
    match (op.method.as_str(), id) {
        ("POST", None) => {
            let r = if is_user {
                users::create_in(conn, need_data()?, pre, base).await?.0
            } else {
                groups::create_in(conn, need_data()?, base, false).await?
            };
            Ok((201, Some(r)))
        }
        ("PUT", Some(id)) => {
            let r = if is_user {
                users::replace_in(conn, id, need_data()?, pre, if_match, base).await?
            } else {
                groups::replace_in(conn, id, need_data()?, if_match, base).await?
            };
            Ok((200, Some(r)))
        }
        ("PATCH", Some(id)) => {
            let d = need_data()?;
            let r = if is_user {
                users::patch_in(conn, id, &d, pre, if_match, base).await?
            } else {
                groups::patch_in(conn, id, &d, if_match, base).await?
            };
            Ok((200, Some(r)))
        }
        ("DELETE", Some(id)) => {
            if is_user {
                users::delete_in(conn, id, if_match).await?;
            } else {
                groups::delete_in(conn, id, if_match).await?;
            }
            Ok((204, None))
        }
        (m, _) => Err(ScimError::invalid_value(format!(
            "method {m} is not allowed on {path}"
        ))),
    }
}

/// The Operations array and `failOnErrors` of a BulkRequest, checked against the limits.
fn parse_request(body: &Value) -> Result<(&Vec<Value>, Option<u64>), ScimError> {
    if !body.is_object() {
        return Err(ScimError::invalid_syntax(
            "a BulkRequest must be a JSON object",
        ));
    }
    let ops_json = scim::resource::member(body, "Operations")
        .and_then(Value::as_array)
        .ok_or_else(|| ScimError::invalid_syntax("a BulkRequest needs an Operations array"))?;
    if ops_json.len() > BULK_MAX_OPERATIONS {
        return Err(ScimError::new(
            413,
            None,
            format!(
                "the bulk request has {} operations; maxOperations is {BULK_MAX_OPERATIONS}",
                ops_json.len()
            ),
        ));
    }
    let fail_on_errors = match scim::resource::member(body, "failOnErrors") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_u64() {
            Some(0) | None => {
                return Err(ScimError::invalid_value(
                    "failOnErrors must be a positive integer",
                ));
            }
            Some(n) => Some(n),
        },
    };
    Ok((ops_json, fail_on_errors))
}

/// Parses every operation: those that cannot run (malformed, duplicate bulkId) become failed
/// outcomes at once, the others wait with the bulkIds they reference.
fn plan(ops_json: &[Value]) -> (Vec<Outcome>, Vec<Waiting>) {
    let mut outcomes: Vec<Outcome> = Vec::with_capacity(ops_json.len());
    let mut waiting: Vec<Waiting> = Vec::with_capacity(ops_json.len());
    let mut defined: HashSet<String> = HashSet::new();
    for (i, v) in ops_json.iter().enumerate() {
        match parse_op(v) {
            Ok(op) => {
                if let Some(b) = &op.bulk_id
                    && !defined.insert(b.clone())
                {
                    outcomes.push(error_outcome(
                        i,
                        Some(&op),
                        &ScimError::invalid_value(format!("bulkId {b} is used twice")),
                    ));
                    continue;
                }
                let mut refs = HashSet::new();
                if let Some(d) = &op.data {
                    references(d, &mut refs);
                }
                for seg in op.path.split('/') {
                    if let Some(b) = seg.strip_prefix("bulkId:") {
                        refs.insert(b.to_string());
                    }
                }
                waiting.push(Waiting { index: i, op, refs });
            }
            Err(e) => outcomes.push(error_outcome(i, None, &e)),
        }
    }
    (outcomes, waiting)
}

/// A bulk request while it runs: the outcomes so far, the ids created for bulkIds, and the
/// error count against `failOnErrors`.
struct Progress {
    outcomes: Vec<Outcome>,
    ids: HashMap<String, String>,
    errors: u64,
    fail_on_errors: Option<u64>,
}

impl Progress {
    /// Whether `failOnErrors` is reached: no further operation runs.
    fn stopped(&self) -> bool {
        self.fail_on_errors.is_some_and(|n| self.errors >= n)
    }

    /// Records a failed operation.
    fn fail(&mut self, index: usize, op: &Op, e: &ScimError) {
        self.errors += 1;
        self.outcomes.push(error_outcome(index, Some(op), e));
    }

    /// Records a successful operation and the id its bulkId now stands for.
    fn succeed(
        &mut self,
        index: usize,
        op: &Op,
        path: &str,
        base: &str,
        status: u16,
        resource: Option<Value>,
    ) {
        let mut m = Map::new();
        m.insert("method".into(), json!(op.method));
        if let Some(b) = &op.bulk_id {
            m.insert("bulkId".into(), json!(b));
        }
        if let Some(r) = &resource {
            if let Some(loc) = r.pointer("/meta/location") {
                m.insert("location".into(), loc.clone());
            }
            if let Some(ver) = r.pointer("/meta/version") {
                m.insert("version".into(), ver.clone());
            }
            if let (Some(b), Some(id)) = (&op.bulk_id, r.get("id").and_then(Value::as_str)) {
                self.ids.insert(b.clone(), id.to_string());
            }
        } else {
            m.insert("location".into(), json!(format!("{base}{path}")));
        }
        m.insert("status".into(), json!(status.to_string()));
        self.outcomes.push(Outcome {
            index,
            json: Value::Object(m),
            failed: false,
        });
    }
}

/// Runs one operation whose references are all known, in its own savepoint of `tx`.
async fn run_one(
    tx: &mut Tx,
    w: &Waiting,
    progress: &mut Progress,
    req: Request<'_>,
) -> Result<(), ScimError> {
    let mut data = w.op.data.clone();
    if let Some(d) = &mut data {
        substitute(d, &progress.ids);
    }
    let path = substitute_path(&w.op.path, &progress.ids);
    let mut sp = tx.begin().await.map_err(db)?;
    match execute(&mut sp, &w.op, &path, data, req).await {
        Ok((status, resource)) => {
            sp.commit().await.map_err(db)?;
            progress.succeed(w.index, &w.op, &path, req.base, status, resource);
        }
        Err(e) => {
            sp.rollback().await.map_err(db)?;
            progress.fail(w.index, &w.op, &e);
        }
    }
    Ok(())
}

/// Runs the waiting operations in passes, each running those whose references are known,
/// until none is left or a pass runs none. Returns the operations left (none once
/// `failOnErrors` is reached).
async fn run_passes(
    tx: &mut Tx,
    mut waiting: Vec<Waiting>,
    progress: &mut Progress,
    req: Request<'_>,
) -> Result<Vec<Waiting>, ScimError> {
    loop {
        let before = waiting.len();
        let mut still = Vec::new();
        let mut queue = std::mem::take(&mut waiting).into_iter().peekable();
        while let Some(w) = queue.next() {
            if progress.stopped() {
                return Ok(Vec::new());
            }
            if !w.refs.iter().all(|r| progress.ids.contains_key(r)) {
                still.push(w);
                continue;
            }
            if new_users::is_plain_create(&w, req) {
                let mut run = vec![w];
                while let Some(next) = queue.next_if(|n| new_users::is_plain_create(n, req)) {
                    run.push(next);
                }
                if !new_users::run(tx, run, progress, req).await? {
                    return Ok(Vec::new());
                }
                continue;
            }
            run_one(tx, &w, progress, req).await?;
        }
        waiting = still;
        if waiting.is_empty() || waiting.len() == before {
            return Ok(waiting);
        }
    }
}

/// Fails the operations left: they reference bulkIds that never got an id.
fn fail_unresolved(left: Vec<Waiting>, progress: &mut Progress) {
    for w in left {
        if progress.stopped() {
            break;
        }
        let missing: Vec<&String> = w
            .refs
            .iter()
            .filter(|r| !progress.ids.contains_key(*r))
            .collect();
        let e = ScimError::new(
            409,
            Some(scim::ScimType::InvalidValue),
            format!(
                "bulkId reference(s) {missing:?} cannot be resolved (unknown, failed or circular)"
            ),
        );
        progress.fail(w.index, &w.op, &e);
    }
}

/// Runs a bulk request and returns the BulkResponse.
pub async fn run(
    svc: &Service,
    body: &Value,
    scopes: Scopes,
    base: &str,
) -> Result<Value, ScimError> {
    let (ops_json, fail_on_errors) = parse_request(body)?;
    let (outcomes, waiting) = plan(ops_json);
    let mut progress = Progress {
        errors: outcomes.len() as u64,
        outcomes,
        ids: HashMap::new(),
        fail_on_errors,
    };
    // Passwords are hashed before the transaction takes the writer (only for a token that
    // may write users: no other can store them).
    let pre = if scopes.has(Scope::WriteUsers) {
        Prehashed::of(body).await?
    } else {
        Prehashed::default()
    };
    let req = Request {
        scopes,
        base,
        pre: &pre,
    };
    let mut tx = svc.store.begin().await.map_err(db)?;
    let left = run_passes(&mut tx, waiting, &mut progress, req).await?;
    fail_unresolved(left, &mut progress);
    tx.commit().await.map_err(db)?;
    let mut outcomes = progress.outcomes;
    outcomes.sort_by_key(|o| o.index);
    let failed = outcomes.iter().filter(|o| o.failed).count();
    tracing::debug!(operations = outcomes.len(), failed, "bulk request done");
    Ok(json!({
        "schemas": [scim::urn::BULK_RESPONSE],
        "Operations": outcomes.into_iter().map(|o| o.json).collect::<Vec<_>>(),
    }))
}
