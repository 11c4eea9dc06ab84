//! A real Active Directory domain controller for tests: Samba AD DC from the Debian packages,
//! provisioned into a temporary directory by `testenv/peers/samba_start.sh`.
//!
//! Each DC runs in its **own network namespace** (`unshare -n`, listening on 127.0.0.1 there)
//! and is reached through `netns_forward.py`, which listens on a per-DC loopback address on the
//! host (`127.a.b.c`, no alias added to `lo`) with the standard ports 389/636/3268/3269/88 and
//! relays each connection into the namespace. Several domains (forests) run at once without
//! colliding; if a standard port is taken on that address, the forwarder falls back to
//! kernel-chosen ports, which [`SambaDc::ldap_url`] and friends then carry.
//!
//! TLS: a private CA per DC and a server certificate whose subjectAltName carries the DC's
//! host name and the client-side IP, so LDAPS and StartTLS verify against [`SambaDc::ca_file`]
//! (rustls included). A service account `svc-dirsync` (plain user, known password) is created
//! for sync binds.
//!
//! Kerberos: the KDC (TCP) is forwarded like LDAP and [`SambaDc::krb5_conf`] points at it;
//! [`SambaDc::add_ldap_spns`] registers `ldap/<ip>` and `ldap/<fqdn>` (no DNS update service
//! runs here to do it), [`SambaDc::export_keytab`] writes an account's keys to a keytab, and
//! [`SambaDc::require_strong_auth`] switches `ldap server require strong auth` (restart).
//!
//! The helpers drive the OpenLDAP command-line tools (`ldapadd`, `ldapmodify`, `ldapsearch`)
//! as Administrator — writes over LDAPS, because `unicodePwd` needs an encrypted connection —
//! and `samba-tool` where LDAP alone is clumsy (ACLs). Everything is stopped by PID and the
//! directory removed on drop.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use crate::error::{io, spawn};
use crate::{Error, Result, peers_dir, run_script, temp_dir};

/// Password given to users made by [`SambaDc::add_user`] unless changed with
/// [`SambaDc::set_password`].
pub const DEFAULT_USER_PW: &str = "User#Passw0rd1";

/// Set to `1` to skip the Samba tests on purpose (they then say so on stderr).
pub const SKIP_ENV: &str = "DIRSYNC_SKIP_SAMBA";

/// True when the Samba tests were switched off explicitly (`DIRSYNC_SKIP_SAMBA=1`); prints a
/// notice naming the test. Missing Samba packages are *not* a reason to skip: then
/// [`SambaDc::start`] fails and says how to install them.
pub fn skip_samba(test: &str) -> bool {
    let skip = std::env::var(SKIP_ENV).is_ok_and(|v| v == "1");
    if skip {
        eprintln!("SKIPPED {test}: {SKIP_ENV}=1 (Samba AD tests switched off)");
    }
    skip
}

/// Checks that we are root and the Samba AD DC packages are installed (or can be installed
/// right now, which `samba_start.sh` then does, system services kept stopped).
pub fn samba_available() -> Result<()> {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    if !root {
        return Err(Error::SambaNeedsRoot);
    }
    let installed = which("samba") && which("samba-tool") && which("ldapsearch");
    let schema = std::path::Path::new("/usr/share/samba/setup/ad-schema").is_dir();
    if installed && schema {
        return Ok(());
    }
    if which("apt-get") {
        return Ok(()); // samba_start.sh installs the packages (system services stay stopped)
    }
    Err(Error::NotInstalled {
        what: "the Samba AD DC".into(),
        hint: format!(
            "need samba, samba-ad-dc, samba-ad-provision, ldap-utils, ...: run \
             `scripts/install-test-deps` as root (CI does). To skip these tests on purpose set \
             {SKIP_ENV}=1."
        ),
    })
}

fn which(cmd: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|d| d.join(cmd).is_file()))
        .unwrap_or(false)
        || ["/usr/sbin", "/sbin"]
            .iter()
            .any(|d| std::path::Path::new(d).join(cmd).is_file())
}

/// The client-side loopback address for the next DC of this process: 127.a.b.c with a/b from
/// the PID (distinct across concurrent test processes, e.g. nextest) and c from a counter.
fn next_ip() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id();
    let a = 64 + (pid % 190);
    let b = (pid / 190) % 256;
    let c = 2 + (n % 250);
    format!("127.{a}.{b}.{c}")
}

/// `KEY=value` lines of the env file; strips one level of `'…'` / `"…"` quoting.
fn parse_env_quoted(text: &str) -> std::collections::HashMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| {
            let v = v.trim();
            let v = v
                .strip_prefix('\'')
                .and_then(|x| x.strip_suffix('\''))
                .or_else(|| v.strip_prefix('"').and_then(|x| x.strip_suffix('"')))
                .unwrap_or(v);
            (k.trim().to_string(), v.to_string())
        })
        .collect()
}

/// A user made by [`SambaDc::add_user`].
#[derive(Debug, Clone)]
pub struct AdUser {
    /// sAMAccountName (also the CN).
    pub name: String,
    pub dn: String,
    pub upn: String,
    /// objectGUID in its text form (first three groups little-endian).
    pub object_guid: String,
}

