//! Key paths into a payload (`a.b`, `a[].b`, `a[0]`, `"quoted key".b`) and the values they select,
//! as Qdrant selects them; conditions and payload updates both go through here.

use std::fmt;
use std::str::FromStr;

use serde_json::Value;

use crate::point::Payload;

/// A key path into a payload: `a.b`, `a[].b`, `a[0]`, `a."key with spaces"`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JsonPath {
    pub first_key: String,
    pub rest: Vec<PathItem>,
}

/// One step of a [`JsonPath`] after the first key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PathItem {
    /// `.key`: a key of an object.
    Key(String),
    /// `[3]`: an element of an array.
    Index(usize),
    /// `[]`: every element of an array.
    Wildcard,
}

impl JsonPath {
    /// A path of one plain key.
    pub fn key(key: impl Into<String>) -> Self {
        JsonPath {
            first_key: key.into(),
            rest: Vec::new(),
        }
    }

    /// Parses Qdrant's key path syntax: a first key, then any of `.key`, `."quoted key"`, `[n]`,
    /// `[]`. A plain key is one or more alphanumeric characters, `_` or `-`; a quoted key is any
    /// characters but `"` and `\`.
    pub fn parse(s: &str) -> Result<JsonPath, String> {
        let mut cur = PathCursor { s, pos: 0 };
        let first_key = cur.key()?;
        let mut rest = Vec::new();
        while let Some(c) = cur.peek() {
            match c {
                '.' => {
                    cur.pos += 1;
                    rest.push(PathItem::Key(cur.key()?));
                }
                '[' => {
                    cur.pos += 1;
                    rest.push(cur.index()?);
                }
                other => {
                    return Err(format!(
                        "unexpected '{other}' at position {}, expected '.' or '['",
                        cur.pos
                    ));
                }
            }
        }
        Ok(JsonPath { first_key, rest })
    }

    /// The path with `[]` appended unless it already ends so: where `nested` finds its objects.
    pub fn array_key(&self) -> JsonPath {
        let mut p = self.clone();
        if p.rest.last() != Some(&PathItem::Wildcard) {
            p.rest.push(PathItem::Wildcard);
        }
        p
    }
}

struct PathCursor<'a> {
    s: &'a str,
    pos: usize,
}

impl PathCursor<'_> {
    fn peek(&self) -> Option<char> {
        self.s.get(self.pos..).and_then(|t| t.chars().next())
    }

    fn key(&mut self) -> Result<String, String> {
        let start = self.pos;
        let tail = self.s.get(start..).unwrap_or_default();
        if let Some(quoted) = tail.strip_prefix('"') {
            for (i, c) in quoted.char_indices() {
                match c {
                    '"' => {
                        self.pos = start + 1 + i + 1;
                        return Ok(quoted[..i].to_string());
                    }
                    '\\' => {
                        return Err(format!(
                            "quoted key at position {start} contains a backslash"
                        ));
                    }
                    _ => {}
                }
            }
            return Err(format!(
                "quoted key at position {start} has no closing '\"'"
            ));
        }
        let len: usize = tail
            .chars()
            .take_while(|c| is_plain_key_char(*c))
            .map(char::len_utf8)
            .sum();
        if len == 0 {
            return Err(match tail.chars().next() {
                None if start == 0 => "empty key path".to_string(),
                None => format!("missing key at the end (position {start})"),
                Some(c) => format!(
                    "unexpected '{c}' at position {start}, expected a key (letters, digits, '_', '-') or a \"quoted key\""
                ),
            });
        }
        self.pos = start + len;
        Ok(tail[..len].to_string())
    }

    /// After `[`: `]` or digits then `]`.
    fn index(&mut self) -> Result<PathItem, String> {
        let start = self.pos;
        let tail = self.s.get(start..).unwrap_or_default();
        if tail.starts_with(']') {
            self.pos += 1;
            return Ok(PathItem::Wildcard);
        }
        let digits = tail.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || !tail[digits..].starts_with(']') {
            return Err(format!(
                "expected '[]' or '[<index>]' at position {}",
                start.saturating_sub(1)
            ));
        }
        let n = tail[..digits]
            .parse::<usize>()
            .map_err(|_| format!("array index at position {start} is too large"))?;
        self.pos = start + digits + 1;
        Ok(PathItem::Index(n))
    }
}

fn is_plain_key_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '-'
}

fn write_key(f: &mut fmt::Formatter<'_>, key: &str) -> fmt::Result {
    if !key.is_empty() && key.chars().all(is_plain_key_char) {
        f.write_str(key)
    } else {
        write!(f, "\"{key}\"")
    }
}

impl fmt::Display for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_key(f, &self.first_key)?;
        for item in &self.rest {
            match item {
                PathItem::Key(k) => {
                    f.write_str(".")?;
                    write_key(f, k)?;
                }
                PathItem::Index(i) => write!(f, "[{i}]")?,
                PathItem::Wildcard => f.write_str("[]")?,
            }
        }
        Ok(())
    }
}

