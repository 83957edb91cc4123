//! `v2.php`'s actions on classes (usergroups) and course subscriptions, as observed (see
//! `chamilo-api.md`, "Classes and courses").

use serde_json::{json, Map, Value};

use super::{err, ok, Caller, Site, NOT_ALLOWED};
use crate::standin::form::FormPairs;
use crate::standin::state::{
    fold, php_int, ChamiloState, Group, User, STATUS_STUDENT, STATUS_TEACHER,
};
use crate::standin::Reply;

fn group_json(g: &Group) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), json!(g.id));
    m.insert("name".into(), json!(g.name));
    m.insert("description".into(), json!(g.description));
    m.insert("visibility".into(), json!(g.visibility));
    m.insert("type".into(), json!(g.group_type));
    if g.group_type == 1 {
        m.insert("type_name".into(), json!("social"));
        let vis = match g.visibility.as_str() {
            "1" => "open",
            "2" => "closed",
            _ => "",
        };
        m.insert("visibility_name".into(), json!(vis));
    } else {
        m.insert("type_name".into(), json!("class"));
    }
    Value::Object(m)
}

pub(super) fn get_groups(state: &ChamiloState, ctx: &Caller, p: &FormPairs) -> Reply {
    if !ctx.admin {
        return err(NOT_ALLOWED);
    }
    let wanted = match p.get("type").unwrap_or("*") {
        "*" => None,
        t => Some(php_int(t)),
    };
    let data: Vec<Value> = state
        .groups()
        .filter(|g| wanted.is_none_or(|t| g.group_type == t))
        .map(group_json)
        .collect();
    ok(Value::Array(data))
}

pub(super) fn add_group(state: &mut ChamiloState, ctx: &Caller, p: &FormPairs) -> Reply {
    if !ctx.admin {
        return err(NOT_ALLOWED);
    }
    let name = p.get("name").unwrap_or("");
    if state.group_by_name(name).is_some() {
        return err(format!("{name} Already exists"));
    }
    let group_type = php_int(p.get("type").unwrap_or("0"));
    let id = state.insert_group(
        name,
        p.get("description").unwrap_or(""),
        p.get("visibility").unwrap_or(""),
        group_type,
    );
    if group_type == 1 {
        // A social group's creator becomes its administrator (relation 1).
        if let Some(g) = state.group_mut(id) {
            g.members.push((ctx.id, 1));
        }
    }
    ok(json!([id]))
}

pub(super) fn delete_group(state: &mut ChamiloState, ctx: &Caller, p: &FormPairs) -> Reply {
    if !ctx.admin {
        return err(NOT_ALLOWED);
    }
    let Some(raw) = p.get("id") else {
        return Reply::Fatal;
    };
    let id = php_int(raw) as u64;
    if state.remove_group(id) {
        ok(json!([id]))
    } else {
        err("NotDeleted")
    }
}

pub(super) fn add_group_sub_user(state: &mut ChamiloState, p: &FormPairs) -> Reply {
    let raw = p.get("user_id").unwrap_or("");
    if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return err("user_id not provided");
    }
    let uid = php_int(raw) as u64;
    let gid = php_int(p.get("group_id").unwrap_or("")) as u64;
    let role = p.get("role").map_or(2, php_int);
    if state.user(uid).is_none() || state.group(gid).is_none() {
        return err("user_id or group_id does not exist");
    }
    if let Some(g) = state.group_mut(gid) {
        if !g.members.iter().any(|(u, _)| *u == uid) {
            g.members.push((uid, role));
        }
    }
    ok(json!([true]))
}

pub(super) fn delete_group_sub_user(state: &mut ChamiloState, p: &FormPairs) -> Reply {
    let uid = php_int(p.get("user_id").unwrap_or("")) as u64;
    let gid = php_int(p.get("group_id").unwrap_or("")) as u64;
    if uid == 0 {
        return ok(json!([false]));
    }
    if let Some(g) = state.group_mut(gid) {
        g.members.retain(|(u, _)| *u != uid);
    }
    ok(json!([{}]))
}

pub(super) fn get_group_sub_users(state: &ChamiloState, p: &FormPairs) -> Reply {
    let Some(raw) = p.get("id") else {
        return Reply::Fatal;
    };
    let Some(g) = state.group(php_int(raw) as u64) else {
        return ok(json!([]));
    };
    let mut members: Vec<(usize, &User, i64)> = g
        .members
        .iter()
        .enumerate()
        .filter_map(|(row, (uid, rel))| state.user(*uid).map(|u| (row, u, *rel)))
        .collect();
    members.sort_by_cached_key(|(row, u, rel)| (*rel, u.firstname.as_deref().map(fold), *row));
    if members.is_empty() {
        return ok(json!([]));
    }
    let mut m = Map::new();
    for (_, u, rel) in members {
        m.insert(
            u.id.to_string(),
            json!({"id": u.id, "firstname": u.firstname, "lastname": u.lastname, "relation_type": rel}),
        );
    }
    ok(Value::Object(m))
}

fn course_of(state: &ChamiloState, p: &FormPairs) -> Option<u64> {
    if let Some(id) = p.get("course_id") {
        let id = php_int(id) as u64;
        return state.course(id).map(|c| c.id);
    }
    p.get("course_code").and_then(|c| state.course_by_code(c))
}

