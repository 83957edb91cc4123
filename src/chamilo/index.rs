//! The user index: a compact in-memory copy of Chamilo's accounts, so that reads do not list
//! every user per request (`get_users` is the only listing and returns everyone).
//!
//! The index is only a cache (design.md, invariant 2). It is built in the background from
//! `get_users status=* extra_fields=<userName field>,<externalId field>,<attributes field>`,
//! updated at once by writes through this proxy, and never trusted on its own for an answer
//! that could make the identity provider act wrongly:
//! - a miss for `userName eq` / `externalId eq` is confirmed with a fresh
//!   `users_profiles_by_extra_field` before "not found" is returned (no duplicate creation);
//! - a hit is re-checked with the same one call, asking only for active users when the index
//!   says active (a deactivation behind the proxy's back is seen, never hidden);
//! - a hit whose user vanished from Chamilo is dropped and reported as not found.
//!
//! So a lookup costs one Chamilo call (two in the rare case of a deactivation made elsewhere),
//! independent of the number of accounts. Several replicas stay correct without talking to each
//! other because every answer that matters is confirmed against Chamilo itself.
//!
//! Memory: entries pack their strings into one allocation; the three lookup maps hold 64-bit
//! hashes, not strings (a hash collision is resolved by comparing the entry, with a small
//! overflow map for the colliding keys).

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use super::client::{ChamiloClient, ListedUser, Profile};
use super::error::ChamiloError;
use super::username::LoginRules;

/// The extra fields that carry the SCIM identity in Chamilo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexFields {
    /// Holds the SCIM `userName` exactly as the identity provider sent it.
    pub user_name: String,
    /// Holds the SCIM `externalId`.
    pub external_id: String,
    /// Holds the SCIM attributes Chamilo cannot return, verbatim (see
    /// `super::kept::KeptAttributes`).
    pub attributes: String,
}

impl Default for IndexFields {
    fn default() -> Self {
        Self {
            user_name: "scim_user_name".to_owned(),
            external_id: "scim_external_id".to_owned(),
            attributes: "scim_attributes".to_owned(),
        }
    }
}

/// One account as the index knows it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Account {
    pub id: u64,
    /// Chamilo's login, as stored.
    pub login: String,
    /// The SCIM `userName` (from its extra field); `None` for accounts not made through SCIM.
    pub user_name: Option<String>,
    pub external_id: Option<String>,
    pub active: bool,
    pub firstname: Option<String>,
    pub lastname: String,
    pub email: String,
    /// Learned from a fresh lookup only (no names or e-mail yet): the next rebuild fills it.
    pub partial: bool,
    /// From the last fresh lookup (`users_profiles_by_extra_field`); not kept in the index.
    pub phone: Option<String>,
    /// As `phone`.
    pub official_code: Option<String>,
    /// As `phone`: Chamilo's status code (1 teacher, 5 student…).
    pub status: Option<i64>,
    /// The attributes extra field as stored (encoded `super::kept::KeptAttributes`).
    pub attributes: Option<String>,
}

impl Account {
    /// The account as `get_users` lists it.
    pub fn from_listed(u: &ListedUser, fields: &IndexFields) -> Self {
        Self {
            id: u.id,
            login: u.username.clone(),
            user_name: u.extra_value(&fields.user_name).map(str::to_owned),
            external_id: u.extra_value(&fields.external_id).map(str::to_owned),
            attributes: u.extra_value(&fields.attributes).map(str::to_owned),
            active: u.active,
            firstname: u.firstname.clone(),
            lastname: u.lastname.clone(),
            email: u.email.clone(),
            partial: false,
            phone: None,
            official_code: None,
            status: None,
        }
    }
}

const F_LOGIN: usize = 0;
const F_USER_NAME: usize = 1;
const F_EXTERNAL_ID: usize = 2;
const F_FIRSTNAME: usize = 3;
const F_LASTNAME: usize = 4;
const F_EMAIL: usize = 5;
const F_ATTRIBUTES: usize = 6;
const FIELDS: usize = 7;
/// `present` flag: the userName is the e-mail field.
const USER_NAME_IS_EMAIL: u16 = 1 << 14;
/// `present` flag: the userName is the login field.
const USER_NAME_IS_LOGIN: u16 = 1 << 15;

/// An account packed into one string allocation.
#[derive(Debug, Clone)]
struct Packed {
    text: Box<str>,
    ends: [u32; FIELDS],
    /// Bit i set: field i is present (for the optional ones).
    present: u16,
    active: bool,
    partial: bool,
}

