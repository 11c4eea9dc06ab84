//! Attribute definitions (RFC 7643 §2, §4, §7) for the resources this project serves and
//! sends: User (core, enterprise, the two enterprise-JP extensions) and Group (+ extension).
//! The definitions drive case sensitivity in filters, multi-valued handling in PATCH,
//! `returned` in projections, and the `/Schemas` endpoint.

use scim_v2::filter::AttrPath;
use serde_json::{Map, Value, json};

use crate::urn;

/// RFC 7643 §2.3 data types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttrType {
    String,
    Boolean,
    Decimal,
    Integer,
    DateTime,
    Binary,
    Reference,
    Complex,
}

impl AttrType {
    /// The name used in the `/Schemas` representation.
    pub fn as_str(self) -> &'static str {
        match self {
            AttrType::String => "string",
            AttrType::Boolean => "boolean",
            AttrType::Decimal => "decimal",
            AttrType::Integer => "integer",
            AttrType::DateTime => "dateTime",
            AttrType::Binary => "binary",
            AttrType::Reference => "reference",
            AttrType::Complex => "complex",
        }
    }
}

/// RFC 7643 §7 `mutability`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutability {
    ReadOnly,
    ReadWrite,
    Immutable,
    WriteOnly,
}

impl Mutability {
    pub fn as_str(self) -> &'static str {
        match self {
            Mutability::ReadOnly => "readOnly",
            Mutability::ReadWrite => "readWrite",
            Mutability::Immutable => "immutable",
            Mutability::WriteOnly => "writeOnly",
        }
    }
}

/// RFC 7643 §7 `returned`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Returned {
    Always,
    Never,
    Default,
    Request,
}

impl Returned {
    pub fn as_str(self) -> &'static str {
        match self {
            Returned::Always => "always",
            Returned::Never => "never",
            Returned::Default => "default",
            Returned::Request => "request",
        }
    }
}

/// RFC 7643 §7 `uniqueness`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Uniqueness {
    None,
    Server,
    Global,
}

impl Uniqueness {
    pub fn as_str(self) -> &'static str {
        match self {
            Uniqueness::None => "none",
            Uniqueness::Server => "server",
            Uniqueness::Global => "global",
        }
    }
}

/// One attribute (or sub-attribute) definition, RFC 7643 §7.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttributeDef {
    pub name: &'static str,
    pub ty: AttrType,
    pub multi_valued: bool,
    pub required: bool,
    pub case_exact: bool,
    pub mutability: Mutability,
    pub returned: Returned,
    pub uniqueness: Uniqueness,
    pub canonical_values: &'static [&'static str],
    pub reference_types: &'static [&'static str],
    pub sub_attributes: &'static [AttributeDef],
    pub description: &'static str,
}

