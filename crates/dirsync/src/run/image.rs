//! The directory image: the entries the last run saw, by stable id, and the rows a run writes
//! into it.

use super::*;

/// An image row's key: kind and stable id.
pub(super) type ImageKey = (ObjectKind, String);

/// The image rows a run writes: changed rows (a full run: all) and removed ids.
#[derive(Default)]
pub(super) struct ImageWrite {
    pub(super) upserts: Vec<ImageRow>,
    pub(super) removals: Vec<(ObjectKind, String)>,
}

/// Image rows from entries (moved, not copied), users with what the mapping made of them;
/// `only`: just these rows.
pub(super) fn image_rows(
    kind: DirectoryKind,
    users: Vec<Entry>,
    groups: Vec<Entry>,
    only: Option<&HashSet<(ObjectKind, String)>>,
    keys: &mut HashMap<String, ImageKeys>,
) -> Vec<ImageRow> {
    let id = stable_id(kind);
    let mut rows = Vec::new();
    for (object_kind, entries) in [(ObjectKind::User, users), (ObjectKind::Group, groups)] {
        for entry in entries {
            let Some(k) = id(&entry) else {
                continue;
            };
            if only.is_some_and(|o| !o.contains(&(object_kind, k.clone()))) {
                continue;
            }
            let keys = match object_kind {
                // default: a user without stored keys gets them computed anew.
                ObjectKind::User => keys.remove(&k).unwrap_or_default(),
                ObjectKind::Group => ImageKeys::default(),
            };
            rows.push(ImageRow::new(object_kind, k, &entry, keys));
        }
    }
    rows
}

/// The directory image: stable id → entry, users and groups apart.
#[derive(Default)]
pub(super) struct Image {
    pub(super) users: BTreeMap<String, Entry>,
    pub(super) groups: BTreeMap<String, Entry>,
}

impl Image {
    pub(super) async fn load(state: &StateStore) -> Result<Image, crate::state::StateError> {
        Ok(Image {
            users: state.image(ObjectKind::User).await?,
            groups: state.image(ObjectKind::Group).await?,
        })
    }

    pub(super) fn hashes(&self) -> HashMap<(ObjectKind, String), u64> {
        let users = self
            .users
            .iter()
            .map(|(id, e)| ((ObjectKind::User, id.clone()), entry_hash(e)));
        let groups = self
            .groups
            .iter()
            .map(|(id, e)| ((ObjectKind::Group, id.clone()), entry_hash(e)));
        users.chain(groups).collect()
    }

    /// Brings the image up to date with the changes (AD: links first, on the whole image,
    /// then split again by the group object class).
    pub(super) fn apply(&mut self, changes: &DirChanges, kind: DirectoryKind, config: &Config) {
        let id = stable_id(kind);
        match changes {
            DirChanges::OpenLdap(c) => {
                source::changes::apply(&mut self.users, &c.users, id);
                source::changes::apply(&mut self.groups, &c.groups, id);
            }
            DirChanges::Ad(c) => {
                let mut all = std::mem::take(&mut self.users);
                all.append(&mut self.groups);
                ad_changes::update_links(&mut all, c, id);
                source::changes::apply(&mut all, c, id);
                let group_class =
                    source::Selection::from_config(&config.ad.ldap, kind).group_object_class;
                for (k, e) in all {
                    if e.has_object_class(&group_class) {
                        self.groups.insert(k, e);
                    } else {
                        self.users.insert(k, e);
                    }
                }
            }
        }
    }

    /// The rows that differ from `before` (hashes of the previous image), and the keys that
    /// are gone: what the state write must change.
    pub(super) fn changes_since(
        &self,
        before: &HashMap<(ObjectKind, String), u64>,
    ) -> (HashSet<ImageKey>, Vec<ImageKey>) {
        let mut changed = HashSet::new();
        let mut now = HashSet::new();
        for (kind, map) in [
            (ObjectKind::User, &self.users),
            (ObjectKind::Group, &self.groups),
        ] {
            for (id, e) in map {
                let key = (kind, id.clone());
                if before.get(&key) != Some(&entry_hash(e)) {
                    changed.insert(key.clone());
                }
                now.insert(key);
            }
        }
        let removals = before
            .keys()
            .filter(|k| !now.contains(*k))
            .cloned()
            .collect();
        (changed, removals)
    }

    pub(super) fn into_read(self) -> DirectoryRead {
        DirectoryRead {
            users: self.users.into_values().collect(),
            groups: self.groups.into_values().collect(),
            complete: true,
            notes: Vec::new(),
        }
    }
}
