//! `v2.php`'s api-key actions: reading a user's key (and the admin's view of everyone's),
//! and issuing a new one.

use serde_json::{json, Value};

use super::{err, ok, Caller, NOT_ALLOWED};
use crate::standin::form::FormPairs;
use crate::standin::state::{php_int, ChamiloState};
use crate::standin::Reply;

pub(super) fn get_user_api_key(state: &mut ChamiloState, ctx: &Caller, q: &FormPairs) -> Reply {
    if !ctx.admin {
        return err(NOT_ALLOWED);
    }
    let Some(id) = state
        .user_by_username(q.get("user").unwrap_or(""))
        .map(|u| u.id)
    else {
        return err("User not found.");
    };
    let key = if q.get("force") == Some("1") {
        Some(state.ensure_api_key(id))
    } else {
        state.api_key(id).map(str::to_owned)
    };
    let username = state
        .user(id)
        .map(|u| u.username.clone())
        .unwrap_or_default();
    ok(json!({"id": id, "username": username, "api_key": key}))
}

pub(super) fn get_users_api_keys(state: &ChamiloState, ctx: &Caller, q: &FormPairs) -> Reply {
    if !ctx.admin {
        return err(NOT_ALLOWED);
    }
    let page = php_int(q.get("page").unwrap_or("1")).max(1) as usize;
    let per_page = php_int(q.get("per_page").unwrap_or("30")).max(1) as usize;
    let total = state.user_count();
    let list: Vec<Value> = state
        .users()
        .skip((page - 1) * per_page)
        .take(per_page)
        .map(|u| json!({"id": u.id, "username": u.username, "api_key": state.api_key(u.id)}))
        .collect();
    let next = if page * per_page < total {
        json!(format!(
            "/main/webservices/api/v2.php?api_key={}&username={}&page={}&per_page={}",
            ctx.api_key,
            ctx.username,
            page + 1,
            per_page
        ))
    } else {
        Value::Null
    };
    ok(json!({"total": total, "list": list, "length": list.len(), "next": next}))
}

pub(super) fn update_user_apikey(state: &mut ChamiloState, ctx: &Caller, p: &FormPairs) -> Reply {
    let id = php_int(p.get("user_id").unwrap_or("")) as u64;
    let current = p.get("current_api_key").unwrap_or("");
    let matches = state.api_key(id).is_some_and(|k| k == current);
    if !(ctx.admin || ctx.id == id) || !matches {
        return err(NOT_ALLOWED);
    }
    let key = state.new_api_key(id);
    ok(json!({"api_key": key}))
}
