//! The `directory` implementation for Chamilo: reads, searches, and the dispatch of writes to
//! `super::write` (one file per operation). See `super::mapping` for what goes where.

use std::sync::Arc;
use std::time::Duration;

use super::client::ChamiloClient;
use super::deprovisioned;
use super::error::ChamiloError;
use super::index::{Account, AccountRef};
use super::lookup::AccountLookup;
use super::mapping::{kept_names_deciding, ChamiloMapping, ListScope};
use crate::directory::query::{matches, CompValue};
use crate::directory::schema::ResourceSchema;
use crate::directory::{
    Capabilities, DirFuture, Directory, DirectoryError, GroupStore, ListQuery, Page, User,
};

/// The answer for an account SCIM may not touch (protected logins, anonymous users).
pub(crate) fn reserved_account() -> DirectoryError {
    DirectoryError::Forbidden {
        detail: "this Chamilo account cannot be managed through SCIM".into(),
    }
}

/// The SCIM answer for a failed Chamilo call (design.md: a 5xx only for Chamilo's own
/// trouble; those the identity provider should retry are 503 with `Retry-After`).
/// Chamilo's refusal of a `language` it does not have installed.
pub(crate) const LANGUAGE_UNAVAILABLE: &str = "Language unavailable.";

pub(crate) fn from_chamilo(e: ChamiloError) -> DirectoryError {
    let unavailable = |secs: u64| DirectoryError::Unavailable {
        retry_after: Some(Duration::from_secs(secs)),
    };
    match e {
        ChamiloError::LoginTaken { .. } => DirectoryError::Conflict {
            detail: "the login is already taken in Chamilo".into(),
        },
        ChamiloError::NotFound { .. } => DirectoryError::NotFound,
        ChamiloError::Rejected { message, .. } if message == LANGUAGE_UNAVAILABLE => {
            DirectoryError::InvalidValue {
                attr: "preferredLanguage".into(),
                detail: "the Chamilo language configured for this tag is not installed in Chamilo"
                    .into(),
            }
        }
        ChamiloError::Unreachable { .. } => unavailable(5),
        // The service account or the SOAP secret refused, a SOAP secret missing, Chamilo
        // lacking something: the operator's to fix, and the identity provider's to retry.
        ChamiloError::Unauthorized { .. }
        | ChamiloError::Config { .. }
        | ChamiloError::Incompatible { .. } => {
            tracing::error!(error = %e, "Chamilo refuses the proxy");
            unavailable(30)
        }
        ChamiloError::IndexRefreshing { retry_after } => DirectoryError::Unavailable {
            retry_after: Some(retry_after),
        },
        ChamiloError::ExtraFieldNotSaved { .. } => unavailable(10),
        ChamiloError::Timeout { .. } => DirectoryError::Timeout,
        other @ (ChamiloError::Rejected { .. } | ChamiloError::Unexpected { .. }) => {
            DirectoryError::Backend {
                detail: other.to_string(),
            }
        }
    }
}

/// Chamilo as a SCIM directory.
pub struct ChamiloDirectory {
    pub(crate) client: Arc<ChamiloClient>,
    pub(crate) lookup: Arc<AccountLookup>,
    pub(crate) mapping: ChamiloMapping,
    /// Fixed by the mapping; built once because the engine asks per request.
    capabilities: Capabilities,
    /// Accounts just confirmed fresh by `get`, for the write that follows at once (see
    /// [`ConfirmedJustNow`]).
    pub(crate) confirmed: ConfirmedJustNow,
    /// Course enrolment by group: the rules in force and the changes owed.
    pub(crate) enrolment: super::enrolment::apply::Enrolment,
}

/// The engine's PUT and PATCH read the user (`Directory::get`: one fresh confirmation) and
/// then write it (`Directory::replace`), which would confirm it a second time a few
/// milliseconds later: a third of a write's Chamilo calls for nothing. `get` leaves its
/// confirmation here and the next write of that id takes it — once, and only within
/// [`CONFIRMATION_REUSE`], so the window in which a change made elsewhere can go unseen is the
/// one every confirm-then-write already has, not longer. A delete through this directory
/// drops it.
#[derive(Default)]
pub(crate) struct ConfirmedJustNow(
    std::sync::Mutex<std::collections::HashMap<u64, (Account, std::time::Instant)>>,
);

