//! The JSON merge patch (RFC 7386) that turns one status into another: changed values are
//! written, and keys that are gone are set to null so the API server removes them (a plain
//! merge of the new status would leave a removed component's status behind).

use serde_json::{Map, Value};

/// The merge patch from `old` to `new`; `None` when they are equal.
pub fn merge_patch(old: &Value, new: &Value) -> Option<Value> {
    if old == new {
        return None;
    }
    match (old, new) {
        (Value::Object(old), Value::Object(new)) => {
            let mut patch = Map::new();
            for (key, value) in new {
                let before = old.get(key).unwrap_or(&Value::Null);
                if let Some(change) = merge_patch(before, value) {
                    patch.insert(key.clone(), change);
                }
            }
            for key in old.keys().filter(|k| !new.contains_key(*k)) {
                patch.insert(key.clone(), Value::Null);
            }
            Some(Value::Object(patch))
        }
        _ => Some(new.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn removed_keys_become_null_and_equal_values_are_left_out() {
        let old =
            json!({"url": "a", "components": {"predictor": {"x": 1}, "transformer": {"x": 1}}});
        let new = json!({"url": "a", "components": {"predictor": {"x": 2}}});
        assert_eq!(
            merge_patch(&old, &new),
            Some(json!({"components": {"predictor": {"x": 2}, "transformer": null}}))
        );
        assert_eq!(merge_patch(&new, &new), None);
        // Arrays are replaced whole, as RFC 7386 says.
        assert_eq!(
            merge_patch(&json!({"a": [1, 2]}), &json!({"a": [2]})),
            Some(json!({"a": [2]}))
        );
    }
}
