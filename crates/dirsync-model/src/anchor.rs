//! Anchor text: the binary Active Directory GUID (objectGUID, mS-DS-ConsistencyGuid) as the
//! text Windows shows. Sources use it to name objects in change sets, the mapping to render
//! `externalId`; both must agree byte for byte.

/// 16 bytes → `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`, first three groups little-endian.
pub fn guid_text(b: &[u8]) -> Option<String> {
    let b: [u8; 16] = b.try_into().ok()?;
    Some(uuid::Uuid::from_bytes_le(b).hyphenated().to_string())
}