/// How long a confirmation may serve the write that follows it.
const CONFIRMATION_REUSE: std::time::Duration = std::time::Duration::from_millis(200);
/// Confirmations kept at most (a burst of reads without writes must not grow it).
const CONFIRMATIONS_KEPT: usize = 256;

impl ConfirmedJustNow {
    pub(crate) fn put(&self, account: &Account) {
        let Ok(mut map) = self.0.lock() else { return };
        if map.len() >= CONFIRMATIONS_KEPT {
            map.retain(|_, (_, at)| at.elapsed() < CONFIRMATION_REUSE);
            if map.len() >= CONFIRMATIONS_KEPT {
                map.clear();
            }
        }
        map.insert(account.id, (account.clone(), std::time::Instant::now()));
    }

    pub(crate) fn take(&self, id: &str) -> Option<Account> {
        let id = id.parse::<u64>().ok()?;
        let (account, at) = self.0.lock().ok()?.remove(&id)?;
        (at.elapsed() < CONFIRMATION_REUSE).then_some(account)
    }

    pub(crate) fn forget(&self, id: &str) {
        if let (Ok(id), Ok(mut map)) = (id.parse::<u64>(), self.0.lock()) {
            map.remove(&id);
        }
    }
}

impl ChamiloDirectory {
    /// A directory over `client`, with its index lookups and mapping.
    pub fn new(
        client: Arc<ChamiloClient>,
        lookup: Arc<AccountLookup>,
        mapping: ChamiloMapping,
    ) -> Self {
        lookup.set_protected_logins(&mapping.protected_logins, mapping.login_rules);
        Self {
            client,
            lookup,
            capabilities: mapping.capabilities(),
            mapping,
            confirmed: ConfirmedJustNow::default(),
            enrolment: Default::default(),
        }
    }

    /// The mapping in force (its language policy follows reloads).
    pub fn mapping(&self) -> &ChamiloMapping {
        &self.mapping
    }

    /// The SCIM representation of an account.
    pub fn to_user(&self, a: &Account) -> User {
        self.mapping.to_user(a)
    }

    /// 503 with `Retry-After` until the index holds a first listing (which runs in the
    /// background, never inside a request).
    pub(crate) fn require_index(&self) -> Result<(), DirectoryError> {
        if self.lookup.index.is_ready() {
            return Ok(());
        }
        self.lookup.request_refresh();
        Err(DirectoryError::Unavailable {
            retry_after: Some(Duration::from_secs(5)),
        })
    }

    /// The account with this id as SCIM sees it: `None` when there is none, and when it was
    /// deleted through SCIM (deprovisioned), also by another replica.
    pub(crate) async fn account(&self, id: &str) -> Result<Option<Account>, DirectoryError> {
        let Ok(id) = id.parse::<u64>() else {
            return Ok(None);
        };
        self.require_index()?;
        let before = self.lookup.index.by_id(id);
        match self.lookup.by_id(id).await.map_err(from_chamilo)? {
            Some(a) if deprovisioned::is_deprovisioned(&a) => Ok(None),
            Some(a) => self.unless_deprovisioned_elsewhere(a).await,
            None => match before.filter(deprovisioned::is_deprovisioned) {
                Some(tombstoned) => self.revived_elsewhere(&tombstoned).await,
                None => Ok(None),
            },
        }
    }

    /// An account this replica knows as made outside SCIM (no userName field) may have been
    /// deleted through another replica since the last listing, which adopts it under the
    /// tombstone of its login: one fresh lookup of that tombstone tells. Any other account
    /// was just confirmed by its live userName or externalId value, and passes at no cost.
    async fn unless_deprovisioned_elsewhere(
        &self,
        account: Account,
    ) -> Result<Option<Account>, DirectoryError> {
        if account.user_name.is_some() || account.partial {
            return Ok(Some(account));
        }
        let mark = deprovisioned::tombstone(&account.login);
        let fresh = self
            .client
            .users_by_extra_field(&self.mapping.fields.user_name, &mark, false)
            .await
            .map_err(from_chamilo)?;
        if !fresh.iter().any(|p| p.id == account.id) {
            return Ok(Some(account));
        }
        let mut gone = account;
        gone.user_name = Some(mark);
        gone.active = false;
        self.lookup.index.upsert(gone);
        Ok(None)
    }

