//! Directory histories: the operations the generator draws, a model of the directory they
//! act on (which objects exist, their DNs and every group's `member` values), and the seeded
//! generator itself. The model decides whether an operation applies (a shrunken history may
//! name a user that no longer exists: that operation is skipped) and what it does to the
//! `member` values, so that the harness can wait until the server shows the same.

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// A group member the generator names: a user or a group, by key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Member {
    User(u32),
    Group(u32),
}

/// One directory operation on objects named by stable keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// A new user; `outside` = created outside the sync base.
    AddUser {
        user: u32,
        outside: bool,
        enabled: bool,
        offboarded: bool,
    },
    /// A mapped attribute (title) set or removed.
    Title {
        user: u32,
        value: Option<u32>,
    },
    /// An attribute no mapping reads (description).
    Description {
        user: u32,
        value: u32,
    },
    /// The attribute userName comes from (mail; AD: userPrincipalName).
    UserName {
        user: u32,
        value: u32,
    },
    /// modrdn: a new RDN in the same container.
    Rename {
        user: u32,
        value: u32,
    },
    /// modrdn with a new superior: into or out of the sync base.
    Move {
        user: u32,
        outside: bool,
    },
    /// The user filter's attribute: `offboarded` takes the user out of the filter's scope.
    Scope {
        user: u32,
        offboarded: bool,
    },
    Enable {
        user: u32,
        enabled: bool,
    },
    DeleteUser {
        user: u32,
    },
    /// Added again with the RDN and userName it had, after a delete (a new entry: new
    /// entryUUID / objectGUID).
    RecreateUser {
        user: u32,
    },
    AddGroup {
        group: u32,
    },
    AddMember {
        group: u32,
        member: Member,
    },
    /// Removes the `index`-th (modulo) removable `member` value.
    RemoveMember {
        group: u32,
        index: u32,
    },
    RenameGroup {
        group: u32,
        value: u32,
    },
    DeleteGroup {
        group: u32,
    },
}

/// A history: the setup (applied before the initial full sync), then one list of operations
/// per incremental run.
#[derive(Clone, Debug)]
pub struct History {
    pub setup: Vec<Op>,
    pub runs: Vec<Vec<Op>>,
}

impl History {
    pub fn op_count(&self) -> usize {
        self.runs.iter().map(Vec::len).sum()
    }
}

/// How the directory names things: the container DNs and the RDN attribute.
#[derive(Clone, Debug)]
pub struct Layout {
    pub people: String,
    pub groups: String,
    /// A container outside the sync base.
    pub outside: String,
    /// `uid` (OpenLDAP) or `CN` (Active Directory).
    pub user_rdn_attr: &'static str,
    pub group_rdn_attr: &'static str,
    /// The server rewrites and removes `member` values when their entry is renamed, moved or
    /// deleted (OpenLDAP refint; Active Directory always).
    pub refint: bool,
    /// A `member` value every group keeps (groupOfNames needs one), never removed.
    pub placeholder: Option<String>,
}

#[derive(Clone, Debug)]
pub struct UserState {
    pub exists: bool,
    pub rdn: String,
    pub user_name: String,
    pub outside: bool,
    pub enabled: bool,
    pub offboarded: bool,
}

#[derive(Clone, Debug)]
pub struct GroupState {
    pub exists: bool,
    pub cn: String,
    /// `member` values as written (DN text).
    pub members: Vec<String>,
}

/// What the directory holds, as far as the operations are concerned.
#[derive(Clone, Debug)]
pub struct Model {
    pub layout: Layout,
    pub users: BTreeMap<u32, UserState>,
    pub groups: BTreeMap<u32, GroupState>,
}

/// DN text compared as the server compares it (case and the spaces after commas aside).
pub fn dn_key(dn: &str) -> String {
    dn.split(',')
        .map(|part| part.trim().to_ascii_lowercase())
        .collect::<Vec<_>>()
        .join(",")
}

impl Model {
    pub fn new(layout: Layout) -> Model {
        Model {
            layout,
            users: BTreeMap::new(),
            groups: BTreeMap::new(),
        }
    }

    pub fn user_dn(&self, u: &UserState) -> String {
        let parent = if u.outside {
            &self.layout.outside
        } else {
            &self.layout.people
        };
        format!("{}={},{parent}", self.layout.user_rdn_attr, u.rdn)
    }

    pub fn group_dn(&self, g: &GroupState) -> String {
        format!(
            "{}={},{}",
            self.layout.group_rdn_attr, g.cn, self.layout.groups
        )
    }

