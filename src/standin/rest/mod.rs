//! `v2.php`: Chamilo's current 1.11.x REST web services, as observed.
//!
//! Every function here is pure over [`ChamiloState`]; the HTTP layer in `mod.rs` decodes the
//! request, takes the lock, calls [`handle`] and then sleeps for the modelled cost.

mod classes;
mod keys;

use serde_json::{json, Map, Value};

use self::classes::{
    add_group, add_group_sub_user, delete_group, delete_group_sub_user, get_group_sub_users,
    get_groups, get_users_subscribed_to_course, save_course, subscribe_user_to_course,
    unsubscribe_user_from_course, user_courses,
};
use self::keys::{get_user_api_key, get_users_api_keys, update_user_apikey};

use super::clock::sql_datetime;
use super::form::{FormPairs, PhpValue};
use super::state::{
    fold, php_int, store_text, ChamiloState, NewUser, User, EMAIL_MAX, FIRSTNAME_MAX,
    INSTALLED_LANGUAGES, LASTNAME_MAX, OFFICIAL_CODE_MAX, PHONE_MAX,
};

/// Chamilo's refusal text for admin-only actions (HTTP 200, `error:true`).
pub const NOT_ALLOWED: &str = "You are not allowed to see this page. Either your connection has expired or you are trying to access a page for which you do not have the sufficient privileges.";

/// The decoded request as v2.php sees it.
#[derive(Debug, Clone, Default)]
pub struct RestRequest {
    pub query: FormPairs,
    pub body: FormPairs,
}

/// What v2.php answers.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// HTTP 200, `application/json`, the envelope.
    Json(Value),
    /// A PHP fatal: HTTP 500, `text/html`, empty body.
    Fatal,
}

/// Work done by a call, for the cost model.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Work {
    /// Users scanned by a listing.
    pub listed_users: usize,
    /// Extra fields read per listed user.
    pub extra_fields: usize,
}

impl Work {
    /// Queries a real Chamilo runs for this call: one, plus one per listed user and extra
    /// field.
    pub fn queries(&self) -> u64 {
        let per_field = self.listed_users.saturating_mul(self.extra_fields);
        u64::try_from(per_field)
            .unwrap_or(u64::MAX)
            .saturating_add(1)
    }
}

/// Per-call facts the handlers need besides the state.
#[derive(Debug, Clone)]
pub struct Site {
    /// `http://127.0.0.1:port` (no trailing slash).
    pub base_url: String,
}

fn ok(data: Value) -> Reply {
    Reply::Json(json!({"error": false, "data": data}))
}

fn err(message: impl Into<String>) -> Reply {
    Reply::Json(json!({"error": true, "message": message.into()}))
}

/// The action name as v2.php resolves it (query string or `hash=` first, then the body).
pub fn action_of(req: &RestRequest) -> String {
    caller_params(req)
        .get("action")
        .map(str::to_owned)
        .or_else(|| req.body.get("action").map(str::to_owned))
        .unwrap_or_default()
}

