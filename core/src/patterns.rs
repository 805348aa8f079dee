//! [`Patterns`]: file-name patterns as plugin arguments take them.

use serde::{Deserialize, Deserializer};

/// A list of file-name patterns, written as a list (`["*.log", "*.xml"]`) or as the seed's
/// comma-separated string (`"*.log.20*,*.xml"`); blanks around each are dropped.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Patterns(pub Vec<String>);

impl<'de> Deserialize<'de> for Patterns {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum OneOrMany {
            One(String),
            Many(Vec<String>),
        }
        Ok(Patterns(
            match OneOrMany::deserialize(d).map_err(|_| {
                serde::de::Error::custom(
                    "expected a pattern, a list of patterns, or a comma-separated string of them",
                )
            })? {
                OneOrMany::One(s) => s
                    .split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(str::to_owned)
                    .collect(),
                OneOrMany::Many(v) => v,
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_or_a_comma_separated_string() {
        let p: Patterns = serde_json::from_str(r#""*.log.20*, *.xml""#).unwrap();
        assert_eq!(p.0, ["*.log.20*", "*.xml"]);
        let p: Patterns = serde_json::from_str(r#"["a", "b,c"]"#).unwrap();
        assert_eq!(p.0, ["a", "b,c"]);
        let e = serde_json::from_str::<Patterns>("5")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("expected a pattern"), "{e}");
    }
}
