//! Classes on the stand-in for the group tests: a replica whose writes are recorded, groups
//! and filters as the engine builds them, and what the stand-in holds.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chamilo_scim_proxy::chamilo::client::CallObserver;
use chamilo_scim_proxy::chamilo::directory::ChamiloDirectory;
use chamilo_scim_proxy::chamilo::lookup::MIN_REBUILD_INTERVAL;
use chamilo_scim_proxy::chamilo::mapping::ChamiloMapping;
use chamilo_scim_proxy::chamilo::write::WriteOutcome;
use chamilo_scim_proxy::chamilo::{CallOutcome, ChamiloClient};
use chamilo_scim_proxy::directory::query::{AttrPath, CompValue, CompareOp, Filter};
use chamilo_scim_proxy::directory::{
    Directory, DirectoryError, Group, GroupStore, ListQuery, GROUP_SCHEMA,
};
use chamilo_scim_proxy::standin::{Standin, StandinConfig, StandinHandle};
use serde_json::{json, Value};

use super::{admin_settings, replica_on};

/// Records how writes ended (`chamilo_writes_total`).
#[derive(Default)]
pub struct Writes(pub Mutex<Vec<(String, WriteOutcome)>>);

impl CallObserver for Writes {
    fn observe(&self, _: &str, _: CallOutcome, _: Duration) {}
    fn write_outcome(&self, operation: &str, outcome: WriteOutcome) {
        if let Ok(mut w) = self.0.lock() {
            w.push((operation.to_owned(), outcome));
        }
    }
}

impl Writes {
    pub fn take(&self) -> Vec<(String, WriteOutcome)> {
        self.0
            .lock()
            .map(|mut w| std::mem::take(&mut *w))
            .unwrap_or_default()
    }
}

pub struct Stack {
    pub chamilo: StandinHandle,
    pub dir: ChamiloDirectory,
    pub writes: Arc<Writes>,
}

impl Stack {
    pub fn groups(&self) -> &dyn GroupStore {
        self.dir.groups().expect("the Chamilo directory has groups")
    }
}

/// A stand-in with `users` seeded students (ids 3 and up; 1 is admin, 2 anonymous) and a
/// replica whose client gives up on a call after 400 ms.
pub async fn stack_of(users: usize, mapping: ChamiloMapping) -> Stack {
    stack_timing_out(users, mapping, Duration::from_millis(400)).await
}

/// [`stack_of`] with the client giving up on a call after `request_timeout` (benchmarks: a
/// 10,000-member listing may take longer than 400 ms in a debug build on a loaded machine).
pub async fn stack_timing_out(
    users: usize,
    mapping: ChamiloMapping,
    request_timeout: Duration,
) -> Stack {
    let chamilo = Standin::start(StandinConfig {
        seed_users: users,
        ..StandinConfig::default()
    })
    .await
    .unwrap();
    let writes = Arc::new(Writes::default());
    let mut settings = admin_settings(&chamilo);
    settings.request_timeout = request_timeout;
    let client = Arc::new(
        ChamiloClient::new(settings)
            .unwrap()
            .with_observer(writes.clone()),
    );
    let r = replica_on(&chamilo, mapping, MIN_REBUILD_INTERVAL, client).await;
    let caps = r.client.check_capabilities().await.unwrap();
    r.lookup.set_anonymous_ids(caps.anonymous_ids);
    Stack {
        chamilo,
        dir: r.directory,
        writes,
    }
}

pub async fn stack() -> Stack {
    stack_of(20, ChamiloMapping::default()).await
}

pub fn group(v: Value) -> Group {
    match v {
        Value::Object(m) => Group::from_json(m),
        _ => unreachable!(),
    }
}

pub fn staff(members: &[u64]) -> Group {
    let members: Vec<Value> = members
        .iter()
        .map(|m| json!({"value": m.to_string()}))
        .collect();
    group(json!({
        "schemas": [GROUP_SCHEMA],
        "displayName": "Staff A",
        "externalId": "grp-staff-a",
        "members": members
    }))
}

/// A class as the stand-in holds it: id, name, description, member ids in id order.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassSnap {
    pub id: u64,
    pub name: String,
    pub description: String,
    pub members: Vec<u64>,
}

pub fn classes(chamilo: &StandinHandle) -> Vec<ClassSnap> {
    chamilo
        .state()
        .groups()
        .map(|g| {
            let mut members: Vec<u64> = g.members.iter().map(|(u, _)| *u).collect();
            members.sort_unstable();
            ClassSnap {
                id: g.id,
                name: g.name.clone(),
                description: g.description.clone(),
                members,
            }
        })
        .collect()
}

pub fn class_named(chamilo: &StandinHandle, name: &str) -> Option<ClassSnap> {
    classes(chamilo).into_iter().find(|c| c.name == name)
}

pub fn list(filter: Option<Filter>) -> ListQuery {
    ListQuery {
        filter,
        sort: None,
        start_index: 1,
        count: 100,
    }
}

pub fn eq(name: &str, sub: Option<&str>, value: &str) -> Filter {
    Filter::Compare {
        path: AttrPath::new(name, sub),
        op: CompareOp::Eq,
        value: CompValue::Str(value.into()),
    }
}

pub fn member_filter(user: &str) -> Filter {
    Filter::ValuePath {
        attr: AttrPath::new("members", None),
        filter: Box::new(eq("value", None, user)),
    }
}

pub fn sorted_ids(g: &Group) -> Vec<u64> {
    let mut ids: Vec<u64> = g
        .member_ids()
        .iter()
        .filter_map(|v| v.parse().ok())
        .collect();
    ids.sort_unstable();
    ids
}

/// Calls since the last reset, printed for bench/chamilo.md, and returned.
pub fn calls(chamilo: &StandinHandle, what: &str) -> u64 {
    let all = chamilo.all_calls();
    let mut parts: Vec<String> = all.iter().map(|(a, n)| format!("{a} {n}")).collect();
    parts.sort();
    let total = chamilo.total_calls();
    println!("calls: {what}: {total} ({})", parts.join(", "));
    chamilo.reset_calls();
    total
}

/// PATCH as the engine does it: read with members, then modify.
pub async fn patch(s: &Stack, id: u64, change: Value) -> Result<Group, DirectoryError> {
    let id = scim_id(id);
    let base = s
        .groups()
        .get_group(&id, true)
        .await?
        .ok_or(DirectoryError::NotFound)?;
    let mut new = base.clone();
    if let Value::Object(m) = change {
        new.as_json_mut().extend(m);
    }
    s.groups().modify_group(&id, &base, new, None).await
}

pub async fn made(s: &Stack, members: &[u64]) -> u64 {
    let created = s.groups().create_group(staff(members)).await.unwrap();
    class_of(created.id().unwrap())
}

/// The SCIM id of class `id` (`class-<id>`: SCIM ids are unique across resource types).
pub fn scim_id(class: u64) -> String {
    format!("class-{class}")
}

/// The class a SCIM group id names.
pub fn class_of(scim_id: &str) -> u64 {
    scim_id
        .strip_prefix("class-")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not a class id: {scim_id}"))
}
