//! Checks a manifest against its CRD's OpenAPI schema the way the API server would: wrong
//! types, values outside an enum and missing required fields are errors; fields the schema
//! does not know are reported as warnings (the API server would drop them).

use serde_json::Value;

use crate::field_error::FieldError;

/// The outcome of checking one object against its schema.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SchemaReport {
    pub errors: Vec<FieldError>,
    pub unknown_fields: Vec<String>,
}

/// Checks `value` against a CRD's `schema`, which, like the API server, takes `apiVersion`,
/// `kind` and `metadata` (an `ObjectMeta`) as given.
pub fn check(value: &Value, schema: &Value) -> SchemaReport {
    let mut root = schema.clone();
    if let Some(properties) = root.get_mut("properties").and_then(Value::as_object_mut) {
        properties.insert("apiVersion".into(), serde_json::json!({"type": "string"}));
        properties.insert("kind".into(), serde_json::json!({"type": "string"}));
        properties.insert("metadata".into(), object_meta_schema());
    }
    let mut report = SchemaReport::default();
    walk(value, &root, "", &mut report);
    report
}

fn object_meta_schema() -> Value {
    let string_map =
        serde_json::json!({"type": "object", "additionalProperties": {"type": "string"}});
    serde_json::json!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
        "properties": {
            "name": {"type": "string"},
            "generateName": {"type": "string"},
            "namespace": {"type": "string"},
            "labels": string_map,
            "annotations": string_map,
        }
    })
}

fn child_path(parent: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    match (parent.is_empty(), plain) {
        (true, true) => key.to_string(),
        (false, true) => format!("{parent}.{key}"),
        (_, false) => format!("{parent}[{key}]"),
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn walk(value: &Value, schema: &Value, path: &str, report: &mut SchemaReport) {
    let flag = |name: &str| schema.get(name).and_then(Value::as_bool).unwrap_or(false);
    let shown = || {
        if path.is_empty() {
            "<root>".to_string()
        } else {
            path.to_string()
        }
    };
    if value.is_null() {
        // Absent and null are the same to the API server for optional fields.
        return;
    }
    if flag("x-kubernetes-int-or-string") {
        if !(value.is_string() || value.is_i64() || value.is_u64()) {
            report.errors.push(FieldError::new(
                shown(),
                format!("expected an integer or a string, got {}", type_name(value)),
            ));
        }
        return;
    }
    // Composite schemas (untagged enums) are left to the typed parse, which names the path.
    if schema.get("anyOf").is_some()
        || schema.get("oneOf").is_some()
        || schema.get("allOf").is_some()
    {
        return;
    }
    let expected = schema.get("type").and_then(Value::as_str);
    let matches = match expected {
        None => true,
        Some("object") => value.is_object(),
        Some("array") => value.is_array(),
        Some("string") => value.is_string(),
        Some("integer") => value.is_i64() || value.is_u64(),
        Some("number") => value.is_number(),
        Some("boolean") => value.is_boolean(),
        Some(_) => true,
    };
    if !matches {
        report.errors.push(FieldError::new(
            shown(),
            format!(
                "expected {}, got {} {}",
                expected.unwrap_or("?"),
                type_name(value),
                value
            ),
        ));
        return;
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
        if !allowed.contains(value) {
            let list: Vec<String> = allowed
                .iter()
                .filter(|v| !v.is_null())
                .map(|v| v.to_string())
                .collect();
            report.errors.push(FieldError::new(
                shown(),
                format!(
                    "unsupported value {value}: expected one of {}",
                    list.join(", ")
                ),
            ));
        }
    }
    match value {
        Value::Object(map) => {
            let properties = schema.get("properties").and_then(Value::as_object);
            for required in schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(key) = required.as_str() {
                    if map.get(key).is_none_or(Value::is_null) {
                        report.errors.push(FieldError::new(
                            child_path(path, key),
                            "required field is missing",
                        ));
                    }
                }
            }
            for (key, child) in map {
                let child_schema = properties
                    .and_then(|p| p.get(key))
                    .or_else(|| schema.get("additionalProperties").filter(|s| s.is_object()));
                match child_schema {
                    Some(s) => walk(child, s, &child_path(path, key), report),
                    None if flag("x-kubernetes-preserve-unknown-fields") => {}
                    None => report.unknown_fields.push(child_path(path, key)),
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    walk(item, item_schema, &format!("{path}[{i}]"), report);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {
                        "name": {"type": "string"},
                        "replicas": {"type": "integer"},
                        "mode": {"type": "string", "enum": ["a", "b"]},
                        "items": {"type": "array", "items": {"type": "object", "properties": {"x": {"type": "boolean"}}}},
                        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                        "port": {"x-kubernetes-int-or-string": true}
                    }
                }
            }
        })
    }

    #[test]
    fn reports_type_enum_required_and_unknown_fields_by_path() {
        let value = json!({"spec": {
            "replicas": "two", "mode": "c", "items": [{"x": true}, {"x": 1, "y": 2}],
            "free": {"anything": [1]}, "port": 8080, "extra": 1
        }});
        let report = check(&value, &schema());
        let errors: Vec<String> = report.errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            errors,
            vec![
                "spec.name: required field is missing",
                "spec.items[1].x: expected boolean, got integer 1",
                "spec.mode: unsupported value \"c\": expected one of \"a\", \"b\"",
                "spec.replicas: expected integer, got string \"two\"",
            ]
        );
        assert_eq!(report.unknown_fields, vec!["spec.extra", "spec.items[1].y"]);
    }

    #[test]
    fn metadata_annotations_must_be_strings() {
        let value = json!({"metadata": {"name": "x", "annotations": {"autoscaling.knative.dev/min-scale": 0}}});
        let report = check(&value, &json!({"type": "object", "properties": {}}));
        assert_eq!(
            report.errors[0].path,
            "metadata.annotations[autoscaling.knative.dev/min-scale]"
        );
    }
}