impl AttributeDef {
    /// A single-valued, optional, case-insensitive, readWrite attribute with the RFC 7643 §2.2
    /// defaults; the builder methods below change one characteristic each, which keeps the
    /// static tables readable.
    pub const fn new(name: &'static str, ty: AttrType) -> AttributeDef {
        AttributeDef {
            name,
            ty,
            multi_valued: false,
            required: false,
            case_exact: false,
            mutability: Mutability::ReadWrite,
            returned: Returned::Default,
            uniqueness: Uniqueness::None,
            canonical_values: &[],
            reference_types: &[],
            sub_attributes: &[],
            description: "",
        }
    }
    const fn string(name: &'static str) -> AttributeDef {
        AttributeDef::new(name, AttrType::String)
    }
    const fn complex(name: &'static str, sub: &'static [AttributeDef]) -> AttributeDef {
        AttributeDef::new(name, AttrType::Complex).sub(sub)
    }
    const fn multi(mut self) -> Self {
        self.multi_valued = true;
        self
    }
    const fn required(mut self) -> Self {
        self.required = true;
        self
    }
    const fn case_exact(mut self) -> Self {
        self.case_exact = true;
        self
    }
    const fn mutability(mut self, m: Mutability) -> Self {
        self.mutability = m;
        self
    }
    const fn returned(mut self, r: Returned) -> Self {
        self.returned = r;
        self
    }
    const fn uniqueness(mut self, u: Uniqueness) -> Self {
        self.uniqueness = u;
        self
    }
    const fn canonical(mut self, values: &'static [&'static str]) -> Self {
        self.canonical_values = values;
        self
    }
    const fn refs(mut self, types: &'static [&'static str]) -> Self {
        self.reference_types = types;
        self
    }
    const fn sub(mut self, sub: &'static [AttributeDef]) -> Self {
        self.sub_attributes = sub;
        self
    }
    const fn desc(mut self, d: &'static str) -> Self {
        self.description = d;
        self
    }

    /// The sub-attribute `name`, compared case-insensitively (RFC 7643 §2.1).
    pub fn sub_attribute(&self, name: &str) -> Option<&'static AttributeDef> {
        find_attr(self.sub_attributes, name)
    }

    /// Whether this is a multi-valued complex attribute (emails, members, ...), whose
    /// elements are compared by their `value` sub-attribute when no sub-attribute is named.
    pub fn is_multi_complex(&self) -> bool {
        self.multi_valued && self.ty == AttrType::Complex
    }

    /// RFC 7643 §7 representation of this attribute.
    pub fn to_json(&self) -> Value {
        let mut obj = Map::new();
        obj.insert("name".into(), self.name.into());
        obj.insert("type".into(), self.ty.as_str().into());
        obj.insert("multiValued".into(), self.multi_valued.into());
        obj.insert("description".into(), self.description.into());
        obj.insert("required".into(), self.required.into());
        if !self.canonical_values.is_empty() {
            obj.insert("canonicalValues".into(), json!(self.canonical_values));
        }
        // caseExact only means something for values compared as text (RFC 7643 §2.2).
        if matches!(
            self.ty,
            AttrType::String | AttrType::Reference | AttrType::Binary
        ) {
            obj.insert("caseExact".into(), self.case_exact.into());
        }
        if !self.sub_attributes.is_empty() {
            let subs: Vec<Value> = self
                .sub_attributes
                .iter()
                .map(AttributeDef::to_json)
                .collect();
            obj.insert("subAttributes".into(), Value::Array(subs));
        }
        obj.insert("mutability".into(), self.mutability.as_str().into());
        obj.insert("returned".into(), self.returned.as_str().into());
        obj.insert("uniqueness".into(), self.uniqueness.as_str().into());
        if self.ty == AttrType::Reference {
            obj.insert("referenceTypes".into(), json!(self.reference_types));
        }
        Value::Object(obj)
    }
}

/// A schema (RFC 7643 §7): the core schema of a resource type or one extension.
#[derive(Debug, PartialEq, Eq)]
pub struct SchemaDef {
    pub id: &'static str,
    pub name: &'static str,
    pub description: &'static str,
    pub attributes: &'static [AttributeDef],
}

impl SchemaDef {
    /// The attribute `name`, compared case-insensitively.
    pub fn attribute(&self, name: &str) -> Option<&'static AttributeDef> {
        find_attr(self.attributes, name)
    }

    /// Whether attributes this schema does not define are still accepted and kept. True for
    /// the OIDF-J extension: its attribute set is owned by another body and grows without us,
    /// so its undefined members are treated as plain strings rather than rejected.
    pub fn accepts_undefined_attributes(&self) -> bool {
        self.id == urn::OIDFJ_USER
    }

    /// RFC 7643 §7 representation. `meta.location` is relative; the server prefixes its base.
    pub fn to_json(&self) -> Value {
        let attributes: Vec<Value> = self.attributes.iter().map(AttributeDef::to_json).collect();
        json!({
            "schemas": [urn::SCHEMA],
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "attributes": attributes,
            "meta": {
                "resourceType": "Schema",
                "location": format!("/Schemas/{}", self.id),
            },
        })
    }
}

/// A resource type (RFC 7643 §6): its core schema plus extensions.
#[derive(Debug, PartialEq, Eq)]
pub struct ResourceSchema {
    /// `"User"` or `"Group"`; also the `meta.resourceType` value.
    pub name: &'static str,
    /// `"/Users"` or `"/Groups"`.
    pub endpoint: &'static str,
    pub description: &'static str,
    pub core: &'static SchemaDef,
    pub extensions: &'static [&'static SchemaDef],
}

