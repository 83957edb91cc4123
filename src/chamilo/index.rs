//! The user index: a compact in-memory copy of Chamilo's accounts, so that reads do not list
//! every user per request (`get_users` is the only listing and returns everyone).
//!
//! The index is only a cache (design.md, invariant 2). It is built in the background from
//! `get_users status=* extra_fields=<userName field>,<externalId field>,<attributes field>`
//! (rarely: one query per user and field on Chamilo) and `get_users status=*` without them
//! in between ([`UserIndex::apply_listed_bare`]), updated at once by writes through this
//! proxy, and never trusted on its own for an answer that could make the identity provider act
//! wrongly:
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
//! Memory (about 230 bytes per account with the userName and externalId fields: 22.6 MiB at
//! 100k; about 500 with an Entra-mapped `scim_attributes` document too: 47.6 MiB): entries sit
//! in one vector sorted by id, 32 bytes each, and pack their fields into one allocation each
//! (a userName equal to the e-mail or the login is a flag, not a copy; the attributes document
//! compressed against a SCIM dictionary and the entry's own fields, see `HeldAttributes`);
//! the three key tables hold 4-byte ids, not strings or case-folded copies (a probe compares
//! the entry's own field). A refresh diffs the streamed listing into this one generation
//! instead of building a second one, and paging copies only the page, so the peak stays about
//! one index plus the listing's current row.

use std::cell::RefCell;
use std::collections::hash_map::DefaultHasher;
use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use hashbrown::HashTable;

use super::client::ListedUser;
use super::kept;

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

impl IndexFields {
    /// Every field the proxy relies on: listed by each index refresh, created at start-up.
    pub fn all(&self) -> [&str; 3] {
        [&self.user_name, &self.external_id, &self.attributes]
    }
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
    /// As `phone`: Chamilo's full name (`firstname lastname`), to tell whether the index's
    /// names are current.
    pub full_name: Option<String>,
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
            full_name: None,
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
/// `present` flag: the attributes are held packed (see [`HeldAttributes`]).
const ATTRIBUTES_PACKED: u16 = 1 << 13;

/// One account packed into one allocation (32 bytes plus the bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    id: u64,
    /// The lengths of the text fields (LEB128, one byte each below 128), the text fields
    /// (UTF-8), then the attributes field as held (see [`HeldAttributes`]) to the end. The
    /// lengths sit in the allocation, not beside it, because at 100k accounts the entries'
    /// own size counts: 24 bytes of offsets each were 3 MiB of the vector.
    bytes: Box<[u8]>,
    /// The known attribute names the kept document holds ([`kept::KeyNames`]), so that a
    /// search can tell which documents it need not decode.
    names: u32,
    /// Bit i set: field i is present (for the optional ones); plus the userName flags and
    /// [`ATTRIBUTES_PACKED`].
    present: u16,
    active: bool,
    partial: bool,
}

#[cfg(target_pointer_width = "64")]
const _: () = assert!(std::mem::size_of::<Entry>() == 32);

/// Text fields before the attributes, each with its length at the start of `Entry::bytes`.
const TEXT_FIELDS: usize = FIELDS - 1;

/// Appends `n` in LEB128 (7 bits a byte, low bits first).
fn put_length(bytes: &mut Vec<u8>, mut n: usize) {
    while n >= 0x80 {
        bytes.push((n & 0x7f) as u8 | 0x80);
        n >>= 7;
    }
    bytes.push(n as u8);
}

/// Reads a LEB128 length at `*at` and moves past it; `None` if it is cut short or does not
/// fit in 32 bits (no field is that long).
fn take_length(bytes: &[u8], at: &mut usize) -> Option<usize> {
    let mut n = 0usize;
    for shift in [0, 7, 14, 21, 28] {
        let b = *bytes.get(*at)?;
        *at += 1;
        n |= usize::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(n);
        }
    }
    None
}

/// The fields of `a` as stored, the userName left out when it repeats the e-mail or login.
fn stored_fields(a: &Account) -> ([Option<&str>; FIELDS], u16) {
    // Identity providers often send the e-mail address (Entra's UPN) or the login itself as
    // userName: store such a userName as a flag, not a second copy.
    let mut flags = 0u16;
    let user_name = match a.user_name.as_deref() {
        Some(u) if u == a.email => {
            flags |= USER_NAME_IS_EMAIL;
            None
        }
        Some(u) if u == a.login => {
            flags |= USER_NAME_IS_LOGIN;
            None
        }
        other => other,
    };
    let fields = [
        Some(a.login.as_str()),
        user_name,
        a.external_id.as_deref(),
        a.firstname.as_deref(),
        Some(a.lastname.as_str()),
        Some(a.email.as_str()),
        a.attributes.as_deref(),
    ];
    (fields, flags)
}

/// SCIM text the kept attributes are compressed against (see [`HeldAttributes`]): attribute
/// names, the enterprise URN, common type values and the kept document's own keys, laid out as
/// documents written by the proxy look (the likeliest one, Entra ID's default mapping, last).
/// Only ever in memory: changing it needs no migration.
const SCIM_DICTIONARY: &[u8] = include_bytes!("index_dictionary.txt");

/// Larger documents (only ever a value edited by hand: the proxy writes at most
/// `kept::MAX_FIELD_BYTES`) are held as stored.
const MAX_PACKED_DOCUMENT: usize = 1 << 20;

/// zstd's default level. On 2,000 Entra-mapped documents level 7 holds 295 bytes instead of
/// 313, but measured at 100k accounts its larger contexts and 50 % more packing time cost more
/// (peak +1 to +3 MiB, 1.7 MiB less index) than it saves (`bench/chamilo.md`, session 10).
const PACK_LEVEL: i32 = 3;