/// `action`, `username`, `api_key` come from the query string (or its `hash=` JSON) first.
fn caller_params(req: &RestRequest) -> FormPairs {
    if let Some(hash) = req.query.get("hash") {
        if let Ok(Value::Object(map)) = serde_json::from_str::<Value>(hash) {
            let pairs = map
                .into_iter()
                .map(|(k, v)| {
                    let v = match v {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    (k, v)
                })
                .collect();
            return FormPairs::from_pairs(pairs);
        }
    }
    req.query.clone()
}

fn caller_field(req: &RestRequest, caller: &FormPairs, name: &str) -> Option<String> {
    caller
        .get(name)
        .or_else(|| req.body.get(name))
        .map(str::to_owned)
}

/// Answers one v2.php request at the second `now` (UNIX time; what the database's `NOW()`
/// and `updated_at` stamps would show).
pub fn handle(state: &mut ChamiloState, site: &Site, req: &RestRequest, now: u64) -> (Reply, Work) {
    let caller = caller_params(req);
    let action = caller_field(req, &caller, "action").unwrap_or_default();
    let username = caller_field(req, &caller, "username").unwrap_or_default();
    let mut work = Work::default();

    if action == "authenticate" {
        return (authenticate(state, site, req, &username), work);
    }
    let Some(api_key) = caller_field(req, &caller, "api_key") else {
        return (Reply::Fatal, work);
    };
    let caller_id = match state.user_by_username(&username) {
        Some(u) if state.key_owner(&api_key) == Some(u.id) => u.id,
        _ => return (err("Invalid API key"), work),
    };
    let admin = state.is_admin(caller_id);
    let p = &req.body;
    let ctx = Caller {
        id: caller_id,
        admin,
        username,
        api_key,
    };
    let reply = match action.as_str() {
        "user_profile" => user_profile(state, site, caller_id),
        "get_users" => get_users(state, &ctx, p, &mut work),
        "username_exist" => {
            let login = p.get("loginname").unwrap_or("");
            ok(json!([state.user_by_username(login).is_some()]))
        }
        "users_profiles_by_extra_field" => users_profiles_by_extra_field(state, site, &ctx, p),
        "save_user" => save_user(state, &ctx, p, now).map_or_else(|e| e, |id| ok(json!([id]))),
        "save_user_get_apikey" => match save_user(state, &ctx, p, now) {
            Ok(id) => {
                let key = state.ensure_api_key(id);
                ok(json!({"id": id, "api_key": key}))
            }
            Err(e) => e,
        },
        "save_user_json" => {
            let pairs = json_params(p.get("json").unwrap_or(""));
            save_user(state, &ctx, &pairs, now).map_or_else(|e| e, |id| ok(json!([id])))
        }
        "update_user_from_username" => update_user_from_username(state, &ctx, p, now),
        "delete_user" => delete_user(state, &ctx, p),
        "get_user_api_key" => get_user_api_key(state, &ctx, &req.query),
        "get_users_api_keys" => get_users_api_keys(state, &ctx, &req.query),
        "update_user_apikey" => update_user_apikey(state, &ctx, p),
        "get_groups" => get_groups(state, &ctx, p),
        "add_group" => add_group(state, &ctx, p),
        "group_exists" => {
            let name = p.get("name").unwrap_or("");
            ok(json!([state.group_by_name(name).is_some()]))
        }
        "delete_group" => delete_group(state, &ctx, p),
        "add_group_sub_user" => add_group_sub_user(state, p),
        "delete_group_sub_user" => delete_group_sub_user(state, p),
        "get_group_sub_users" => get_group_sub_users(state, p),
        "get_user_sub_group" => {
            let uid = php_int(p.get("user_id").unwrap_or("")) as u64;
            let groups: Vec<u64> = state
                .groups()
                .filter(|g| g.members.iter().any(|(u, _)| *u == uid))
                .map(|g| g.id)
                .collect();
            ok(json!({"groups": groups}))
        }
        "save_course" => save_course(state, &ctx, p),
        "subscribe_user_to_course" => subscribe_user_to_course(state, &ctx, p),
        "unsubscribe_user_from_course" => unsubscribe_user_from_course(state, &ctx, p),
        "get_users_subscribed_to_course" => get_users_subscribed_to_course(state, p),
        "user_courses" => user_courses(state, &ctx, p, site),
        _ => err("Invalid action"),
    };
    (reply, work)
}

struct Caller {
    id: u64,
    admin: bool,
    username: String,
    api_key: String,
}

fn authenticate(state: &mut ChamiloState, site: &Site, req: &RestRequest, username: &str) -> Reply {
    let password = req.body.get("password").unwrap_or("");
    let id = match state.user_by_username(username) {
        Some(u) if u.password == password => u.id,
        _ => return err("Invalid user detected."),
    };
    let key = state.ensure_api_key(id);
    ok(json!({"url": format!("{}/", site.base_url), "apiKey": key, "gcmSenderId": null}))
}

fn profile(site: &Site, u: &User) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert(
        "pictureUri".into(),
        json!(format!("{}/main/img/unknown.jpg", site.base_url)),
    );
    m.insert("id".into(), json!(u.id));
    m.insert("status".into(), json!(u.status));
    m.insert("fullName".into(), json!(u.full_name()));
    m.insert("username".into(), json!(u.username));
    m.insert("officialCode".into(), json!(u.official_code));
    m.insert("phone".into(), json!(u.phone));
    m
}

fn user_profile(state: &ChamiloState, site: &Site, id: u64) -> Reply {
    match state.user(id) {
        Some(u) => {
            let mut m = profile(site, u);
            m.insert("extra".into(), json!([]));
            ok(Value::Object(m))
        }
        None => err("User not found."),
    }
}

