//! The User schema and the enterprise extension as data (RFC 7643 §4.1, §4.3, §8.7.1): the
//! attributes of the canonical [`User`](super::User) with their characteristics; the Group
//! schema (§4.2) likewise, in [`group`].
//!
//! One definition drives filter comparison ([`AttrTypes`], for [`super::query`]), and in the
//! SCIM layer validation, normalisation, projection and the `/Schemas` document.
//! [`ResourceSchema::new`] prunes it to what the backend can store ([`Capabilities`]).

use serde_json::{json, Map, Value};

mod group;

use super::query::{AttrInfo, AttrKind, AttrPath, AttrTypes};
use super::{Capabilities, ENTERPRISE_SCHEMA, GROUP_SCHEMA, USER_SCHEMA};

/// The resource type a [`ResourceSchema`] describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceKind {
    User,
    Group,
}

impl ResourceKind {
    /// The URN of its core schema.
    pub fn core_urn(self) -> &'static str {
        match self {
            ResourceKind::User => USER_SCHEMA,
            ResourceKind::Group => GROUP_SCHEMA,
        }
    }

    /// Its name as `meta.resourceType` and `/ResourceTypes` spell it.
    pub fn name(self) -> &'static str {
        match self {
            ResourceKind::User => "User",
            ResourceKind::Group => "Group",
        }
    }

    /// Its endpoint below the base URL, without the slash.
    pub fn endpoint(self) -> &'static str {
        match self {
            ResourceKind::User => "Users",
            ResourceKind::Group => "Groups",
        }
    }
}

/// RFC 7643 `mutability`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutability {
    ReadOnly,
    ReadWrite,
    Immutable,
    WriteOnly,
}

/// RFC 7643 `returned`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Returned {
    Always,
    Never,
    Default,
    Request,
}

/// RFC 7643 `uniqueness`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Uniqueness {
    None,
    Server,
    Global,
}

/// One attribute with its characteristics.
#[derive(Debug, Clone, PartialEq)]
pub struct AttrDef {
    pub name: &'static str,
    pub kind: AttrKind,
    pub multi_valued: bool,
    pub required: bool,
    pub case_exact: bool,
    pub mutability: Mutability,
    pub returned: Returned,
    pub uniqueness: Uniqueness,
    pub canonical_values: Vec<String>,
    pub reference_types: &'static [&'static str],
    pub description: &'static str,
    pub sub_attributes: Vec<AttrDef>,
    /// Listed in `/Schemas`. False for what the backend accepts but does not keep
    /// ([`Capabilities::accepted`]).
    pub advertised: bool,
}