impl Packed {
    fn pack(a: &Account) -> Self {
        // Identity providers often send the e-mail address (Entra's UPN) or the login itself as
        // userName: store such a userName as a flag, not a second copy.
        let mut present = 0u16;
        let user_name = match a.user_name.as_deref() {
            Some(u) if u == a.email => {
                present |= USER_NAME_IS_EMAIL;
                None
            }
            Some(u) if u == a.login => {
                present |= USER_NAME_IS_LOGIN;
                None
            }
            other => other,
        };
        let fields: [Option<&str>; FIELDS] = [
            Some(&a.login),
            user_name,
            a.external_id.as_deref(),
            a.firstname.as_deref(),
            Some(&a.lastname),
            Some(&a.email),
            a.attributes.as_deref(),
        ];
        let mut text = String::with_capacity(fields.iter().flatten().map(|s| s.len()).sum());
        let mut ends = [0u32; FIELDS];
        for (i, f) in fields.iter().enumerate() {
            if let Some(s) = f {
                text.push_str(s);
                present |= 1 << i;
            }
            ends[i] = u32::try_from(text.len()).unwrap_or(u32::MAX);
        }
        Self {
            text: text.into_boxed_str(),
            ends,
            present,
            active: a.active,
            partial: a.partial,
        }
    }

    fn field(&self, i: usize) -> Option<&str> {
        if i == F_USER_NAME && self.present & USER_NAME_IS_EMAIL != 0 {
            return self.field(F_EMAIL);
        }
        if i == F_USER_NAME && self.present & USER_NAME_IS_LOGIN != 0 {
            return self.field(F_LOGIN);
        }
        if self.present & (1 << i) == 0 {
            return None;
        }
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        self.text.get(start..self.ends[i] as usize)
    }

    fn unpack(&self, id: u64) -> Account {
        let s = |i| self.field(i).map(str::to_owned);
        Account {
            id,
            login: s(F_LOGIN).unwrap_or_default(),
            user_name: s(F_USER_NAME),
            external_id: s(F_EXTERNAL_ID),
            active: self.active,
            firstname: s(F_FIRSTNAME),
            lastname: s(F_LASTNAME).unwrap_or_default(),
            email: s(F_EMAIL).unwrap_or_default(),
            attributes: s(F_ATTRIBUTES),
            partial: self.partial,
            ..Account::default()
        }
    }
}

/// How each key is compared: logins and SCIM userNames case-insensitively, externalIds exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    Login,
    UserName,
    ExternalId,
}

impl Key {
    fn slot(self) -> usize {
        self as usize
    }

    fn field(self) -> usize {
        match self {
            Key::Login => F_LOGIN,
            Key::UserName => F_USER_NAME,
            Key::ExternalId => F_EXTERNAL_ID,
        }
    }

    fn normalise(self, v: &str) -> String {
        match self {
            Key::Login | Key::UserName => v.trim().to_lowercase(),
            Key::ExternalId => v.to_owned(),
        }
    }
}

fn hash_of(v: &str) -> u64 {
    let mut h = DefaultHasher::new();
    v.hash(&mut h);
    h.finish()
}

/// The maps of one generation of the index.
#[derive(Debug, Default, Clone)]
struct Maps {
    by_id: BTreeMap<u64, Packed>,
    /// Per key kind: hash of the normalised value → id (ids above `u32::MAX` go to `overflow`).
    keys: [HashMap<u64, u32>; 3],
    /// Keys whose hash collided with another key's: full normalised key → id.
    overflow: HashMap<(Key, String), u64>,
    max_id: u64,
}

impl Maps {
    fn key_matches(&self, key: Key, id: u64, norm: &str) -> bool {
        self.by_id
            .get(&id)
            .and_then(|p| p.field(key.field()))
            .is_some_and(|v| key.normalise(v) == norm)
    }

    fn lookup(&self, key: Key, value: &str) -> Option<u64> {
        let norm = key.normalise(value);
        if let Some(id) = self.keys[key.slot()].get(&hash_of(&norm)) {
            if self.key_matches(key, u64::from(*id), &norm) {
                return Some(u64::from(*id));
            }
        }
        self.overflow.get(&(key, norm)).copied()
    }