fn get_users(state: &ChamiloState, ctx: &Caller, p: &FormPairs, work: &mut Work) -> Reply {
    if !ctx.admin {
        return err(NOT_ALLOWED);
    }
    let status = p.get("status").unwrap_or("");
    let wanted: Option<i64> = if status == "*" {
        None
    } else if !status.is_empty() && status.bytes().all(|b| b.is_ascii_digit()) {
        Some(php_int(status))
    } else {
        return ok(json!([]));
    };
    let mut fields: Vec<(String, String)> = Vec::new();
    for name in p.get("extra_fields").unwrap_or("").split(',') {
        let name = name.trim();
        if name.is_empty() || fields.iter().any(|(n, _)| n == name) {
            continue;
        }
        if let Some(stored) = state.extra_field(name) {
            fields.push((name.to_owned(), stored.to_owned()));
        }
    }
    let mut users: Vec<&User> = state
        .users()
        .filter(|u| wanted.is_none_or(|s| u.status == s))
        .collect();
    // Chamilo builds a row, and reads each requested extra field, for the users it returns:
    // a listing of one status costs what that status holds.
    work.listed_users = users.len();
    work.extra_fields = fields.len();
    users.sort_by_cached_key(|u| (u.firstname.as_deref().map(fold), u.id));
    let data: Vec<Value> = users
        .into_iter()
        .map(|u| {
            let mut m = Map::new();
            m.insert("id".into(), json!(u.id));
            m.insert("firstname".into(), json!(u.firstname));
            m.insert("lastname".into(), json!(u.lastname));
            m.insert("email".into(), json!(u.email));
            m.insert("username".into(), json!(u.username));
            m.insert("active".into(), json!(u.active));
            for (name, stored) in &fields {
                let v = match u.extra.get(stored) {
                    None => json!(""),
                    Some(None) => Value::Null,
                    Some(Some(v)) => json!(v),
                };
                m.insert(name.clone(), v);
            }
            Value::Object(m)
        })
        .collect();
    ok(Value::Array(data))
}

fn users_profiles_by_extra_field(
    state: &ChamiloState,
    site: &Site,
    ctx: &Caller,
    p: &FormPairs,
) -> Reply {
    if !ctx.admin {
        return err(NOT_ALLOWED);
    }
    let (Some(name), Some(value)) = (p.get("field_name"), p.get("field_value")) else {
        return Reply::Fatal;
    };
    let only_active = p.get("active") == Some("1");
    let mut m = Map::new();
    for u in state.users_by_extra_value(name, value) {
        if only_active && u.active != 1 {
            continue;
        }
        m.insert(u.id.to_string(), Value::Object(profile(site, u)));
    }
    if m.is_empty() {
        ok(json!([]))
    } else {
        ok(Value::Object(m))
    }
}

/// Parameters of `save_user_json`: the `json` field's object as form pairs.
fn json_params(raw: &str) -> FormPairs {
    let pairs = match serde_json::from_str::<Value>(raw) {
        Ok(Value::Object(map)) => map
            .into_iter()
            .map(|(k, v)| {
                let v = match v {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                (k, v)
            })
            .collect(),
        _ => Vec::new(),
    };
    FormPairs::from_pairs(pairs)
}

/// Chamilo's default `USERNAME_PURIFIER` and `USERNAME_MAX_LENGTH`.
pub fn valid_username(login: &str) -> bool {
    !login.is_empty()
        && login.chars().count() <= 50
        && login
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '$' | '-'))
}

