//! Fast checks over raw JSON text that serde has already validated as well-formed.
//!
//! The collector keeps nested objects (`properties`, `traits`, `context`) as raw text and copies
//! them verbatim into the log; building a tree of them only to check limits would cost more
//! than the rest of ingestion. [`scan`] measures nesting depth and the longest string in one
//! pass over the bytes. Only when a limit is exceeded does [`find_violation`] walk a parsed tree
//! to name the exact field path.

use serde_json::Value;

/// What one pass over a raw JSON value found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    /// Deepest nesting of objects and arrays (a flat object is depth 1, a scalar depth 0).
    pub depth: usize,
    /// Length in bytes of the longest string (keys included), as written (escapes counted raw).
    pub longest_string: usize,
}

/// Measures `raw`, which must be well-formed JSON.
pub fn scan(raw: &[u8]) -> Extent {
    let (mut depth, mut max_depth) = (0usize, 0usize);
    let mut longest = 0usize;
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'{' | b'[' => {
                depth += 1;
                max_depth = max_depth.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            b'"' => {
                let start = i + 1;
                i = start;
                while i < raw.len() {
                    match raw[i] {
                        b'\\' => i += 2,
                        b'"' => break,
                        _ => i += 1,
                    }
                }
                longest = longest.max(i.min(raw.len()) - start);
            }
            _ => {}
        }
        i += 1;
    }
    Extent {
        depth: max_depth,
        longest_string: longest,
    }
}

/// A limit a JSON value broke, with the path (relative to the value) where it first did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    /// Nesting deeper than the limit at `path`.
    TooDeep { path: String },
    /// A string (or object key, when `is_key`) longer than the limit at `path`.
    StringTooLong {
        path: String,
        len: usize,
        is_key: bool,
    },
}

/// Walks `value` and returns the first place that breaks `max_depth` or `max_string_bytes`,
/// measured the way [`scan`] measures them. `base` is the path of `value` itself.
pub fn find_violation(
    value: &Value,
    base: &str,
    max_depth: usize,
    max_string_bytes: usize,
) -> Option<Violation> {
    fn walk(
        value: &Value,
        path: &mut String,
        depth: usize,
        max_depth: usize,
        max_len: usize,
    ) -> Option<Violation> {
        let raw_len = |s: &str| {
            serde_json::to_string(s)
                .map(|q| q.len() - 2)
                .unwrap_or(s.len())
        };
        match value {
            Value::String(s) if raw_len(s) > max_len => Some(Violation::StringTooLong {
                path: path.clone(),
                len: raw_len(s),
                is_key: false,
            }),
            Value::Array(items) => {
                if depth + 1 > max_depth {
                    return Some(Violation::TooDeep { path: path.clone() });
                }
                for (index, item) in items.iter().enumerate() {
                    let mark = path.len();
                    path.push_str(&format!("[{index}]"));
                    let found = walk(item, path, depth + 1, max_depth, max_len);
                    path.truncate(mark);
                    if found.is_some() {
                        return found;
                    }
                }
                None
            }
            Value::Object(fields) => {
                if depth + 1 > max_depth {
                    return Some(Violation::TooDeep { path: path.clone() });
                }
                for (key, item) in fields {
                    let mark = path.len();
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(key);
                    if raw_len(key) > max_len {
                        let len = raw_len(key);
                        let found = Violation::StringTooLong {
                            path: path.clone(),
                            len,
                            is_key: true,
                        };
                        return Some(found);
                    }
                    let found = walk(item, path, depth + 1, max_depth, max_len);
                    path.truncate(mark);
                    if found.is_some() {
                        return found;
                    }
                }
                None
            }
            _ => None,
        }
    }
    let mut path = base.to_owned();
    walk(value, &mut path, 0, max_depth, max_string_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn scan_measures_depth_and_strings_ignoring_brackets_inside_strings() {
        let raw = br#"{"a":{"b":[1,2,{"c":"x{[y"}]},"long\"key":"abcdef"}"#;
        let shape = scan(raw);
        assert_eq!(shape.depth, 4);
        assert_eq!(shape.longest_string, "long\\\"key".len());
        assert_eq!(
            scan(b"42"),
            Extent {
                depth: 0,
                longest_string: 0
            }
        );
    }

    #[test]
    fn find_violation_names_the_deepest_allowed_path() {
        let value: Value = serde_json::from_str(r#"{"a":{"b":{"c":1}}}"#).unwrap();
        assert_eq!(
            find_violation(&value, "properties", 2, 100),
            Some(Violation::TooDeep {
                path: "properties.a.b".into()
            })
        );
        assert_eq!(find_violation(&value, "properties", 3, 100), None);
        let value: Value = serde_json::from_str(r#"{"list":["ok","toolong"]}"#).unwrap();
        assert_eq!(
            find_violation(&value, "traits", 8, 5),
            Some(Violation::StringTooLong {
                path: "traits.list[1]".into(),
                len: 7,
                is_key: false
            })
        );
    }

    proptest! {
        #[test]
        fn scan_agrees_with_the_tree_walk(depth in 0usize..12, len in 0usize..40, limit in 1usize..12) {
            let mut text = format!("\"{}\"", "s".repeat(len));
            for level in 0..depth {
                text = if level % 2 == 0 { format!("[{text}]") } else { format!("{{\"k\":{text}}}") };
            }
            let value: Value = serde_json::from_str(&text).unwrap();
            let shape = scan(text.as_bytes());
            prop_assert_eq!(shape.depth, depth);
            let over = shape.depth > limit || shape.longest_string > limit;
            prop_assert_eq!(find_violation(&value, "p", limit, limit).is_some(), over);
        }
    }
}