impl AttrDef {
    fn new(name: &'static str, kind: AttrKind, description: &'static str) -> Self {
        Self {
            name,
            kind,
            multi_valued: false,
            required: false,
            case_exact: false,
            mutability: Mutability::ReadWrite,
            returned: Returned::Default,
            uniqueness: Uniqueness::None,
            canonical_values: Vec::new(),
            reference_types: &[],
            description,
            sub_attributes: Vec::new(),
            advertised: true,
        }
    }
    fn string(name: &'static str, description: &'static str) -> Self {
        Self::new(name, AttrKind::String, description)
    }
    fn multi(mut self) -> Self {
        self.multi_valued = true;
        self
    }
    fn required(mut self) -> Self {
        self.required = true;
        self
    }
    fn case_exact(mut self) -> Self {
        self.case_exact = true;
        self
    }
    fn mutability(mut self, m: Mutability) -> Self {
        self.mutability = m;
        self
    }
    fn returned(mut self, r: Returned) -> Self {
        self.returned = r;
        self
    }
    fn unique(mut self, u: Uniqueness) -> Self {
        self.uniqueness = u;
        self
    }
    fn canonical(mut self, values: &[&str]) -> Self {
        self.canonical_values = values.iter().map(|v| (*v).to_owned()).collect();
        self
    }
    fn refs(mut self, types: &'static [&'static str]) -> Self {
        self.reference_types = types;
        self
    }
    fn subs(mut self, subs: Vec<AttrDef>) -> Self {
        self.sub_attributes = subs;
        self
    }

    /// The sub-attribute `name` (case-insensitive).
    pub fn sub(&self, name: &str) -> Option<&AttrDef> {
        self.sub_attributes
            .iter()
            .find(|a| a.name.eq_ignore_ascii_case(name))
    }

    /// What the filter evaluator needs.
    pub fn info(&self) -> AttrInfo {
        AttrInfo {
            kind: self.kind,
            case_exact: self.case_exact,
            multi_valued: self.multi_valued,
        }
    }

    /// The RFC 7643 §7 representation used in `/Schemas`.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("name".into(), json!(self.name));
        m.insert("type".into(), json!(kind_name(self.kind)));
        m.insert("multiValued".into(), json!(self.multi_valued));
        m.insert("description".into(), json!(self.description));
        m.insert("required".into(), json!(self.required));
        if !matches!(self.kind, AttrKind::Complex | AttrKind::Boolean) {
            m.insert("caseExact".into(), json!(self.case_exact));
        }
        if !self.canonical_values.is_empty() {
            m.insert("canonicalValues".into(), json!(self.canonical_values));
        }
        if self.kind == AttrKind::Reference {
            m.insert("referenceTypes".into(), json!(self.reference_types));
        }
        m.insert(
            "mutability".into(),
            json!(match self.mutability {
                Mutability::ReadOnly => "readOnly",
                Mutability::ReadWrite => "readWrite",
                Mutability::Immutable => "immutable",
                Mutability::WriteOnly => "writeOnly",
            }),
        );
        m.insert(
            "returned".into(),
            json!(match self.returned {
                Returned::Always => "always",
                Returned::Never => "never",
                Returned::Default => "default",
                Returned::Request => "request",
            }),
        );
        m.insert(
            "uniqueness".into(),
            json!(match self.uniqueness {
                Uniqueness::None => "none",
                Uniqueness::Server => "server",
                Uniqueness::Global => "global",
            }),
        );
        if self.kind == AttrKind::Complex {
            m.insert(
                "subAttributes".into(),
                Value::Array(
                    self.sub_attributes
                        .iter()
                        .filter(|s| s.advertised)
                        .map(AttrDef::to_json)
                        .collect(),
                ),
            );
        }
        Value::Object(m)
    }
}

fn kind_name(kind: AttrKind) -> &'static str {
    match kind {
        AttrKind::String => "string",
        AttrKind::Boolean => "boolean",
        AttrKind::Decimal => "decimal",
        AttrKind::Integer => "integer",
        AttrKind::DateTime => "dateTime",
        AttrKind::Binary => "binary",
        AttrKind::Reference => "reference",
        AttrKind::Complex => "complex",
    }
}