/// The result of resolving an attribute path: which schema it belongs to, the attribute, and
/// the named sub-attribute if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResolvedAttr<'a> {
    /// The core schema for core and common attributes, else the extension.
    pub schema: &'a SchemaDef,
    pub attr: &'a AttributeDef,
    pub sub: Option<&'a AttributeDef>,
}

impl ResolvedAttr<'_> {
    /// The definition of what the path finally names: the sub-attribute if any, else the
    /// attribute.
    pub fn leaf(&self) -> &AttributeDef {
        self.sub.unwrap_or(self.attr)
    }

    /// Whether the attribute lives in an extension object (keyed by the extension URN) rather
    /// than at the top level of the resource.
    pub fn in_extension(&self, rs: &ResourceSchema) -> bool {
        self.schema.id != rs.core.id
    }
}

/// Where an attribute is stored in a resource object, with its definition when it has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttrLocation {
    /// The extension URN whose object holds the attribute; `None` for core and common
    /// attributes, which sit at the top level.
    pub extension: Option<&'static str>,
    /// The attribute name in its canonical (schema) spelling when defined.
    pub name: String,
    /// The sub-attribute name, canonical when defined.
    pub sub: Option<String>,
    /// `None` only for undefined members of an open extension.
    pub def: Option<&'static AttributeDef>,
    pub sub_def: Option<&'static AttributeDef>,
}

impl AttrLocation {
    /// The definition of what the location finally names (sub-attribute, else attribute).
    pub fn leaf_def(&self) -> Option<&'static AttributeDef> {
        if self.sub.is_some() {
            self.sub_def
        } else {
            self.def
        }
    }
}

impl ResourceSchema {
    /// Resolves an attribute path case-insensitively. A `uri` selects the core schema or an
    /// extension; without one the core schema is searched, then the common attributes. The
    /// parser already splits `urn:...:User:name.givenName` into uri + name + sub-attribute.
    pub fn resolve(&self, path: &AttrPath) -> Option<ResolvedAttr<'_>> {
        self.resolve_static(path)
    }

    /// [`Self::resolve`] keeping the `'static` lifetime of the definition tables.
    fn resolve_static(&self, path: &AttrPath) -> Option<ResolvedAttr<'static>> {
        let (schema, attr) = self.resolve_attr(path.uri.as_deref(), &path.name)?;
        let sub = match &path.sub_attr {
            Some(sub) => Some(attr.sub_attribute(sub)?),
            None => None,
        };
        Some(ResolvedAttr { schema, attr, sub })
    }

    fn resolve_attr(
        &self,
        uri: Option<&str>,
        name: &str,
    ) -> Option<(&'static SchemaDef, &'static AttributeDef)> {
        let core_or_common = || self.core.attribute(name).or_else(|| common_attribute(name));
        match uri {
            None => Some((self.core, core_or_common()?)),
            Some(uri) if uri.eq_ignore_ascii_case(self.core.id) => {
                Some((self.core, core_or_common()?))
            }
            Some(uri) => {
                let ext = self.extension(uri)?;
                Some((ext, ext.attribute(name)?))
            }
        }
    }

    /// Where the attribute a path names is stored. Like [`Self::resolve`], but a path into an
    /// extension that [accepts undefined attributes](SchemaDef::accepts_undefined_attributes)
    /// also locates (without a definition), so such members can be filtered and patched.
    pub fn locate(&self, path: &AttrPath) -> Option<AttrLocation> {
        if let Some(resolved) = self.resolve_static(path) {
            return Some(AttrLocation {
                extension: resolved.in_extension(self).then_some(resolved.schema.id),
                name: resolved.attr.name.to_string(),
                sub: resolved.sub.map(|s| s.name.to_string()),
                def: Some(resolved.attr),
                sub_def: resolved.sub,
            });
        }
        let ext = self.extension(path.uri.as_deref()?)?;
        if !ext.accepts_undefined_attributes() || ext.attribute(&path.name).is_some() {
            // A defined attribute that failed to resolve has an unknown sub-attribute.
            return None;
        }
        Some(AttrLocation {
            extension: Some(ext.id),
            name: path.name.clone(),
            sub: path.sub_attr.clone(),
            def: None,
            sub_def: None,
        })
    }

    /// The schema URNs of this resource type: core first, then extensions.
    pub fn schema_ids(&self) -> impl Iterator<Item = &'static str> {
        std::iter::once(self.core.id).chain(self.extensions.iter().map(|e| e.id))
    }

    /// The extension with this URN (compared case-insensitively, as URNs are).
    pub fn extension(&self, urn: &str) -> Option<&'static SchemaDef> {
        self.extensions
            .iter()
            .copied()
            .find(|e| e.id.eq_ignore_ascii_case(urn))
    }

    /// The core schema or extension with this URN.
    pub fn schema(&self, urn: &str) -> Option<&'static SchemaDef> {
        if urn.eq_ignore_ascii_case(self.core.id) {
            Some(self.core)
        } else {
            self.extension(urn)
        }
    }

    /// Every schema of this resource type: core first, then extensions.
    pub fn schemas(&self) -> impl Iterator<Item = &'static SchemaDef> {
        std::iter::once(self.core).chain(self.extensions.iter().copied())
    }
}