    fn index_key(&mut self, key: Key, id: u64, value: &str) {
        let norm = key.normalise(value);
        let h = hash_of(&norm);
        let Ok(small) = u32::try_from(id) else {
            self.overflow.insert((key, norm), id);
            return;
        };
        match self.keys[key.slot()].get(&h).map(|v| u64::from(*v)) {
            Some(other) if other != id && self.key_matches(key, other, &norm) => {
                // Two accounts share the value (possible for externalId in Chamilo): the
                // lowest id wins, like Chamilo's own lookups.
                if id < other {
                    self.keys[key.slot()].insert(h, small);
                }
            }
            Some(other) if other != id => {
                self.overflow.insert((key, norm), id);
            }
            _ => {
                self.keys[key.slot()].insert(h, small);
            }
        }
    }

    fn unindex_key(&mut self, key: Key, id: u64, value: &str) {
        let norm = key.normalise(value);
        let h = hash_of(&norm);
        let map = &mut self.keys[key.slot()];
        if map.get(&h).map(|v| u64::from(*v)) == Some(id) {
            map.remove(&h);
            // Promote an overflow entry with the same hash, if any.
            if let Some((k, other)) = self
                .overflow
                .iter()
                .find(|((k, v), _)| *k == key && hash_of(v) == h)
                .map(|(k, v)| (k.clone(), *v))
            {
                if let Ok(small) = u32::try_from(other) {
                    self.overflow.remove(&k);
                    self.keys[key.slot()].insert(h, small);
                }
            }
        } else if self.overflow.get(&(key, norm.clone())) == Some(&id) {
            self.overflow.remove(&(key, norm));
        }
    }

    fn remove(&mut self, id: u64) {
        if let Some(old) = self.by_id.remove(&id) {
            for key in [Key::Login, Key::UserName, Key::ExternalId] {
                if let Some(v) = old.field(key.field()) {
                    self.unindex_key(key, id, v);
                }
            }
        }
    }

    fn upsert(&mut self, a: &Account) {
        self.remove(a.id);
        self.by_id.insert(a.id, Packed::pack(a));
        self.max_id = self.max_id.max(a.id);
        self.index_key(Key::Login, a.id, &a.login);
        if let Some(v) = &a.user_name {
            self.index_key(Key::UserName, a.id, v);
        }
        if let Some(v) = &a.external_id {
            self.index_key(Key::ExternalId, a.id, v);
        }
    }
}

#[derive(Debug)]
struct Inner {
    maps: Arc<Maps>,
    /// Writes made while a rebuild's listing was in flight, replayed on top of it.
    journal: Option<Vec<(u64, Option<Account>)>>,
    built_at: Option<Instant>,
}

/// The in-memory index. Cheap reads; a rebuild swaps in a whole new generation.
#[derive(Debug)]
pub struct UserIndex {
    inner: RwLock<Inner>,
}

impl Default for UserIndex {
    fn default() -> Self {
        Self::new()
    }
}

/// A new generation of the index, filled while a listing streams in (see
/// [`UserIndex::finish_build`]).
#[derive(Debug, Default)]
pub struct IndexBuild {
    maps: Maps,
}

impl IndexBuild {
    /// Adds one listed account.
    pub fn add(&mut self, account: &Account) {
        self.maps.upsert(account);
    }

    /// Number of accounts so far.
    pub fn len(&self) -> usize {
        self.maps.by_id.len()
    }

    /// Whether no account was added.
    pub fn is_empty(&self) -> bool {
        self.maps.by_id.is_empty()
    }
}

/// A consistent, id-ordered view for paging (`GET /Users` without a filter).
#[derive(Debug, Clone)]
pub struct Snapshot(Arc<Maps>);

impl Snapshot {
    /// Number of accounts.
    pub fn len(&self) -> usize {
        self.0.by_id.len()
    }

    /// Whether there are no accounts.
    pub fn is_empty(&self) -> bool {
        self.0.by_id.is_empty()
    }

    /// Accounts in id order, from `skip`, at most `take`.
    pub fn page(&self, skip: usize, take: usize) -> Vec<Account> {
        self.0
            .by_id
            .iter()
            .skip(skip)
            .take(take)
            .map(|(id, p)| p.unpack(*id))
            .collect()
    }

    /// Every account in id order.
    pub fn iter(&self) -> impl Iterator<Item = Account> + '_ {
        self.0.by_id.iter().map(|(id, p)| p.unpack(*id))
    }
}

