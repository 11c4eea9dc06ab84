//! The directory entry shared by every source (LDAP, LDIF), the mapping and the local image:
//! a DN plus raw attribute values, and DN comparison.
//!
//! Values stay raw bytes here because some attributes are binary (objectGUID, objectSid) and
//! only mapping knows how to render them. This module does not know LDAP connections, SCIM,
//! or the configuration; the selection of users and groups lives with each source.

use std::collections::BTreeMap;

/// One directory object: its DN and its attributes, stored lower-case by name (LDAP names
/// are case-insensitive); options such as `;binary` or `;range=0-1499` are already resolved
/// by the source, so `member` holds every value.
///
/// The attributes live in one contiguous buffer rather than a map of vectors because a full
/// run holds every entry of the directory at once while it maps them (issue #5): at 100,000
/// users a `BTreeMap<String, Vec<Vec<u8>>>` cost about 3 KiB per user in heap allocations
/// (one per name, per value list and per value, plus tree nodes) for about 500 bytes of data.
/// The buffer is canonical — attributes sorted by name, values in the order they came, no
/// empty attribute — so the derived `PartialEq`/`Hash` mean "same entry". Build or edit one
/// through [`EntryBuilder`]; `with`/`push` rebuild the buffer and are meant for tests and
/// small callers only.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Entry {
    pub dn: String,
    /// `[name len][name][value count]([value len][value])*` per attribute, every integer an
    /// unsigned LEB128 varint (most names and values are shorter than 128 bytes, so one byte
    /// each), attributes in byte order of their lower-case names.
    attrs: Box<[u8]>,
}

impl Entry {
    pub fn new(dn: impl Into<String>) -> Self {
        Entry {
            dn: dn.into(),
            attrs: Box::default(),
        }
    }

    /// Adds one value (builder style, for tests and small callers: rebuilds the buffer).
    pub fn with(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        self.push(name, value.as_ref().to_vec());
        self
    }

    /// Appends a value under the lower-cased attribute name. Rebuilds the buffer, so a
    /// reader adding many values uses an [`EntryBuilder`] instead.
    pub fn push(&mut self, name: &str, value: Vec<u8>) {
        let mut b = std::mem::take(self).into_builder();
        b.push(name, value);
        *self = b.build();
    }

    /// The entry in editable form (range merging, link updates, change application).
    pub fn into_builder(self) -> EntryBuilder {
        let mut attrs = BTreeMap::new();
        for (name, values) in self.attributes() {
            attrs.insert(name.to_string(), values.map(<[u8]>::to_vec).collect());
        }
        EntryBuilder { dn: self.dn, attrs }
    }

