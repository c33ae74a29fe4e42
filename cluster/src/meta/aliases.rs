//! Collection aliases (Qdrant's `update_collection_aliases`): other names of a collection, in
//! every data and info path, switched atomically (a reindex is a new collection, then one
//! request that points the alias at it).

use super::*;

/// One change of an alias, as Qdrant names them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AliasAction {
    /// Points `alias` at `collection` (again, if it named another).
    Create { alias: String, collection: String },
    /// Removes `alias` (one that does not exist is already removed).
    Delete { alias: String },
    /// Renames alias `old` to `new`.
    Rename { old: String, new: String },
}

impl MetadataState {
    /// The collection `name` names: itself, or the collection of the alias `name`.
    pub fn lookup(&self, name: &str) -> Option<&CollectionMeta> {
        self.collections.get(name).or_else(|| {
            self.aliases
                .get(name)
                .and_then(|target| self.collections.get(target))
        })
    }

    /// The aliases (alias, collection), of one collection or of all, in name order.
    pub fn aliases_of(&self, collection: Option<&str>) -> Vec<(String, String)> {
        self.aliases
            .iter()
            .filter(|(_, c)| collection.is_none_or(|want| want == c.as_str()))
            .map(|(a, c)| (a.clone(), c.clone()))
            .collect()
    }

    /// Applies `actions` in order, all or none.
    pub(super) fn apply_aliases(&mut self, actions: &[AliasAction]) -> Result<Applied> {
        let mut next = self.aliases.clone();
        for action in actions {
            match action {
                AliasAction::Create { alias, collection } => {
                    validate_name("alias name", alias)?;
                    if !self.collections.contains_key(collection) {
                        return Err(missing_collection(collection));
                    }
                    if self.collections.contains_key(alias) {
                        return Err(Error::already_exists(format!(
                            "Wrong input: Collection `{alias}` already exists! An alias cannot take a collection's name"
                        )));
                    }
                    next.insert(alias.clone(), collection.clone());
                }
                AliasAction::Delete { alias } => {
                    next.remove(alias);
                }
                AliasAction::Rename { old, new } => {
                    validate_name("alias name", new)?;
                    let target = next.remove(old).ok_or_else(|| {
                        Error::not_found(format!("Not found: Alias {old} does not exist"))
                    })?;
                    if self.collections.contains_key(new) {
                        return Err(Error::already_exists(format!(
                            "Wrong input: Collection `{new}` already exists! An alias cannot take a collection's name"
                        )));
                    }
                    next.insert(new.clone(), target);
                }
            }
        }
        self.aliases = next;
        Ok(Applied::Nothing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state_with(names: &[&str]) -> MetadataState {
        let mut st = MetadataState::default();
        for (i, n) in names.iter().enumerate() {
            let params = crate::meta::tests::params(ShardingMethod::Custom);
            st.apply(
                i as u64 + 1,
                &Command::CreateCollection {
                    name: (*n).to_owned(),
                    uid: i as u64 + 1,
                    params,
                    shards: Vec::new(),
                },
            )
            .expect("created");
        }
        st
    }

    fn create(alias: &str, collection: &str) -> AliasAction {
        AliasAction::Create {
            alias: alias.into(),
            collection: collection.into(),
        }
    }

    #[test]
    fn aliases_switch_atomically_and_follow_their_collection() {
        let mut st = state_with(&["v1", "v2"]);
        let ok = |st: &mut MetadataState, actions: Vec<AliasAction>| {
            st.apply(10, &Command::UpdateAliases { actions })
        };
        ok(&mut st, vec![create("live", "v1")]).expect("create");
        assert_eq!(st.lookup("live").map(|c| c.uid), Some(1));
        // the reindex switch: delete and create in one change
        ok(
            &mut st,
            vec![
                AliasAction::Delete {
                    alias: "live".into(),
                },
                create("live", "v2"),
            ],
        )
        .expect("switch");
        assert_eq!(st.lookup("live").map(|c| c.uid), Some(2));
        // all or none: a failing action leaves the earlier ones undone
        let before = st.aliases.clone();
        let err = ok(&mut st, vec![create("other", "v1"), create("x", "missing")]);
        assert!(err.is_err());
        assert_eq!(st.aliases, before);
        // an alias cannot take a collection's name, nor a collection an alias's
        assert!(ok(&mut st, vec![create("v1", "v2")]).is_err());
        let err = st.apply(
            11,
            &Command::CreateCollection {
                name: "live".into(),
                uid: 9,
                params: crate::meta::tests::params(ShardingMethod::Custom),
                shards: Vec::new(),
            },
        );
        assert!(err.is_err(), "a collection named like an alias");
        // rename, and a missing one
        ok(
            &mut st,
            vec![AliasAction::Rename {
                old: "live".into(),
                new: "prod".into(),
            }],
        )
        .expect("rename");
        assert_eq!(
            st.aliases_of(Some("v2")),
            vec![("prod".into(), "v2".into())]
        );
        assert!(
            ok(
                &mut st,
                vec![AliasAction::Rename {
                    old: "nope".into(),
                    new: "y".into()
                }]
            )
            .is_err()
        );
        // deleting the collection deletes its aliases
        st.apply(12, &Command::DeleteCollection { name: "v2".into() })
            .expect("deleted");
        assert!(st.lookup("prod").is_none() && st.aliases.is_empty());
    }
}