/// What [`SambaDc::load_users`] loaded and how long it took.
#[derive(Debug, Clone)]
pub struct LoadStats {
    pub users: usize,
    pub groups: usize,
    /// `OU=people,<base>`: users are `CN=userNNNNNN,OU=people,<base>` (disabled, no password).
    pub people_dn: String,
    /// `OU=groups,<base>`: groups `CN=groupNNNNN,…`; user i is in group (i mod groups).
    pub groups_dn: String,
    pub elapsed: Duration,
}

/// A running Samba AD DC (one forest, one domain) in its own network namespace.
pub struct SambaDc {
    /// Client-side loopback address (127.a.b.c) the forwarder listens on.
    pub ip: String,
    /// What clients put in URLs: the same as `ip` (the DC's DNS name is not resolvable).
    pub host: String,
    /// The DC's FQDN (`dcN.example.test`), in the certificate's SAN.
    pub hostname: String,
    pub ldap_port: u16,
    pub ldaps_port: u16,
    /// Global catalog (3268) as seen by clients.
    pub gc_port: u16,
    /// Kerberos KDC (TCP only) as seen by clients; see `krb5_conf`.
    pub kdc_port: u16,
    /// `ldap://ip:389` (StartTLS works on it).
    pub ldap_url: String,
    /// `ldaps://ip:636`.
    pub ldaps_url: String,
    /// `DC=example,DC=test`.
    pub base_dn: String,
    /// `EXAMPLE.TEST`.
    pub realm: String,
    /// NetBIOS domain name, `EXAMPLE`.
    pub netbios: String,
    pub admin_dn: String,
    pub admin_pw: String,
    /// Sync service account `CN=svc-dirsync,CN=Users,<base>`: a plain user.
    pub svc_dn: String,
    /// `svc-dirsync@example.test` (binds by UPN work too).
    pub svc_upn: String,
    pub svc_pw: String,
    /// PEM of the private CA that signed the DC's certificate.
    pub ca_file: PathBuf,
    /// The DC's smb.conf (for `samba-tool -s`).
    pub smb_conf: PathBuf,
    /// A krb5.conf pointing at this DC's KDC (`KRB5_CONFIG`).
    pub krb5_conf: PathBuf,
    /// Wall time of [`SambaDc::start`] (provision + start + ready + service account).
    pub startup: Duration,
    pid: u32,
    forwarder_pid: Option<u32>,
    dir: tempfile::TempDir,
}

impl SambaDc {
    /// Provisions and starts a DC for `realm` (e.g. `EXAMPLE.TEST`) with NetBIOS domain
    /// `netbios` (e.g. `EXAMPLE`). Takes about 5 s (provisioning dominates).
    pub fn start(realm: &str, netbios: &str) -> Result<SambaDc> {
        samba_available()?;
        let t0 = Instant::now();
        let dir = temp_dir("dirsync-samba-")?;
        let ip = next_ip();
        let envs = [
            ("SAMBA_IP", ip.clone()),
            ("SAMBA_DIR", dir.path().join("samba").display().to_string()),
            ("SAMBA_REALM", realm.to_string()),
            ("SAMBA_DOMAIN", netbios.to_string()),
            ("SAMBA_NETNS", "1".to_string()),
            ("SAMBA_FRESH", "1".to_string()),
        ];
        let out = run_script("samba_start.sh", &envs, &[])?;
        let env = parse_env_quoted(&out);
        let get = |k: &str| crate::printed("samba_start.sh", &env, &out, k);
        let port = |k: &str| -> Result<u16> { parse_number(k, &get(k)?) };
        let pid: u32 = parse_number("SAMBA_PID", &get("SAMBA_PID")?)?;
        let forwarder_pid = std::fs::read_to_string(dir.path().join("samba/forward.pid"))
            .ok()
            .and_then(|s| s.trim().parse().ok());
        let ldap_port = port("SAMBA_LDAP_PORT")?;
        let ldaps_port = port("SAMBA_LDAPS_PORT")?;
        Ok(SambaDc {
            host: ip.clone(),
            hostname: get("SAMBA_FQDN")?,
            ldap_port,
            ldaps_port,
            gc_port: port("SAMBA_GC_PORT")?,
            kdc_port: port("SAMBA_KDC_PORT")?,
            ldap_url: get("SAMBA_LDAP_URI")?,
            ldaps_url: get("SAMBA_LDAPS_URI")?,
            base_dn: get("SAMBA_BASE")?,
            realm: get("SAMBA_REALM")?,
            netbios: get("SAMBA_DOMAIN")?,
            admin_dn: get("SAMBA_ADMIN_DN")?,
            admin_pw: get("SAMBA_ADMIN_PW")?,
            svc_dn: get("SAMBA_SVC_DN")?,
            svc_upn: get("SAMBA_SVC_UPN")?,
            svc_pw: get("SAMBA_SVC_PW")?,
            ca_file: PathBuf::from(get("SAMBA_CA")?),
            smb_conf: PathBuf::from(get("SAMBA_CONF")?),
            krb5_conf: PathBuf::from(get("KRB5_CONFIG")?),
            startup: t0.elapsed(),
            ip,
            pid,
            forwarder_pid,
            dir,
        })
    }

    /// PID of the samba master process.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// PID of the host-side forwarder.
    pub fn forwarder_pid(&self) -> Option<u32> {
        self.forwarder_pid
    }

    /// The temporary directory holding everything of this DC (gone after drop).
    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    fn samba_dir(&self) -> PathBuf {
        self.dir.path().join("samba")
    }