/// The sub-attributes shared by multi-valued complex attributes (emails, phoneNumbers, …).
fn multi_value_subs(value_desc: &'static str, types: &'static [&'static str]) -> Vec<AttrDef> {
    vec![
        AttrDef::string("value", value_desc),
        AttrDef::string(
            "display",
            "A human-readable name, primarily used for display purposes.",
        )
        .mutability(Mutability::ReadWrite),
        AttrDef::string("type", "A label indicating the attribute's function.").canonical(types),
        AttrDef::new(
            "primary",
            AttrKind::Boolean,
            "Indicates the 'primary' or preferred attribute value for this attribute.",
        ),
    ]
}

/// The full core User schema (RFC 7643 §4.1), `id`/`externalId`/`meta` excluded (common
/// attributes, see [`common_attributes`]).
pub fn core_user_attributes() -> Vec<AttrDef> {
    use Mutability::*;
    vec![
        AttrDef::string("userName", "Unique identifier for the User, typically used by the user to directly authenticate to the service provider.")
            .required()
            .unique(Uniqueness::Server),
        AttrDef::new("name", AttrKind::Complex, "The components of the user's real name.").subs(vec![
            AttrDef::string("formatted", "The full name, including all middle names, titles, and suffixes as appropriate, formatted for display."),
            AttrDef::string("familyName", "The family name of the User, or last name."),
            AttrDef::string("givenName", "The given name of the User, or first name."),
            AttrDef::string("middleName", "The middle name(s) of the User."),
            AttrDef::string("honorificPrefix", "The honorific prefix(es) of the User."),
            AttrDef::string("honorificSuffix", "The honorific suffix(es) of the User."),
        ]),
        AttrDef::string("displayName", "The name of the User, suitable for display to end-users."),
        AttrDef::string("nickName", "The casual way to address the user in real life."),
        AttrDef::new("profileUrl", AttrKind::Reference, "A fully qualified URL pointing to a page representing the User's online profile.").refs(&["external"]),
        AttrDef::string("title", "The user's title, such as \"Vice President\"."),
        AttrDef::string("userType", "Used to identify the relationship between the organization and the user."),
        AttrDef::string("preferredLanguage", "Indicates the User's preferred written or spoken language."),
        AttrDef::string("locale", "Used to indicate the User's default location for purposes of localizing items."),
        AttrDef::string("timezone", "The User's time zone in the 'Olson' time zone database format."),
        AttrDef::new("active", AttrKind::Boolean, "A Boolean value indicating the User's administrative status."),
        AttrDef::string("password", "The User's cleartext password.")
            .mutability(WriteOnly)
            .returned(Returned::Never),
        AttrDef::new("emails", AttrKind::Complex, "Email addresses for the user.")
            .multi()
            .subs(multi_value_subs("Email addresses for the user.", &["work", "home", "other"])),
        AttrDef::new("phoneNumbers", AttrKind::Complex, "Phone numbers for the User.")
            .multi()
            .subs(multi_value_subs("Phone number of the User.", &["work", "home", "mobile", "fax", "pager", "other"])),
        AttrDef::new("ims", AttrKind::Complex, "Instant messaging addresses for the User.")
            .multi()
            .subs(multi_value_subs("Instant messaging address for the User.", &["aim", "gtalk", "icq", "xmpp", "msn", "skype", "qq", "yahoo"])),
        AttrDef::new("photos", AttrKind::Complex, "URLs of photos of the User.")
            .multi()
            .subs(multi_value_subs("URL of a photo of the User.", &["photo", "thumbnail"])),
        AttrDef::new("addresses", AttrKind::Complex, "A physical mailing address for this User.")
            .multi()
            .subs(vec![
                AttrDef::string("formatted", "The full mailing address, formatted for display or use with a mailing label."),
                AttrDef::string("streetAddress", "The full street address component."),
                AttrDef::string("locality", "The city or locality component."),
                AttrDef::string("region", "The state or region component."),
                AttrDef::string("postalCode", "The zip code or postal code component."),
                AttrDef::string("country", "The country name component."),
                AttrDef::string("type", "A label indicating the attribute's function.").canonical(&["work", "home", "other"]),
                AttrDef::new("primary", AttrKind::Boolean, "Indicates the 'primary' or preferred address."),
            ]),
        AttrDef::new("groups", AttrKind::Complex, "A list of groups to which the user belongs.")
            .multi()
            .mutability(ReadOnly)
            .subs(vec![
                AttrDef::string("value", "The identifier of the User's group.").mutability(ReadOnly),
                AttrDef::new("$ref", AttrKind::Reference, "The URI of the corresponding 'Group' resource.").refs(&["User", "Group"]).mutability(ReadOnly),
                AttrDef::string("display", "A human-readable name.").mutability(ReadOnly),
                AttrDef::string("type", "A label indicating the attribute's function.").canonical(&["direct", "indirect"]).mutability(ReadOnly),
            ]),
        AttrDef::new("entitlements", AttrKind::Complex, "A list of entitlements for the User.")
            .multi()
            .subs(multi_value_subs("The value of an entitlement.", &[])),
        AttrDef::new("roles", AttrKind::Complex, "A list of roles for the User.")
            .multi()
            .subs(multi_value_subs("The value of a role.", &[])),
        AttrDef::new("x509Certificates", AttrKind::Complex, "A list of certificates issued to the User.")
            .multi()
            .subs(vec![
                AttrDef::new("value", AttrKind::Binary, "The value of an X.509 certificate.").case_exact(),
                AttrDef::string("display", "A human-readable name."),
                AttrDef::string("type", "A label indicating the attribute's function."),
                AttrDef::new("primary", AttrKind::Boolean, "Indicates the primary certificate."),
            ]),
    ]
}

/// The enterprise User extension (RFC 7643 §4.3).
pub fn enterprise_user_attributes() -> Vec<AttrDef> {
    vec![
        AttrDef::string(
            "employeeNumber",
            "Numeric or alphanumeric identifier assigned to a person.",
        ),
        AttrDef::string("costCenter", "Identifies the name of a cost center."),
        AttrDef::string("organization", "Identifies the name of an organization."),
        AttrDef::string("division", "Identifies the name of a division."),
        AttrDef::string("department", "Identifies the name of a department."),
        AttrDef::new("manager", AttrKind::Complex, "The User's manager.").subs(vec![
            AttrDef::string(
                "value",
                "The id of the SCIM resource representing the User's manager.",
            ),
            AttrDef::new(
                "$ref",
                AttrKind::Reference,
                "The URI of the SCIM resource representing the User's manager.",
            )
            .refs(&["User"]),
            AttrDef::string("displayName", "The displayName of the User's manager.")
                .mutability(Mutability::ReadOnly),
        ]),
    ]
}

/// `id`, `externalId`, `meta` (RFC 7643 §3.1), valid in every resource.
pub fn common_attributes() -> Vec<AttrDef> {
    use Mutability::ReadOnly;
    vec![
        AttrDef::string(
            "id",
            "Unique identifier for the SCIM resource as defined by the service provider.",
        )
        .case_exact()
        .mutability(ReadOnly)
        .returned(Returned::Always)
        .unique(Uniqueness::Server),
        AttrDef::string(
            "externalId",
            "Identifier for the resource as defined by the provisioning client.",
        )
        .case_exact(),
        AttrDef::new("meta", AttrKind::Complex, "Resource metadata.")
            .mutability(ReadOnly)
            .subs(vec![
                AttrDef::string("resourceType", "The name of the resource type.")
                    .case_exact()
                    .mutability(ReadOnly),
                AttrDef::new(
                    "created",
                    AttrKind::DateTime,
                    "When the resource was added.",
                )
                .mutability(ReadOnly),
                AttrDef::new(
                    "lastModified",
                    AttrKind::DateTime,
                    "When the resource was last updated.",
                )
                .mutability(ReadOnly),
                AttrDef::new("location", AttrKind::Reference, "The URI of the resource.")
                    .case_exact()
                    .mutability(ReadOnly)
                    .refs(&["uri"]),
                AttrDef::string("version", "The version of the resource.")
                    .case_exact()
                    .mutability(ReadOnly),
            ]),
    ]
}

/// Which schema an attribute belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    /// Common attributes (`id`, `externalId`, `meta`): top level.
    Common,
    /// Core User schema: top level.
    Core,
    /// Enterprise extension: under the [`ENTERPRISE_SCHEMA`] key.
    Enterprise,
}