/// Case-insensitive lookup in a definition list (RFC 7643 §2.1: names are case-insensitive).
fn find_attr(attrs: &'static [AttributeDef], name: &str) -> Option<&'static AttributeDef> {
    attrs.iter().find(|a| a.name.eq_ignore_ascii_case(name))
}

/// The common attribute (`id`, `externalId`, `meta`) with this name, case-insensitively.
pub fn common_attribute(name: &str) -> Option<&'static AttributeDef> {
    find_attr(COMMON_ATTRIBUTES, name)
}

/// RFC 7643 §6 representation of a resource type. `meta.location` is relative.
pub fn resource_type_json(rs: &ResourceSchema) -> Value {
    let extensions: Vec<Value> = rs
        .extensions
        .iter()
        .map(|e| json!({"schema": e.id, "required": false}))
        .collect();
    json!({
        "schemas": [urn::RESOURCE_TYPE],
        "id": rs.name,
        "name": rs.name,
        "endpoint": rs.endpoint,
        "description": rs.description,
        "schema": rs.core.id,
        "schemaExtensions": extensions,
        "meta": {
            "resourceType": "ResourceType",
            "location": format!("/ResourceTypes/{}", rs.name),
        },
    })
}

/// The User resource type.
pub fn user() -> &'static ResourceSchema {
    &USER
}

/// The Group resource type.
pub fn group() -> &'static ResourceSchema {
    &GROUP
}

/// All resource types this crate knows, for `/ResourceTypes` and `/Schemas`.
pub fn resource_types() -> [&'static ResourceSchema; 2] {
    [&USER, &GROUP]
}

use AttrType as T;
use Mutability as M;
use Returned as R;

/// RFC 7643 §3 `schemas` and §3.1 common attributes, present on every resource but part of
/// no schema.
pub static COMMON_ATTRIBUTES: &[AttributeDef] = &[
    // Defined so that `schemas eq "urn:..."` filters (RFC 7644 §3.4.2.2) and projections work.
    // readOnly because the service derives it from the extensions present.
    AttributeDef::new("schemas", T::Reference)
        .multi()
        .mutability(M::ReadOnly)
        .returned(R::Always)
        .refs(&["uri"])
        .desc("The schema URNs the resource conforms to."),
    AttributeDef::string("id")
        .case_exact()
        .mutability(M::ReadOnly)
        .returned(R::Always)
        .uniqueness(Uniqueness::Server)
        .desc("Unique identifier for the resource, assigned by the service provider."),
    AttributeDef::string("externalId")
        .case_exact()
        .desc("Identifier of the resource as defined by the provisioning client."),
    AttributeDef::complex(
        "meta",
        &[
            AttributeDef::string("resourceType")
                .case_exact()
                .mutability(M::ReadOnly)
                .desc("The name of the resource type of the resource."),
            AttributeDef::new("created", T::DateTime)
                .mutability(M::ReadOnly)
                .desc("When the resource was added to the service provider."),
            AttributeDef::new("lastModified", T::DateTime)
                .mutability(M::ReadOnly)
                .desc("When the resource was last modified."),
            AttributeDef::new("location", T::Reference)
                .case_exact()
                .mutability(M::ReadOnly)
                .refs(&["uri"])
                .desc("The URI of the resource being returned."),
            AttributeDef::string("version")
                .case_exact()
                .mutability(M::ReadOnly)
                .desc("The version (ETag) of the resource being returned."),
        ],
    )
    .mutability(M::ReadOnly)
    .desc("Resource metadata maintained by the service provider."),
];