    fn script_envs(&self) -> Vec<(&'static str, String)> {
        vec![
            ("SAMBA_IP", self.ip.clone()),
            ("SAMBA_DIR", self.samba_dir().display().to_string()),
        ]
    }

    /// Stops the DC (the data stays; [`SambaDc::restart`] brings it back).
    pub fn stop(&self) -> Result<()> {
        run_script("samba_stop.sh", &self.script_envs(), &[]).map(|_| ())
    }

    /// Starts the stopped DC again with the same data and address (ports may differ if the
    /// standard ones were taken meanwhile: the returned DC carries the current ones).
    pub fn restart(&mut self) -> Result<()> {
        let out = run_script("samba_start.sh", &self.script_envs(), &[])?;
        let env = parse_env_quoted(&out);
        self.adopt_env(&env)
    }

    /// Takes over the PID, ports and URLs a (re)start of the DC wrote to its env file: a
    /// restart may have moved the DC to other ports.
    fn adopt_env(&mut self, env: &std::collections::HashMap<String, String>) -> Result<()> {
        let get = |k: &str| env.get(k).cloned().unwrap_or_default();
        self.pid = parse_number("SAMBA_PID", &get("SAMBA_PID"))?;
        self.forwarder_pid = std::fs::read_to_string(self.samba_dir().join("forward.pid"))
            .ok()
            .and_then(|s| s.trim().parse().ok());
        self.ldap_port = parse_number("SAMBA_LDAP_PORT", &get("SAMBA_LDAP_PORT"))?;
        self.ldaps_port = parse_number("SAMBA_LDAPS_PORT", &get("SAMBA_LDAPS_PORT"))?;
        self.ldap_url = get("SAMBA_LDAP_URI");
        self.ldaps_url = get("SAMBA_LDAPS_URI");
        self.kdc_port = parse_number("SAMBA_KDC_PORT", &get("SAMBA_KDC_PORT"))?;
        Ok(())
    }

    /// Registers the LDAP service principals a Kerberos client asks for, `ldap/<ip>` (what the
    /// tests write in `addresses`) and `ldap/<fqdn>`, on the DC's machine account. A
    /// production DC registers `ldap/<fqdn>` itself (samba_spnupdate, run by the DNS update
    /// service this harness does not start).
    pub fn add_ldap_spns(&self) -> Result<()> {
        let account = format!("{}$", self.hostname.split('.').next().unwrap_or_default());
        for spn in [
            format!("ldap/{}", self.ip),
            format!("ldap/{}", self.hostname),
        ] {
            self.samba_tool(&["spn", "add", &spn, &account])?;
        }
        Ok(())
    }

    /// Exports the Kerberos keys of `principal` (`name@REALM`) into the new keytab
    /// `<DC dir>/<file_name>` (`samba-tool domain exportkeytab`, on the DC's database);
    /// returns its path.
    pub fn export_keytab(&self, principal: &str, file_name: &str) -> Result<PathBuf> {
        let path = self.dir.path().join(file_name);
        let mut cmd = Command::new("samba-tool");
        cmd.args(["domain", "exportkeytab"])
            .arg(&path)
            .arg(format!("--principal={principal}"))
            .arg("-s")
            .arg(&self.smb_conf);
        run_with_stdin(cmd, "samba-tool domain exportkeytab", None)?;
        Ok(path)
    }

    /// Sets `ldap server require strong auth` and restarts the DC (ports may change). With
    /// `true` a simple bind is refused on plain LDAP (only over TLS) and a SASL bind must sign
    /// or seal, like a Windows domain that requires LDAP signing. The harness's own LDAP
    /// helpers bind simply over `ldap://`: make changes before switching it on.
    pub fn require_strong_auth(&mut self, strong: bool) -> Result<()> {
        let key = "ldap server require strong auth";
        let text = std::fs::read_to_string(&self.smb_conf).map_err(io("smb.conf"))?;
        let mut out = String::new();
        for line in text.lines() {
            let setting = line.split('=').next().unwrap_or_default().trim();
            if setting.eq_ignore_ascii_case(key) {
                continue;
            }
            out.push_str(line);
            out.push('\n');
            if line.trim() == "[global]" {
                out.push_str(&format!(
                    "\t{key} = {}\n",
                    if strong { "yes" } else { "no" }
                ));
            }
        }
        std::fs::write(&self.smb_conf, out).map_err(io("smb.conf"))?;
        self.stop()?;
        self.restart()
    }

    /// Environment for the OpenLDAP tools: verify against our CA (overrides /etc/ldap/ldap.conf).
    fn tool_env(&self, cmd: &mut Command) {
        cmd.env("LDAPTLS_CACERT", &self.ca_file)
            .env("LDAPTLS_REQCERT", "demand");
    }

    /// Runs an OpenLDAP tool as Administrator against `url` with `ldif` on stdin.
    fn admin_tool(
        &self,
        tool: &str,
        url: &str,
        extra: &[&str],
        ldif: Option<&str>,
    ) -> Result<String> {
        let mut cmd = Command::new(tool);
        cmd.args(["-x", "-H", url, "-D", &self.admin_dn, "-w", &self.admin_pw])
            .args(extra);
        self.tool_env(&mut cmd);
        run_with_stdin(cmd, tool, ldif)
    }

    /// Applies LDIF (add records) as Administrator over LDAPS.
    pub fn add(&self, ldif: &str) -> Result<()> {
        self.admin_tool("ldapadd", &self.ldaps_url, &[], Some(ldif))
            .map(|_| ())
    }