/// The schema of one resource type: the User schema pruned to what the backend stores, or the
/// Group schema ([`ResourceSchema::group`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceSchema {
    /// Which resource type this describes; `core` holds that type's core attributes.
    pub kind: ResourceKind,
    pub common: Vec<AttrDef>,
    pub core: Vec<AttrDef>,
    pub enterprise: Vec<AttrDef>,
}

impl ResourceSchema {
    /// The whole User schema, built once: filter comparison rules do not depend on what a
    /// backend stores.
    pub fn full() -> &'static ResourceSchema {
        static SCHEMA: std::sync::OnceLock<ResourceSchema> = std::sync::OnceLock::new();
        SCHEMA.get_or_init(|| ResourceSchema::new(&Capabilities::default()))
    }

    /// The core Group schema (RFC 7643 §4.2), built once; no extension.
    pub fn group() -> &'static ResourceSchema {
        static SCHEMA: std::sync::OnceLock<ResourceSchema> = std::sync::OnceLock::new();
        SCHEMA.get_or_init(|| Self {
            kind: ResourceKind::Group,
            common: common_attributes(),
            core: group::core_group_attributes(),
            enterprise: Vec::new(),
        })
    }

    /// The whole schema of this resource type, before any pruning to a backend: what a
    /// client may legitimately name even where this backend does not store it.
    pub fn unpruned(&self) -> &'static ResourceSchema {
        match self.kind {
            ResourceKind::User => Self::full(),
            ResourceKind::Group => Self::group(),
        }
    }

    /// The schema restricted to `caps.attributes` (plus `caps.accepted`, kept but not
    /// advertised), with the backend's required attributes and canonical values.
    pub fn new(caps: &Capabilities) -> Self {
        let mut core = core_user_attributes();
        let mut enterprise = enterprise_user_attributes();
        if let Some(stored) = &caps.attributes {
            let allowed: Vec<String> = stored.iter().chain(&caps.accepted).cloned().collect();
            core = prune(core, &allowed, None);
            enterprise = prune(enterprise, &allowed, Some(ENTERPRISE_SCHEMA));
        }
        if !caps.change_password {
            core.retain(|a| a.name != "password");
        }
        let mut schema = Self {
            kind: ResourceKind::User,
            common: common_attributes(),
            core,
            enterprise,
        };
        for path in &caps.accepted {
            if let Some(def) = schema.def_mut(path) {
                def.advertised = false;
            }
        }
        for path in &caps.required {
            if let Some(def) = schema.def_mut(path) {
                def.required = true;
            }
        }
        for (path, values) in &caps.canonical_values {
            if let Some(def) = schema.def_mut(path) {
                def.canonical_values.clone_from(values);
            }
        }
        schema
    }

    /// The core or extension attribute (or sub-attribute) at a capability path: `emails`,
    /// `emails.value`, or URN-qualified. URNs hold dots (`2.0`), so they are cut off first.
    fn def_mut(&mut self, path: &str) -> Option<&mut AttrDef> {
        let strip = |urn: &str| {
            path.get(..urn.len())
                .filter(|p| p.eq_ignore_ascii_case(urn))
                .map(|_| path[urn.len()..].trim_start_matches(':'))
        };
        let (list, rest) = if let Some(rest) = strip(ENTERPRISE_SCHEMA) {
            (&mut self.enterprise, rest)
        } else {
            (&mut self.core, strip(USER_SCHEMA).unwrap_or(path))
        };
        let (name, sub) = match rest.split_once('.') {
            Some((name, sub)) => (name, Some(sub)),
            None => (rest, None),
        };
        let def = list
            .iter_mut()
            .find(|a| a.name.eq_ignore_ascii_case(name))?;
        match sub {
            Some(sub) => def
                .sub_attributes
                .iter_mut()
                .find(|a| a.name.eq_ignore_ascii_case(sub)),
            None => Some(def),
        }
    }

    /// Looks up a top-level attribute. `urn` is the schema the client named (any case);
    /// unqualified names look in the common and core attributes, then the extension.
    pub fn attr(&self, urn: Option<&str>, name: &str) -> Option<(Section, &AttrDef)> {
        let find =
            |list: &'_ [AttrDef]| list.iter().position(|a| a.name.eq_ignore_ascii_case(name));
        let in_core = || {
            find(&self.common)
                .map(|i| (Section::Common, &self.common[i]))
                .or_else(|| find(&self.core).map(|i| (Section::Core, &self.core[i])))
        };
        let in_ext = || find(&self.enterprise).map(|i| (Section::Enterprise, &self.enterprise[i]));
        match urn {
            Some(u) if u.eq_ignore_ascii_case(self.kind.core_urn()) => in_core(),
            Some(u) if u.eq_ignore_ascii_case(ENTERPRISE_SCHEMA) => in_ext(),
            Some(_) => None,
            None => in_core().or_else(in_ext),
        }
    }

    /// Looks up an attribute path; returns the top-level section and the definition of the
    /// attribute or sub-attribute it names.
    pub fn resolve(&self, path: &AttrPath) -> Option<(Section, &AttrDef, Option<&AttrDef>)> {
        let (section, def) = self.attr(path.urn.as_deref(), &path.name)?;
        match &path.sub_attr {
            Some(sub) => Some((section, def, Some(def.sub(sub)?))),
            None => Some((section, def, None)),
        }
    }

    /// The `/Schemas` entry of the core User schema.
    pub fn user_schema_json(&self, base: &str) -> Value {
        schema_json(USER_SCHEMA, "User", "User Account", self.core.iter(), base)
    }

    /// The `/Schemas` entry of this resource type's core schema (User or Group).
    pub fn core_schema_json(&self, base: &str) -> Value {
        match self.kind {
            ResourceKind::User => self.user_schema_json(base),
            ResourceKind::Group => {
                schema_json(GROUP_SCHEMA, "Group", "Group", self.core.iter(), base)
            }
        }
    }

    /// The `/Schemas` entry of the enterprise extension.
    pub fn enterprise_schema_json(&self, base: &str) -> Value {
        schema_json(
            ENTERPRISE_SCHEMA,
            "EnterpriseUser",
            "Enterprise User",
            self.enterprise.iter(),
            base,
        )
    }
}

