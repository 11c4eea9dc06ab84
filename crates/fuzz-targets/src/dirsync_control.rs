//! The Active Directory DirSync response control value (MS-ADTS 3.1.1.3.4.1.3) through
//! `dirsync_source::ad_changes::parse_dirsync_response`, and its cookie through
//! `cookie_invocation`. Beyond not panicking: whatever decodes, encoded again as a DC would
//! send it, decodes to the same flag and cookie.

fn tlv(out: &mut Vec<u8>, tag: u8, value: &[u8]) {
    out.push(tag);
    let n = value.len();
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let be = (n as u64).to_be_bytes();
        let skip = be.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (8 - skip) as u8);
        out.extend_from_slice(&be[skip..]);
    }
    out.extend_from_slice(value);
}

fn response(more: bool, cookie: &[u8]) -> Vec<u8> {
    let mut inner = Vec::new();
    tlv(&mut inner, 0x02, &[u8::from(more)]);
    tlv(&mut inner, 0x02, &[0]);
    tlv(&mut inner, 0x04, cookie);
    let mut out = Vec::new();
    tlv(&mut out, 0x30, &inner);
    out
}

/// One input.
pub fn run(data: &[u8]) {
    use dirsync_source::ad_changes::{cookie_invocation, parse_dirsync_response};
    let _ = cookie_invocation(data);
    if let Some((more, cookie)) = parse_dirsync_response(data) {
        if let Some(id) = cookie_invocation(&cookie) {
            assert_eq!(id.len(), 16);
        }
        let again = response(more, &cookie);
        assert_eq!(parse_dirsync_response(&again), Some((more, cookie)));
    }
}
