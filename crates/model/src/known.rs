//! What a plan learned of an object it found in sync, persisted in the app's inventory.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// A SHA-256 digest; in JSON, 64 lowercase hex digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Digest(pub [u8; 32]);

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&hex::encode(self.0))
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Hex;
        impl Visitor<'_> for Hex {
            type Value = Digest;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a SHA-256 digest as 64 hex digits")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Digest, E> {
                let mut bytes = [0; 32];
                hex::decode_to_slice(text, &mut bytes).map_err(E::custom)?;
                Ok(Digest(bytes))
            }
        }
        deserializer.deserialize_str(Hex)
    }
}

/// What a plan learned of one object: the digest of its desired manifest and the digest
/// of the live object's fields that manifest sets. While both stay the same, a
/// server-side-apply dry-run would answer the live object again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Known {
    /// Digest of the desired manifest.
    pub manifest: Digest,
    /// Digest of the live object cut down to the fields the manifest sets.
    pub live: Digest,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_hex_strings_in_json() {
        let known = Known {
            manifest: Digest([0xab; 32]),
            live: Digest([1; 32]),
        };
        let text = serde_json::to_string(&known).unwrap();
        assert_eq!(
            text,
            format!(
                r#"{{"manifest":"{}","live":"{}"}}"#,
                "ab".repeat(32),
                "01".repeat(32)
            )
        );
        assert_eq!(serde_json::from_str::<Known>(&text).unwrap(), known);
        assert!(serde_json::from_str::<Digest>(r#""abc""#).is_err());
        assert!(
            serde_json::from_str::<Known>("[1,2]").is_err(),
            "old format"
        );
    }
}