fn schema_json<'a>(
    id: &str,
    name: &str,
    description: &str,
    attrs: impl Iterator<Item = &'a AttrDef>,
    base: &str,
) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
        "id": id,
        "name": name,
        "description": description,
        "attributes": attrs.filter(|a| a.advertised).map(AttrDef::to_json).collect::<Vec<_>>(),
        "meta": {"resourceType": "Schema", "location": format!("{base}/Schemas/{id}")},
    })
}

/// Keeps the attributes (and sub-attributes) named in `allowed`.
fn prune(attrs: Vec<AttrDef>, allowed: &[String], urn: Option<&str>) -> Vec<AttrDef> {
    let qualified = |name: &str| -> Vec<String> {
        match urn {
            Some(u) => vec![format!("{u}:{name}")],
            None => vec![name.to_owned(), format!("{USER_SCHEMA}:{name}")],
        }
    };
    let has = |path: &str| allowed.iter().any(|a| a.eq_ignore_ascii_case(path));
    attrs
        .into_iter()
        .filter_map(|mut a| {
            let names = qualified(a.name);
            // `password` follows `Capabilities::change_password`, not the list.
            if a.name == "userName" || a.name == "password" || names.iter().any(|n| has(n)) {
                return Some(a);
            }
            let subs: Vec<AttrDef> = a
                .sub_attributes
                .drain(..)
                .filter(|s| names.iter().any(|n| has(&format!("{n}.{}", s.name))))
                .collect();
            if subs.is_empty() {
                None
            } else {
                a.sub_attributes = subs;
                Some(a)
            }
        })
        .collect()
}