    /// An account this replica holds as deprovisioned whose tombstone Chamilo no longer has:
    /// another replica revived it (or it was deleted in Chamilo). It is found again by its
    /// former userName or externalId when it came back under one of them.
    async fn revived_elsewhere(&self, t: &Account) -> Result<Option<Account>, DirectoryError> {
        if let Some(un) = t.user_name.as_deref().and_then(deprovisioned::original) {
            let found = self.lookup.by_user_name(un).await.map_err(from_chamilo)?;
            if let Some(a) = found.filter(|a| a.id == t.id) {
                return Ok(Some(a));
            }
        }
        if let Some(ext) = t.external_id.as_deref().and_then(deprovisioned::original) {
            let found = self
                .lookup
                .by_external_id(ext)
                .await
                .map_err(from_chamilo)?;
            if let Some(a) = found.filter(|a| a.id == t.id) {
                return Ok(Some(a));
            }
        }
        Ok(None)
    }

    /// A search the index cannot answer by key (no filter, or a filter on other attributes):
    /// the accounts in the configured list scope, never protected or reserved ones. Paging
    /// without a filter or sort (Okta's imports) copies only the page, in id order; other
    /// searches look at the index a chunk at a time.
    fn search(&self, query: &ListQuery) -> Page {
        let managed_only = self.mapping.list_scope == ListScope::Managed;
        let reserved = self.lookup.reserved_check();
        // Accounts SCIM deleted (a tombstone userName) are gone for SCIM.
        let keep = |a: AccountRef<'_>| {
            (!managed_only || a.user_name().is_some())
                && !a.user_name().is_some_and(deprovisioned::is_tombstone)
                && !self.mapping.is_protected(a.login())
                && !reserved(a)
        };
        if query.filter.is_none() && query.sort.is_none() {
            let page = self
                .lookup
                .index
                .page(keep, query.start_index.max(1) - 1, query.count);
            let resources = page.accounts.iter().map(|a| self.to_user(a)).collect();
            return Page {
                total: page.total,
                resources,
            };
        }
        // A scan may look at every account and return a page: the version (a digest of the
        // whole resource) only for what is returned. Decoding an account's kept document is
        // most of its cost, so where the filter names no attribute the document holds, the
        // account converted without it decides (exactly: `kept_names_deciding`), and only
        // the ones it lets through are converted whole.
        let deciding = query
            .filter
            .as_ref()
            .and_then(|f| kept_names_deciding(f).map(|names| (f, names)));
        let chunks = self
            .lookup
            .index
            .scan(SEARCH_CHUNK, |a| {
                if !keep(a) {
                    return None;
                }
                match deciding {
                    Some((filter, names)) if !a.attributes_may_hold(names) => {
                        let without = self
                            .mapping
                            .to_user_unversioned(&a.to_account_without_attributes());
                        let without = serde_json::Value::Object(without.into_json());
                        matches(filter, &without, ResourceSchema::full()).then(|| a.to_account())
                    }
                    _ => Some(a.to_account()),
                }
            })
            .map(|accounts| {
                accounts
                    .iter()
                    .map(|a| self.mapping.to_user_unversioned(a))
                    .collect()
            });
        let mut page = query.select_chunks(chunks);
        for user in &mut page.resources {
            super::mapping::set_version(user);
        }
        page
    }

    async fn find_users(&self, query: &ListQuery) -> Result<Page, DirectoryError> {
        // Lookups by userName and externalId are confirmed fresh and answer before the index
        // holds its first listing; anything answered from the index waits for it.
        let str_of = |v: &CompValue| match v {
            CompValue::Str(s) => Some(s.clone()),
            CompValue::Num(n) => Some(n.to_string()),
            _ => None,
        };
        let candidates: Vec<Account> = match &query.filter {
            Some(f) => {
                if let Some(v) = f.equality_on("userName").and_then(str_of) {
                    if deprovisioned::is_tombstone(&v) {
                        // Not a SCIM value (refused on writes): nothing has it.
                        Vec::new()
                    } else {
                        match self.lookup.by_user_name(&v).await.map_err(from_chamilo)? {
                            Some(a) => self
                                .unless_deprovisioned_elsewhere(a)
                                .await?
                                .into_iter()
                                .collect(),
                            None => Vec::new(),
                        }
                    }
                } else if let Some(v) = f.equality_on("externalId").and_then(str_of) {
                    if deprovisioned::is_tombstone(&v) {
                        Vec::new()
                    } else {
                        self.lookup
                            .by_external_id(&v)
                            .await
                            .map_err(from_chamilo)?
                            .into_iter()
                            .collect()
                    }
                } else if let Some(v) = f.equality_on("id").and_then(str_of) {
                    self.account(&v).await?.into_iter().collect()
                } else {
                    self.require_index()?;
                    return Ok(off_the_reactor(|| self.search(query)));
                }
            }
            None => {
                self.require_index()?;
                return Ok(off_the_reactor(|| self.search(query)));
            }
        };
        let candidates: Vec<Account> = candidates
            .into_iter()
            .filter(|a| {
                !self.mapping.is_protected(&a.login)
                    && !self.lookup.is_reserved(a)
                    && !deprovisioned::is_deprovisioned(a)
            })
            .collect();
        let users = candidates.iter().map(|a| self.to_user(a)).collect();
        Ok(query.select(users))
    }
}