    /// Applies an LDIF change file (changetype: modify / delete / modrdn) over LDAPS.
    pub fn modify(&self, ldif: &str) -> Result<()> {
        self.admin_tool("ldapmodify", &self.ldaps_url, &[], Some(ldif))
            .map(|_| ())
    }

    /// `ldapsearch` as Administrator with paged results (`-E pr=500/noprompt`), LDIF
    /// unwrapped; returns the output (entries, continuation references, and comments).
    pub fn ldapsearch(&self, base: &str, filter: &str, attrs: &[&str]) -> Result<String> {
        let mut args = vec![
            "-LLL",
            "-o",
            "ldif-wrap=no",
            "-E",
            "pr=500/noprompt",
            "-b",
            base,
            filter,
        ];
        args.extend_from_slice(attrs);
        self.admin_tool("ldapsearch", &self.ldap_url, &args, None)
    }

    /// Base-scope read of one entry.
    fn read_base(&self, dn: &str, attrs: &[&str]) -> Result<String> {
        let mut args = vec!["-LLL", "-o", "ldif-wrap=no", "-s", "base", "-b", dn];
        args.push("(objectClass=*)");
        args.extend_from_slice(attrs);
        self.admin_tool("ldapsearch", &self.ldap_url, &args, None)
    }

    /// DN of the object with this sAMAccountName (or `name` itself if it is already a DN).
    pub fn dn_of(&self, name: &str) -> Result<String> {
        if name.contains('=') {
            return Ok(name.to_string());
        }
        let out = self.ldapsearch(
            &self.base_dn,
            &format!("(sAMAccountName={})", ldap_escape(name)),
            &["1.1"],
        )?;
        ldif_values(&out, "dn")
            .into_iter()
            .next()
            .map(|v| String::from_utf8_lossy(&v).into_owned())
            .ok_or_else(|| Error::NoSuchObject {
                name: name.to_string(),
            })
    }

    /// Values of `attr` of the entry `dn` (raw bytes; base64 in LDIF is decoded).
    pub fn values(&self, dn: &str, attr: &str) -> Result<Vec<Vec<u8>>> {
        let out = self.read_base(dn, &[attr])?;
        Ok(ldif_values(&out, attr))
    }