    pub fn live_user(&self, key: u32) -> Option<&UserState> {
        self.users.get(&key).filter(|u| u.exists)
    }

    pub fn live_group(&self, key: u32) -> Option<&GroupState> {
        self.groups.get(&key).filter(|g| g.exists)
    }

    fn member_dn(&self, m: Member) -> Option<String> {
        match m {
            Member::User(k) => self.live_user(k).map(|u| self.user_dn(u)),
            Member::Group(k) => self.live_group(k).map(|g| self.group_dn(g)),
        }
    }

    /// The `member` values of a group an operation may remove (not the placeholder).
    pub fn removable(&self, g: &GroupState) -> Vec<String> {
        let placeholder = self.layout.placeholder.as_deref().map(dn_key);
        g.members
            .iter()
            .filter(|m| Some(dn_key(m)) != placeholder)
            .cloned()
            .collect()
    }

    /// refint: every `member` value equal to `old` becomes `new` (or goes, with `None`).
    fn relink(&mut self, old: &str, new: Option<&str>) {
        if !self.layout.refint {
            return;
        }
        let old = dn_key(old);
        for g in self.groups.values_mut() {
            match new {
                Some(n) => {
                    for m in g.members.iter_mut().filter(|m| dn_key(m) == old) {
                        *m = n.to_string();
                    }
                }
                None => g.members.retain(|m| dn_key(m) != old),
            }
        }
    }