/// Accounts looked at per chunk by a search the index cannot answer by key (one lock each):
/// what a scan holds besides the page is at most this many users converted to SCIM (a user
/// with Entra ID's default mapping is a few KB as JSON values, and each worker thread's
/// allocator keeps what it once held).
const SEARCH_CHUNK: usize = 64;

/// Runs `work`, which may take a second of CPU (a scan of 100k accounts), without holding up
/// the other connections of this worker thread (pass-through requests included): on the
/// multi-threaded runtime the worker's other tasks move to another thread meanwhile.
fn off_the_reactor<T>(work: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(work),
        _ => work(),
    }
}

impl Directory for ChamiloDirectory {
    fn capabilities(&self) -> Capabilities {
        let mut caps = self.capabilities.clone();
        // Passwords are set through SOAP: only with its secret (it may come with a reload).
        caps.change_password = self.client.soap_configured();
        caps
    }

    fn create(&self, user: User) -> DirFuture<'_, User> {
        Box::pin(self.create_user(user))
    }

    fn get<'a>(&'a self, id: &'a str) -> DirFuture<'a, Option<User>> {
        Box::pin(async move {
            let account = self
                .account(id)
                .await?
                .filter(|a| !self.mapping.is_protected(&a.login) && !self.lookup.is_reserved(a));
            if let Some(a) = &account {
                self.confirmed.put(a);
            }
            Ok(account.map(|a| self.to_user(&a)))
        })
    }

    fn find<'a>(&'a self, query: &'a ListQuery) -> DirFuture<'a, Page> {
        Box::pin(self.find_users(query))
    }

    fn replace<'a>(
        &'a self,
        id: &'a str,
        user: User,
        expected_version: Option<&'a str>,
    ) -> DirFuture<'a, User> {
        Box::pin(self.update_user(id, user, None, expected_version))
    }

    fn modify<'a>(
        &'a self,
        id: &'a str,
        base: &'a User,
        user: User,
        expected_version: Option<&'a str>,
    ) -> DirFuture<'a, User> {
        Box::pin(self.update_user(id, user, Some(base), expected_version))
    }

    fn delete<'a>(&'a self, id: &'a str) -> DirFuture<'a, ()> {
        Box::pin(self.delete_user(id))
    }

    /// Classes (see `super::groups`).
    fn groups(&self) -> Option<&dyn GroupStore> {
        Some(self)
    }
}
