//! Which encryption the LDAP connection uses when `ad.ldap.server.encryption` is not written,
//! and where the bind password would travel in clear.
//!
//! The default is StartTLS, except when every configured address is this machine (an address
//! in 127.0.0.0/8, `::1` or the name `localhost`): there nothing crosses a network, and a
//! directory run on the same host (a test slapd) keeps working without a certificate. Plain
//! LDAP to any other host must be written as `encryption: none`, and the loader warns about
//! it on every run. A Kerberos (GSSAPI) bind is the exception: on plain LDAP its SASL layer
//! seals the connection (and Active Directory domains that require signing refuse GSSAPI
//! inside TLS unless told otherwise), so without `encryption` it uses plain LDAP, sealed, and
//! nothing travels in clear.

use std::net::IpAddr;

use crate::{Encryption, ServerConfig};

impl ServerConfig {
    /// The encryption in use: as written, else StartTLS, or none when every address is
    /// loopback (see the module doc).
    pub fn effective_encryption(&self) -> Encryption {
        match self.encryption {
            Some(e) => e,
            None if matches!(self.auth, crate::LdapAuth::Gssapi { .. }) => Encryption::None,
            None if !self.addresses.is_empty()
                && self.addresses.iter().all(|a| is_loopback_host(a)) =>
            {
                Encryption::None
            }
            None => Encryption::StartTls,
        }
    }

    /// The addresses that `encryption: none`, written explicitly, sends the bind and every
    /// entry to in clear across a network (every address that is not loopback). Empty when
    /// the connection is encrypted or stays on this machine.
    pub fn cleartext_hosts(&self) -> Vec<&str> {
        if self.effective_encryption() != Encryption::None
            || matches!(self.auth, crate::LdapAuth::Gssapi { .. })
        {
            return Vec::new();
        }
        self.addresses
            .iter()
            .map(String::as_str)
            .filter(|a| !is_loopback_host(a))
            .collect()
    }
}

/// Whether `address` (a host name or an IP address, IPv6 with or without brackets) names this
/// machine: an IPv4 address in 127.0.0.0/8, `::1`, or `localhost` (any case, an optional
/// final dot). Any other name counts as remote, whatever it resolves to: the decision is
/// made from the configuration alone, without a DNS query.
pub fn is_loopback_host(address: &str) -> bool {
    let host = address.trim();
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => ip.is_loopback(),
        Ok(IpAddr::V6(ip)) => ip.is_loopback(),
        Err(_) => {
            let name = host.strip_suffix('.').unwrap_or(host);
            name.eq_ignore_ascii_case("localhost")
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn server(addresses: &[&str], encryption: Option<Encryption>) -> ServerConfig {
        ServerConfig {
            addresses: addresses.iter().map(|a| a.to_string()).collect(),
            encryption,
            ..ServerConfig::default()
        }
    }

    #[test]
    fn loopback_hosts() {
        for host in [
            "127.0.0.1",
            "127.1.2.3",
            "127.255.255.254",
            "::1",
            "[::1]",
            "localhost",
            "LocalHost",
            "localhost.",
            " 127.0.0.1 ",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in [
            "dc1.example.jp",
            "10.0.0.5",
            "128.0.0.1",
            "0.0.0.0",
            "::",
            "::ffff:10.0.0.1",
            "2001:db8::1",
            "localhost.example.jp",
            "mylocalhost",
            "",
        ] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }

    #[test]
    fn default_is_start_tls_for_a_remote_host() {
        assert_eq!(
            server(&["dc1.example.jp"], None).effective_encryption(),
            Encryption::StartTls
        );
        assert_eq!(
            server(&["10.0.0.5"], None).effective_encryption(),
            Encryption::StartTls
        );
        // One remote address among loopback ones is enough: the list is tried in order.
        assert_eq!(
            server(&["127.0.0.1", "dc2.example.jp"], None).effective_encryption(),
            Encryption::StartTls
        );
        assert_eq!(
            server(&[], None).effective_encryption(),
            Encryption::StartTls
        );
        assert!(
            server(&["dc1.example.jp"], None)
                .cleartext_hosts()
                .is_empty()
        );
    }

    #[test]
    fn default_stays_none_for_loopback() {
        for hosts in [&["127.0.0.1"][..], &["::1"], &["localhost", "127.0.0.2"]] {
            let s = server(hosts, None);
            assert_eq!(s.effective_encryption(), Encryption::None, "{hosts:?}");
            assert!(s.cleartext_hosts().is_empty(), "{hosts:?}");
        }
    }

    #[test]
    fn written_encryption_wins() {
        let s = server(&["127.0.0.1"], Some(Encryption::Ldaps));
        assert_eq!(s.effective_encryption(), Encryption::Ldaps);
        assert_eq!(s.effective_port(), 636);
        let s = server(&["dc1.example.jp"], Some(Encryption::None));
        assert_eq!(s.effective_encryption(), Encryption::None);
        assert_eq!(s.effective_port(), 389);
    }

    #[test]
    fn explicit_none_to_a_remote_host_is_cleartext() {
        let s = server(
            &["dc1.example.jp", "127.0.0.1", "10.0.0.5"],
            Some(Encryption::None),
        );
        assert_eq!(s.cleartext_hosts(), vec!["dc1.example.jp", "10.0.0.5"]);
        let s = server(&["localhost"], Some(Encryption::None));
        assert!(s.cleartext_hosts().is_empty());
        let s = server(&["dc1.example.jp"], Some(Encryption::StartTls));
        assert!(s.cleartext_hosts().is_empty());
    }
}