/// `value`, `display`, `type`, `primary`: the RFC 7643 §2.4 multi-valued sub-attributes.
/// The `type` canonical values differ per attribute, hence a macro instead of a const.
macro_rules! plural_sub_attributes {
    ($value_type:expr, [$($canonical:expr),*] $(, $extra:expr)*) => {
        &[
            AttributeDef::new("value", $value_type).desc("The attribute's significant value."),
            AttributeDef::string("display").desc("A human-readable name, primarily used for display purposes."),
            AttributeDef::string("type").canonical(&[$($canonical),*]).desc("A label indicating the attribute's function."),
            AttributeDef::new("primary", T::Boolean).desc("Indicates the 'primary' or preferred attribute value for this attribute."),
            $($extra,)*
        ]
    };
}

static USER_CORE: SchemaDef = SchemaDef {
    id: urn::USER,
    name: "User",
    description: "User Account",
    attributes: &[
        AttributeDef::string("userName")
            .required()
            .uniqueness(Uniqueness::Server)
            .desc("Unique identifier for the User, typically used to authenticate."),
        AttributeDef::complex(
            "name",
            &[
                AttributeDef::string("formatted").desc("The full name, formatted for display."),
                AttributeDef::string("familyName").desc("The family name of the User."),
                AttributeDef::string("givenName").desc("The given name of the User."),
                AttributeDef::string("middleName").desc("The middle name(s) of the User."),
                AttributeDef::string("honorificPrefix")
                    .desc("The honorific prefix(es) of the User."),
                AttributeDef::string("honorificSuffix")
                    .desc("The honorific suffix(es) of the User."),
            ],
        )
        .desc("The components of the user's real name."),
        AttributeDef::string("displayName").desc("The name of the User, suitable for display."),
        AttributeDef::string("nickName").desc("The casual way to address the user."),
        AttributeDef::new("profileUrl", T::Reference)
            .refs(&["external"])
            .desc("A fully qualified URL pointing to a page representing the User's profile."),
        AttributeDef::string("title").desc("The user's title, such as \"Vice President\"."),
        AttributeDef::string("userType")
            .desc("The relationship between the organization and the user."),
        AttributeDef::string("preferredLanguage")
            .desc("The User's preferred written or spoken language."),
        AttributeDef::string("locale").desc("The User's default location for localisation."),
        AttributeDef::string("timezone")
            .desc("The User's time zone in IANA Time Zone database format."),
        AttributeDef::new("active", T::Boolean).desc("The User's administrative status."),
        AttributeDef::string("password")
            .mutability(M::WriteOnly)
            .returned(R::Never)
            .desc("The User's cleartext password, only ever written."),
        AttributeDef::complex(
            "emails",
            plural_sub_attributes!(T::String, ["work", "home", "other"]),
        )
        .multi()
        .desc("Email addresses for the user."),
        AttributeDef::complex(
            "phoneNumbers",
            plural_sub_attributes!(
                T::String,
                ["work", "home", "mobile", "fax", "pager", "other"]
            ),
        )
        .multi()
        .desc("Phone numbers for the User (RFC 3966)."),
        AttributeDef::complex(
            "ims",
            plural_sub_attributes!(
                T::String,
                ["aim", "gtalk", "icq", "xmpp", "msn", "skype", "qq", "yahoo"]
            ),
        )
        .multi()
        .desc("Instant messaging addresses for the User."),
        AttributeDef::complex(
            "photos",
            &[
                AttributeDef::new("value", T::Reference)
                    .refs(&["external"])
                    .desc("URL of a photo of the User."),
                AttributeDef::string("display")
                    .desc("A human-readable name, primarily used for display purposes."),
                AttributeDef::string("type")
                    .canonical(&["photo", "thumbnail"])
                    .desc("A label indicating the attribute's function."),
                AttributeDef::new("primary", T::Boolean)
                    .desc("Indicates the 'primary' or preferred photo."),
            ],
        )
        .multi()
        .desc("URLs of photos of the User."),
        AttributeDef::complex(
            "addresses",
            &[
                AttributeDef::string("formatted")
                    .desc("The full mailing address, formatted for display."),
                AttributeDef::string("streetAddress").desc("The full street address component."),
                AttributeDef::string("locality").desc("The city or locality component."),
                AttributeDef::string("region").desc("The state or region component."),
                AttributeDef::string("postalCode").desc("The zip code or postal code component."),
                AttributeDef::string("country")
                    .desc("The country name component (ISO 3166-1 alpha-2)."),
                AttributeDef::string("type")
                    .canonical(&["work", "home", "other"])
                    .desc("A label indicating the attribute's function."),
                AttributeDef::new("primary", T::Boolean)
                    .desc("Indicates the 'primary' or preferred address."),
            ],
        )
        .multi()
        .desc("A physical mailing address for this User."),
        AttributeDef::complex(
            "groups",
            &[
                AttributeDef::string("value")
                    .mutability(M::ReadOnly)
                    .desc("The identifier of the User's group."),
                AttributeDef::new("$ref", T::Reference)
                    .mutability(M::ReadOnly)
                    .refs(&["User", "Group"])
                    .desc("The URI of the corresponding Group resource."),
                AttributeDef::string("display")
                    .mutability(M::ReadOnly)
                    .desc("A human-readable name, primarily used for display purposes."),
                AttributeDef::string("type")
                    .mutability(M::ReadOnly)
                    .canonical(&["direct", "indirect"])
                    .desc("Whether the membership is direct or indirect."),
            ],
        )
        .multi()
        .mutability(M::ReadOnly)
        .desc("A list of groups to which the user belongs."),
        AttributeDef::complex("entitlements", plural_sub_attributes!(T::String, []))
            .multi()
            .desc("A list of entitlements for the User."),
        AttributeDef::complex("roles", plural_sub_attributes!(T::String, []))
            .multi()
            .desc("A list of roles for the User."),
        AttributeDef::complex("x509Certificates", plural_sub_attributes!(T::Binary, []))
            .multi()
            .desc("A list of certificates issued to the User."),
    ],
};