    /// First value of `attr` as text, if any.
    pub fn value(&self, dn: &str, attr: &str) -> Result<Option<String>> {
        Ok(self
            .values(dn, attr)?
            .into_iter()
            .next()
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    fn parent_dn(&self, ou: Option<&str>, default: &str) -> String {
        match ou {
            None => format!("{default},{}", self.base_dn),
            Some(p) if p.contains('=') => p.to_string(),
            Some(name) => format!("OU={name},{}", self.base_dn),
        }
    }

    /// Creates an enabled user `CN=<name>` (sAMAccountName `name`) with password
    /// [`DEFAULT_USER_PW`], in `ou` (an OU name under the base, or a container DN; default
    /// `CN=Users`). `upn` defaults to `name@<realm lower case>`; `mail` is left out when None.
    pub fn add_user(
        &self,
        name: &str,
        given: &str,
        surname: &str,
        mail: Option<&str>,
        upn: Option<&str>,
        ou: Option<&str>,
    ) -> Result<AdUser> {
        let dn = format!("CN={},{}", dn_escape(name), self.parent_dn(ou, "CN=Users"));
        let upn = upn
            .map(str::to_string)
            .unwrap_or_else(|| format!("{name}@{}", self.realm.to_lowercase()));
        let mut ldif = format!("dn: {dn}\nobjectClass: user\n");
        ldif += &ldif_line("sAMAccountName", name.as_bytes());
        ldif += &ldif_line("userPrincipalName", upn.as_bytes());
        ldif += &ldif_line("givenName", given.as_bytes());
        ldif += &ldif_line("sn", surname.as_bytes());
        ldif += &ldif_line("displayName", format!("{given} {surname}").as_bytes());
        if let Some(mail) = mail {
            ldif += &ldif_line("mail", mail.as_bytes());
        }
        ldif += &ldif_line("unicodePwd", &unicode_pwd(DEFAULT_USER_PW));
        ldif += "userAccountControl: 512\n";
        self.add(&ldif)?;
        let object_guid = self.object_guid(&dn)?;
        Ok(AdUser {
            name: name.to_string(),
            dn,
            upn,
            object_guid,
        })
    }

    /// Replaces all values of `attr` (no values = remove the attribute).
    pub fn set_attr(&self, dn: &str, attr: &str, values: &[&str]) -> Result<()> {
        let raw: Vec<&[u8]> = values.iter().map(|v| v.as_bytes()).collect();
        self.set_attr_bytes(dn, attr, &raw)
    }

    /// Replaces all values of a (possibly binary) attribute, e.g. `mS-DS-ConsistencyGuid`.
    pub fn set_attr_bytes(&self, dn: &str, attr: &str, values: &[&[u8]]) -> Result<()> {
        let mut ldif = format!("dn: {dn}\nchangetype: modify\nreplace: {attr}\n");
        for v in values {
            ldif += &ldif_line(attr, v);
        }
        ldif += "-\n";
        self.modify(&ldif)
    }

    /// userAccountControl of a user (by name or DN).
    pub fn user_account_control(&self, user: &str) -> Result<u32> {
        let dn = self.dn_of(user)?;
        let value = self
            .value(&dn, "userAccountControl")?
            .ok_or_else(|| missing(&dn, "userAccountControl"))?;
        parse_number("userAccountControl", &value)
    }

    fn set_disabled(&self, user: &str, disabled: bool) -> Result<()> {
        let dn = self.dn_of(user)?;
        let uac = self.user_account_control(&dn)?;
        let new = if disabled { uac | 0x2 } else { uac & !0x2 };
        self.set_attr(&dn, "userAccountControl", &[&new.to_string()])
    }

    /// Sets ACCOUNTDISABLE (0x2) in userAccountControl.
    pub fn disable_user(&self, user: &str) -> Result<()> {
        self.set_disabled(user, true)
    }

    /// Clears ACCOUNTDISABLE (0x2) in userAccountControl.
    pub fn enable_user(&self, user: &str) -> Result<()> {
        self.set_disabled(user, false)
    }

    /// Deletes an entry by DN (it becomes a tombstone under `CN=Deleted Objects`).
    pub fn delete(&self, dn: &str) -> Result<()> {
        self.modify(&format!("dn: {dn}\nchangetype: delete\n"))
    }

    /// Deletes a user by name (sAMAccountName) or DN.
    pub fn delete_user(&self, user: &str) -> Result<()> {
        let dn = self.dn_of(user)?;
        self.delete(&dn)
    }

    /// Creates a global security group `CN=<name>,CN=Users,<base>`; returns its DN.
    pub fn add_group(&self, name: &str) -> Result<String> {
        self.add_group_in(name, None)
    }

    /// Creates a global security group in `ou` (OU name or container DN); returns its DN.
    pub fn add_group_in(&self, name: &str, ou: Option<&str>) -> Result<String> {
        let dn = format!("CN={},{}", dn_escape(name), self.parent_dn(ou, "CN=Users"));
        let mut ldif = format!("dn: {dn}\nobjectClass: group\ngroupType: -2147483646\n");
        ldif += &ldif_line("sAMAccountName", name.as_bytes());
        self.add(&ldif)?;
        Ok(dn)
    }

    fn change_members(&self, group: &str, members: &[&str], op: &str) -> Result<()> {
        let gdn = self.dn_of(group)?;
        let mut ldif = format!("dn: {gdn}\nchangetype: modify\n{op}: member\n");
        for m in members {
            ldif += &ldif_line("member", self.dn_of(m)?.as_bytes());
        }
        ldif += "-\n";
        self.modify(&ldif)
    }

    /// Adds members (names or DNs) to a group (name or DN).
    pub fn add_members(&self, group: &str, members: &[&str]) -> Result<()> {
        self.change_members(group, members, "add")
    }

    /// Removes members (names or DNs) from a group (name or DN).
    pub fn remove_members(&self, group: &str, members: &[&str]) -> Result<()> {
        self.change_members(group, members, "delete")
    }

    /// Deletes a group by name or DN.
    pub fn delete_group(&self, group: &str) -> Result<()> {
        let dn = self.dn_of(group)?;
        self.delete(&dn)
    }

    /// Creates `OU=<name>,<base>`; for a nested OU pass its full DN (`OU=b,OU=a,<base>`).
    /// Returns the DN.
    pub fn add_ou(&self, name: &str) -> Result<String> {
        let dn = if name.to_ascii_uppercase().starts_with("OU=") {
            name.to_string()
        } else {
            format!("OU={},{}", dn_escape(name), self.base_dn)
        };
        self.add(&format!("dn: {dn}\nobjectClass: organizationalUnit\n"))?;
        Ok(dn)
    }

    /// Moves an entry under `new_parent` (keeps its RDN); returns the new DN.
    pub fn move_to(&self, dn: &str, new_parent: &str) -> Result<String> {
        let rdn = split_rdn(dn).ok_or_else(|| Error::InvalidDn { dn: dn.to_string() })?;
        self.modify(&format!(
            "dn: {dn}\nchangetype: modrdn\nnewrdn: {rdn}\ndeleteoldrdn: 1\nnewsuperior: {new_parent}\n"
        ))?;
        Ok(format!("{rdn},{new_parent}"))
    }

    /// Renames an entry within its container (`new_rdn` like `CN=New Name`); returns the new DN.
    pub fn rename(&self, dn: &str, new_rdn: &str) -> Result<String> {
        self.modify(&format!(
            "dn: {dn}\nchangetype: modrdn\nnewrdn: {new_rdn}\ndeleteoldrdn: 1\n"
        ))?;
        let parent = dn
            .split_once(',')
            .map(|(_, p)| p.to_string())
            .unwrap_or_default();
        Ok(format!("{new_rdn},{parent}"))
    }

    /// objectGUID of `dn` in the text form (first three groups little-endian).
    pub fn object_guid(&self, dn: &str) -> Result<String> {
        let raw = self
            .values(dn, "objectGUID")?
            .into_iter()
            .next()
            .ok_or_else(|| missing(dn, "objectGUID"))?;
        ad_guid_text(&raw).ok_or_else(|| Error::Malformed {
            dn: dn.to_string(),
            attr: "objectGUID".into(),
            detail: format!("{} bytes", raw.len()),
        })
    }

    /// objectSid of `dn` as `S-1-5-21-…`.
    pub fn object_sid(&self, dn: &str) -> Result<String> {
        let raw = self
            .values(dn, "objectSid")?
            .into_iter()
            .next()
            .ok_or_else(|| missing(dn, "objectSid"))?;
        ad_sid_text(&raw).ok_or_else(|| Error::Malformed {
            dn: dn.to_string(),
            attr: "objectSid".into(),
            detail: format!("{} bytes that are no SID", raw.len()),
        })
    }

    /// Sets a user's password (unicodePwd over LDAPS, as Administrator).
    pub fn set_password(&self, user: &str, pw: &str) -> Result<()> {
        let dn = self.dn_of(user)?;
        let ldif = format!(
            "dn: {dn}\nchangetype: modify\nreplace: unicodePwd\n{}-\n",
            ldif_line("unicodePwd", &unicode_pwd(pw))
        );
        self.modify(&ldif)
    }

    /// Grants "Replicating Directory Changes" on the domain root to `who` (name or DN), so it
    /// can use DirSync without the OBJECT_SECURITY flag (`samba-tool dsacl set`).
    pub fn grant_dirsync(&self, who: &str) -> Result<()> {
        let dn = self.dn_of(who)?;
        let sid = self.object_sid(&dn)?;
        self.samba_tool(&[
            "dsacl",
            "set",
            &format!("--objectdn={}", self.base_dn),
            &format!("--sddl=(OA;;CR;1131f6aa-9c07-11d1-f79f-00c04fc2dcd2;;{sid})"),
        ])
        .map(|_| ())
    }

    /// Lets `who` (name or DN) see tombstones: List Contents + Read Property on
    /// `CN=Deleted Objects,<base>`, inherited by the tombstones in it. Without it a non-admin
    /// account gets no deleted objects, neither from DirSync (OBJECT_SECURITY) nor with Show
    /// Deleted. The Windows equivalent is `dsacls "CN=Deleted Objects,<base>" /takeownership`
    /// then `/g <account>:LCRP`. `samba-tool dsacl` cannot find the (deleted) container, so
    /// this edits the descriptor in sam.ldb directly with the show_deleted control.
    pub fn grant_deleted_objects_read(&self, who: &str) -> Result<()> {
        let sid = self.object_sid(&self.dn_of(who)?)?;
        let sam = self.samba_dir().join("private/sam.ldb");
        let container = format!("CN=Deleted Objects,{}", self.base_dn);
        let ldb = |tool: &str, args: &[&str], stdin: Option<&str>| {
            let mut cmd = Command::new(tool);
            cmd.arg("-H")
                .arg(&sam)
                .arg("--controls=show_deleted:1")
                .args(args);
            run_with_stdin(cmd, tool, stdin)
        };
        let out = ldb(
            "ldbsearch",
            &["-b", &container, "-s", "base", "nTSecurityDescriptor"],
            None,
        )?;
        // LDIF folds long values: a continuation line starts with one space.
        let unfolded = out.replace("\n ", "");
        let sddl = unfolded
            .lines()
            .find_map(|l| l.strip_prefix("nTSecurityDescriptor: "))
            .ok_or_else(|| Error::UnexpectedOutput {
                what: "ldbsearch".into(),
                detail: format!("no SDDL descriptor on {container}:\n{out}"),
            })?;
        let ace = format!("(A;CI;LCRP;;;{sid})");
        // The DACL ends where the SACL ("S:") begins, or at the end.
        let new_sddl = match sddl.find("S:") {
            Some(at) => format!("{}{ace}{}", &sddl[..at], &sddl[at..]),
            None => format!("{sddl}{ace}"),
        };
        let ldif = format!(
            "dn: {container}\nchangetype: modify\nreplace: nTSecurityDescriptor\nnTSecurityDescriptor: {new_sddl}\n"
        );
        ldb("ldbmodify", &[], Some(&ldif)).map(|_| ())
    }

    /// Runs `samba-tool <args> -s <smb.conf> -H <ldap_url> -U Administrator%…`.
    pub fn samba_tool(&self, args: &[&str]) -> Result<String> {
        let mut cmd = Command::new("samba-tool");
        cmd.args(args)
            .arg("-s")
            .arg(&self.smb_conf)
            .args(["-H", &self.ldap_url, "--use-kerberos=off", "-U"])
            .arg(format!("Administrator%{}", self.admin_pw));
        run_with_stdin(cmd, "samba-tool", None)
    }

    /// Makes the DC hand every password change to `hook` through `samba-tool user
    /// syncpasswords` (gpg mode of `samba_syncpw_setup.sh`: a GPG key without passphrase in
    /// the DC directory, `password hash gpg key ids`, restart with GNUPGHOME, cache
    /// initialised with `--script=hook --decrypt-samba-gpg`). `attributes` are the
    /// `--attributes` list (it must contain `virtualClearTextUTF8`). Only passwords set after
    /// this call are captured. The DC restarts: ports may change and are refreshed here.
    /// Then run [`SambaDc::syncpasswords_once`] after changes.
    pub fn enable_syncpasswords(
        &mut self,
        hook: &std::path::Path,
        attributes: &[&str],
    ) -> Result<()> {
        let mut envs = self.script_envs();
        envs.push(("SYNCPW_HOOK", hook.display().to_string()));
        envs.push(("SYNCPW_ATTRS", attributes.join(",")));
        run_script("samba_syncpw_setup.sh", &envs, &["gpg"])?;
        let env_text =
            std::fs::read_to_string(self.samba_dir().join("env")).map_err(io("samba env file"))?;
        let env = parse_env_quoted(&env_text);
        self.adopt_env(&env)
    }

    /// One `samba-tool user syncpasswords --no-wait` pass (the hook runs once per changed
    /// account); returns samba-tool's output (which includes the hook's replies).
    pub fn syncpasswords_once(&self) -> Result<String> {
        let mut cmd = Command::new("samba-tool");
        cmd.args(["user", "syncpasswords", "--no-wait", "-s"])
            .arg(&self.smb_conf)
            .env("GNUPGHOME", self.samba_dir().join("gnupg"));
        run_with_stdin(cmd, "samba-tool user syncpasswords", None)
    }

    /// A user changes their own password over LDAPS (bind as the user with `old`; unicodePwd
    /// delete old + add new, UTF-16LE quoted), as Windows clients do.
    pub fn change_own_password(&self, user: &str, old: &str, new: &str) -> Result<()> {
        let dn = self.dn_of(user)?;
        let ldif = format!(
            "dn: {dn}\nchangetype: modify\ndelete: unicodePwd\n{}-\nadd: unicodePwd\n{}-\n",
            ldif_line("unicodePwd", &unicode_pwd(old)),
            ldif_line("unicodePwd", &unicode_pwd(new))
        );
        let mut cmd = Command::new("ldapmodify");
        cmd.args(["-x", "-H", &self.ldaps_url, "-D", &dn, "-y"]);
        // The bind password through a 0600 file, not argv (visible in ps).
        let pw_file =
            tempfile::NamedTempFile::new_in(self.samba_dir()).map_err(io("password file"))?;
        std::fs::write(pw_file.path(), old.as_bytes()).map_err(io("password file"))?;
        cmd.arg(pw_file.path());
        self.tool_env(&mut cmd);
        run_with_stdin(cmd, "ldapmodify (own password change)", Some(&ldif)).map(|_| ())
    }

    /// Bulk-loads `users` users and `groups` groups (`gen_ldap_data.py --ad --with-ous`, one
    /// `ldapadd` over plain LDAP). Users are disabled and have no password. Once per DC.
    pub fn load_users(&self, users: usize, groups: usize) -> Result<LoadStats> {
        let people_dn = format!("OU=people,{}", self.base_dn);
        let groups_dn = format!("OU=groups,{}", self.base_dn);
        let probe = self.ldapsearch(&self.base_dn, "(ou=people)", &["1.1"])?;
        if probe.contains("dn: ") {
            return Err(Error::AlreadyLoaded { people_dn });
        }
        let output = Command::new("python3")
            .arg(peers_dir().join("gen_ldap_data.py"))
            .arg(users.to_string())
            .arg(groups.to_string())
            .args(["--ad", "--with-ous", "--base", &self.base_dn])
            .output()
            .map_err(spawn("gen_ldap_data.py"))?;
        if !output.status.success() {
            return Err(Error::Command {
                what: "gen_ldap_data.py".into(),
                status: output.status,
                output: String::from_utf8_lossy(&output.stderr).into_owned(),
            });
        }
        let ldif = self.samba_dir().join(format!("load-{users}-{groups}.ldif"));
        std::fs::write(&ldif, &output.stdout).map_err(io(ldif.display().to_string()))?;
        let file = ldif.display().to_string();
        let t0 = Instant::now();
        self.admin_tool("ldapadd", &self.ldap_url, &["-f", &file], None)?;
        Ok(LoadStats {
            users,
            groups,
            people_dn,
            groups_dn,
            elapsed: t0.elapsed(),
        })
    }
}

impl Drop for SambaDc {
    fn drop(&mut self) {
        let _ = run_script("samba_stop.sh", &self.script_envs(), &["--purge"]);
    }
}

fn run_with_stdin(mut cmd: Command, what: &str, stdin: Option<&str>) -> Result<String> {
    use std::io::Write as _;
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(spawn(what))?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes())
            .map_err(io(format!("{what} stdin")))?;
    }
    let output = child.wait_with_output().map_err(io(what))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        return Err(Error::Command {
            what: what.to_string(),
            status: output.status,
            output: format!("{stdout}{}", String::from_utf8_lossy(&output.stderr)),
        });
    }
    Ok(stdout)
}

