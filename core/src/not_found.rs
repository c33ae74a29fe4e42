//! The not-found answers that stop tenant enumeration: a collection or shard key outside the
//! caller's reach gets exactly the answer of one that does not exist, so each text is formatted
//! here, once, and every layer (metadata, access, a replica's own check) answers with it.

use crate::error::Error;
use crate::ids::ShardKey;

/// A collection that does not exist, or that the caller may not see.
pub fn missing_collection(name: &str) -> Error {
    Error::not_found(format!("Collection `{name}` doesn't exist!"))
}

/// A shard key that does not exist, or that the caller may not reach (unnamed when the request
/// named none).
pub fn missing_key(key: Option<&ShardKey>) -> Error {
    let named = key.map(|k| format!("{k} ")).unwrap_or_default();
    Error::not_found(format!("Shard key {named}not found"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts() {
        assert_eq!(
            missing_collection("docs").message,
            "Collection `docs` doesn't exist!"
        );
        let acme = ShardKey::Str("acme".into());
        assert_eq!(missing_key(Some(&acme)).message, "Shard key acme not found");
        assert_eq!(missing_key(None).message, "Shard key not found");
    }
}