static ENTERPRISE_USER: SchemaDef = SchemaDef {
    id: urn::ENTERPRISE_USER,
    name: "EnterpriseUser",
    description: "Enterprise User",
    attributes: &[
        AttributeDef::string("employeeNumber")
            .desc("Numeric or alphanumeric identifier assigned to a person."),
        AttributeDef::string("costCenter").desc("Identifies the name of a cost center."),
        AttributeDef::string("organization").desc("Identifies the name of an organization."),
        AttributeDef::string("division").desc("Identifies the name of a division."),
        AttributeDef::string("department").desc("Identifies the name of a department."),
        AttributeDef::complex(
            "manager",
            &[
                AttributeDef::string("value")
                    .desc("The id of the SCIM resource representing the User's manager."),
                AttributeDef::new("$ref", T::Reference)
                    .refs(&["User"])
                    .desc("The URI of the SCIM resource representing the User's manager."),
                AttributeDef::string("displayName")
                    .mutability(M::ReadOnly)
                    .desc("The displayName of the User's manager."),
            ],
        )
        .desc("The User's manager."),
    ],
};

/// The OIDF-J extension. Its members are accepted without definitions (see
/// [`SchemaDef::accepts_undefined_attributes`]); none is defined here because we would only
/// be guessing at the published attribute set.
static OIDFJ_USER: SchemaDef = SchemaDef {
    id: urn::OIDFJ_USER,
    name: "EnterpriseJpUser",
    description: "OpenID Foundation Japan enterprise user extension",
    attributes: &[],
};

