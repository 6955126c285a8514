//! The top-level keys of a JSON object in the order they are written. `serde_json` (as built
//! here, without `preserve_order`) sorts object keys, so without this scan JSONL output would
//! reorder the user's columns alphabetically.

/// Keys of the object in `line`, in file order. `line` must already be known to parse as a
/// JSON object; on anything unexpected this returns what it found so far (the caller only uses
/// the result to order columns, never to decide validity).
pub(crate) fn top_level_keys(line: &str) -> Vec<String> {
    top_level_keys_at(line).into_iter().map(|(k, _)| k).collect()
}

/// [`top_level_keys`] with the byte offset where each key (its opening quote) starts.
pub(crate) fn top_level_keys_at(line: &str) -> Vec<(String, usize)> {
    let b = line.as_bytes();
    let mut keys = Vec::new();
    let mut depth = 0usize;
    // True right after `{` or `,` at depth 1, where the next string is a key.
    let mut expect_key = false;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' => {
                let start = i;
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    // Skip the escaped character so that `\"` does not end the string.
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                let end = (i + 1).min(b.len());
                if depth == 1 && expect_key {
                    if let Ok(k) = serde_json::from_str::<String>(&line[start..end]) {
                        keys.push((k, start));
                    }
                    expect_key = false;
                }
            }
            b'{' | b'[' => {
                depth += 1;
                expect_key = depth == 1 && b[i] == b'{';
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            b',' if depth == 1 => expect_key = true,
            _ => {}
        }
        i += 1;
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::top_level_keys;

    #[test]
    fn keys_in_file_order() {
        let line = r#"{"zeta": 1, "a\"b": {"inner": [1, {"deep": 2}]}, "text": "x, \"y\": z", "émb": [0.5]}"#;
        assert_eq!(top_level_keys(line), ["zeta", "a\"b", "text", "émb"]);
        assert_eq!(top_level_keys(" { } "), Vec::<String>::new());
    }
}