/// A close approximation of PHP's `FILTER_VALIDATE_EMAIL`.
pub fn valid_email(email: &str) -> bool {
    let Some((local, domain)) = email.rsplit_once('@') else {
        return false;
    };
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+/=?^_`{|}~.-".contains(c));
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    local_ok && domain_ok
}

fn doctrine_insert_error(new: &NewUser, creator: u64, reason: &str, now: u64) -> String {
    let q = |s: &str| format!("\"{s}\"");
    let opt = |s: &Option<String>| s.as_deref().map_or("null".to_owned(), q);
    let hash = format!("$2y$04${}", super::state::random_hex(26));
    let salt = super::state::random_hex(21);
    let now = sql_datetime(now);
    let login = q(&new.username);
    let email = q(&new.email);
    format!(
        "An exception occurred while executing 'INSERT INTO user (user_id, username, username_canonical, email_canonical, email, locked, enabled, expired, credentials_expired, credentials_expire_at, expires_at, lastname, firstname, password, phone, address, salt, last_login, created_at, updated_at, confirmation_token, password_requested_at, roles, profile_completed, auth_source, status, official_code, picture_uri, creator_id, competences, diplomas, openarea, teach, productions, language, registration_date, expiration_date, active, openid, theme, hr_dept_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)' with params [null, {login}, {canon}, {email_canon}, {email}, 0, 1, 0, 0, null, null, {last}, {first}, {hash}, {phone}, \"\", {salt}, null, null, null, null, null, \"a:0:{{}}\", null, {auth}, null, \"\", \"\", {creator}, null, null, null, null, null, {lang}, {now}, {exp}, 1, null, null, 0]:\n\n{reason}",
        canon = q(&new.username.to_lowercase()),
        email_canon = q(&new.email.to_lowercase()),
        last = q(&new.lastname),
        first = opt(&new.firstname),
        hash = q(&hash),
        phone = q(&new.phone),
        salt = q(&salt),
        auth = q(&new.auth_source),
        lang = q(&new.language),
        now = q(&now),
        exp = opt(&new.expiration_date),
    )
}

fn save_user(
    state: &mut ChamiloState,
    ctx: &Caller,
    p: &FormPairs,
    now: u64,
) -> Result<u64, Reply> {
    if !ctx.admin {
        return Err(err(NOT_ALLOWED));
    }
    let login = p.get("loginname").unwrap_or("").to_owned();
    if state.user_by_username(&login).is_some() {
        return Err(err("This login is not available"));
    }
    let not_registered = || err("User not registered.");
    if !valid_username(&login) {
        return Err(not_registered());
    }
    let email = p.get("email").unwrap_or("").to_owned();
    if !valid_email(&email) {
        return Err(not_registered());
    }
    let auth_source = match p.get("auth_source") {
        Some(a) if !a.is_empty() => a.to_owned(),
        _ => "platform".to_owned(),
    };
    let password = match p.get("password") {
        Some(pw) if !pw.is_empty() => pw.to_owned(),
        _ if auth_source == "platform" => return Err(not_registered()),
        // Chamilo stores the auth source's name as the password when none is given.
        _ => auth_source.clone(),
    };
    let language = p
        .get("language")
        .map(str::to_lowercase)
        .filter(|l| INSTALLED_LANGUAGES.contains(&l.as_str()))
        .unwrap_or_else(|| state.platform_language.clone());
    let mut extra: Vec<(String, Option<String>)> = vec![(
        p.get("original_user_id_name").unwrap_or("").to_owned(),
        p.get("original_user_id_value").map(str::to_owned),
    )];
    extra.extend(indexed_extra(p).into_iter().map(|(n, v)| (n, Some(v))));
    let new = NewUser {
        username: login,
        firstname: p.get("firstname").map(str::to_owned),
        lastname: p.get("lastname").unwrap_or("").to_owned(),
        email,
        password,
        status: 0,
        official_code: String::new(),
        phone: p.get("phone").unwrap_or("").to_owned(),
        language,
        auth_source,
        expiration_date: p.get("expiration_date").map(str::to_owned),
        extra,
    };
    let Some(status) = p.get("status") else {
        return Err(err(doctrine_insert_error(
            &new,
            ctx.id,
            "SQLSTATE[23000]: Integrity constraint violation: 1048 Column 'status' cannot be null",
            now,
        )));
    };
    let new = NewUser {
        status: php_int(status),
        ..new
    };
    state
        .insert_user_at(new, now)
        .ok_or_else(|| err("This login is not available"))
}

/// `extra[i][field_name]` / `extra[i][field_value]` pairs, in index order of appearance.
fn indexed_extra(p: &FormPairs) -> Vec<(String, String)> {
    let mut slots: Vec<(String, Option<String>, Option<String>)> = Vec::new();
    for (path, value) in p.array_entries("extra") {
        if path.len() != 2 {
            continue;
        }
        let idx = path[0].clone();
        let pos = match slots.iter().position(|(i, _, _)| *i == idx) {
            Some(pos) => pos,
            None => {
                slots.push((idx, None, None));
                slots.len() - 1
            }
        };
        match path[1].as_str() {
            "field_name" => slots[pos].1 = Some(value),
            "field_value" => slots[pos].2 = Some(value),
            _ => {}
        }
    }
    slots
        .into_iter()
        .filter_map(|(_, n, v)| Some((n?, v.unwrap_or_default())))
        .collect()
}

/// The user columns `update_user_from_username` sets (keys matched case-insensitively, as
/// PHP's `switch (strtolower($name))`). The last group is accepted and not stored by the
/// stand-in (its `User` has no such column). `roles` and `registration_date`, which Chamilo
/// also accepts, fail in ways not recorded; the stand-in reports them as unsupported.
const COLUMNS: &[&str] = &[
    "firstname",
    "lastname",
    "email",
    "phone",
    "status",
    "official_code",
    "language",
    "auth_source",
    "active",
    "enabled",
    "expiration_date",
    "competences",
    "diplomas",
    "openarea",
    "teach",
    "productions",
    "address",
    "profile_completed",
    "picture_uri",
    "creator_id",
    "openid",
    "theme",
    "hr_dept_id",
];

/// Why an `extra[…]` entry could not be saved.
enum ExtraFailure {
    /// `{"error":true,"message":…}`.
    Message(String),
    /// An uncaught PHP `Error` (not an `Exception`): HTTP 500, empty body.
    Fatal,
}

/// Chamilo's `Rest::updateUserFromUserName($_POST)`, step by step:
///
/// 1. the first key equal to `loginname` (any case) names the user (`User not found.`);
///    without one, `No data available`; a non-admin may only update itself;
/// 2. every POST key, in `$_POST` order (first appearance; all `extra[…]` pairs are the one key
///    `extra`), is handled when reached: a column key records a pending value; `language`
///    must be an installed folder name (`Language unavailable.`); `extra` saves each entry at
///    once, in order ([`ChamiloState::save_extra_value`]); `username`, `api_key`, `action`,
///    `loginname` are skipped; any other key aborts (`Unsupported update. '<key>'`);
/// 3. only after the loop are the pending columns written, together.
///
/// An abort answers `error:true`: the extra values saved before it stay saved, and no column
/// is written. The call is not atomic, exactly like Chamilo's.
fn update_user_from_username(
    state: &mut ChamiloState,
    ctx: &Caller,
    p: &FormPairs,
    now: u64,
) -> Reply {
    let params = p.to_php();
    if params.is_empty() {
        return err("NoData");
    }
    let Some((_, login)) = params
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("loginname"))
    else {
        return err("No data available");
    };
    let target = match login {
        PhpValue::Str(login) => state.user_by_username(login).map(|u| u.id),
        // Database::escape_string(array): a TypeError.
        PhpValue::Array(_) => return Reply::Fatal,
    };
    let Some(target) = target else {
        return err("User not found.");
    };
    if !ctx.admin && target != ctx.id {
        return err(NOT_ALLOWED);
    }
    let mut pending: Vec<(String, String)> = Vec::new();
    for (key, value) in params.iter() {
        let lower = key.to_ascii_lowercase();
        match lower.as_str() {
            "username" | "api_key" | "action" | "loginname" => {}
            "extra" => {
                if let Err(failure) = save_extras(state, target, value, now) {
                    return match failure {
                        ExtraFailure::Message(m) => err(m),
                        ExtraFailure::Fatal => Reply::Fatal,
                    };
                }
            }
            "language" if !INSTALLED_LANGUAGES.contains(&value.as_php_string()) => {
                return err("Language unavailable.");
            }
            column if COLUMNS.contains(&column) => {
                pending.push((lower.clone(), value.as_php_string().to_owned()));
            }
            _ => return err(format!("Unsupported update. '{key}'")),
        }
    }
    // `UserManager::getManager()->updateUser($user, true)`: every column at once.
    let found = state.edit_user_at(target, now, |user| {
        for (key, value) in &pending {
            let value = value.as_str();
            match key.as_str() {
                "firstname" => user.firstname = Some(store_text(value, FIRSTNAME_MAX)),
                "lastname" => user.lastname = store_text(value, LASTNAME_MAX),
                "email" => user.email = store_text(value, EMAIL_MAX),
                "phone" => user.phone = store_text(value, PHONE_MAX),
                "status" => user.status = php_int(value),
                "official_code" => user.official_code = store_text(value, OFFICIAL_CODE_MAX),
                "language" => user.language = value.to_owned(),
                "auth_source" => user.auth_source = value.to_owned(),
                "active" => user.active = php_int(value),
                "enabled" => user.enabled = php_int(value),
                "expiration_date" => user.expiration_date = Some(value.to_owned()),
                _ => {}
            }
        }
    });
    if found {
        ok(json!([true]))
    } else {
        err("User not found.")
    }
}

/// The `case 'extra':` branch: an array whose element `0` is an array is the indexed form
/// (`extra[i][field_name]`, `extra[i][field_value]`; every element is taken as such an entry),
/// any other array the associative form (`extra[variable]=value`); a scalar, or an empty
/// array, is ignored. Entries are saved one by one; the first failure stops the loop.
fn save_extras(
    state: &mut ChamiloState,
    user: u64,
    extra: &PhpValue,
    now: u64,
) -> Result<(), ExtraFailure> {
    let PhpValue::Array(entries) = extra else {
        return Ok(());
    };
    if matches!(entries.get("0"), Some(PhpValue::Array(_))) {
        for (_, entry) in entries.iter() {
            // `$field['field_name']` on a string: PHP 8's TypeError, which v2.php does not catch.
            let PhpValue::Array(field) = entry else {
                return Err(ExtraFailure::Fatal);
            };
            let saved = match (field.get("field_name"), field.get("field_value")) {
                (Some(name), Some(value)) => state
                    .save_extra_value(user, name.as_php_string(), value.as_php_string(), now)
                    .is_ok(),
                _ => false,
            };
            if !saved {
                return Err(ExtraFailure::Message(format!(
                    "Could not update extra field value.: {}",
                    field.print_r()
                )));
            }
        }
    } else {
        for (name, value) in entries.iter() {
            if state
                .save_extra_value(user, name, value.as_php_string(), now)
                .is_err()
            {
                return Err(ExtraFailure::Message(format!(
                    "Could not update extra field value.: {name}"
                )));
            }
        }
    }
    Ok(())
}

fn delete_user(state: &mut ChamiloState, ctx: &Caller, p: &FormPairs) -> Reply {
    if !ctx.admin {
        return err(NOT_ALLOWED);
    }
    let raw = p.get("user_id").unwrap_or("");
    if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return ok(json!({"status": false}));
    }
    let id = php_int(raw) as u64;
    if state.is_only_teacher(id) {
        return ok(json!({"status": false}));
    }
    state.remove_user(id);
    ok(json!({"status": true}))
}

/// Serialises like PHP's `json_encode` with default flags: compact, `/` escaped as `\/`,
/// non-ASCII as `\uXXXX` (UTF-16 units).
pub fn php_json(value: &Value) -> String {
    let plain = value.to_string();
    let mut out = String::with_capacity(plain.len() + 16);
    for c in plain.chars() {
        match c {
            '/' => out.push_str("\\/"),
            c if c.is_ascii() => out.push(c),
            c => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: u64 = 1_796_234_755;

    fn site() -> Site {
        Site {
            base_url: "http://127.0.0.1:1".into(),
        }
    }

    /// A fresh state with the admin's key and `ann1` (id 3) created at `T` with `ext=EXT-1`
    /// and `name=ann@example.com`.
    fn with_ann() -> (ChamiloState, String) {
        let mut state = ChamiloState::fresh("pw");
        let key = state.ensure_api_key(1);
        let created = call(
            &mut state,
            &key,
            T,
            "action=save_user&firstname=Ann&lastname=Lee&status=5&email=ann%40example.com&loginname=ann1&password=Secret123&original_user_id_name=ext&original_user_id_value=EXT-1&extra[0][field_name]=name&extra[0][field_value]=ann%40example.com",
        );
        assert_eq!(created, json!({"error": false, "data": [3]}));
        (state, key)
    }

    fn call(state: &mut ChamiloState, key: &str, now: u64, body: &str) -> Value {
        let req = RestRequest {
            query: FormPairs::default(),
            body: FormPairs::parse(&format!("username=admin&api_key={key}&{body}")),
        };
        match handle(state, &site(), &req, now).0 {
            Reply::Json(v) => v,
            Reply::Fatal => json!("FATAL"),
        }
    }

    fn update(state: &mut ChamiloState, key: &str, now: u64, fields: &str) -> Value {
        call(
            state,
            key,
            now,
            &format!("action=update_user_from_username&loginname=ann1&{fields}"),
        )
    }

    fn ok_true() -> Value {
        json!({"error": false, "data": [true]})
    }

    fn refused(message: &str) -> Value {
        json!({"error": true, "message": message})
    }

    fn indexed_failure(name: &str, value: &str) -> Value {
        refused(&format!(
            "Could not update extra field value.: Array\n(\n    [field_name] => {name}\n    [field_value] => {value}\n)\n"
        ))
    }

    fn extra(state: &ChamiloState, field: &str) -> (Option<String>, Option<u64>) {
        let u = state.user(3).expect("ann");
        (
            u.extra.get(field).cloned().flatten(),
            u.extra_updated_at.get(field).copied(),
        )
    }

    #[test]
    fn save_user_stamps_every_extra_value() {
        let (state, _) = with_ann();
        let u = state.user(3).unwrap();
        assert_eq!(u.extra.len(), 3);
        assert!(u.extra_updated_at.values().all(|t| *t == T));
        assert_eq!(u.extra_updated_at.len(), 3);
    }

    #[test]
    fn same_value_in_the_same_second_fails_and_one_second_later_succeeds() {
        let (mut state, key) = with_ann();
        // The value save_user just wrote, in the same second.
        let same = "extra[0][field_name]=name&extra[0][field_value]=ann%40example.com";
        assert_eq!(
            update(&mut state, &key, T, same),
            indexed_failure("name", "ann@example.com")
        );
        assert_eq!(update(&mut state, &key, T + 1, same), ok_true());
        assert_eq!(extra(&state, "name").1, Some(T + 1), "rewritten: stamped");
        assert_eq!(
            update(&mut state, &key, T + 1, same),
            indexed_failure("name", "ann@example.com")
        );
        // A different value in the same second is a real change.
        let other = "extra[0][field_name]=name&extra[0][field_value]=ann2";
        assert_eq!(update(&mut state, &key, T + 1, other), ok_true());
        // Associative form: the same rule, the other message.
        assert_eq!(
            update(&mut state, &key, T + 1, "extra[name]=ann2"),
            refused("Could not update extra field value.: name")
        );
        assert_eq!(
            update(&mut state, &key, T + 2, "extra[NAME]=ann2"),
            ok_true()
        );
        // Insert path: no row yet, then the empty value again in the same second.
        call(
            &mut state,
            &key,
            T,
            "action=save_user&lastname=B&status=5&email=b%40example.com&loginname=bob1&password=x",
        );
        let empty = "action=update_user_from_username&loginname=bob1&extra[0][field_name]=name&extra[0][field_value]=";
        assert_eq!(call(&mut state, &key, T + 5, empty), ok_true());
        assert_eq!(
            call(&mut state, &key, T + 5, empty),
            indexed_failure("name", "")
        );
        // Columns alone can be rewritten unchanged any number of times.
        for _ in 0..3 {
            assert_eq!(
                update(&mut state, &key, T + 5, "firstname=Ann&active=1"),
                ok_true()
            );
        }
    }

    #[test]
    fn extras_apply_in_order_and_columns_only_at_the_end() {
        let (mut state, key) = with_ann();
        // Columns before the extras, the second extra fails: the first stays, no column.
        let r = update(
            &mut state,
            &key,
            T,
            "firstname=Anne&active=0&extra[0][field_name]=name&extra[0][field_value]=v3&extra[1][field_name]=ext&extra[1][field_value]=EXT-1",
        );
        assert_eq!(r, indexed_failure("ext", "EXT-1"));
        assert_eq!(extra(&state, "name"), (Some("v3".into()), Some(T)));
        let u = state.user(3).unwrap();
        assert_eq!((u.firstname.as_deref(), u.active), (Some("Ann"), 1));
        // Columns after the failing extra: not written either.
        let r = update(
            &mut state,
            &key,
            T,
            "extra[ext]=EXT-1&firstname=Annie&status=1",
        );
        assert_eq!(r, refused("Could not update extra field value.: ext"));
        let u = state.user(3).unwrap();
        assert_eq!((u.firstname.as_deref(), u.status), (Some("Ann"), 5));
        // All `extra[…]` pairs are one key at the position of the first: both entries are
        // saved before the unsupported key placed between them aborts the call.
        let r = update(
            &mut state,
            &key,
            T + 1,
            "extra[0][field_name]=name&extra[0][field_value]=a&bogus=1&extra[1][field_name]=ext&extra[1][field_value]=b&firstname=X",
        );
        assert_eq!(r, refused("Unsupported update. 'bogus'"));
        assert_eq!(extra(&state, "name").0.as_deref(), Some("a"));
        assert_eq!(extra(&state, "ext").0.as_deref(), Some("b"));
        assert_eq!(state.user(3).unwrap().firstname.as_deref(), Some("Ann"));
        // The unsupported key first: nothing saved.
        let r = update(&mut state, &key, T + 2, "Bogus=1&extra[name]=c");
        assert_eq!(r, refused("Unsupported update. 'Bogus'"));
        assert_eq!(extra(&state, "name").0.as_deref(), Some("a"));
        // Success writes every column at once; keys match case-insensitively like PHP's
        // strtolower switch.
        let r = update(
            &mut state,
            &key,
            T + 2,
            "FirstName=Anne&active=0&extra[name]=c&official_code=OC",
        );
        assert_eq!(r, ok_true());
        let u = state.user(3).unwrap();
        assert_eq!(
            (u.firstname.as_deref(), u.active, u.official_code.as_str()),
            (Some("Anne"), 0, "OC")
        );
        assert_eq!(extra(&state, "name"), (Some("c".into()), Some(T + 2)));
    }

    #[test]
    fn unknown_extra_field_fails_without_creating_it() {
        let (mut state, key) = with_ann();
        let r = update(
            &mut state,
            &key,
            T + 1,
            "extra[0][field_name]=name&extra[0][field_value]=n2&extra[1][field_name]=scim_attributes&extra[1][field_value]=roles%3Dteacher&firstname=Z",
        );
        assert_eq!(r, indexed_failure("scim_attributes", "roles=teacher"));
        assert_eq!(
            extra(&state, "name").0.as_deref(),
            Some("n2"),
            "saved before"
        );
        assert!(state.extra_field("scim_attributes").is_none());
        assert_eq!(state.user(3).unwrap().firstname.as_deref(), Some("Ann"));
        assert_eq!(
            update(&mut state, &key, T + 1, "extra[scim_attributes]=x"),
            refused("Could not update extra field value.: scim_attributes")
        );
        // An entry without field_value: print_r of what it has.
        assert_eq!(
            update(&mut state, &key, T + 1, "extra[0][field_name]=name"),
            refused("Could not update extra field value.: Array\n(\n    [field_name] => name\n)\n")
        );
        // A scalar next to indexed entries: PHP 8's TypeError, after the entries before it.
        assert_eq!(
            update(
                &mut state,
                &key,
                T + 2,
                "extra[0][field_name]=name&extra[0][field_value]=n3&extra[1]=s"
            ),
            json!("FATAL")
        );
        assert_eq!(extra(&state, "name").0.as_deref(), Some("n3"));
        // A scalar `extra` is ignored.
        assert_eq!(update(&mut state, &key, T + 3, "extra=s"), ok_true());
    }

    #[test]
    fn language_is_checked_when_reached() {
        let (mut state, key) = with_ann();
        // Before the extras: nothing saved.
        let r = update(&mut state, &key, T + 1, "language=fr&extra[name]=v2");
        assert_eq!(r, refused("Language unavailable."));
        assert_eq!(extra(&state, "name").0.as_deref(), Some("ann@example.com"));
        // After the extras: they stay saved, the language and other columns are not written.
        let r = update(
            &mut state,
            &key,
            T + 1,
            "firstname=Z&extra[name]=v2&language=FRENCH",
        );
        assert_eq!(r, refused("Language unavailable."));
        assert_eq!(extra(&state, "name").0.as_deref(), Some("v2"));
        let u = state.user(3).unwrap();
        assert_eq!(
            (u.firstname.as_deref(), u.language.as_str()),
            (Some("Ann"), "english")
        );
        assert_eq!(
            update(&mut state, &key, T + 1, "language=french"),
            ok_true()
        );
        assert_eq!(state.user(3).unwrap().language, "french");
    }

    #[test]
    fn loginname_is_found_first_and_skipped_keys() {
        let (mut state, key) = with_ann();
        let r = call(
            &mut state,
            &key,
            T,
            "action=update_user_from_username&extra[name]=x&LOGINNAME=ANN1&username=other&api_key=k",
        );
        // `username`/`api_key` in the body are the caller's: the last ones win for the
        // caller, so repeat the real ones after.
        assert_eq!(r, refused("Invalid API key"));
        let r = call(
            &mut state,
            &key,
            T + 1,
            &format!("action=update_user_from_username&extra[name]=x&LOGINNAME=ANN1&username=admin&api_key={key}"),
        );
        assert_eq!(r, ok_true());
        assert_eq!(extra(&state, "name").0.as_deref(), Some("x"));
        let r = call(
            &mut state,
            &key,
            T + 1,
            "action=update_user_from_username&loginname=nobody&extra[name]=y",
        );
        assert_eq!(r, refused("User not found."));
        let r = call(
            &mut state,
            &key,
            T + 1,
            "action=update_user_from_username&extra[name]=y",
        );
        assert_eq!(r, refused("No data available"));
        assert_eq!(extra(&state, "name").0.as_deref(), Some("x"));
    }

    #[test]
    fn user_courses_lists_a_users_courses_for_an_admin_only() {
        let (mut state, key) = with_ann();
        let maths = state.insert_course("MATH", "Maths").unwrap();
        state.insert_course("ART", "Art").unwrap();
        let zoo = state.insert_course("ZOO", "Zoology").unwrap();
        for body in [
            "action=subscribe_user_to_course&course_code=zoo&user_id=3",
            "action=subscribe_user_to_course&course_id=1&user_id=3&status=1",
        ] {
            assert_eq!(call(&mut state, &key, T, body), ok_true());
        }
        let listed = call(&mut state, &key, T, "action=user_courses&user_id=3");
        let rows: Vec<(u64, String)> = listed["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["id"].as_u64().unwrap(),
                    c["code"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        // By title; ann is the only teacher of Maths.
        assert_eq!(rows, vec![(maths, "MATH".into()), (zoo, "ZOO".into())]);
        assert_eq!(listed["data"][0]["teachers"], "Ann Lee");
        // Without user_id: the caller's own (the admin has none); an unknown user has none.
        for body in ["action=user_courses", "action=user_courses&user_id=999"] {
            assert_eq!(
                call(&mut state, &key, T, body),
                json!({"error": false, "data": []})
            );
        }
        // Another user's courses only for an admin.
        let ann_key = state.ensure_api_key(3);
        let req = RestRequest {
            query: FormPairs::default(),
            body: FormPairs::parse(&format!(
                "username=ann1&api_key={ann_key}&action=user_courses&user_id=1"
            )),
        };
        assert!(matches!(
            handle(&mut state, &site(), &req, T).0,
            Reply::Json(v) if v == refused(NOT_ALLOWED)
        ));
    }

    #[test]
    fn php_json_escapes_like_php() {
        let v = json!({"url": "http://x/", "n": "Zoé 😀"});
        assert_eq!(
            php_json(&v),
            r#"{"url":"http:\/\/x\/","n":"Zo\u00e9 \ud83d\ude00"}"#
        );
    }

    #[test]
    fn username_rules() {
        assert!(valid_username("a.b_c-d$e"));
        assert!(valid_username(&"b".repeat(50)));
        assert!(!valid_username(&"a".repeat(51)));
        assert!(!valid_username("jane@example.com"));
        assert!(!valid_username("jane doe"));
        assert!(!valid_username("ñandu"));
        assert!(!valid_username(""));
    }

    #[test]
    fn email_rules() {
        assert!(valid_email("ann@example.com"));
        assert!(valid_email("jp+tag@example.com"));
        assert!(!valid_email("jp tag@example.com"));
        assert!(!valid_email("not-an-email"));
        assert!(!valid_email(""));
    }
}