static IIJ_USER: SchemaDef = SchemaDef {
    id: urn::IIJ_USER,
    name: "IijEnterpriseJpUser",
    description: "Identity service user extension",
    attributes: &[
        AttributeDef::string("downstreamId")
            .case_exact()
            .desc("Immutable id of the linked downstream account (e.g. mS-DS-ConsistencyGuid)."),
        AttributeDef::string("externalUserName")
            .desc("The user name the user signs in with at the external OpenID provider."),
        AttributeDef::complex(
            "localNames",
            &[
                AttributeDef::string("formatted").desc("The full local (e.g. phonetic) name."),
                AttributeDef::string("familyName").desc("The local family name."),
                AttributeDef::string("givenName").desc("The local given name."),
                AttributeDef::string("middleName").desc("The local middle name."),
            ],
        )
        .desc("The user's name in the local script or its reading."),
        AttributeDef::complex(
            "idTokenClaims",
            &[
                AttributeDef::string("issuer")
                    .case_exact()
                    .desc("The `iss` of ID tokens that identify this user."),
                AttributeDef::string("subject")
                    .case_exact()
                    .desc("The `sub` of ID tokens that identify this user."),
            ],
        )
        .desc("The OpenID Connect claims that identify this user at an external provider."),
        AttributeDef::string("state")
            .case_exact()
            .mutability(M::ReadOnly)
            .canonical(&["active", "disabled", "pendingDeletion"])
            .desc("The user's lifecycle state."),
        AttributeDef::new("pendingDeletionSince", T::DateTime)
            .mutability(M::ReadOnly)
            .desc("When the user was moved to pending deletion."),
    ],
};

static GROUP_CORE: SchemaDef = SchemaDef {
    id: urn::GROUP,
    name: "Group",
    description: "Group",
    attributes: &[
        AttributeDef::string("displayName")
            .required()
            .desc("A human-readable name for the Group."),
        AttributeDef::complex(
            "members",
            &[
                AttributeDef::string("value")
                    .case_exact()
                    .mutability(M::Immutable)
                    .desc("Identifier of the member of this Group."),
                AttributeDef::new("$ref", T::Reference)
                    .mutability(M::Immutable)
                    .refs(&["User", "Group"])
                    .desc(
                        "The URI corresponding to a SCIM resource that is a member of this Group.",
                    ),
                AttributeDef::string("display")
                    .mutability(M::ReadOnly)
                    .desc("A human-readable name for the member."),
                AttributeDef::string("type")
                    .mutability(M::Immutable)
                    .canonical(&["User", "Group"])
                    .desc("A label indicating the type of resource."),
            ],
        )
        .multi()
        .desc("A list of members of the Group."),
    ],
};

static IIJ_GROUP: SchemaDef = SchemaDef {
    id: urn::IIJ_GROUP,
    name: "IijEnterpriseJpGroup",
    description: "Identity service group extension",
    attributes: &[
        AttributeDef::string("description").desc("A free-text description of the group."),
        AttributeDef::string("email").desc("The group's email address."),
        AttributeDef::string("groupType").desc("The kind of group (e.g. security, distribution)."),
    ],
};

static DIRSYNC_SOURCE: SchemaDef = SchemaDef {
    id: urn::DIRSYNC_SOURCE,
    name: "DirsyncSource",
    description: "Where a synchronised object comes from (the agent's ownership mark)",
    attributes: &[
        AttributeDef::string("directory")
            .case_exact()
            .desc("The directory (base DN) of the agent instance that manages the object."),
        AttributeDef::string("dn")
            .case_exact()
            .desc("The distinguished name of the source entry."),
    ],
};

static USER: ResourceSchema = ResourceSchema {
    name: "User",
    endpoint: "/Users",
    description: "User Account",
    core: &USER_CORE,
    extensions: &[&ENTERPRISE_USER, &OIDFJ_USER, &IIJ_USER],
};