    /// The raw values of an attribute, without copying them (empty when absent). The name
    /// is case-insensitive.
    pub fn values(&self, name: &str) -> Values<'_> {
        let mut attrs = self.attributes();
        loop {
            match attrs.next() {
                Some((stored, values)) => match cmp_lower(stored, name) {
                    std::cmp::Ordering::Equal => return values,
                    std::cmp::Ordering::Less => {}
                    // Sorted by name: nothing further can match.
                    std::cmp::Ordering::Greater => return Values::default(),
                },
                None => return Values::default(),
            }
        }
    }

    /// All raw values of an attribute (empty when absent). The name is case-insensitive.
    pub fn bytes(&self, name: &str) -> Vec<&[u8]> {
        self.values(name).collect()
    }

    /// Whether the attribute has at least one value (case-insensitive name).
    pub fn has(&self, name: &str) -> bool {
        self.values(name).len() > 0
    }

    /// The lower-case names of the attributes present, in sorted order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.attributes().map(|(name, _)| name)
    }

    /// Every attribute with its values, sorted by (lower-case) name.
    pub fn attributes(&self) -> Attributes<'_> {
        Attributes { rest: &self.attrs }
    }

    /// The values that are valid UTF-8 text; binary values are skipped.
    pub fn strs(&self, name: &str) -> Vec<&str> {
        self.values(name)
            .filter_map(|v| std::str::from_utf8(v).ok())
            .collect()
    }

    /// The first non-empty text value.
    pub fn first_str(&self, name: &str) -> Option<&str> {
        self.values(name)
            .filter_map(|v| std::str::from_utf8(v).ok())
            .find(|s| !s.is_empty())
    }

    /// Whether the entry has this object class (case-insensitive).
    pub fn has_object_class(&self, class: &str) -> bool {
        self.values("objectclass")
            .filter_map(|v| std::str::from_utf8(v).ok())
            .any(|c| c.eq_ignore_ascii_case(class))
    }

    /// The bytes this entry owns on the heap (DN and attribute buffer), for the memory
    /// budget of a full run.
    pub fn heap_bytes(&self) -> usize {
        self.dn.capacity() + self.attrs.len()
    }

    /// The attribute buffer itself, for the size tests below.
    #[cfg(test)]
    fn raw_attributes(&self) -> &[u8] {
        &self.attrs
    }
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Text values as text, so that a failed assertion shows something readable.
        struct Value<'a>(&'a [u8]);
        impl std::fmt::Debug for Value<'_> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                match std::str::from_utf8(self.0) {
                    Ok(s) => s.fmt(f),
                    Err(_) => self.0.fmt(f),
                }
            }
        }
        struct List<'a>(Values<'a>);
        impl std::fmt::Debug for List<'_> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_list().entries(self.0.clone().map(Value)).finish()
            }
        }
        struct Map<'a>(&'a Entry);
        impl std::fmt::Debug for Map<'_> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_map()
                    .entries(self.0.attributes().map(|(n, v)| (n, List(v))))
                    .finish()
            }
        }
        f.debug_struct("Entry")
            .field("dn", &self.dn)
            .field("attrs", &Map(self))
            .finish()
    }
}

/// Compares a stored (lower-case) name with a name in any case, as if both were lower-case.
fn cmp_lower(stored: &str, name: &str) -> std::cmp::Ordering {
    stored
        .bytes()
        .cmp(name.bytes().map(|b| b.to_ascii_lowercase()))
}

/// Reads one varint at the start of `buf`: the value and the bytes after it. `None` only on
/// a truncated buffer, which `EntryBuilder::build` never writes.
fn read_varint(buf: &[u8]) -> Option<(usize, &[u8])> {
    let mut value = 0usize;
    for (i, &b) in buf.iter().enumerate() {
        let bits = usize::from(b & 0x7f).checked_shl(7 * u32::try_from(i).ok()?)?;
        value |= bits;
        if b & 0x80 == 0 {
            return Some((value, buf.get(i + 1..)?));
        }
    }
    None
}

fn write_varint(out: &mut Vec<u8>, mut value: usize) {
    loop {
        let low = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(low);
            return;
        }
        out.push(low | 0x80);
    }
}

fn varint_len(value: usize) -> usize {
    let bits = usize::BITS - value.leading_zeros();
    (bits as usize).div_ceil(7).max(1)
}

/// `len` bytes after a varint length at the start of `buf`, and the rest.
fn read_chunk(buf: &[u8]) -> Option<(&[u8], &[u8])> {
    let (len, rest) = read_varint(buf)?;
    rest.split_at_checked(len)
}

/// The attributes of an [`Entry`], in name order.
#[derive(Clone)]
pub struct Attributes<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Attributes<'a> {
    type Item = (&'a str, Values<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        let parsed = (|| {
            let (name, rest) = read_chunk(self.rest)?;
            let name = std::str::from_utf8(name).ok()?;
            let (count, mut rest) = read_varint(rest)?;
            let start = rest;
            for _ in 0..count {
                rest = read_chunk(rest)?.1;
            }
            let body = start.get(..start.len() - rest.len())?;
            Some((
                name,
                Values {
                    rest: body,
                    left: count,
                },
                rest,
            ))
        })();
        match parsed {
            Some((name, values, rest)) => {
                self.rest = rest;
                Some((name, values))
            }
            None => {
                // Only a corrupt buffer gets here; end rather than loop or panic.
                self.rest = &[];
                None
            }
        }
    }
}

/// The values of one attribute, borrowed from the entry's buffer.
#[derive(Clone, Default)]
pub struct Values<'a> {
    rest: &'a [u8],
    left: usize,
}