/// `value` of the variable or attribute `what` as a number.
fn parse_number<T: std::str::FromStr<Err = std::num::ParseIntError>>(
    what: &str,
    value: &str,
) -> Result<T> {
    value.parse().map_err(|source| Error::Parse {
        what: what.to_string(),
        value: value.to_string(),
        source,
    })
}

/// The error for an entry `dn` without `attr`.
fn missing(dn: &str, attr: &str) -> Error {
    Error::MissingAttribute {
        dn: dn.to_string(),
        attr: attr.to_string(),
    }
}

/// One LDIF attribute line, base64 (`attr:: …`) unless the value is a safe string.
fn ldif_line(attr: &str, value: &[u8]) -> String {
    let safe = !value.is_empty()
        && value
            .iter()
            .all(|b| (0x20..0x7f).contains(b) && *b != b'\n' && *b != b'\r')
        && !matches!(value[0], b' ' | b':' | b'<')
        && value.last() != Some(&b' ');
    if safe {
        format!("{attr}: {}\n", String::from_utf8_lossy(value))
    } else {
        format!("{attr}:: {}\n", B64.encode(value))
    }
}

/// `"pw"` in UTF-16LE, as AD wants it in unicodePwd.
fn unicode_pwd(pw: &str) -> Vec<u8> {
    format!("\"{pw}\"")
        .encode_utf16()
        .flat_map(|u| u.to_le_bytes())
        .collect()
}