thread_local! {
    /// One compression and one decompression context per thread (`None` if zstd could not
    /// allocate one: nothing is packed).
    static PACKER: RefCell<Option<zstd::zstd_safe::CCtx<'static>>> =
        RefCell::new(zstd::zstd_safe::CCtx::try_create());
    static UNPACKER: RefCell<Option<zstd::zstd_safe::DCtx<'static>>> =
        RefCell::new(zstd::zstd_safe::DCtx::try_create());
    /// The dictionary of the entry being packed or unpacked (see [`entry_dictionary`]).
    static DICTIONARY: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    /// Buffers for [`Entry::holds`], which each refresh calls for every account: the listed
    /// document and the held one, reused rather than allocated per account.
    static COMPARED: RefCell<(Vec<u8>, Vec<u8>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// The dictionary an entry's document is packed against: [`SCIM_DICTIONARY`], then the
/// entry's own text fields (`text`, as stored) as JSON strings, which the document often
/// repeats (the work e-mail; `displayName` and `name.formatted`, made of the names). The
/// fields are the entry's, so an entry whose fields change is packed again (every change goes
/// through [`Entry::pack`]).
fn entry_dictionary(dictionary: &mut Vec<u8>, text: &[Option<&str>]) {
    dictionary.clear();
    dictionary.extend_from_slice(SCIM_DICTIONARY);
    for field in text.iter().flatten() {
        dictionary.push(b'"');
        dictionary.extend_from_slice(field.as_bytes());
        dictionary.push(b'"');
    }
}

/// `doc` compressed against the dictionary of an entry with these text fields: a zstd frame
/// with the document's length (to unpack and to compare without unpacking), no checksum and
/// no dictionary id (a raw-content dictionary has none).
fn pack_document(doc: &[u8], text: &[Option<&str>]) -> Option<Vec<u8>> {
    DICTIONARY.with_borrow_mut(|dictionary| {
        entry_dictionary(dictionary, text);
        PACKER.with_borrow_mut(|packer| {
            let packer = packer.as_mut()?;
            let mut packed = Vec::with_capacity(zstd::zstd_safe::compress_bound(doc.len()));
            packer
                .compress_using_dict(&mut packed, doc, dictionary, PACK_LEVEL)
                .ok()?;
            Some(packed)
        })
    })
}

/// How the attributes field (`super::kept`, about 1.2 KB as stored for a user with Entra ID's
/// default mapping) is held in an entry: the field's JSON document, decoded from its `json64:`
/// encoding and compressed (a zstd frame) against [`SCIM_DICTIONARY`] and the entry's own text
/// fields ([`entry_dictionary`]; under 300 bytes for that user), when that is smaller
/// and gives the field back byte for byte; otherwise the field as stored (the older `k=v;`
/// encoding, a value edited by hand, a value that is not canonical base64, a tiny document).
#[derive(Debug, PartialEq, Eq)]
enum HeldAttributes<'a> {
    Packed(Vec<u8>),
    Raw(&'a str),
}

impl<'a> HeldAttributes<'a> {
    /// The attributes `field` of an entry whose text fields are `text`, and the known
    /// attribute names it holds.
    fn of(field: &'a str, text: &[Option<&str>]) -> (Self, kept::KeyNames) {
        let Some(doc) = kept::json64_decode(field) else {
            // The older encoding or a value edited by hand: it may hold anything.
            return (Self::Raw(field), kept::KeyNames::ALL);
        };
        let names = kept::KeyNames::of_document(&doc);
        if doc.len() > MAX_PACKED_DOCUMENT {
            return (Self::Raw(field), names);
        }
        let held = match pack_document(&doc, text) {
            // Packed only when smaller and exact: the field must come back as it was stored.
            Some(packed)
                if packed.len() < field.len()
                    && unpack_document(&packed, text).is_some_and(|d| d == doc)
                    && kept::json64_encode(&doc) == field =>
            {
                Self::Packed(packed)
            }
            _ => Self::Raw(field),
        };
        (held, names)
    }

    fn bytes(&self) -> &[u8] {
        match self {
            Self::Packed(b) => b,
            Self::Raw(s) => s.as_bytes(),
        }
    }
}

/// The length of the document a packed attributes field holds, as its frame says.
fn packed_length(packed: &[u8]) -> Option<usize> {
    let len = zstd::zstd_safe::get_frame_content_size(packed).ok()??;
    usize::try_from(len).ok()
}

/// The JSON document of a packed attributes field of an entry whose text fields are `text`;
/// `None` if `packed` does not decompress (never for what [`HeldAttributes::of`] packed,
/// which checks).
fn unpack_document(packed: &[u8], text: &[Option<&str>]) -> Option<Vec<u8>> {
    let mut doc = Vec::new();
    unpack_document_into(packed, text, &mut doc).then_some(doc)
}

/// As [`unpack_document`], into `doc` (cleared first): whether it decompressed.
fn unpack_document_into(packed: &[u8], text: &[Option<&str>], doc: &mut Vec<u8>) -> bool {
    doc.clear();
    let Some(len) = packed_length(packed) else {
        return false;
    };
    // A damaged frame may claim any length.
    if len > MAX_PACKED_DOCUMENT {
        return false;
    }
    doc.reserve(len);
    DICTIONARY.with_borrow_mut(|dictionary| {
        entry_dictionary(dictionary, text);
        UNPACKER.with_borrow_mut(|u| {
            u.as_mut()
                .is_some_and(|u| u.decompress_using_dict(doc, packed, dictionary).is_ok())
        })
    }) && doc.len() == len
}

impl Entry {
    fn pack(a: &Account) -> Self {
        let (fields, mut present) = stored_fields(a);
        let (held, names) = match a.attributes.as_deref() {
            Some(field) => {
                let (held, names) = HeldAttributes::of(field, &fields[..F_ATTRIBUTES]);
                (Some(held), names)
            }
            None => (None, kept::KeyNames::NONE),
        };
        if let Some(HeldAttributes::Packed(_)) = held {
            present |= ATTRIBUTES_PACKED;
        }
        let text = fields[..F_ATTRIBUTES].iter().flatten().map(|s| s.len());
        let held_len = held.as_ref().map_or(0, |h| h.bytes().len());
        let mut bytes = Vec::with_capacity(TEXT_FIELDS + text.sum::<usize>() + held_len);
        for f in &fields[..TEXT_FIELDS] {
            put_length(&mut bytes, f.map_or(0, str::len));
        }
        for (i, f) in fields.iter().enumerate() {
            let field = match i {
                F_ATTRIBUTES => held.as_ref().map(HeldAttributes::bytes),
                _ => f.map(str::as_bytes),
            };
            if let Some(b) = field {
                bytes.extend_from_slice(b);
                present |= 1 << i;
            }
        }
        Self {
            id: a.id,
            bytes: bytes.into_boxed_slice(),
            names: names.bits(),
            present,
            active: a.active,
            partial: a.partial,
        }
    }

    /// Whether this entry already holds `a` exactly (a refresh then leaves it alone). The
    /// attributes are compared as documents, byte for byte.
    fn holds(&self, a: &Account) -> bool {
        let (fields, flags) = stored_fields(a);
        self.id == a.id
            && self.active == a.active
            && self.partial == a.partial
            && self.present & (USER_NAME_IS_EMAIL | USER_NAME_IS_LOGIN) == flags
            && fields[..F_ATTRIBUTES]
                .iter()
                .enumerate()
                .all(|(i, f)| self.stored(i) == *f)
            && self.holds_attributes(a.attributes.as_deref())
    }

    fn holds_attributes(&self, field: Option<&str>) -> bool {
        let (held, field) = match (self.slot(F_ATTRIBUTES), field) {
            (None, None) => return true,
            (Some(held), Some(field)) => (held, field),
            _ => return false,
        };
        if self.present & ATTRIBUTES_PACKED == 0 {
            // A field packs whenever it can, so a raw one equals only a raw one.
            return held == field.as_bytes();
        }
        // A packed one equals only a field whose document is the same (a document has one
        // encoding, see `kept::json64_decode`).
        COMPARED.with_borrow_mut(|(listed, ours)| {
            kept::json64_decode_into(field, listed)
                && packed_length(held) == Some(listed.len())
                && unpack_document_into(held, &self.text_fields(), ours)
                && listed == ours
        })
    }

    /// The bytes of field i (without following the userName flags).
    fn slot(&self, i: usize) -> Option<&[u8]> {
        if self.present & (1 << i) == 0 {
            return None;
        }
        let mut at = 0;
        let mut lengths = [0; TEXT_FIELDS];
        for length in &mut lengths {
            *length = take_length(&self.bytes, &mut at)?;
        }
        let start = at + lengths.iter().take(i).sum::<usize>();
        let end = lengths.get(i).map_or(self.bytes.len(), |len| start + len);
        self.bytes.get(start..end)
    }

    /// Text field i as stored (without following the userName flags); not the attributes.
    fn stored(&self, i: usize) -> Option<&str> {
        if i == F_ATTRIBUTES {
            return None;
        }
        self.slot(i).and_then(|b| std::str::from_utf8(b).ok())
    }

    fn field(&self, i: usize) -> Option<&str> {
        if i == F_USER_NAME && self.present & USER_NAME_IS_EMAIL != 0 {
            return self.stored(F_EMAIL);
        }
        if i == F_USER_NAME && self.present & USER_NAME_IS_LOGIN != 0 {
            return self.stored(F_LOGIN);
        }
        self.stored(i)
    }

    /// The attributes field as stored in Chamilo.
    fn attributes(&self) -> Option<String> {
        let held = self.slot(F_ATTRIBUTES)?;
        if self.present & ATTRIBUTES_PACKED == 0 {
            return std::str::from_utf8(held).ok().map(str::to_owned);
        }
        unpack_document(held, &self.text_fields()).map(|doc| kept::json64_encode(&doc))
    }

    /// The text fields as stored (the attributes' dictionary is made of them).
    fn text_fields(&self) -> [Option<&str>; F_ATTRIBUTES] {
        std::array::from_fn(|i| self.stored(i))
    }

    fn unpack(&self) -> Account {
        self.unpack_with(true)
    }

    fn unpack_with(&self, attributes: bool) -> Account {
        let s = |i| self.field(i).map(str::to_owned);
        Account {
            id: self.id,
            login: s(F_LOGIN).unwrap_or_default(),
            user_name: s(F_USER_NAME),
            external_id: s(F_EXTERNAL_ID),
            active: self.active,
            firstname: s(F_FIRSTNAME),
            lastname: s(F_LASTNAME).unwrap_or_default(),
            email: s(F_EMAIL).unwrap_or_default(),
            attributes: if attributes { self.attributes() } else { None },
            partial: self.partial,
            ..Account::default()
        }
    }

    /// Whether the fields a listing without extra fields carries are as `listed` has them
    /// (see [`UserIndex::apply_listed_bare`]).
    fn holds_bare(&self, listed: &Account) -> bool {
        self.id == listed.id
            && self.active == listed.active
            && self.partial == listed.partial
            && self.stored(F_LOGIN) == Some(listed.login.as_str())
            && self.stored(F_FIRSTNAME) == listed.firstname.as_deref()
            && self.stored(F_LASTNAME) == Some(listed.lastname.as_str())
            && self.stored(F_EMAIL) == Some(listed.email.as_str())
    }

    /// Heap bytes as the allocator rounds them (8 bytes of header, 16-byte steps).
    fn heap_bytes(&self) -> usize {
        (self.bytes.len() + 8).div_ceil(16) * 16
    }
}

/// An indexed account, borrowed: for choosing accounts without copying them.
#[derive(Debug, Clone, Copy)]
pub struct AccountRef<'a>(&'a Entry);

impl<'a> AccountRef<'a> {
    /// Chamilo user id.
    pub fn id(&self) -> u64 {
        self.0.id
    }

    /// Chamilo's login, as stored.
    pub fn login(&self) -> &'a str {
        self.0.field(F_LOGIN).unwrap_or_default()
    }

    /// The SCIM `userName`; `None` for accounts not made through SCIM.
    pub fn user_name(&self) -> Option<&'a str> {
        self.0.field(F_USER_NAME)
    }

    /// Whether the account is active in Chamilo (as last seen).
    pub fn active(&self) -> bool {
        self.0.active
    }

    /// An owned copy.
    pub fn to_account(&self) -> Account {
        self.0.unpack()
    }

    /// An owned copy without the attributes field (`attributes: None`), which is the one
    /// field that costs decoding.
    pub fn to_account_without_attributes(&self) -> Account {
        self.0.unpack_with(false)
    }

    /// Whether the attributes field may hold an attribute of `names` (see
    /// [`kept::KeyNames`]); always for a field the index could not read as a document.
    pub fn attributes_may_hold(&self, names: kept::KeyNames) -> bool {
        kept::KeyNames::from_bits(self.0.names).meets(names)
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
    const ALL: [Key; 3] = [Key::Login, Key::UserName, Key::ExternalId];

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

fn hash_of(norm: &str) -> u64 {
    let mut h = DefaultHasher::new();
    norm.hash(&mut h);
    h.finish()
}

/// The index's contents: entries sorted by id, and per key kind a hash table of ids (the key
/// strings themselves are not duplicated: a probe compares against the entry's own field).
#[derive(Debug, Default)]
struct Maps {
    entries: Vec<Entry>,
    /// Per key kind: ids, hashed by the entry's normalised key. Several accounts may share a
    /// value (externalId can repeat in Chamilo); the lowest id answers, like Chamilo's lookups.
    /// Ids above `u32::MAX` (Chamilo's ids are 32-bit) are not keyed: their lookups miss and
    /// are confirmed fresh, like any miss.
    keys: [HashTable<u32>; 3],
    max_id: u64,
}

/// The hash of entry `id`'s key (0 when it has none: never probed for).
fn key_hash(entries: &[Entry], key: Key, id: u32) -> u64 {
    entries
        .binary_search_by_key(&u64::from(id), |e| e.id)
        .ok()
        .and_then(|pos| entries[pos].field(key.field()))
        .map_or(0, |v| hash_of(&key.normalise(v)))
}

impl Maps {
    fn get(&self, id: u64) -> Option<&Entry> {
        let pos = self.entries.binary_search_by_key(&id, |e| e.id).ok()?;
        self.entries.get(pos)
    }

    fn lookup(&self, key: Key, value: &str) -> Option<&Entry> {
        let norm = key.normalise(value);
        self.keys[key.slot()]
            .iter_hash(hash_of(&norm))
            .filter_map(|id| self.get(u64::from(*id)))
            .filter(|e| {
                e.field(key.field())
                    .is_some_and(|v| key.normalise(v) == norm)
            })
            .min_by_key(|e| e.id)
    }

    fn index_keys(&mut self, pos: usize) {
        let Some(entry) = self.entries.get(pos) else {
            return;
        };
        let Ok(small) = u32::try_from(entry.id) else {
            return;
        };
        for key in Key::ALL {
            let Some(v) = entry.field(key.field()) else {
                continue;
            };
            let h = hash_of(&key.normalise(v));
            let entries = &self.entries;
            self.keys[key.slot()].insert_unique(h, small, |id| key_hash(entries, key, *id));
        }
    }

    fn unindex_keys(&mut self, pos: usize) {
        let Some(entry) = self.entries.get(pos) else {
            return;
        };
        let Ok(small) = u32::try_from(entry.id) else {
            return;
        };
        for key in Key::ALL {
            if let Some(v) = entry.field(key.field()) {
                let h = hash_of(&key.normalise(v));
                if let Ok(found) = self.keys[key.slot()].find_entry(h, |id| *id == small) {
                    found.remove();
                }
            }
        }
    }

    fn remove(&mut self, id: u64) {
        if let Ok(pos) = self.entries.binary_search_by_key(&id, |e| e.id) {
            self.unindex_keys(pos);
            self.entries.remove(pos);
        }
    }

    fn upsert(&mut self, a: &Account) {
        let entry = Entry::pack(a);
        let pos = match self.entries.binary_search_by_key(&a.id, |e| e.id) {
            Ok(pos) => {
                self.unindex_keys(pos);
                self.entries[pos] = entry;
                pos
            }
            Err(pos) => {
                // Ids grow: new accounts almost always go at the end.
                self.entries.insert(pos, entry);
                pos
            }
        };
        self.max_id = self.max_id.max(a.id);
        self.index_keys(pos);
    }

    /// Drops every entry for which `keep` is false.
    fn retain(&mut self, keep: impl Fn(u64) -> bool) {
        for pos in 0..self.entries.len() {
            if !keep(self.entries[pos].id) {
                self.unindex_keys(pos);
            }
        }
        self.entries.retain(|e| keep(e.id));
    }
}

#[derive(Debug, Default)]
struct Inner {
    maps: Maps,
    /// Ids written (created, changed, removed) while a refresh's listing was in flight: the
    /// write is newer than the listing, so the listing's row for such an id is ignored.
    journal: Option<HashSet<u64>>,
    built_at: Option<Instant>,
}

/// The in-memory index. Cheap reads; a refresh diffs a streamed listing into the one live
/// generation (there is never a second copy of the index).
#[derive(Debug, Default)]
pub struct UserIndex {
    inner: RwLock<Inner>,
}

/// A refresh in progress (see [`UserIndex::begin_rebuild`]): the ids listed so far.
#[derive(Debug, Default)]
pub struct IndexRefresh {
    seen: Vec<u64>,
    changed: usize,
    extras_unknown: usize,
}

impl IndexRefresh {
    /// Number of accounts listed so far.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether no account was listed.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// Number of listed accounts that were new or differed from the index.
    pub fn changed(&self) -> usize {
        self.changed
    }

    /// Number of accounts new to the index that a listing without extra fields met and left
    /// out, their userName, externalId and attributes being unknown (see
    /// [`UserIndex::apply_listed_bare`]).
    pub fn extras_unknown(&self) -> usize {
        self.extras_unknown
    }
}

/// One page of the index (see [`UserIndex::page`]).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AccountPage {
    /// Accounts chosen, across all pages.
    pub total: usize,
    /// The accounts of the page, in id order.
    pub accounts: Vec<Account>,
}