impl UserIndex {
    /// An empty index that is not ready (no listing yet).
    pub fn new() -> Self {
        Self {
            inner: RwLock::new(Inner {
                maps: Arc::new(Maps::default()),
                journal: None,
                built_at: None,
            }),
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a full listing has been loaded.
    pub fn is_ready(&self) -> bool {
        self.read().built_at.is_some()
    }

    /// Time since the last full listing was loaded.
    pub fn age(&self) -> Option<Duration> {
        self.read().built_at.map(|t| t.elapsed())
    }

    /// Number of accounts.
    pub fn len(&self) -> usize {
        self.read().maps.by_id.len()
    }

    /// Whether the index holds no account.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The highest user id seen: ids above it may belong to users created elsewhere since.
    pub fn max_id(&self) -> u64 {
        self.read().maps.max_id
    }

    /// A consistent view for paging.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot(self.read().maps.clone())
    }

    /// The account with this id.
    pub fn by_id(&self, id: u64) -> Option<Account> {
        self.read().maps.by_id.get(&id).map(|p| p.unpack(id))
    }

    /// The account with this Chamilo login (case-insensitive).
    pub fn by_login(&self, login: &str) -> Option<Account> {
        self.by_key(Key::Login, login)
    }

    /// The account with this SCIM `userName` (case-insensitive).
    pub fn by_user_name(&self, user_name: &str) -> Option<Account> {
        self.by_key(Key::UserName, user_name)
    }

    /// The account with this `externalId` (exact).
    pub fn by_external_id(&self, external_id: &str) -> Option<Account> {
        self.by_key(Key::ExternalId, external_id)
    }

    fn by_key(&self, key: Key, value: &str) -> Option<Account> {
        let inner = self.read();
        let id = inner.maps.lookup(key, value)?;
        inner.maps.by_id.get(&id).map(|p| p.unpack(id))
    }

    /// Records a write (create or update) made through this proxy, effective at once.
    pub fn upsert(&self, account: Account) {
        let mut inner = self.write();
        Arc::make_mut(&mut inner.maps).upsert(&account);
        if let Some(j) = inner.journal.as_mut() {
            j.push((account.id, Some(account)));
        }
    }

    /// Records a deletion.
    pub fn remove(&self, id: u64) {
        let mut inner = self.write();
        Arc::make_mut(&mut inner.maps).remove(id);
        if let Some(j) = inner.journal.as_mut() {
            j.push((id, None));
        }
    }

    /// Starts journaling writes; call before requesting the listing.
    pub fn begin_rebuild(&self) {
        let mut inner = self.write();
        if inner.journal.is_none() {
            inner.journal = Some(Vec::new());
        }
    }

    /// Replaces the contents with a listing requested after [`UserIndex::begin_rebuild`],
    /// replaying the writes made meanwhile on top of it.
    pub fn finish_rebuild(&self, accounts: impl IntoIterator<Item = Account>) {
        let mut build = IndexBuild::default();
        for a in accounts {
            build.add(&a);
        }
        self.finish_build(build);
    }

    /// As [`UserIndex::finish_rebuild`], with a generation filled account by account while the
    /// listing streamed in.
    pub fn finish_build(&self, build: IndexBuild) {
        let mut maps = build.maps;
        let mut inner = self.write();
        for (id, write) in inner.journal.take().unwrap_or_default() {
            match write {
                Some(a) => maps.upsert(&a),
                None => maps.remove(id),
            }
        }
        inner.maps = Arc::new(maps);
        inner.built_at = Some(Instant::now());
    }

    /// Stops journaling after a failed listing (the current contents stay).
    pub fn abandon_rebuild(&self) {
        self.write().journal = None;
    }

    /// Approximate heap bytes held by the entries and maps (for the memory report).
    pub fn approx_bytes(&self) -> usize {
        let inner = self.read();
        let m = &inner.maps;
        // BTreeMap nodes hold 11 entries and are on average about two-thirds full.
        let entries: usize = m
            .by_id
            .values()
            .map(|p| (std::mem::size_of::<Packed>() + 8) * 3 / 2 + p.text.len())
            .sum();
        let keys: usize = m
            .keys
            .iter()
            .map(|k| k.capacity() * (std::mem::size_of::<(u64, u32)>() + 1))
            .sum();
        entries + keys
    }
}

/// Default shortest time between two listings triggered by lookups of unknown ids.
pub const MIN_REBUILD_INTERVAL: Duration = Duration::from_secs(30);

/// Index-backed lookups that follow invariant 2: every answer is confirmed against Chamilo
/// with one fresh call.
pub struct AccountLookup {
    pub index: Arc<UserIndex>,
    pub client: Arc<ChamiloClient>,
    pub fields: IndexFields,
    rebuild_lock: tokio::sync::Mutex<()>,
    /// Signalled when a lookup learned an account the listing did not have (made by another
    /// replica or in Chamilo): the refresher then rebuilds early to fill in its names.
    refresh_hint: tokio::sync::Notify,
    min_rebuild_interval: Duration,
    reserved: RwLock<Reserved>,
}

/// Accounts SCIM never returns or changes, and the login rules used to tell whether a
/// `userName` could be an existing login at all.
#[derive(Debug, Clone)]
struct Reserved {
    /// Lower-cased logins (the service account, `protected_logins`).
    logins: Vec<String>,
    /// Anonymous users (status 6), learned at start-up.
    anonymous_ids: Vec<u64>,
    rules: LoginRules,
}

impl AccountLookup {
    /// Lookups over `index`, confirmed with `client`.
    pub fn new(index: Arc<UserIndex>, client: Arc<ChamiloClient>, fields: IndexFields) -> Self {
        Self {
            index,
            client,
            fields,
            rebuild_lock: tokio::sync::Mutex::new(()),
            refresh_hint: tokio::sync::Notify::new(),
            min_rebuild_interval: MIN_REBUILD_INTERVAL,
            reserved: RwLock::new(Reserved {
                logins: Vec::new(),
                anonymous_ids: Vec::new(),
                rules: LoginRules {
                    login_is_email: false,
                },
            }),
        }
    }

