//! A deterministic OpenLDAP directory for the scale benchmark (`bench-scale`): users, groups
//! with an average size and a few big groups, and a churn change file.
//!
//! `gen_ldap_data.py` gives every group the same size; issue 5 asks for groups averaging 30
//! members with a few of 5,000, hence this generator. Everything is computed from indexes, so
//! the churn file knows the memberships without keeping the directory in memory.

use std::io::{BufWriter, Write};
use std::path::Path;

use crate::Result;
use crate::error::io;

/// The shape of the generated directory.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub users: usize,
    pub groups: usize,
    /// Average members per group over all groups (big ones included).
    pub avg_members: usize,
    /// The first `big_groups` groups have `big_group_members` members each.
    pub big_groups: usize,
    pub big_group_members: usize,
}

/// The counts of a churn change file.
#[derive(Debug, Clone, Copy, Default)]
pub struct Churn {
    pub modified: usize,
    pub disabled: usize,
    pub deleted: usize,
    pub members_added: usize,
    pub members_removed: usize,
}

impl Churn {
    /// The change record of the `j`-th churned user, counted: 4 in 10 get a new title, 3 the
    /// `disabled` state change (`attr: value`, which differs between OpenLDAP and AD), 3 are
    /// deleted.
    /// A membership change record, counted: `add` adds `user` to `group`, else removes it.
    fn member_record(&mut self, add: bool, group: &str, user: &str) -> String {
        let op = if add {
            self.members_added += 1;
            "add"
        } else {
            self.members_removed += 1;
            "delete"
        };
        format!("dn: {group}\nchangetype: modify\n{op}: member\nmember: {user}\n-\n")
    }

    fn user_record(&mut self, j: usize, dn: &str, disabled: &str) -> String {
        match j % 10 {
            0..=3 => {
                self.modified += 1;
                format!("dn: {dn}\nchangetype: modify\nreplace: title\ntitle: Churned {j}\n-\n")
            }
            4..=6 => {
                self.disabled += 1;
                let attr = disabled.split(':').next().unwrap_or_default();
                format!("dn: {dn}\nchangetype: modify\nreplace: {attr}\n{disabled}\n-\n")
            }
            _ => {
                self.deleted += 1;
                format!("dn: {dn}\nchangetype: delete\n")
            }
        }
    }

    /// LDAP change records in the file (one per user, one per membership change).
    pub fn records(&self) -> usize {
        self.modified + self.disabled + self.deleted + self.members_added + self.members_removed
    }
}

/// `uid=userNNNNNN,ou=people,<base>`, 1-based.
pub fn user_dn(i: usize, base: &str) -> String {
    format!("uid=user{i:06},ou=people,{base}")
}

/// `cn=groupNNNNN,ou=groups,<base>`, 0-based index, 1-based name.
pub fn group_dn(g: usize, base: &str) -> String {
    format!("cn=group{:05},ou=groups,{base}", g + 1)
}

impl Shape {
    /// Members of group `g` (0-based).
    fn size(&self, g: usize) -> usize {
        if g < self.big_groups {
            return self.big_group_members.clamp(1, self.users.max(1));
        }
        let normal = self.groups.saturating_sub(self.big_groups).max(1);
        let rest = (self.groups * self.avg_members)
            .saturating_sub(self.big_groups * self.big_group_members);
        // Spread the remainder over the first groups; groupOfNames needs at least one member.
        let extra = usize::from(g - self.big_groups < rest % normal);
        (rest / normal + extra).clamp(1, self.users.max(1))
    }

    /// The stride and offset that place group `g`'s members: user `(offset + k·stride) mod
    /// users + 1` for `k < size`; distinct because `size·stride ≤ users`.
    fn placement(&self, g: usize) -> (usize, usize, usize) {
        let size = self.size(g);
        let stride = (self.users / size).max(1);
        // A prime step so groups of the same size do not share members.
        let offset = (g * 7919) % self.users.max(1);
        (size, stride, offset)
    }

    /// The 1-based user index of member `k` of group `g`.
    fn member(&self, g: usize, k: usize) -> usize {
        let (_, stride, offset) = self.placement(g);
        (offset + k * stride) % self.users + 1
    }

    /// Total memberships.
    pub fn memberships(&self) -> usize {
        (0..self.groups).map(|g| self.size(g)).sum()
    }