impl<'a> Iterator for Values<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.left == 0 {
            return None;
        }
        match read_chunk(self.rest) {
            Some((value, rest)) => {
                self.rest = rest;
                self.left -= 1;
                Some(value)
            }
            None => {
                self.left = 0;
                None
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl ExactSizeIterator for Values<'_> {}

/// An entry being read or edited: a map that is cheap to add to, turned into the compact
/// [`Entry`] once by [`EntryBuilder::build`]. Names are lower-cased on the way in.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EntryBuilder {
    pub dn: String,
    attrs: BTreeMap<String, Vec<Vec<u8>>>,
}

impl EntryBuilder {
    pub fn new(dn: impl Into<String>) -> Self {
        EntryBuilder {
            dn: dn.into(),
            attrs: BTreeMap::new(),
        }
    }

    /// The value list of `name`, created empty if absent (dropped again by `build` if it
    /// stays empty).
    fn list(&mut self, name: &str) -> &mut Vec<Vec<u8>> {
        self.attrs.entry(name.to_ascii_lowercase()).or_default()
    }

    /// Adds one value (chaining form of [`EntryBuilder::push`]).
    pub fn with(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        self.push(name, value.as_ref().to_vec());
        self
    }

    /// Appends a value under the lower-cased attribute name.
    pub fn push(&mut self, name: &str, value: impl Into<Vec<u8>>) {
        // Most names arrive lower-case already: no key allocation for them.
        match self.attrs.get_mut(name) {
            Some(list) => list.push(value.into()),
            None => self.list(name).push(value.into()),
        }
    }

    /// Appends values under the lower-cased attribute name.
    pub fn extend<V: Into<Vec<u8>>>(&mut self, name: &str, values: impl IntoIterator<Item = V>) {
        self.list(name).extend(values.into_iter().map(Into::into));
    }

    /// Replaces the values of an attribute (no values: the attribute goes).
    pub fn set<V: Into<Vec<u8>>>(&mut self, name: &str, values: impl IntoIterator<Item = V>) {
        let values: Vec<Vec<u8>> = values.into_iter().map(Into::into).collect();
        if values.is_empty() {
            self.remove(name);
        } else {
            *self.list(name) = values;
        }
    }

    /// Removes an attribute, returning its values.
    pub fn remove(&mut self, name: &str) -> Option<Vec<Vec<u8>>> {
        self.attrs.remove(&name.to_ascii_lowercase())
    }

    /// The values of an attribute, to edit in place (case-insensitive name).
    pub fn get_mut(&mut self, name: &str) -> Option<&mut Vec<Vec<u8>>> {
        self.attrs.get_mut(&name.to_ascii_lowercase())
    }

    /// The values of an attribute (empty when absent; case-insensitive name).
    pub fn get(&self, name: &str) -> &[Vec<u8>] {
        self.attrs
            .get(&name.to_ascii_lowercase())
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// The compact entry: one allocation of exactly the encoded size.
    pub fn build(self) -> Entry {
        let present = || self.attrs.iter().filter(|(_, values)| !values.is_empty());
        let size: usize = present()
            .map(|(name, values)| {
                varint_len(name.len())
                    + name.len()
                    + varint_len(values.len())
                    + values
                        .iter()
                        .map(|v| varint_len(v.len()) + v.len())
                        .sum::<usize>()
            })
            .sum();
        let mut buf = Vec::with_capacity(size);
        for (name, values) in present() {
            write_varint(&mut buf, name.len());
            buf.extend_from_slice(name.as_bytes());
            write_varint(&mut buf, values.len());
            for v in values {
                write_varint(&mut buf, v.len());
                buf.extend_from_slice(v);
            }
        }
        let mut dn = self.dn;
        // The DN often comes from a larger buffer (ldap3, format!): keep only what is used.
        dn.shrink_to_fit();
        Entry {
            dn,
            attrs: buf.into_boxed_slice(),
        }
    }
}

impl From<EntryBuilder> for Entry {
    fn from(b: EntryBuilder) -> Entry {
        b.build()
    }
}

/// An attribute description without its options: `member;range=0-1499` → `member`,
/// `userCertificate;binary` → `userCertificate` (what LDAP, LDIF and Active Directory add
/// after `;`).
pub fn attribute_base(description: &str) -> &str {
    description
        .split_once(';')
        .map_or(description, |(base, _)| base)
}

/// Whether `dn` is `base` or below it. DNs compare case-insensitively with spaces around
/// RDN separators ignored; an empty base contains everything.
pub fn dn_within(dn: &str, base: &str) -> bool {
    let base = normalize_dn(base);
    if base.is_empty() {
        return true;
    }
    let dn = normalize_dn(dn);
    dn == base || dn.ends_with(&format!(",{base}"))
}

/// A comparable form of a DN: lower-case, no blanks around `,` `=` and `+`. Escaped
/// separators (`\,`) are left alone, which is enough for comparison (not an RFC 4514 parser).
pub fn normalize_dn(dn: &str) -> String {
    let mut out = String::with_capacity(dn.len());
    let mut escaped = false;
    for c in dn.trim().chars() {
        if escaped {
            out.extend(c.to_lowercase());
            escaped = false;
            continue;
        }
        match c {
            '\\' => {
                escaped = true;
                out.push(c);
            }
            ',' | '=' | '+' => {
                while out.ends_with(' ') {
                    out.pop();
                }
                out.push(c);
            }
            ' ' if out.ends_with([',', '=', '+']) => {}
            _ => out.extend(c.to_lowercase()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn helpers() {
        let e = Entry::new("cn=a,dc=x")
            .with("CN", "a")
            .with("mail", "")
            .with("mail", "a@x.jp")
            .with("objectGUID", [0xffu8, 0xfe]);
        assert_eq!(e.first_str("cn"), Some("a"));
        assert_eq!(e.first_str("MAIL"), Some("a@x.jp"));
        assert_eq!(e.strs("mail").len(), 2);
        assert!(e.strs("objectguid").is_empty());
        assert_eq!(e.bytes("objectguid").len(), 1);
    }

    /// A user as the 100k bench reads it from slapd: 12 attributes, 16 values.
    fn bench_user(b: EntryBuilder) -> EntryBuilder {
        b.with("objectClass", "top")
            .with("objectClass", "person")
            .with("objectClass", "organizationalPerson")
            .with("objectClass", "inetOrgPerson")
            .with("uid", "user012345")
            .with("cn", "Grace Hopper 12345")
            .with("sn", "Hopper")
            .with("givenName", "Grace")
            .with("displayName", "Grace Hopper")
            .with("mail", "user012345@example.test")
            .with("employeeNumber", "12345")
            .with("title", "Engineer")
            .with("employeeType", "true")
            .with("entryUUID", "0f8e6c3a-1d2b-4c5d-9e8f-7a6b5c4d3e2f")
            .with("memberOf", "cn=group00042,ou=groups,dc=example,dc=test")
            .with("memberOf", "cn=group00977,ou=groups,dc=example,dc=test")
    }

    #[test]
    fn builder_round_trip() {
        let mut b = EntryBuilder::new("cn=a,dc=x")
            .with("CN", "a")
            .with("objectGUID", [0x00u8, 0xff, 0x80, 0x7f])
            .with("member", "cn=m1")
            .with("Member", "cn=m2");
        b.extend("description", Vec::<Vec<u8>>::new());
        b.set("title", ["x", "y"]);
        b.set("title", Vec::<Vec<u8>>::new());
        b.extend("big", (0..300).map(|i| vec![b'v'; i]));
        let e = b.build();
        assert_eq!(e.dn, "cn=a,dc=x");
        assert_eq!(e.bytes("OBJECTGUID"), [&[0x00u8, 0xff, 0x80, 0x7f][..]]);
        assert!(e.strs("objectguid").is_empty());
        assert_eq!(e.strs("MEMBER"), ["cn=m1", "cn=m2"]);
        assert_eq!(e.first_str("cn"), Some("a"));
        // Empty value lists are absent, not present-and-empty.
        assert!(!e.has("description") && !e.has("title"));
        assert!(e.bytes("description").is_empty());
        assert_eq!(
            e.names().collect::<Vec<_>>(),
            ["big", "cn", "member", "objectguid"]
        );
        // Values longer than one varint byte survive, in order.
        let big = e.bytes("big");
        assert_eq!(big.len(), 300);
        assert!(big.iter().enumerate().all(|(i, v)| v.len() == i));
        assert!(!e.has("a") && !e.has("zzz") && !e.has("bi") && !e.has("bigger"));
        // Back to a builder and out again: the same entry.
        let again = e.clone().into_builder().build();
        assert_eq!(again, e);
        let mut edited = e.into_builder();
        edited.remove("BIG");
        edited.get_mut("member").unwrap().retain(|v| v != b"cn=m1");
        let edited = edited.build();
        assert_eq!(edited.strs("member"), ["cn=m2"]);
        assert!(!edited.has("big"));
        assert!(
            format!("{edited:?}").contains("\"member\": [\"cn=m2\"]"),
            "{edited:?}"
        );
    }

    #[test]
    fn equality_is_canonical() {
        let hash = |e: &Entry| {
            let mut h = std::hash::DefaultHasher::new();
            e.hash(&mut h);
            h.finish()
        };
        use std::hash::{Hash, Hasher};
        let a = Entry::new("cn=a")
            .with("mail", "a@x")
            .with("cn", "a")
            .with("member", "1")
            .with("member", "2");
        let b = EntryBuilder::new("cn=a")
            .with("Member", "1")
            .with("CN", "a")
            .with("MEMBER", "2")
            .with("Mail", "a@x")
            .build();
        assert_eq!(a, b);
        assert_eq!(hash(&a), hash(&b));
        // Value order is part of the entry; so is the DN.
        let c = Entry::new("cn=a")
            .with("mail", "a@x")
            .with("cn", "a")
            .with("member", "2")
            .with("member", "1");
        assert_ne!(a, c);
        assert_ne!(
            a,
            Entry {
                dn: "cn=b".into(),
                ..a.clone()
            }
        );
        // Value boundaries count: ["ab"] is not ["a", "b"].
        assert_ne!(
            Entry::new("x").with("v", "ab"),
            Entry::new("x").with("v", "a").with("v", "b")
        );
    }

    /// The point of the buffer (issue #5): a typical bench user. Before, as a
    /// `BTreeMap<String, Vec<Vec<u8>>>`, it took 44 allocations (12 names, 12 value lists
    /// of capacity 4, 16 values, 3 B-tree nodes of 544/544/640 bytes, the DN): 3,266 bytes
    /// requested, about 4.1 KiB of glibc chunks. Now it is two: the DN and a buffer
    /// of the raw names and values plus one length byte each and one count per attribute.
    #[test]
    fn a_bench_user_is_small() {
        let e = bench_user(EntryBuilder::new(format!(
            "uid=user{:06},ou=people,dc=example,dc=test",
            12345
        )))
        .build();
        assert_eq!(e.attributes().count(), 12);
        assert_eq!(e.attributes().map(|(_, v)| v.len()).sum::<usize>(), 16);
        let raw: usize = e
            .attributes()
            .map(|(n, v)| n.len() + v.map(<[u8]>::len).sum::<usize>())
            .sum();
        // One byte of name length and of value count per attribute, one of length per value.
        assert_eq!(e.raw_attributes().len(), raw + 12 * 2 + 16);
        println!(
            "bench user: {} heap bytes (dn {} + attributes {}), raw data {}",
            e.heap_bytes(),
            e.dn.capacity(),
            e.raw_attributes().len(),
            raw + e.dn.len()
        );
        assert!(e.heap_bytes() <= 500, "{}", e.heap_bytes());
        // Same as the bench user, written through Entry::with (tests' style).
        let mut slow = Entry::new(e.dn.clone());
        for (name, values) in e.attributes() {
            for v in values {
                slow.push(name, v.to_vec());
            }
        }
        assert_eq!(slow, e);
    }

    #[test]
    fn dn_scope() {
        assert!(dn_within(
            "CN=Taro, OU=People,DC=Example,DC=jp",
            "dc=example, dc=jp"
        ));
        assert!(dn_within("dc=example,dc=jp", "DC=example,DC=jp"));
        assert!(!dn_within("cn=x,dc=badexample,dc=jp", "dc=example,dc=jp"));
        assert!(dn_within("cn=x", ""));
    }
}