    /// What `op` does, as an [`Effect`] to send to the server, or `None` when it does not
    /// apply to this model (an object that does not exist, a member already there). The
    /// model is updated as the server will be.
    pub fn apply(&mut self, op: &Op) -> Option<Effect> {
        match *op {
            Op::AddUser {
                user,
                outside,
                enabled,
                offboarded,
            } => {
                if self.users.contains_key(&user) {
                    return None;
                }
                let state = UserState {
                    exists: true,
                    rdn: format!("u{user}"),
                    user_name: format!("u{user}@example.test"),
                    outside,
                    enabled,
                    offboarded,
                };
                let dn = self.user_dn(&state);
                let effect = Effect::AddUser {
                    dn,
                    state: state.clone(),
                };
                self.users.insert(user, state);
                Some(effect)
            }
            Op::RecreateUser { user } => {
                let old = self.users.get(&user).filter(|u| !u.exists)?.clone();
                let state = UserState {
                    exists: true,
                    enabled: true,
                    offboarded: false,
                    ..old
                };
                let dn = self.user_dn(&state);
                self.users.insert(user, state.clone());
                Some(Effect::AddUser { dn, state })
            }
            Op::Title { user, value } => {
                let dn = self.user_dn(self.live_user(user)?);
                let value = value.map(|v| format!("Title {v}"));
                Some(Effect::Replace {
                    dn,
                    attr: Attr::Title,
                    value,
                })
            }
            Op::Description { user, value } => {
                let dn = self.user_dn(self.live_user(user)?);
                Some(Effect::Replace {
                    dn,
                    attr: Attr::Description,
                    value: Some(format!("note {value}")),
                })
            }
            Op::UserName { user, value } => {
                let dn = self.user_dn(self.live_user(user)?);
                let name = format!("u{user}n{value}@example.test");
                self.users.get_mut(&user)?.user_name = name.clone();
                Some(Effect::Replace {
                    dn,
                    attr: Attr::UserName,
                    value: Some(name),
                })
            }
            Op::Scope { user, offboarded } => {
                let u = self.live_user(user)?;
                if u.offboarded == offboarded {
                    return None;
                }
                let dn = self.user_dn(u);
                self.users.get_mut(&user)?.offboarded = offboarded;
                Some(Effect::Replace {
                    dn,
                    attr: Attr::Scope,
                    value: offboarded.then(|| "offboarded".to_string()),
                })
            }
            Op::Enable { user, enabled } => {
                let u = self.live_user(user)?;
                if u.enabled == enabled {
                    return None;
                }
                let dn = self.user_dn(u);
                self.users.get_mut(&user)?.enabled = enabled;
                Some(Effect::Enable { dn, enabled })
            }
            Op::Rename { user, value } => {
                let old = self.user_dn(self.live_user(user)?);
                let rdn = format!("u{user}r{value}");
                let u = self.users.get_mut(&user)?;
                if u.rdn == rdn {
                    return None;
                }
                u.rdn = rdn.clone();
                let u = u.clone();
                let new = self.user_dn(&u);
                self.relink(&old, Some(&new));
                Some(Effect::ModRdn {
                    dn: old,
                    rdn: format!("{}={rdn}", self.layout.user_rdn_attr),
                    superior: None,
                })
            }
            Op::Move { user, outside } => {
                let u = self.live_user(user)?;
                if u.outside == outside {
                    return None;
                }
                let old = self.user_dn(u);
                let rdn = format!("{}={}", self.layout.user_rdn_attr, u.rdn);
                self.users.get_mut(&user)?.outside = outside;
                let new = self.user_dn(self.live_user(user)?);
                self.relink(&old, Some(&new));
                let superior = if outside {
                    self.layout.outside.clone()
                } else {
                    self.layout.people.clone()
                };
                Some(Effect::ModRdn {
                    dn: old,
                    rdn,
                    superior: Some(superior),
                })
            }
            Op::DeleteUser { user } => {
                let dn = self.user_dn(self.live_user(user)?);
                self.users.get_mut(&user)?.exists = false;
                self.relink(&dn, None);
                Some(Effect::Delete { dn })
            }
            Op::AddGroup { group } => {
                if self.groups.contains_key(&group) {
                    return None;
                }
                let state = GroupState {
                    exists: true,
                    cn: format!("g{group}"),
                    members: self.layout.placeholder.iter().cloned().collect(),
                };
                let dn = self.group_dn(&state);
                let members = state.members.clone();
                self.groups.insert(group, state);
                Some(Effect::AddGroup { dn, members })
            }
            Op::AddMember { group, member } => {
                let g = self.live_group(group)?;
                let m = self.member_dn(member)?;
                if g.members.iter().any(|v| dn_key(v) == dn_key(&m))
                    || dn_key(&m) == dn_key(&self.group_dn(g))
                {
                    return None;
                }
                let dn = self.group_dn(g);
                self.groups.get_mut(&group)?.members.push(m.clone());
                Some(Effect::Member {
                    dn,
                    add: true,
                    value: m,
                })
            }
            Op::RemoveMember { group, index } => {
                let g = self.live_group(group)?;
                let removable = self.removable(g);
                if removable.is_empty() {
                    return None;
                }
                let value = removable[index as usize % removable.len()].clone();
                let dn = self.group_dn(g);
                self.groups
                    .get_mut(&group)?
                    .members
                    .retain(|m| dn_key(m) != dn_key(&value));
                Some(Effect::Member {
                    dn,
                    add: false,
                    value,
                })
            }
            Op::RenameGroup { group, value } => {
                let old = self.group_dn(self.live_group(group)?);
                let cn = format!("g{group}r{value}");
                let g = self.groups.get_mut(&group)?;
                if g.cn == cn {
                    return None;
                }
                g.cn = cn.clone();
                let g = g.clone();
                let new = self.group_dn(&g);
                self.relink(&old, Some(&new));
                Some(Effect::ModRdn {
                    dn: old,
                    rdn: format!("{}={cn}", self.layout.group_rdn_attr),
                    superior: None,
                })
            }
            Op::DeleteGroup { group } => {
                let dn = self.group_dn(self.live_group(group)?);
                self.groups.get_mut(&group)?.exists = false;
                self.relink(&dn, None);
                Some(Effect::Delete { dn })
            }
        }
    }
}

/// The user attributes an operation sets; each directory names them its own way.
#[derive(Clone, Copy, Debug)]
pub enum Attr {
    Title,
    Description,
    UserName,
    Scope,
}

/// One change to send to the server, with the DNs resolved.
#[derive(Clone, Debug)]
pub enum Effect {
    AddUser {
        dn: String,
        state: UserState,
    },
    AddGroup {
        dn: String,
        members: Vec<String>,
    },
    Replace {
        dn: String,
        attr: Attr,
        value: Option<String>,
    },
    Enable {
        dn: String,
        enabled: bool,
    },
    ModRdn {
        dn: String,
        rdn: String,
        superior: Option<String>,
    },
    Member {
        dn: String,
        add: bool,
        value: String,
    },
    Delete {
        dn: String,
    },
}

/// The setup every history starts from: 8 users (one outside the base, one out of the
/// filter's scope, one disabled) in 3 groups.
pub fn setup() -> Vec<Op> {
    let mut ops = Vec::new();
    for user in 0..8 {
        ops.push(Op::AddUser {
            user,
            outside: user == 7,
            enabled: user != 5,
            offboarded: user == 6,
        });
    }
    for group in 0..3 {
        ops.push(Op::AddGroup { group });
    }
    for user in 0..8u32 {
        ops.push(Op::AddMember {
            group: user % 3,
            member: Member::User(user),
        });
    }
    ops.push(Op::AddMember {
        group: 0,
        member: Member::Group(1),
    });
    ops
}