/// All values of `attr` (case-insensitive, no options) in unwrapped LDIF; `dn` works too.
pub fn ldif_values(ldif: &str, attr: &str) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for line in ldif.lines() {
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        if !name.eq_ignore_ascii_case(attr) {
            continue;
        }
        if let Some(b64) = rest.strip_prefix(':') {
            if let Ok(v) = B64.decode(b64.trim()) {
                out.push(v);
            }
        } else {
            out.push(rest.strip_prefix(' ').unwrap_or(rest).as_bytes().to_vec());
        }
    }
    out
}

/// GUID text form of a 16-byte objectGUID: the first three groups little-endian.
pub fn ad_guid_text(b: &[u8]) -> Option<String> {
    let b: &[u8; 16] = b.try_into().ok()?;
    Some(format!(
        "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
        b[3],
        b[2],
        b[1],
        b[0],
        b[5],
        b[4],
        b[7],
        b[6],
        b[8],
        b[9],
        b[10],
        b[11],
        b[12],
        b[13],
        b[14],
        b[15]
    ))
}

/// `S-1-5-21-…` text form of a binary objectSid.
pub fn ad_sid_text(b: &[u8]) -> Option<String> {
    let revision = *b.first()?;
    let count = usize::from(*b.get(1)?);
    let authority = b
        .get(2..8)?
        .iter()
        .fold(0u64, |acc, x| (acc << 8) | u64::from(*x));
    let mut text = format!("S-{revision}-{authority}");
    for i in 0..count {
        let chunk: [u8; 4] = b.get(8 + 4 * i..12 + 4 * i)?.try_into().ok()?;
        text += &format!("-{}", u32::from_le_bytes(chunk));
    }
    (b.len() == 8 + 4 * count).then_some(text)
}