impl UserIndex {
    /// An empty index that is not ready (no listing yet).
    pub fn new() -> Self {
        Self::default()
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
        self.read().maps.entries.len()
    }

    /// Whether the index holds no account.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The highest user id seen: ids above it may belong to users created elsewhere since.
    pub fn max_id(&self) -> u64 {
        self.read().maps.max_id
    }

    /// The accounts `keep` chooses, in id order, from the `skip`-th, at most `take`, and how
    /// many it chooses in all. Computed under one read lock, so the page and the total come
    /// from one consistent state; only the page is copied (paging through 100k accounts
    /// costs no copy of the index).
    pub fn page(
        &self,
        keep: impl Fn(AccountRef<'_>) -> bool,
        skip: usize,
        take: usize,
    ) -> AccountPage {
        let inner = self.read();
        let mut page = AccountPage::default();
        for e in &inner.maps.entries {
            if keep(AccountRef(e)) {
                if page.total >= skip && page.accounts.len() < take {
                    page.accounts.push(e.unpack());
                }
                page.total += 1;
            }
        }
        page
    }

    /// The accounts `keep` chooses, in id order, in chunks of those among `size` accounts
    /// looked at (for searches that must look at every account's attributes: only one chunk
    /// is copied at a time). Each chunk is read under its own lock, so writes may land between
    /// chunks; every account is still seen at most once.
    pub fn chunks<'a, K>(&'a self, keep: K, size: usize) -> impl Iterator<Item = Vec<Account>> + 'a
    where
        K: Fn(AccountRef<'_>) -> bool + 'a,
    {
        self.scan(size, move |a| keep(a).then(|| a.to_account()))
    }

    /// What `visit` makes of each account (`None`: left out), in id order, in chunks of what
    /// it made of `size` accounts, each read under its own lock like [`UserIndex::chunks`].
    pub fn scan<'a, T, V>(&'a self, size: usize, mut visit: V) -> impl Iterator<Item = Vec<T>> + 'a
    where
        T: 'a,
        V: FnMut(AccountRef<'_>) -> Option<T> + 'a,
    {
        let size = size.max(1);
        let mut after: Option<u64> = None;
        let mut done = false;
        std::iter::from_fn(move || loop {
            if done {
                return None;
            }
            let mut chunk = Vec::new();
            {
                // `size` accounts looked at per lock, whatever `visit` keeps: a search that
                // matches nothing still lets writes in between.
                let inner = self.read();
                let entries = &inner.maps.entries;
                let from = after.map_or(0, |id| entries.partition_point(|e| e.id <= id));
                let looked = entries.get(from..).unwrap_or_default().iter().take(size);
                let mut count = 0;
                for e in looked {
                    count += 1;
                    after = Some(e.id);
                    chunk.extend(visit(AccountRef(e)));
                }
                done = count < size;
            }
            if !chunk.is_empty() {
                return Some(chunk);
            }
        })
    }

    /// The account with this id.
    pub fn by_id(&self, id: u64) -> Option<Account> {
        self.read().maps.get(id).map(Entry::unpack)
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
        self.read().maps.lookup(key, value).map(Entry::unpack)
    }

    /// Records a write (create or update) made through this proxy, effective at once.
    pub fn upsert(&self, account: Account) {
        let mut inner = self.write();
        inner.maps.upsert(&account);
        if let Some(j) = inner.journal.as_mut() {
            j.insert(account.id);
        }
    }

    /// Records a deletion.
    pub fn remove(&self, id: u64) {
        let mut inner = self.write();
        inner.maps.remove(id);
        if let Some(j) = inner.journal.as_mut() {
            j.insert(id);
        }
    }

    /// Starts a refresh: writes are journaled from now on. Call before requesting the
    /// listing, feed its rows to [`UserIndex::apply_listed`], then call
    /// [`UserIndex::finish_refresh`] (or [`UserIndex::abandon_rebuild`] on failure).
    pub fn begin_rebuild(&self) -> IndexRefresh {
        let mut inner = self.write();
        if inner.journal.is_none() {
            inner.journal = Some(HashSet::new());
        }
        IndexRefresh::default()
    }

    /// Diffs one listed account into the index: added or changed unless a write through
    /// this proxy since [`UserIndex::begin_rebuild`] is newer; untouched when equal.
    pub fn apply_listed(&self, refresh: &mut IndexRefresh, account: &Account) {
        refresh.seen.push(account.id);
        let mut inner = self.write();
        if inner
            .journal
            .as_ref()
            .is_some_and(|j| j.contains(&account.id))
        {
            return;
        }
        if inner.maps.get(account.id).is_some_and(|e| e.holds(account)) {
            return;
        }
        inner.maps.upsert(account);
        refresh.changed += 1;
    }

    /// Diffs one account from a listing without extra fields (a bare `get_users`, whose cost
    /// does not grow with the number of extra fields): login, names, e-mail and `active` come
    /// from the listing, userName, externalId and attributes stay as the index has them, since
    /// a login or name change does not touch the extra fields. An account new to the index is
    /// not added (its extra fields are unknown) but counted, and `true` is returned: a
    /// listing with extra fields must add it. A write through this proxy since
    /// [`UserIndex::begin_rebuild`] wins, as in [`UserIndex::apply_listed`].
    pub fn apply_listed_bare(&self, refresh: &mut IndexRefresh, listed: &Account) -> bool {
        refresh.seen.push(listed.id);
        let mut inner = self.write();
        if inner
            .journal
            .as_ref()
            .is_some_and(|j| j.contains(&listed.id))
        {
            return false;
        }
        let Some(entry) = inner.maps.get(listed.id) else {
            // Not added: without its userName it would answer as an account made outside
            // SCIM. Left out, a lookup by its id asks for a listing with the extra fields,
            // and lookups by userName or externalId find it fresh, as before it was listed.
            refresh.extras_unknown += 1;
            return true;
        };
        // The usual case, checked without unpacking the attributes.
        if entry.holds_bare(listed) {
            return false;
        }
        let old = entry.unpack();
        let merged = Account {
            user_name: old.user_name,
            external_id: old.external_id,
            attributes: old.attributes,
            ..listed.clone()
        };
        inner.maps.upsert(&merged);
        refresh.changed += 1;
        false
    }

    /// Ends a refresh whose listing arrived whole: accounts it did not list are dropped
    /// (deleted in Chamilo), unless written through this proxy meanwhile. Returns how many
    /// were dropped.
    pub fn finish_refresh(&self, mut refresh: IndexRefresh) -> usize {
        refresh.seen.sort_unstable();
        let mut inner = self.write();
        let journal = inner.journal.take().unwrap_or_default();
        let before = inner.maps.entries.len();
        inner
            .maps
            .retain(|id| refresh.seen.binary_search(&id).is_ok() || journal.contains(&id));
        inner.built_at = Some(Instant::now());
        before - inner.maps.entries.len()
    }

    /// A whole refresh from accounts at hand: [`UserIndex::apply_listed`] for each, then
    /// [`UserIndex::finish_refresh`]. The listing must have been requested after
    /// [`UserIndex::begin_rebuild`].
    pub fn finish_rebuild(&self, accounts: impl IntoIterator<Item = Account>) {
        let mut refresh = IndexRefresh::default();
        for a in accounts {
            self.apply_listed(&mut refresh, &a);
        }
        self.finish_refresh(refresh);
    }

    /// Stops journaling after a failed listing. Rows already applied stay (they came from
    /// Chamilo); nothing is dropped and the index's age is unchanged.
    pub fn abandon_rebuild(&self) {
        self.write().journal = None;
    }

    /// Approximate heap bytes held by the entries and key tables (for the memory report).
    pub fn approx_bytes(&self) -> usize {
        let inner = self.read();
        let m = &inner.maps;
        let entries = m.entries.capacity() * std::mem::size_of::<Entry>()
            + m.entries.iter().map(Entry::heap_bytes).sum::<usize>();
        let keys: usize = m.keys.iter().map(HashTable::allocation_size).sum();
        entries + keys
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

    fn ids(page: &AccountPage) -> Vec<u64> {
        page.accounts.iter().map(|a| a.id).collect()
    }

    #[test]
    fn a_refresh_keeps_writes_made_during_the_listing() {
        let idx = UserIndex::new();
        idx.upsert(acc(3, "old", None, None));
        let mut refresh = idx.begin_rebuild();
        // While get_users runs: one create, one rename and one delete through the proxy.
        idx.upsert(acc(9, "new", None, None));
        idx.upsert(acc(3, "renamed", None, None));
        idx.remove(4);
        // The listing was taken before all three writes.
        for a in [acc(3, "old", None, None), acc(4, "gone", None, None)] {
            idx.apply_listed(&mut refresh, &a);
        }
        assert_eq!(refresh.len(), 2);
        assert_eq!(refresh.changed(), 0, "journaled ids are not overwritten");
        assert_eq!(idx.finish_refresh(refresh), 0);
        assert!(idx.is_ready());
        assert_eq!(idx.by_login("renamed").map(|a| a.id), Some(3));
        assert!(idx.by_login("old").is_none());
        assert!(idx.by_id(9).is_some());
        assert!(idx.by_id(4).is_none());
        assert_eq!(ids(&idx.page(|_| true, 0, 10)), vec![3, 9]);
        assert_eq!(idx.max_id(), 9);
        // The next refresh no longer journals: its listing is the truth.
        idx.finish_rebuild(vec![acc(3, "old", None, None)]);
        assert_eq!(idx.by_login("old").map(|a| a.id), Some(3));
        assert!(idx.by_id(9).is_none());
    }

    #[test]
    fn a_refresh_diffs_changes_made_behind_the_proxys_back() {
        let idx = UserIndex::new();
        for i in 1..=6 {
            idx.upsert(acc(i, &format!("u{i}"), Some(&format!("u{i}@x")), None));
        }
        let before = idx.approx_bytes();
        let mut refresh = idx.begin_rebuild();
        let mut renamed = acc(2, "u2b", Some("u2b@x"), Some("E-2"));
        renamed.firstname = None;
        let mut deactivated = acc(3, "u3", Some("u3@x"), None);
        deactivated.active = false;
        let listing = vec![
            acc(1, "u1", Some("u1@x"), None),
            renamed.clone(),
            deactivated.clone(),
            // 4 deleted in Chamilo, 5 unchanged, 6 deleted, 7 and 8 added.
            acc(5, "u5", Some("u5@x"), None),
            acc(8, "u8", None, None),
            acc(7, "u7", Some("u7@x"), None),
        ];
        for a in &listing {
            idx.apply_listed(&mut refresh, a);
        }
        assert_eq!(refresh.changed(), 4, "renamed, deactivated, two added");
        assert_eq!(idx.finish_refresh(refresh), 2, "4 and 6 dropped");
        assert_eq!(ids(&idx.page(|_| true, 0, 100)), vec![1, 2, 3, 5, 7, 8]);
        assert_eq!(idx.by_id(2), Some(renamed));
        assert!(idx.by_user_name("u2@x").is_none());
        assert!(idx.by_login("u2").is_none());
        assert_eq!(idx.by_external_id("E-2").map(|a| a.id), Some(2));
        assert_eq!(idx.by_user_name("U3@X"), Some(deactivated));
        assert!(idx.by_user_name("u4@x").is_none());
        assert!(idx.by_login("u6").is_none());
        assert_eq!(idx.by_login("U8").map(|a| a.id), Some(8));
        assert_eq!(idx.max_id(), 8);
        assert!(idx.approx_bytes() > 0 && before > 0);
    }

    #[test]
    fn an_abandoned_refresh_drops_nothing() {
        let idx = UserIndex::new();
        idx.finish_rebuild(vec![acc(1, "a", None, None), acc(2, "b", None, None)]);
        let built = idx.age();
        let mut refresh = idx.begin_rebuild();
        idx.apply_listed(&mut refresh, &acc(2, "b2", None, None));
        idx.abandon_rebuild();
        assert_eq!(ids(&idx.page(|_| true, 0, 10)), vec![1, 2]);
        assert_eq!(idx.by_login("b2").map(|a| a.id), Some(2));
        assert!(idx.age() >= built);
    }

    #[test]
    fn pages_choose_count_and_copy_only_the_page() {
        let idx = UserIndex::new();
        for i in (1..=9).rev() {
            let un = (i % 2 == 0).then(|| format!("u{i}@x"));
            idx.upsert(acc(i, &format!("u{i}"), un.as_deref(), None));
        }
        let managed = |a: AccountRef<'_>| a.user_name().is_some();
        let page = idx.page(managed, 1, 2);
        assert_eq!(page.total, 4);
        assert_eq!(ids(&page), vec![4, 6]);
        assert_eq!(ids(&idx.page(managed, 3, 2)), vec![8]);
        assert!(idx.page(managed, 9, 2).accounts.is_empty());
        let all = idx.page(|_| true, 0, 0);
        assert_eq!((all.total, all.accounts.len()), (9, 0));
        let chunks: Vec<Vec<u64>> = idx
            .chunks(|a| a.login() != "u5" && a.active(), 3)
            .map(|c| c.iter().map(|a| a.id).collect())
            .collect();
        // Three accounts looked at per chunk, whatever `keep` leaves of them.
        assert_eq!(chunks, vec![vec![1, 2, 3], vec![4, 6], vec![7, 8, 9]]);
        let mut chunks = idx.chunks(managed, 2);
        assert_eq!(
            chunks
                .next()
                .map(|c| c.iter().map(|a| a.id).collect::<Vec<_>>()),
            Some(vec![2])
        );
        // A write between chunks: the next chunk continues after the last id seen.
        idx.remove(2);
        idx.upsert(acc(1, "u1", Some("u1@x"), None));
        let rest: Vec<Vec<u64>> = chunks.map(|c| c.iter().map(|a| a.id).collect()).collect();
        assert_eq!(rest, vec![vec![4], vec![6], vec![8]]);
        // Chunks that keep nothing are skipped, not the end.
        let late: Vec<Vec<u64>> = idx
            .chunks(|a| a.id() == 9, 2)
            .map(|c| c.iter().map(|a| a.id).collect())
            .collect();
        assert_eq!(late, vec![vec![9]]);
    }

    #[test]
    fn shared_keys_answer_with_the_lowest_remaining_id() {
        let idx = UserIndex::new();
        idx.upsert(acc(5, "b", None, Some("SHARED")));
        idx.upsert(acc(4, "a", None, Some("SHARED")));
        idx.upsert(acc(6, "c", None, Some("SHARED")));
        assert_eq!(idx.by_external_id("SHARED").map(|a| a.id), Some(4));
        idx.remove(4);
        assert_eq!(idx.by_external_id("SHARED").map(|a| a.id), Some(5));
        idx.upsert(acc(5, "b", None, Some("OTHER")));
        assert_eq!(idx.by_external_id("SHARED").map(|a| a.id), Some(6));
        assert_eq!(idx.by_external_id("OTHER").map(|a| a.id), Some(5));
    }

    /// The attributes field of a user sent with Entra ID's default mapping.
    fn entra_field(title: &str) -> String {
        let serde_json::Value::Object(attributes) = serde_json::json!({
            "displayName": "Amélie Tremblay",
            "title": title,
            "preferredLanguage": "fr-CA",
            "name": {"formatted": "Amélie Tremblay"},
            "emails": [{"value": "amelie.tremblay@example.org", "type": "work", "primary": true}],
            "addresses": [{"type": "work", "formatted": "2900 Boulevard Édouard-Montpetit\nMontréal QC H3T 1J4",
                "streetAddress": "2900 Boulevard Édouard-Montpetit", "locality": "Montréal",
                "region": "QC", "postalCode": "H3T 1J4", "country": "CA", "primary": true}],
            "phoneNumbers": [{"value": "+1 514 343 6111", "type": "work"},
                {"value": "+1 438 555 0199", "type": "mobile"}, {"value": "+1 514 343 2098", "type": "fax"}],
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {
                "employeeNumber": "0042317", "department": "Chemistry",
                "manager": {"value": "26118915-6090-4d6a-b6b2-2fe5f1e6a6d0"}}
        }) else {
            unreachable!()
        };
        kept::KeptAttributes {
            attributes,
            created: Some("2026-03-01T08:15:42.123Z".into()),
            last_modified: Some("2026-11-20T17:02:09.456Z".into()),
            ..kept::KeptAttributes::default()
        }
        .encode()
    }

    fn with_attributes(field: &str) -> Account {
        Account {
            attributes: Some(field.to_owned()),
            ..acc(7, "amelie", Some("amelie@x.org"), Some("E-7"))
        }
    }

    #[test]
    fn kept_documents_are_held_compressed_and_given_back_exactly() {
        let field = entra_field("Associate Professor");
        let a = with_attributes(&field);
        let e = Entry::pack(&a);
        assert_ne!(e.present & ATTRIBUTES_PACKED, 0, "packed");
        let held = e.slot(F_ATTRIBUTES).unwrap().len();
        assert!(
            held * 2 < field.len(),
            "{held} bytes held for {}",
            field.len()
        );
        assert_eq!(e.unpack(), a, "the field comes back as stored");
        assert!(e.holds(&a));
        let idx = UserIndex::new();
        idx.upsert(a.clone());
        assert_eq!(idx.by_external_id("E-7"), Some(a.clone()));
        assert_eq!(idx.page(|_| true, 0, 1).accounts, vec![a]);
    }

    #[test]
    fn field_lengths_of_any_size_round_trip() {
        for n in [
            0,
            1,
            127,
            128,
            300,
            16_383,
            16_384,
            1 << 21,
            (1 << 28) + 5,
            u32::MAX as usize,
        ] {
            let mut bytes = vec![9];
            put_length(&mut bytes, n);
            let mut at = 1;
            assert_eq!(take_length(&bytes, &mut at), Some(n), "{n}");
            assert_eq!(at, bytes.len());
            // Cut short: no length, no panic.
            let mut at = 1;
            assert_eq!(take_length(&bytes[..bytes.len() - 1], &mut at), None, "{n}");
        }
        // Fields longer than one length byte, around absent ones.
        let a = Account {
            login: "l".repeat(200),
            user_name: Some("u".repeat(20_000)),
            external_id: None,
            firstname: None,
            lastname: "é".repeat(100),
            attributes: Some(entra_field("Lecturer")),
            ..acc(9, "x", None, None)
        };
        let e = Entry::pack(&a);
        assert_eq!(e.unpack(), a);
        assert!(e.holds(&a));
    }

    #[test]
    fn an_entrys_own_fields_help_pack_its_document() {
        // The document repeats the account's e-mail and names: packed against them, it
        // takes less than the same document in an entry whose fields it does not repeat.
        let field = entra_field("Associate Professor");
        let own = Account {
            login: "amelie.tremblay".into(),
            firstname: Some("Amélie".into()),
            lastname: "Tremblay".into(),
            email: "amelie.tremblay@example.org".into(),
            ..with_attributes(&field)
        };
        let other = Account {
            login: "bob".into(),
            firstname: Some("Bob".into()),
            lastname: "Martin".into(),
            email: "bob.martin@example.com".into(),
            ..with_attributes(&field)
        };
        let (own, other) = (Entry::pack(&own), Entry::pack(&other));
        let held = |e: &Entry| e.slot(F_ATTRIBUTES).map_or(0, <[u8]>::len);
        assert!(
            held(&own) + 10 < held(&other),
            "{} vs {}",
            held(&own),
            held(&other)
        );
        assert_eq!(own.attributes().as_deref(), Some(field.as_str()));
        assert_eq!(other.attributes().as_deref(), Some(field.as_str()));
    }

    #[test]
    fn other_attribute_values_are_held_as_stored() {
        let doc = entra_field("Lecturer");
        for field in [
            // The encoding before issue 10, and values edited by hand.
            "preferredLanguage=fr-CA;locale=fr_CA;roles=Course%20Teacher;active=unassigned",
            "hello, world",
            "",
            // Not the exact encoding: spaces around it, a padded form.
            &format!(" {doc}"),
            &format!("{doc}\n"),
            "json64:eyJhIjoxfQ==",
        ] {
            let a = with_attributes(field);
            let e = Entry::pack(&a);
            assert_eq!(e.present & ATTRIBUTES_PACKED, 0, "{field:?}");
            assert_eq!(e.slot(F_ATTRIBUTES), Some(field.as_bytes()));
            assert_eq!(e.unpack(), a, "{field:?}");
            assert!(e.holds(&a), "{field:?}");
        }
    }

    #[test]
    fn corrupt_attribute_values_do_not_panic() {
        let doc = entra_field("Lecturer");
        for field in [
            "json64:!!not base64",
            "json64:abcde",
            &doc[..doc.len() - 1],
            &doc[..doc.len() - 3],
            // Canonical base64, not JSON: held either way, given back exactly.
            &kept::json64_encode(&[0xff; 300]),
        ] {
            let a = with_attributes(field);
            let e = Entry::pack(&a);
            assert_eq!(e.unpack(), a, "{field:?}");
            assert!(e.holds(&a), "{field:?}");
        }
        // Packed bytes damaged in memory: no panic, and never equal to the field.
        let a = with_attributes(&doc);
        let mut e = Entry::pack(&a);
        let start = e.bytes.len() - e.slot(F_ATTRIBUTES).unwrap().len();
        for b in e.bytes.get_mut(start + 4..).unwrap_or_default() {
            *b = 0xfe;
        }
        assert_eq!(e.attributes(), None);
        assert!(!e.holds(&a));
        let mut e = Entry::pack(&a);
        e.bytes = e.bytes.get(..start + 6).unwrap_or_default().into();
        assert_eq!(e.attributes(), None);
        assert!(!e.holds(&a));
    }

    #[test]
    fn holds_compares_kept_documents_byte_for_byte() {
        let field = entra_field("Associate Professor");
        let a = with_attributes(&field);
        let e = Entry::pack(&a);
        assert!(e.holds(&a.clone()));
        // One byte of the document changed, same length: "Professor" → "Professer".
        let changed = entra_field("Associate Professer");
        assert_eq!(changed.len(), field.len());
        assert!(!e.holds(&with_attributes(&changed)));
        assert!(!e.holds(&Account {
            attributes: None,
            ..a.clone()
        }));
        // The same document under another encoding is another field value.
        assert!(!e.holds(&with_attributes(&format!("{field} "))));
        // A refresh sees the change and stores it.
        let idx = UserIndex::new();
        idx.finish_rebuild([a.clone()]);
        let mut refresh = idx.begin_rebuild();
        idx.apply_listed(&mut refresh, &a);
        assert_eq!(refresh.changed(), 0);
        idx.apply_listed(&mut refresh, &with_attributes(&changed));
        assert_eq!(refresh.changed(), 1);
        idx.finish_refresh(refresh);
        assert_eq!(idx.by_id(7).and_then(|a| a.attributes), Some(changed));
        // A bare refresh keeps the document and sees a rename.
        let mut refresh = idx.begin_rebuild();
        let bare = Account {
            attributes: None,
            user_name: None,
            external_id: None,
            ..with_attributes("")
        };
        idx.apply_listed_bare(&mut refresh, &bare);
        assert_eq!(refresh.changed(), 0);
        idx.apply_listed_bare(
            &mut refresh,
            &Account {
                lastname: "Renamed".into(),
                ..bare
            },
        );
        assert_eq!(refresh.changed(), 1);
        idx.finish_refresh(refresh);
        let after = idx.by_id(7).unwrap();
        assert_eq!(after.lastname, "Renamed");
        assert_eq!(after.attributes, Some(entra_field("Associate Professer")));
        assert_eq!(after.user_name.as_deref(), Some("amelie@x.org"));
    }

    #[test]
    fn many_accounts_stay_findable_across_table_growth() {
        let idx = UserIndex::new();
        idx.finish_rebuild((1..=5000).map(|i| {
            acc(
                i,
                &format!("Login{i}"),
                Some(&format!("User{i}@X")),
                Some(&format!("e{i}")),
            )
        }));
        for i in (1..=5000).step_by(7) {
            assert_eq!(idx.by_login(&format!("login{i}")).map(|a| a.id), Some(i));
            assert_eq!(
                idx.by_user_name(&format!("user{i}@x")).map(|a| a.id),
                Some(i)
            );
            assert_eq!(idx.by_external_id(&format!("e{i}")).map(|a| a.id), Some(i));
        }
        assert!(idx.by_external_id("E1").is_none());
        // Ids beyond 32 bits are kept and found by id; their key lookups miss (and are then
        // confirmed fresh by the caller, like any miss).
        let big = u64::from(u32::MAX) + 1;
        idx.upsert(acc(big, "big", None, None));
        assert_eq!(idx.by_id(big).map(|a| a.login), Some("big".to_owned()));
        assert!(idx.by_login("big").is_none());
        idx.remove(big);
        assert_eq!(idx.len(), 5000);
    }
}