impl FromStr for JsonPath {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JsonPath::parse(s)
    }
}

/// The values a key path selects, as Qdrant selects them: `[]` steps into every element of an
/// array, `[n]` into one, a key into an object only (not through an array). An array at the end of
/// the path is returned whole; conditions look at its elements (see [`get_flat_values`]).
pub fn get_values<'a>(payload: &'a Payload, path: &JsonPath) -> Vec<&'a Value> {
    let Some(first) = payload.get(&path.first_key) else {
        return Vec::new();
    };
    let mut current = vec![first];
    for item in &path.rest {
        let mut next = Vec::new();
        for v in current {
            match (item, v) {
                (PathItem::Key(k), Value::Object(m)) => next.extend(m.get(k)),
                (PathItem::Index(i), Value::Array(a)) => next.extend(a.get(*i)),
                (PathItem::Wildcard, Value::Array(a)) => next.extend(a.iter()),
                _ => {}
            }
        }
        if next.is_empty() {
            return next;
        }
        current = next;
    }
    current
}

/// The values a `match` or `range` condition compares: [`get_values`] with arrays at the end of the
/// path opened one level (arrays inside them stay whole). What a payload index would index.
pub fn get_flat_values<'a>(payload: &'a Payload, path: &JsonPath) -> Vec<&'a Value> {
    let mut out = Vec::new();
    for v in get_values(payload, path) {
        match v {
            Value::Array(a) => out.extend(a.iter()),
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::filter::testkit::*;

    #[test]
    fn key_path_syntax() {
        let ok = [
            ("a", "a"),
            ("a.b.c", "a.b.c"),
            ("a[].b", "a[].b"),
            ("a[0][12].b-c_d", "a[0][12].b-c_d"),
            ("\"a b\".c", "\"a b\".c"),
            ("a.\"x[.]y\"[]", "a.\"x[.]y\"[]"),
            ("\"plain\"", "plain"),
            ("Müesli.ключ", "Müesli.ключ"),
            ("\"\"", "\"\""),
        ];
        for (s, shown) in ok {
            let p = JsonPath::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!(p.to_string(), shown, "{s}");
            assert_eq!(JsonPath::parse(&p.to_string()), Ok(p), "{s} round trip");
        }
        let bad = [
            "",
            ".a",
            "a.",
            "a..b",
            "[0]",
            "a[",
            "a[x]",
            "a[-1]",
            "a b",
            "a.\"b",
            "a.\"b\\c\"",
            "a[]b",
            "a[99999999999999999999999]",
        ];
        for s in bad {
            assert!(JsonPath::parse(s).is_err(), "{s:?} should be refused");
        }
        assert_eq!(
            JsonPath::parse("a[1][]").map(|p| p.rest),
            Ok(vec![PathItem::Index(1), PathItem::Wildcard])
        );
    }

    #[test]
    fn get_values_follows_qdrant() {
        let p = obj(json!({
            "a": {"b": [{"c": 1}, {"c": 2}, {"d": {"e": 3}}]},
            "g": ["g0", "g1", "g2"],
            "arr": [{"a": [1, 2, 3]}, {"a": 4}, {"b": 5}],
            "n": null, "nn": [null, null], "e": []
        }));
        let get = |s: &str| -> Vec<Value> {
            let path = JsonPath::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
            get_values(&p, &path).into_iter().cloned().collect()
        };
        assert_eq!(get("a.b[].c"), vec![json!(1), json!(2)]);
        assert_eq!(get("a.b[].d"), vec![json!({"e": 3})]);
        assert_eq!(get("a.b[1].c"), vec![json!(2)]);
        assert_eq!(get("a.b[3]"), Vec::<Value>::new());
        assert_eq!(get("g[2]"), vec![json!("g2")]);
        assert_eq!(get("g"), vec![json!(["g0", "g1", "g2"])]);
        assert_eq!(get("arr[].a"), vec![json!([1, 2, 3]), json!(4)]);
        assert_eq!(get("arr[].a[]"), vec![json!(1), json!(2), json!(3)]);
        assert_eq!(get("a.b.c"), Vec::<Value>::new());
        assert_eq!(get("n"), vec![json!(null)]);
        assert_eq!(get("n[]"), Vec::<Value>::new());
        assert_eq!(get("nn[]"), vec![json!(null), json!(null)]);
        assert_eq!(get("e"), vec![json!([])]);
        assert_eq!(get("e[]"), Vec::<Value>::new());
        assert_eq!(get("missing[]"), Vec::<Value>::new());
        let path = JsonPath::parse("arr[].a").unwrap_or_else(|e| panic!("{e}"));
        let flat: Vec<Value> = get_flat_values(&p, &path).into_iter().cloned().collect();
        assert_eq!(flat, vec![json!(1), json!(2), json!(3), json!(4)]);
    }
}