static GROUP: ResourceSchema = ResourceSchema {
    name: "Group",
    endpoint: "/Groups",
    description: "Group",
    core: &GROUP_CORE,
    extensions: &[&IIJ_GROUP, &DIRSYNC_SOURCE],
};

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn path(s: &str) -> AttrPath {
        match format!("{s} pr")
            .parse::<scim_v2::filter::Filter>()
            .unwrap()
        {
            scim_v2::filter::Filter::Attr(scim_v2::filter::AttrExp::Present(p)) => p,
            other => panic!("not a path: {other:?}"),
        }
    }

    #[test]
    fn resolves_core_common_and_extension_case_insensitively() {
        let u = user();
        let r = u.resolve(&path("USERNAME")).unwrap();
        assert_eq!(r.attr.name, "userName");
        assert_eq!(r.schema.id, urn::USER);

        let r = u.resolve(&path("meta.lastmodified")).unwrap();
        assert_eq!(r.leaf().ty, AttrType::DateTime);

        let r = u.resolve(&path("name.givenName")).unwrap();
        assert_eq!(r.sub.unwrap().name, "givenName");

        let r = u
            .resolve(&path(
                "urn:ietf:params:scim:schemas:core:2.0:User:name.givenName",
            ))
            .unwrap();
        assert_eq!(r.sub.unwrap().name, "givenName");

        let r = u
            .resolve(&path(
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department",
            ))
            .unwrap();
        assert_eq!(r.schema.id, urn::ENTERPRISE_USER);
        assert!(r.in_extension(u));

        let r = u
            .resolve(&path(
                "URN:IETF:PARAMS:SCIM:SCHEMAS:EXTENSION:ENTERPRISE:2.0:USER:manager.value",
            ))
            .unwrap();
        assert_eq!(r.attr.name, "manager");
    }

    #[test]
    fn unknown_paths_do_not_resolve() {
        let u = user();
        assert!(
            u.resolve(&path("department")).is_none(),
            "extension attrs need their URN"
        );
        assert!(u.resolve(&path("name.nope")).is_none());
        assert!(u.resolve(&path("userName.x")).is_none());
        assert!(u.resolve(&path("urn:example:other:attr")).is_none());
        assert!(group().resolve(&path("userName")).is_none());
    }

    #[test]
    fn schema_ids_list_core_first() {
        let ids: Vec<_> = user().schema_ids().collect();
        assert_eq!(
            ids,
            [
                urn::USER,
                urn::ENTERPRISE_USER,
                urn::OIDFJ_USER,
                urn::IIJ_USER
            ]
        );
        let ids: Vec<_> = group().schema_ids().collect();
        assert_eq!(ids, [urn::GROUP, urn::IIJ_GROUP, urn::DIRSYNC_SOURCE]);
    }

    #[test]
    fn schema_json_has_rfc_shape() {
        let v = user().core.to_json();
        assert_eq!(v["id"], urn::USER);
        assert_eq!(v["meta"]["resourceType"], "Schema");
        assert_eq!(v["meta"]["location"], format!("/Schemas/{}", urn::USER));
        let user_name = &v["attributes"][0];
        assert_eq!(user_name["name"], "userName");
        assert_eq!(user_name["uniqueness"], "server");
        assert_eq!(user_name["caseExact"], false);
        assert_eq!(user_name["required"], true);
        let password = v["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["name"] == "password")
            .unwrap();
        assert_eq!(password["returned"], "never");
        assert_eq!(password["mutability"], "writeOnly");
        let emails = v["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["name"] == "emails")
            .unwrap();
        assert_eq!(emails["multiValued"], true);
        assert_eq!(
            emails["subAttributes"][2]["canonicalValues"],
            json!(["work", "home", "other"])
        );
    }

    #[test]
    fn resource_type_json_lists_extensions() {
        let v = resource_type_json(group());
        assert_eq!(v["endpoint"], "/Groups");
        assert_eq!(v["schema"], urn::GROUP);
        assert_eq!(v["schemaExtensions"][0]["schema"], urn::IIJ_GROUP);
        assert_eq!(v["meta"]["location"], "/ResourceTypes/Group");
    }
}
