//! The types of JSON Lines fields, held to what an Arrow column keeps exactly: each field (and
//! each nested path, `tags[]`, `meta.id`) has one JSON type across the file, no integer lies
//! beyond the int64 range, and no column mixes integers beyond 2^53 with non-integers (a
//! float64 column would round them). A field that breaks a rule is named with its line.

use serde_json::Value;
use std::collections::HashMap;

/// Integers a float64 holds exactly: |i| ≤ 2^53.
const EXACT_IN_F64: u64 = 1 << 53;

/// What is known of one path's values so far (the line each fact was first seen on).
#[derive(Default)]
struct Facts {
    kind: Option<(&'static str, usize)>,
    big_int: Option<usize>,
    fractional: Option<usize>,
}

/// The JSON type's name in messages.
pub(crate) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The facts of every path seen so far.
#[derive(Default)]
pub(crate) struct FieldTypes {
    facts: HashMap<String, Facts>,
}

impl FieldTypes {
    /// Checks the fields of one object (`skip`: the embedding field, checked elsewhere) on
    /// line `line`, whose text is `text`. The error is the message, without the line.
    pub(crate) fn check(&mut self, line: usize, text: &str, map: &serde_json::Map<String, Value>, skip: &str) -> Result<(), String> {
        let mut from = 0;
        let mut keys = None;
        while let Some((at, token)) = out_of_range_integer(text, from) {
            let keys = keys.get_or_insert_with(|| super::json_keys::top_level_keys_at(text));
            let key = keys.iter().rev().find(|(_, p)| *p <= at).map(|(k, _)| k.as_str());
            if key == Some(skip) {
                // The embedding becomes float32 anyway: a huge integer there is just a number.
                from = at + token.len();
                continue;
            }
            let field = key.map(|k| format!("field {k:?} holds ")).unwrap_or_default();
            return Err(format!("{field}the integer {token}, beyond the int64 range; it would be rounded as a float (write it as a string)"));
        }
        for (key, v) in map {
            if key != skip {
                self.walk(key, v, line)?;
            }
        }
        Ok(())
    }

    fn walk(&mut self, path: &str, v: &Value, line: usize) -> Result<(), String> {
        if v.is_null() {
            return Ok(());
        }
        let facts = self.facts.entry(path.to_owned()).or_default();
        let kind = kind(v);
        match facts.kind {
            None => facts.kind = Some((kind, line)),
            Some((k, first)) if k != kind => {
                let what = match path.strip_suffix("[]") {
                    Some(list) => format!("an item of the list in field {list:?}"),
                    None => format!("field {path:?}"),
                };
                let before = if first == line { "earlier on this line".to_owned() } else { format!("on line {first}") };
                return Err(format!("{what} is {kind} here but {k} {before}; a column holds one type (write them all as strings to keep them as text)"));
            }
            Some(_) => {}
        }
        match v {
            Value::Number(num) => {
                if let Some(u) = num.as_u64().filter(|u| *u > i64::MAX as u64) {
                    return Err(format!("field {path:?} is the integer {u}, beyond the int64 range; it would be rounded as a float (write it as a string)"));
                }
                match num.as_i64() {
                    Some(i) if i.unsigned_abs() > EXACT_IN_F64 => facts.big_int = facts.big_int.or(Some(line)),
                    Some(_) => {}
                    None => facts.fractional = facts.fractional.or(Some(line)),
                }
                if let (Some(b), Some(f)) = (facts.big_int, facts.fractional) {
                    return Err(format!(
                        "field {path:?} mixes integers beyond 2^53 (line {b}) with non-integer numbers (line {f}): a float64 column would round the integers (write them as strings)"
                    ));
                }
            }
            Value::Array(items) => {
                let inner = format!("{path}[]");
                for item in items {
                    self.walk(&inner, item, line)?;
                }
            }
            Value::Object(map) => {
                for (k, item) in map {
                    self.walk(&format!("{path}.{k}"), item, line)?;
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// The first integer literal (no fraction, no exponent) in `text` from byte `from` on, outside
/// strings, that neither int64 nor uint64 holds, with its byte offset: serde_json reads such a
/// literal as a float, silently rounded. (`from` must lie outside strings.)
fn out_of_range_integer(text: &str, from: usize) -> Option<(usize, &str)> {
    let b = text.as_bytes();
    let mut i = from;
    while i < b.len() {
        match b[i] {
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                i += 1;
                while i < b.len() && matches!(b[i], b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-') {
                    i += 1;
                }
                let token = &text[start..i];
                let integer = !token.contains(['.', 'e', 'E']);
                if integer && token.len() >= 19 && token.parse::<i64>().is_err() && token.parse::<u64>().is_err() {
                    return Some((start, token));
                }
            }
            _ => i += 1,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(lines: &[&str]) -> Result<(), String> {
        let mut t = FieldTypes::default();
        for (i, l) in lines.iter().enumerate() {
            let v: Value = serde_json::from_str(l).unwrap();
            t.check(i + 1, l, v.as_object().unwrap(), "embedding")?;
        }
        Ok(())
    }

    #[test]
    fn exact_or_refused() {
        check(&[r#"{"id": 9007199254740993, "x": 1.5, "tags": ["a"], "m": {"n": 1}}"#, r#"{"id": 2, "x": 2, "tags": [], "m": {"n": null}}"#]).unwrap();
        for (lines, word) in [
            (vec![r#"{"id": 18446744073709551616}"#], "field \"id\" holds the integer 18446744073709551616"),
            (vec![r#"{"id": -9223372036854775809}"#], "beyond the int64 range"),
            (vec![r#"{"m": {"id": 9223372036854775808}}"#], "\"m.id\" is the integer 9223372036854775808"),
            (vec![r#"{"tags": [1, "a"]}"#], "an item of the list in field \"tags\" is a string here but a number earlier on this line"),
            (vec![r#"{"tags": [1]}"#, r#"{"tags": ["a"]}"#], "the list in field \"tags\" is a string here but a number on line 1"),
            (vec![r#"{"a": 1}"#, r#"{"a": "x"}"#], "\"a\" is a string here but a number on line 1"),
            (vec![r#"{"id": 9007199254740993}"#, r#"{"id": 0.5}"#], "mixes integers beyond 2^53 (line 1)"),
        ] {
            let e = check(&lines).unwrap_err();
            assert!(e.contains(word), "{lines:?}: {e}");
        }
        // Inside strings, and as fractions or exponents, long digit runs are fine; so are huge
        // integers in the embedding (it becomes float32 anyway), but not in a field after it.
        check(&[r#"{"s": "18446744073709551616", "f": 1.8446744073709551616e19, "g": 123456789012345678901.5}"#]).unwrap();
        check(&[r#"{"embedding": [99999999999999999999, 0]}"#]).unwrap();
        let e = check(&[r#"{"embedding": [99999999999999999999, 0], "id": 99999999999999999998}"#]).unwrap_err();
        assert!(e.contains("field \"id\" holds the integer 99999999999999999998"), "{e}");
    }
}