    /// Writes the users and groups as LDIF (ou=people and ou=groups exist already).
    pub fn write_ldif(&self, path: &Path, base: &str) -> Result<()> {
        self.ldif_to(path, base)
            .map_err(io(path.display().to_string()))
    }

    fn ldif_to(&self, path: &Path, base: &str) -> std::io::Result<()> {
        let file = std::fs::File::create(path)?;
        let mut w = BufWriter::with_capacity(1 << 20, file);
        const FIRST: [&str; 8] = [
            "Ada", "Alan", "Grace", "Linus", "Barbara", "Ken", "Radia", "Edsger",
        ];
        const LAST: [&str; 7] = [
            "Lovelace", "Turing", "Hopper", "Liskov", "Ritchie", "Perlman", "Knuth",
        ];
        const TITLES: [&str; 5] = ["Engineer", "Manager", "Analyst", "Director", "Architect"];
        for i in 1..=self.users {
            let (first, last) = (FIRST[i % FIRST.len()], LAST[i % LAST.len()]);
            writeln!(
                w,
                "dn: {dn}\nobjectClass: inetOrgPerson\nuid: user{i:06}\ncn: {first} {last} {i}\n\
                 sn: {last}\ngivenName: {first}\ndisplayName: {first} {last}\n\
                 mail: user{i:06}@example.test\nemployeeNumber: {i}\ntitle: {title}\n\
                 employeeType: true\n",
                dn = user_dn(i, base),
                title = TITLES[i % TITLES.len()],
            )?;
        }
        for g in 0..self.groups {
            writeln!(
                w,
                "dn: {}\nobjectClass: groupOfNames\ncn: group{:05}\ndescription: generated group {}",
                group_dn(g, base),
                g + 1,
                g + 1
            )?;
            for k in 0..self.size(g) {
                writeln!(w, "member: {}", user_dn(self.member(g, k), base))?;
            }
            writeln!(w)?;
        }
        w.flush()
    }

    /// Writes an ldapmodify change file touching `fraction` of the users, spread evenly: 40 %
    /// get a new title, 30 % are disabled (`employeeType: false`), 30 % deleted; plus one
    /// membership change per ten churned users, half additions and half removals, in ordinary
    /// (not big) groups.
    pub fn write_churn(&self, path: &Path, base: &str, fraction: f64) -> Result<Churn> {
        self.churn_to(path, base, fraction)
            .map_err(io(path.display().to_string()))
    }

    fn churn_to(&self, path: &Path, base: &str, fraction: f64) -> std::io::Result<Churn> {
        let n = ((self.users as f64 * fraction).round() as usize).min(self.users);
        let file = std::fs::File::create(path)?;
        let mut w = BufWriter::new(file);
        let mut churn = Churn::default();
        let step = self.users.checked_div(n).unwrap_or(1).max(1);
        let deleted = |i: usize| {
            i >= 1
                && (i - 1).is_multiple_of(step)
                && (i - 1) / step < n
                && ((i - 1) / step) % 10 >= 7
        };
        for j in 0..n {
            let i = 1 + j * step;
            let dn = user_dn(i, base);
            let record = churn.user_record(j, &dn, "employeeType: false");
            writeln!(w, "{record}")?;
        }
        let normal = self.groups.saturating_sub(self.big_groups);
        let changes = (n / 10).min(normal);
        for c in 0..changes {
            let g = self.big_groups + c * (normal / changes.max(1)).max(1);
            let (size, stride, _) = self.placement(g);
            if c % 2 == 0 {
                // A user between two members is not a member (stride > 1); skip deleted ones.
                if stride < 2 {
                    continue;
                }
                let Some(u) = (1..stride)
                    .map(|d| (self.member(g, 0) - 1 + d) % self.users + 1)
                    .find(|&u| !deleted(u))
                else {
                    continue;
                };
                let record = churn.member_record(true, &group_dn(g, base), &user_dn(u, base));
                writeln!(w, "{record}")?;
            } else {
                // Keep at least one member (groupOfNames); skip deleted users.
                if size < 2 {
                    continue;
                }
                let Some(u) = (0..size).map(|k| self.member(g, k)).find(|&u| !deleted(u)) else {
                    continue;
                };
                let record = churn.member_record(false, &group_dn(g, base), &user_dn(u, base));
                writeln!(w, "{record}")?;
            }
        }
        w.flush()?;
        Ok(churn)
    }
}