impl AttrTypes for ResourceSchema {
    fn lookup(&self, parent: Option<&AttrPath>, path: &AttrPath) -> Option<AttrInfo> {
        match parent {
            Some(p) => {
                let (_, def, _) = self.resolve(p)?;
                Some(def.sub(&path.name)?.info())
            }
            None => {
                let (_, def, sub) = self.resolve(path)?;
                Some(sub.unwrap_or(def).info())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(urn: Option<&str>, name: &str, sub: Option<&str>) -> AttrPath {
        AttrPath {
            urn: urn.map(str::to_owned),
            name: name.to_owned(),
            sub_attr: sub.map(str::to_owned),
        }
    }

    #[test]
    fn lookup_is_case_insensitive_and_urn_aware() {
        let s = ResourceSchema::new(&Capabilities::default());
        assert_eq!(s.attr(None, "USERNAME").map(|a| a.1.name), Some("userName"));
        assert_eq!(
            s.attr(
                Some("urn:ietf:params:scim:schemas:extension:enterprise:2.0:user"),
                "employeenumber"
            )
            .map(|a| a.0),
            Some(Section::Enterprise)
        );
        assert!(s.attr(Some(USER_SCHEMA), "employeeNumber").is_none());
        assert_eq!(
            s.attr(None, "department").map(|a| a.0),
            Some(Section::Enterprise)
        );
        let info = s
            .lookup(None, &path(None, "emails", Some("value")))
            .unwrap();
        assert_eq!(info.kind, AttrKind::String);
        let info = s
            .lookup(
                Some(&path(None, "emails", None)),
                &path(None, "primary", None),
            )
            .unwrap();
        assert_eq!(info.kind, AttrKind::Boolean);
        assert!(s.lookup(None, &path(None, "id", None)).unwrap().case_exact);
    }

    #[test]
    fn capabilities_prune_the_schema() {
        let caps = Capabilities {
            attributes: Some(vec![
                "name.givenName".into(),
                "emails".into(),
                "active".into(),
                format!("{ENTERPRISE_SCHEMA}:department"),
            ]),
            change_password: false,
            ..Capabilities::default()
        };
        let s = ResourceSchema::new(&caps);
        let names: Vec<_> = s.core.iter().map(|a| a.name).collect();
        assert_eq!(names, ["userName", "name", "active", "emails"]);
        assert_eq!(s.core[1].sub_attributes.len(), 1);
        assert_eq!(s.core[3].sub_attributes.len(), 4);
        let with_password = ResourceSchema::new(&Capabilities {
            change_password: true,
            ..caps.clone()
        });
        assert!(with_password.attr(None, "password").is_some());
        assert_eq!(s.enterprise.len(), 1);
        let doc = s.user_schema_json("http://x/scim/v2");
        assert_eq!(doc["attributes"].as_array().unwrap().len(), 4);
    }

    #[test]
    fn accepted_required_and_canonical_paths_shape_the_schema() {
        let caps = Capabilities {
            attributes: Some(vec![
                "emails.value".into(),
                "emails.type".into(),
                "preferredLanguage".into(),
                format!("{ENTERPRISE_SCHEMA}:employeeNumber"),
            ]),
            required: vec!["emails".into(), "emails.value".into()],
            canonical_values: vec![
                ("emails.type".into(), vec!["work".into()]),
                ("preferredLanguage".into(), vec!["en".into(), "fr".into()]),
                (
                    format!("{ENTERPRISE_SCHEMA}:employeeNumber"),
                    vec!["7".into()],
                ),
            ],
            accepted: vec!["emails.primary".into()],
            ..Capabilities::default()
        };
        let s = ResourceSchema::new(&caps);
        // `primary` is understood (input, PATCH paths, filters)…
        let emails = s.attr(None, "emails").unwrap().1;
        assert!(emails.sub("primary").is_some());
        assert!(s
            .lookup(None, &path(None, "emails", Some("primary")))
            .is_some());
        // …but not promised.
        let doc = s.user_schema_json("http://x/scim/v2");
        let attr = |name: &str| {
            doc["attributes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|a| a["name"] == name)
                .cloned()
                .unwrap()
        };
        let emails = attr("emails");
        assert_eq!(emails["required"], true);
        let subs: Vec<&str> = emails["subAttributes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["name"].as_str().unwrap())
            .collect();
        assert_eq!(subs, ["value", "type"]);
        assert_eq!(emails["subAttributes"][0]["required"], true);
        assert_eq!(emails["subAttributes"][1]["required"], false);
        assert_eq!(
            emails["subAttributes"][1]["canonicalValues"],
            json!(["work"])
        );
        assert_eq!(
            attr("preferredLanguage")["canonicalValues"],
            json!(["en", "fr"])
        );
        let ext = s.enterprise_schema_json("http://x/scim/v2");
        assert_eq!(ext["attributes"][0]["canonicalValues"], json!(["7"]));
        // A whole attribute can be accepted without being advertised, too.
        let hidden = ResourceSchema::new(&Capabilities {
            accepted: vec!["locale".into()],
            ..caps
        });
        assert!(hidden.attr(None, "locale").is_some());
        let doc = hidden.user_schema_json("http://x/scim/v2");
        assert!(!doc["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["name"] == "locale"));
    }
}