/// First RDN of a DN (honours `\,` escapes).
fn split_rdn(dn: &str) -> Option<&str> {
    let mut escaped = false;
    for (i, c) in dn.char_indices() {
        match c {
            '\\' if !escaped => escaped = true,
            ',' if !escaped => return Some(&dn[..i]),
            _ => escaped = false,
        }
    }
    None
}

/// Escapes a value for use in an RDN (RFC 4514).
fn dn_escape(v: &str) -> String {
    let mut out = String::new();
    for (i, c) in v.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=')
            || (i == 0 && (c == ' ' || c == '#'));
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Escapes a value for use in a search filter (RFC 4515).
fn ldap_escape(v: &str) -> String {
    v.chars()
        .map(|c| match c {
            '*' => "\\2a".to_string(),
            '(' => "\\28".to_string(),
            ')' => "\\29".to_string(),
            '\\' => "\\5c".to_string(),
            '\0' => "\\00".to_string(),
            c => c.to_string(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guid_text_is_little_endian_in_the_first_three_groups() {
        let raw: Vec<u8> = (0u8..16).collect();
        assert_eq!(
            ad_guid_text(&raw).as_deref(),
            Some("03020100-0504-0706-0809-0a0b0c0d0e0f")
        );
        assert_eq!(ad_guid_text(&raw[..15]), None);
    }

    #[test]
    fn sid_text() {
        // S-1-5-21-1-2-3-500
        let mut raw = vec![1u8, 5, 0, 0, 0, 0, 0, 5];
        for sub in [21u32, 1, 2, 3, 500] {
            raw.extend_from_slice(&sub.to_le_bytes());
        }
        assert_eq!(ad_sid_text(&raw).as_deref(), Some("S-1-5-21-1-2-3-500"));
        assert_eq!(ad_sid_text(&raw[..20]), None);
    }

    #[test]
    fn ldif_values_decode_base64_and_plain() {
        let ldif = "dn: CN=a,DC=x\nobjectGUID:: AAECAw==\nCN: a\n\n";
        assert_eq!(ldif_values(ldif, "objectguid"), vec![vec![0u8, 1, 2, 3]]);
        assert_eq!(ldif_values(ldif, "cn"), vec![b"a".to_vec()]);
        assert_eq!(ldif_values(ldif, "dn"), vec![b"CN=a,DC=x".to_vec()]);
    }

    #[test]
    fn ldif_line_base64_for_unsafe_values() {
        assert_eq!(ldif_line("cn", b"abc"), "cn: abc\n");
        assert_eq!(ldif_line("cn", "Zoë".as_bytes()), "cn:: Wm/Dqw==\n");
        assert_eq!(ldif_line("cn", b" x"), "cn:: IHg=\n");
    }

    #[test]
    fn rdn_split_and_escape() {
        assert_eq!(split_rdn("CN=a\\,b,OU=x,DC=y"), Some("CN=a\\,b"));
        assert_eq!(dn_escape("Doe, John"), "Doe\\, John");
        assert_eq!(ldap_escape("a*(b)"), "a\\2a\\28b\\29");
    }

    #[test]
    fn env_file_quotes_are_stripped() {
        let env = parse_env_quoted("A='x y'\nB=\"CN=a,DC=b\"\nC=plain\n");
        assert_eq!(env["A"], "x y");
        assert_eq!(env["B"], "CN=a,DC=b");
        assert_eq!(env["C"], "plain");
    }
}
