//! `/Bulk` (RFC 7644 §3.7): many operations in one request, run in one transaction with a
//! savepoint per operation, so a failed operation leaves no trace and the others still land.
//!
//! `bulkId:x` references (in `data` anywhere, e.g. a group's `members[].value`, and in `path`)
//! are resolved to the ids created earlier in the request; an operation whose reference is
//! not yet known waits until the operation that defines it has run, so order in the request
//! does not matter. References that never resolve (unknown, failed or circular) fail with 409.

use std::collections::{HashMap, HashSet};

use scim::ScimError;
use serde_json::{Map, Value, json};
use sqlx::Acquire;

use super::{BULK_MAX_OPERATIONS, Scope, Scopes, Service, db, groups, users};
use crate::store::Conn;

/// One parsed operation.
#[derive(Debug, Clone)]
struct Op {
    method: String,
    path: String,
    bulk_id: Option<String>,
    version: Option<String>,
    data: Option<Value>,
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

/// Runs one operation on `conn`; returns (status, id, resource) on success.
async fn execute(
    conn: &mut Conn,
    op: &Op,
    path: &str,
    data: Option<Value>,
    scopes: Scopes,
    base: &str,
) -> Result<(u16, Option<Value>), ScimError> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (kind, id) = match segs.as_slice() {
        [k] => (*k, None),
        [k, id] => (*k, Some(*id)),
        _ => {
            return Err(ScimError::invalid_value(format!(
                "unsupported bulk path {path}"
            )));
        }
    };
    let is_user = match kind {
        "Users" => true,
        "Groups" => false,
        _ => {
            return Err(ScimError::invalid_value(format!(
                "unsupported bulk path {path}"
            )));
        }
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
    let need_data = || {
        data.clone()
            .ok_or_else(|| ScimError::invalid_syntax("operation has no data"))
    };
    let if_match = op.version.as_deref();
    match (op.method.as_str(), id) {
        ("POST", None) => {
            let r = if is_user {
                users::create_in(conn, need_data()?, base).await?.0
            } else {
                groups::create_in(conn, need_data()?, base, false).await?
            };
            Ok((201, Some(r)))
        }
        ("PUT", Some(id)) => {
            let r = if is_user {
                users::replace_in(conn, id, need_data()?, if_match, base).await?
            } else {
                groups::replace_in(conn, id, need_data()?, if_match, base).await?
            };
            Ok((200, Some(r)))
        }
        ("PATCH", Some(id)) => {
            let d = need_data()?;
            let r = if is_user {
                users::patch_in(conn, id, &d, if_match, base).await?
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

/// Runs a bulk request and returns the BulkResponse.
pub async fn run(
    svc: &Service,
    body: &Value,
    scopes: Scopes,
    base: &str,
) -> Result<Value, ScimError> {
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

    let mut outcomes: Vec<Outcome> = Vec::with_capacity(ops_json.len());
    // Operations still to run: (index, op, bulkIds referenced).
    let mut waiting: Vec<(usize, Op, HashSet<String>)> = Vec::with_capacity(ops_json.len());
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
                waiting.push((i, op, refs));
            }
            Err(e) => outcomes.push(error_outcome(i, None, &e)),
        }
    }

    let mut errors = outcomes.len() as u64;
    let mut ids: HashMap<String, String> = HashMap::new();
    let mut tx = svc.store.begin().await.map_err(db)?;
    'passes: loop {
        let before = waiting.len();
        let mut still = Vec::new();
        for (i, op, refs) in std::mem::take(&mut waiting) {
            if fail_on_errors.is_some_and(|n| errors >= n) {
                break 'passes;
            }
            if !refs.iter().all(|r| ids.contains_key(r)) {
                still.push((i, op, refs));
                continue;
            }
            let mut data = op.data.clone();
            if let Some(d) = &mut data {
                substitute(d, &ids);
            }
            let path = substitute_path(&op.path, &ids);
            let mut sp = tx.begin().await.map_err(db)?;
            let result = execute(&mut sp, &op, &path, data, scopes, base).await;
            match result {
                Ok((status, resource)) => {
                    sp.commit().await.map_err(db)?;
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
                        if let (Some(b), Some(id)) =
                            (&op.bulk_id, r.get("id").and_then(Value::as_str))
                        {
                            ids.insert(b.clone(), id.to_string());
                        }
                    } else {
                        m.insert("location".into(), json!(format!("{base}{path}")));
                    }
                    m.insert("status".into(), json!(status.to_string()));
                    outcomes.push(Outcome {
                        index: i,
                        json: Value::Object(m),
                        failed: false,
                    });
                }
                Err(e) => {
                    sp.rollback().await.map_err(db)?;
                    errors += 1;
                    outcomes.push(error_outcome(i, Some(&op), &e));
                }
            }
        }
        waiting = still;
        if waiting.is_empty() || waiting.len() == before {
            break;
        }
    }
    // What is left references bulkIds that never got an id.
    for (i, op, refs) in waiting {
        if fail_on_errors.is_some_and(|n| errors >= n) {
            break;
        }
        let missing: Vec<&String> = refs.iter().filter(|r| !ids.contains_key(*r)).collect();
        let e = ScimError::new(
            409,
            Some(scim::ScimType::InvalidValue),
            format!(
                "bulkId reference(s) {missing:?} cannot be resolved (unknown, failed or circular)"
            ),
        );
        errors += 1;
        outcomes.push(error_outcome(i, Some(&op), &e));
    }
    tx.commit().await.map_err(db)?;
    outcomes.sort_by_key(|o| o.index);
    let failed = outcomes.iter().filter(|o| o.failed).count();
    tracing::debug!(operations = outcomes.len(), failed, "bulk request done");
    Ok(json!({
        "schemas": [scim::urn::BULK_RESPONSE],
        "Operations": outcomes.into_iter().map(|o| o.json).collect::<Vec<_>>(),
    }))
}