/// The churn file for a Samba DC loaded by `SambaDc::load_users(users, groups)`
/// (`gen_ldap_data.py --ad`: `CN=userNNNNNN,OU=people`, user `i` in group `i mod groups`, every
/// user disabled, userAccountControl 546). The same split as [`Shape::write_churn`], except
/// that the 30 % "disabled" are *enabled* (544), the loaded users being disabled already: one
/// state change either way.
pub fn write_ad_churn(
    path: &Path,
    base: &str,
    users: usize,
    groups: usize,
    fraction: f64,
) -> Result<Churn> {
    ad_churn_to(path, base, users, groups, fraction).map_err(io(path.display().to_string()))
}

fn ad_churn_to(
    path: &Path,
    base: &str,
    users: usize,
    groups: usize,
    fraction: f64,
) -> std::io::Result<Churn> {
    let n = ((users as f64 * fraction).round() as usize).min(users);
    let step = users.checked_div(n).unwrap_or(1).max(1);
    let user = |i: usize| format!("CN=user{i:06},OU=people,{base}");
    let group = |g: usize| format!("CN=group{:05},OU=groups,{base}", g + 1);
    let file = std::fs::File::create(path)?;
    let mut w = BufWriter::new(file);
    let mut churn = Churn::default();
    for j in 0..n {
        let dn = user(1 + j * step);
        let record = churn.user_record(j, &dn, "userAccountControl: 544");
        writeln!(w, "{record}")?;
    }
    // Membership changes on users next to churned ones (never churned themselves when
    // step > 1): additions to the following group, removals from their own.
    if groups > 1 && step > 1 {
        for c in 0..n / 10 {
            let u = (2 + c * 10 * step).min(users);
            let own = u % groups;
            let record = if c % 2 == 0 {
                churn.member_record(true, &group((own + 1) % groups), &user(u))
            } else {
                churn.member_record(false, &group(own), &user(u))
            };
            writeln!(w, "{record}")?;
        }
    }
    w.flush()?;
    Ok(churn)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    /// The benchmark's default directory.
    fn default_shape() -> Shape {
        Shape {
            users: 100_000,
            groups: 5_000,
            avg_members: 30,
            big_groups: 3,
            big_group_members: 5_000,
        }
    }

    #[test]
    fn sizes_average_and_members_distinct() {
        let s = default_shape();
        assert_eq!(s.memberships(), 150_000);
        assert_eq!(s.size(0), 5_000);
        assert!(s.size(3) >= 27 && s.size(4_999) <= 28);
        for g in [0, 3, 4_999] {
            let mut m: Vec<usize> = (0..s.size(g)).map(|k| s.member(g, k)).collect();
            assert!(m.iter().all(|&u| (1..=100_000).contains(&u)));
            m.sort_unstable();
            m.dedup();
            assert_eq!(m.len(), s.size(g), "group {g} has duplicate members");
        }
    }

    /// 1 % of 100,000: 400/300/300 users and 50 + 50 membership changes, each addition of a
    /// non-member and each removal of a member (else ldapmodify would refuse the file).
    #[test]
    fn churn_counts_and_valid_membership_changes() {
        let s = default_shape();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("churn.ldif");
        let c = s.write_churn(&path, "dc=x", 0.01).unwrap();
        assert_eq!((c.modified, c.disabled, c.deleted), (400, 300, 300));
        assert_eq!((c.members_added, c.members_removed), (50, 50));
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text.matches("replace: employeeType\nemployeeType: false\n-\n")
                .count(),
            300
        );
        assert_eq!(text.matches("changetype: delete\n").count(), 300);
        let member_of = |group: &str, user: &str| {
            let g: usize = group[8..13].parse::<usize>().unwrap() - 1;
            let u: usize = user[8..14].parse().unwrap();
            (0..s.size(g)).any(|k| s.member(g, k) == u)
        };
        for record in text.split("\n\n").filter(|r| r.contains("member: ")) {
            let group = record.lines().next().unwrap().trim_start_matches("dn: ");
            let user = record
                .lines()
                .find_map(|l| l.strip_prefix("member: "))
                .unwrap();
            if record.contains("add: member") {
                assert!(!member_of(group, user), "{user} already in {group}");
            } else {
                assert!(member_of(group, user), "{user} not in {group}");
            }
        }
    }
}