/// The seeded generator: `runs` lists of `per_run` operations, each drawn so that it
/// applies to the model as it stands (the model is advanced as they are drawn).
pub fn generate(seed: u64, layout: &Layout, runs: usize, per_run: usize) -> History {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut model = Model::new(layout.clone());
    let setup = setup();
    for op in &setup {
        model.apply(op);
    }
    let mut next_user = 8u32;
    let mut next_group = 3u32;
    let mut out = Vec::with_capacity(runs);
    for _ in 0..runs {
        let mut run = Vec::with_capacity(per_run);
        while run.len() < per_run {
            let op = draw(&mut rng, &model, &mut next_user, &mut next_group);
            if model.apply(&op).is_some() {
                run.push(op);
            }
        }
        out.push(run);
    }
    History { setup, runs: out }
}

fn pick<T: Copy>(rng: &mut StdRng, items: &[T]) -> Option<T> {
    (!items.is_empty()).then(|| items[rng.random_range(0..items.len())])
}

/// One operation; it may not apply (the caller draws again).
fn draw(rng: &mut StdRng, model: &Model, next_user: &mut u32, next_group: &mut u32) -> Op {
    let live: Vec<u32> = model
        .users
        .iter()
        .filter(|(_, u)| u.exists)
        .map(|(k, _)| *k)
        .collect();
    let gone: Vec<u32> = model
        .users
        .iter()
        .filter(|(_, u)| !u.exists)
        .map(|(k, _)| *k)
        .collect();
    let groups: Vec<u32> = model
        .groups
        .iter()
        .filter(|(_, g)| g.exists)
        .map(|(k, _)| *k)
        .collect();
    let v = rng.random_range(0..1000u32);
    let user = pick(rng, &live).unwrap_or(0);
    let group = pick(rng, &groups).unwrap_or(0);
    let op = draw_kind(
        rng,
        model,
        next_user,
        next_group,
        (user, group, v),
        &groups,
        &gone,
    );
    // User 0 stays in scope and group 0 stays: a read with no user or no group in scope
    // deletes nothing (the source health gate), so a fresh sync would not compare.
    match op {
        Op::DeleteUser { user: 0 }
        | Op::Move {
            user: 0,
            outside: true,
        }
        | Op::Scope {
            user: 0,
            offboarded: true,
        }
        | Op::DeleteGroup { group: 0 } => Op::Description { user: 0, value: v },
        op => op,
    }
}

fn draw_kind(
    rng: &mut StdRng,
    model: &Model,
    next_user: &mut u32,
    next_group: &mut u32,
    (user, group, v): (u32, u32, u32),
    groups: &[u32],
    gone: &[u32],
) -> Op {
    match rng.random_range(0..100u32) {
        0..8 => {
            *next_user += 1;
            Op::AddUser {
                user: *next_user - 1,
                outside: rng.random_bool(0.15),
                enabled: rng.random_bool(0.85),
                offboarded: rng.random_bool(0.1),
            }
        }
        8..16 => Op::Title {
            user,
            value: rng.random_bool(0.8).then_some(v),
        },
        16..20 => Op::Description { user, value: v },
        20..25 => Op::UserName { user, value: v },
        25..31 => Op::Rename { user, value: v },
        31..40 => Op::Move {
            user,
            outside: !model.users.get(&user).is_some_and(|u| u.outside),
        },
        40..47 => Op::Scope {
            user,
            offboarded: !model.users.get(&user).is_some_and(|u| u.offboarded),
        },
        47..54 => Op::Enable {
            user,
            enabled: !model.users.get(&user).is_some_and(|u| u.enabled),
        },
        54..59 => Op::DeleteUser { user },
        59..63 => match pick(rng, gone) {
            Some(user) => Op::RecreateUser { user },
            None => Op::DeleteUser { user },
        },
        63..78 => Op::AddMember {
            group,
            member: Member::User(user),
        },
        78..82 => Op::AddMember {
            group,
            member: Member::Group(pick(rng, groups).unwrap_or(0)),
        },
        82..92 => Op::RemoveMember { group, index: v },
        92..95 => Op::RenameGroup { group, value: v },
        95..97 => Op::DeleteGroup { group },
        _ => {
            *next_group += 1;
            Op::AddGroup {
                group: *next_group - 1,
            }
        }
    }
}