pub(super) fn save_course(state: &mut ChamiloState, ctx: &Caller, p: &FormPairs) -> Reply {
    if !ctx.admin {
        return err(NOT_ALLOWED);
    }
    let title = p.get("title").unwrap_or("");
    let wanted: String = p
        .get("wanted_code")
        .unwrap_or(title)
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect::<String>()
        .to_uppercase();
    let code = if p.get("remove_campus_id_from_wanted_code") == Some("1") {
        wanted
    } else {
        format!("CAMPUS1{wanted}")
    };
    let Some(id) = state.insert_course(&code, title) else {
        return ok(
            json!({"status": false, "message": "The course has not been created due to an internal error."}),
        );
    };
    if let Some(c) = state.course_mut(id) {
        c.users.push((ctx.id, STATUS_TEACHER));
    }
    ok(json!({
        "status": true,
        "id": id,
        "code_course": code,
        "title_course": title,
        "extra_fields": [],
        "message": format!("Course {code} added"),
    }))
}

pub(super) fn subscribe_user_to_course(
    state: &mut ChamiloState,
    ctx: &Caller,
    p: &FormPairs,
) -> Reply {
    let uid = php_int(p.get("user_id").unwrap_or("")) as u64;
    if !ctx.admin && uid != ctx.id {
        return err(NOT_ALLOWED);
    }
    let status = if p.get("status").map(php_int) == Some(STATUS_TEACHER) {
        STATUS_TEACHER
    } else {
        STATUS_STUDENT
    };
    let Some(cid) = course_of(state, p) else {
        return ok(json!([false]));
    };
    if state.user(uid).is_none() {
        return ok(json!([false]));
    }
    let Some(course) = state.course_mut(cid) else {
        return ok(json!([false]));
    };
    if course.users.iter().any(|(u, _)| *u == uid) {
        return ok(json!([false]));
    }
    course.users.push((uid, status));
    ok(json!([true]))
}

pub(super) fn unsubscribe_user_from_course(
    state: &mut ChamiloState,
    ctx: &Caller,
    p: &FormPairs,
) -> Reply {
    let uid = php_int(p.get("user_id").unwrap_or("")) as u64;
    if !ctx.admin && uid != ctx.id {
        return err(NOT_ALLOWED);
    }
    let Some(cid) = course_of(state, p) else {
        return ok(json!([false]));
    };
    if let Some(course) = state.course_mut(cid) {
        course.users.retain(|(u, _)| *u != uid);
    }
    ok(json!([true]))
}

pub(super) fn get_users_subscribed_to_course(state: &ChamiloState, p: &FormPairs) -> Reply {
    let Some(raw) = p.get("course") else {
        return Reply::Fatal;
    };
    let Some(course) = state.course(php_int(raw) as u64) else {
        return err("This course could not be found");
    };
    let mut rows: Vec<(&User, i64)> = course
        .users
        .iter()
        .filter_map(|(uid, s)| state.user(*uid).map(|u| (u, *s)))
        .collect();
    rows.sort_by_cached_key(|(u, _)| (u.firstname.as_deref().map(fold), fold(&u.lastname)));
    let data: Vec<Value> = rows
        .into_iter()
        .map(|(u, s)| {
            json!({"user_id": u.id, "username": u.username, "firstname": u.firstname, "lastname": u.lastname, "status_rel": s})
        })
        .collect();
    ok(Value::Array(data))
}

/// `user_courses`: the courses a user is subscribed to, from `course_rel_user` (read from the
/// current 1.11.x `Rest::getUserCourses`; no transcript shows it). Without `user_id` (or with
/// 0) the caller's own; another user's only for a platform admin. A user that does not exist
/// has no courses (`[]`). Ordered by title, as `get_courses_list_by_user_id` sorts them.
pub(super) fn user_courses(
    state: &ChamiloState,
    ctx: &Caller,
    p: &FormPairs,
    site: &Site,
) -> Reply {
    let asked = php_int(p.get("user_id").unwrap_or("0"));
    let uid = if asked <= 0 { ctx.id } else { asked as u64 };
    if uid != ctx.id && !ctx.admin {
        return err(NOT_ALLOWED);
    }
    let mut courses: Vec<&crate::standin::state::Course> = state
        .courses()
        .filter(|c| c.users.iter().any(|(u, _)| *u == uid))
        .collect();
    courses.sort_by_cached_key(|c| (fold(&c.title), c.id));
    let data: Vec<Value> = courses
        .into_iter()
        .map(|c| {
            let teachers: Vec<String> = c
                .users
                .iter()
                .filter(|(_, s)| *s == STATUS_TEACHER)
                .filter_map(|(u, _)| state.user(*u))
                .map(|u| {
                    format!("{} {}", u.firstname.as_deref().unwrap_or(""), u.lastname)
                        .trim()
                        .to_owned()
                })
                .collect();
            json!({
                "id": c.id,
                "title": c.title,
                "code": c.code,
                "directory": c.code,
                "urlPicture": format!("{}/main/img/session_default.png", site.base_url),
                "teachers": teachers.join(", "),
                "isSpecial": false,
                "url": format!(
                    "{}/main/webservices/api/v2.php?action=view_course_home&api_key={}&username={}&course={}",
                    site.base_url, ctx.api_key, ctx.username, c.id
                ),
            })
        })
        .collect();
    ok(Value::Array(data))
}