    /// Sets the logins SCIM may never see or change, and the site's login rules (the
    /// directory does this from its mapping).
    pub fn set_protected_logins(&self, logins: &[String], rules: LoginRules) {
        let mut r = self.reserved.write().unwrap_or_else(|p| p.into_inner());
        r.logins = logins.iter().map(|l| l.trim().to_lowercase()).collect();
        r.rules = rules;
    }

    /// Sets the anonymous users' ids (from [`ChamiloClient::check_capabilities`]).
    pub fn set_anonymous_ids(&self, ids: Vec<u64>) {
        self.reserved
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .anonymous_ids = ids;
    }

    fn reserved(&self) -> Reserved {
        self.reserved
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Whether SCIM must neither return nor change this account: a protected login (the
    /// service account, `protected_logins`) or an anonymous user.
    pub fn is_reserved(&self, account: &Account) -> bool {
        let r = self.reserved();
        account.status == Some(6)
            || r.anonymous_ids.contains(&account.id)
            || r.logins.contains(&account.login.trim().to_lowercase())
    }

    /// Whether `login` names a reserved account (protected, or a known anonymous user).
    pub fn is_reserved_login(&self, login: &str) -> bool {
        let norm = login.trim().to_lowercase();
        let r = self.reserved();
        r.logins.contains(&norm)
            || r.anonymous_ids.iter().any(|id| {
                self.index
                    .by_id(*id)
                    .is_some_and(|a| a.login.trim().to_lowercase() == norm)
            })
    }

    /// Whether a listing may run now to learn accounts made elsewhere since the last one
    /// (rate-limited: a listing is the most expensive call there is).
    fn may_rebuild_for_unknown(&self) -> bool {
        !self.index.is_ready()
            || self
                .index
                .age()
                .is_none_or(|age| age >= self.min_rebuild_interval)
    }

    /// Changes the shortest time between two listings triggered by lookups of ids newer than
    /// the index (default [`MIN_REBUILD_INTERVAL`]).
    pub fn with_min_rebuild_interval(mut self, interval: Duration) -> Self {
        self.min_rebuild_interval = interval;
        self
    }

    /// Loads a full listing into the index (background work: one `get_users` with the two
    /// extra fields). Returns the number of accounts. Concurrent calls coalesce.
    pub async fn rebuild(&self) -> Result<usize, ChamiloError> {
        let started = Instant::now();
        let _guard = self.rebuild_lock.lock().await;
        if self.index.age().is_some_and(|age| age < started.elapsed()) {
            // Another task finished a rebuild while this one waited.
            return Ok(self.index.len());
        }
        self.index.begin_rebuild();
        let fields = [
            self.fields.user_name.as_str(),
            self.fields.external_id.as_str(),
            self.fields.attributes.as_str(),
        ];
        // Streamed: each user goes into the new generation as it arrives, so the peak memory
        // is the two generations, not the listing.
        let mut build = IndexBuild::default();
        let listed = self
            .client
            .get_users_each(None, &fields, |u| {
                build.add(&Account::from_listed(&u, &self.fields))
            })
            .await;
        match listed {
            Ok(n) => {
                self.index.finish_build(build);
                tracing::info!(
                    accounts = n,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "user index rebuilt"
                );
                Ok(n)
            }
            Err(e) => {
                self.index.abandon_rebuild();
                Err(e)
            }
        }
    }

    /// Rebuilds now and then every `every` (or soon after a lookup met an account the index
    /// lacked, at most once per `every / 10`), until `stop` is cancelled.
    pub fn spawn_refresh(
        self: Arc<Self>,
        every: Duration,
        stop: tokio_util::sync::CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                if let Err(e) = self.rebuild().await {
                    tracing::warn!(error = %e, "user index rebuild failed");
                }
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(every) => {}
                    _ = self.refresh_hint.notified() => {
                        tokio::select! {
                            _ = stop.cancelled() => break,
                            _ = tokio::time::sleep(every / 10) => {}
                        }
                    }
                }
            }
        })
    }

    /// The account whose SCIM `userName` is `user_name` (case-insensitive), confirmed fresh.
    ///
    /// Precedence: an account whose userName field is set answers only to that value; an
    /// account without it (made outside SCIM) answers to its login (adoption). So a derived
    /// login (`ann_example.org` made from `ann@example.org`) never answers to itself.
    /// Reserved accounts (protected logins, anonymous users) never answer.
    pub async fn by_user_name(&self, user_name: &str) -> Result<Option<Account>, ChamiloError> {
        let known = self.index.by_user_name(user_name);
        let field = self.fields.user_name.clone();
        let wanted = user_name.trim().to_lowercase();
        // An indexed account without the value (stale, or partial) may be the match too.
        let managed = self
            .confirm(&field, user_name, known, |a| {
                a.user_name
                    .as_deref()
                    .is_none_or(|v| v.trim().to_lowercase() == wanted)
            })
            .await?;
        match managed {
            Some(a) if self.is_reserved(&a) => Ok(None),
            Some(a) => Ok(Some(a)),
            None => self.by_unmanaged_login(user_name).await,
        }
    }

    /// An account made outside SCIM (no userName field) whose login is `login`, confirmed
    /// with `username_exist`. No call at all when `login` cannot be a Chamilo login (an
    /// e-mail-style userName on a site without `login_is_email`) or is reserved.
    async fn by_unmanaged_login(&self, login: &str) -> Result<Option<Account>, ChamiloError> {
        let reserved = self.reserved();
        if !reserved.rules.is_valid(login.trim()) || self.is_reserved_login(login) {
            return Ok(None);
        }
        let known = self.index.by_login(login);
        if known.as_ref().is_some_and(|k| k.user_name.is_some()) {
            // The login belongs to an account managed under another userName.
            return Ok(None);
        }
        if !self.client.username_exists(login.trim()).await? {
            if let Some(k) = known {
                self.index.remove(k.id);
            }
            return Ok(None);
        }
        let found = match known {
            Some(k) => Some(k),
            // Made in Chamilo since the last listing: learn it (rate-limited).
            None if self.may_rebuild_for_unknown() => {
                self.rebuild().await?;
                self.index.by_login(login)
            }
            None => None,
        };
        Ok(found.filter(|a| a.user_name.is_none() && !self.is_reserved(a)))
    }

    /// The account whose `externalId` is `external_id` (exact), confirmed fresh.
    pub async fn by_external_id(&self, external_id: &str) -> Result<Option<Account>, ChamiloError> {
        let known = self.index.by_external_id(external_id);
        let field = self.fields.external_id.clone();
        self.confirm(&field, external_id, known, |a| {
            a.external_id.as_deref().is_none_or(|v| v == external_id)
        })
        .await
    }

    /// The account with this Chamilo id, confirmed fresh. Chamilo has no lookup by id, so the
    /// account is re-found by its `userName` (or `externalId`) field and the ids compared;
    /// accounts without either are checked with `username_exist`.
    pub async fn by_id(&self, id: u64) -> Result<Option<Account>, ChamiloError> {
        let known = match self.index.by_id(id) {
            Some(a) => a,
            None if !self.index.is_ready()
                || (id > self.index.max_id() && self.may_rebuild_for_unknown()) =>
            {
                // Possibly created by another replica since the last listing. Rate-limited:
                // ids are guessable, and a listing is the most expensive call there is.
                self.rebuild().await?;
                match self.index.by_id(id) {
                    Some(a) => return Ok(Some(a)),
                    None => return Ok(None),
                }
            }
            None => return Ok(None),
        };
        if let Some(un) = known.user_name.clone() {
            let found = self.by_user_name(&un).await?;
            return Ok(self.same_id(id, found));
        }
        if let Some(ext) = known.external_id.clone() {
            let found = self.by_external_id(&ext).await?;
            return Ok(self.same_id(id, found));
        }
        if self.client.username_exists(&known.login).await? {
            Ok(Some(known))
        } else {
            self.index.remove(id);
            Ok(None)
        }
    }

    fn same_id(&self, id: u64, found: Option<Account>) -> Option<Account> {
        match found {
            Some(a) if a.id == id => Some(a),
            _ => {
                // The field now belongs to someone else or to nobody: this id is gone.
                if self.index.by_id(id).is_some_and(|a| !a.partial) {
                    self.index.remove(id);
                }
                None
            }
        }
    }

    async fn confirm(
        &self,
        field: &str,
        value: &str,
        known: Option<Account>,
        exact: impl Fn(&Account) -> bool,
    ) -> Result<Option<Account>, ChamiloError> {
        // Ask for active users only when the index says active: an answer then proves both
        // existence and activity in one call.
        let only_active = known.as_ref().is_some_and(|a| a.active);
        let mut fresh = self
            .client
            .users_by_extra_field(field, value, only_active)
            .await?;
        let mut proven_active = only_active.then_some(true);
        if fresh.is_empty() && only_active {
            // Not among the active users: deactivated elsewhere, or gone. One more call.
            fresh = self
                .client
                .users_by_extra_field(field, value, false)
                .await?;
            proven_active = Some(false);
        }
        // An account this index holds as deleted through SCIM that Chamilo finds by a live
        // value was revived by another replica: the entry is stale, forget it (the account
        // is then learned like one made elsewhere).
        if !super::deprovisioned::is_tombstone(value) {
            for p in &fresh {
                if self
                    .index
                    .by_id(p.id)
                    .is_some_and(|a| super::deprovisioned::is_deprovisioned(&a))
                {
                    self.index.remove(p.id);
                }
            }
        }
        let Some(profile) = self.pick(&fresh, known.as_ref(), &exact).cloned() else {
            if let Some(k) = known {
                self.index.remove(k.id);
            }
            return Ok(None);
        };
        if let Some(k) = known.as_ref().filter(|k| k.id != profile.id) {
            self.index.remove(k.id);
        }
        let mut account = self.index.by_id(profile.id).unwrap_or_else(|| {
            self.refresh_hint.notify_one();
            Account {
                id: profile.id,
                lastname: profile.full_name.clone(),
                partial: true,
                ..Account::default()
            }
        });
        account.active = match proven_active {
            Some(a) => a,
            // Known inactive: keep it (an activation elsewhere is the harmless direction).
            None if !account.partial => account.active,
            // Unknown to the index (created elsewhere since the listing): ask once more.
            None => self
                .client
                .users_by_extra_field(field, value, true)
                .await?
                .iter()
                .any(|p| p.id == profile.id),
        };
        account.login = profile.username.clone();
        // Keep the stored spelling when the index has it (Chamilo matched case-insensitively);
        // an account new to the index gets the value it was found by.
        if field == self.fields.user_name && account.user_name.is_none() {
            account.user_name = Some(value.to_owned());
        } else if field == self.fields.external_id && account.external_id.is_none() {
            account.external_id = Some(value.to_owned());
        }
        self.index.upsert(account.clone());
        account.phone = Some(profile.phone.clone());
        account.official_code = Some(profile.official_code.clone());
        account.status = Some(profile.status);
        Ok(Some(account))
    }

    /// Chooses among fresh matches (Chamilo compares case- and accent-insensitively): the one
    /// the index knows with the exact value, else the lowest id.
    fn pick<'p>(
        &self,
        fresh: &'p [Profile],
        known: Option<&Account>,
        exact: &impl Fn(&Account) -> bool,
    ) -> Option<&'p Profile> {
        if let Some(k) = known {
            if let Some(p) = fresh.iter().find(|p| p.id == k.id) {
                return Some(p);
            }
        }
        fresh
            .iter()
            .find(|p| self.index.by_id(p.id).as_ref().is_some_and(exact))
            .or_else(|| fresh.iter().find(|p| self.index.by_id(p.id).is_none()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acc(id: u64, login: &str, un: Option<&str>, ext: Option<&str>) -> Account {
        Account {
            id,
            login: login.into(),
            user_name: un.map(Into::into),
            external_id: ext.map(Into::into),
            active: true,
            firstname: Some("F".into()),
            lastname: "L".into(),
            email: format!("{login}@x.org"),
            partial: false,
            ..Account::default()
        }
    }

    #[test]
    fn packs_and_finds() {
        let idx = UserIndex::new();
        idx.upsert(acc(3, "Ann.Lee", Some("Ann@Example.org"), Some("E-1")));
        idx.upsert(acc(4, "bob", None, None));
        assert_eq!(idx.by_login("ann.lee").map(|a| a.id), Some(3));
        assert_eq!(idx.by_user_name("ann@example.org").map(|a| a.id), Some(3));
        assert_eq!(idx.by_external_id("E-1").map(|a| a.id), Some(3));
        assert_eq!(idx.by_external_id("e-1"), None, "externalId is case-exact");
        let a = idx.by_id(4).unwrap();
        assert_eq!(a.user_name, None);
        assert_eq!(a.email, "bob@x.org");
        assert_eq!(a, acc(4, "bob", None, None));
        // A userName equal to the e-mail or the login is stored once and still found.
        let mut same = acc(5, "carl", None, Some("E-5"));
        same.user_name = Some(same.email.clone());
        idx.upsert(same.clone());
        assert_eq!(idx.by_user_name("CARL@x.org").map(|a| a.id), Some(5));
        assert_eq!(idx.by_id(5), Some(same));
        idx.upsert(acc(6, "dora", Some("dora"), None));
        assert_eq!(
            idx.by_user_name("Dora").map(|a| a.user_name),
            Some(Some("dora".into()))
        );
        idx.remove(5);
        assert!(idx.by_user_name("carl@x.org").is_none());
    }

    #[test]
    fn updates_move_keys() {
        let idx = UserIndex::new();
        idx.upsert(acc(3, "ann", Some("ann@x"), Some("E-1")));
        idx.upsert(acc(3, "ann2", Some("ann2@x"), None));
        assert!(idx.by_login("ann").is_none());
        assert!(idx.by_user_name("ann@x").is_none());
        assert!(idx.by_external_id("E-1").is_none());
        assert_eq!(idx.by_login("ANN2").map(|a| a.id), Some(3));
        idx.remove(3);
        assert!(idx.by_login("ann2").is_none());
        assert!(idx.is_empty());
    }

    #[test]
    fn shared_external_id_resolves_to_lowest_id() {
        let idx = UserIndex::new();
        idx.upsert(acc(5, "b", None, Some("SHARED")));
        idx.upsert(acc(4, "a", None, Some("SHARED")));
        assert_eq!(idx.by_external_id("SHARED").map(|a| a.id), Some(4));
    }

    #[test]
    fn rebuild_replays_writes_made_during_the_listing() {
        let idx = UserIndex::new();
        idx.upsert(acc(3, "old", None, None));
        idx.begin_rebuild();
        // While get_users runs: one create and one delete through the proxy.
        idx.upsert(acc(9, "new", None, None));
        idx.remove(4);
        // The listing was taken before both writes.
        idx.finish_rebuild(vec![acc(3, "old", None, None), acc(4, "gone", None, None)]);
        assert!(idx.is_ready());
        assert!(idx.by_id(9).is_some());
        assert!(idx.by_id(4).is_none());
        assert_eq!(idx.snapshot().page(0, 10).len(), 2);
        assert_eq!(idx.max_id(), 9);
    }

    #[test]
    fn snapshot_is_stable_while_writes_happen() {
        let idx = UserIndex::new();
        for i in 1..=5 {
            idx.upsert(acc(i, &format!("u{i}"), None, None));
        }
        let snap = idx.snapshot();
        idx.remove(1);
        idx.upsert(acc(6, "u6", None, None));
        let ids: Vec<u64> = snap.page(0, 10).iter().map(|a| a.id).collect();
        assert_eq!(ids, vec![1, 2, 3, 4, 5]);
        let ids: Vec<u64> = idx.snapshot().page(1, 2).iter().map(|a| a.id).collect();
        assert_eq!(ids, vec![3, 4]);
    }
}
