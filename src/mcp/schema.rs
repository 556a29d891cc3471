//! Tool schemas as strict JSON Schema 2020-12 validators read them.
//!
//! schemars describes a type with `$ref`s into `$defs` and with its own integer formats (`uint`,
//! `int64`, `double`, …). Two things then break clients that validate (the official Python SDK with
//! `jsonschema`, the TypeScript SDK with ajv):
//! - a `$ref` with sibling keywords, as `#[serde(flatten)]` produces: under 2020-12 the referenced schema
//!   is applied on its own, so its `additionalProperties: false` rejects the siblings' properties;
//! - formats no validator knows, which ajv reports as `unknown format "uint" ignored`.
//!
//! [`tidy_output`] therefore inlines every reference (merging a reference's object schema with its
//! siblings), drops `additionalProperties: false` (an output schema describes what the server writes;
//! refusing extra keys there protects nothing and breaks flattened types) and keeps only the formats of
//! the 2020-12 vocabulary. [`tidy_input`] keeps input schemas strict (unknown fields are refused) and
//! only drops the non-standard formats; their bounds (`minimum`, `maxLength`, …) stay.

use rmcp::model::JsonObject;
use serde_json::{Map, Value};

/// The `format` values of JSON Schema 2020-12's format vocabulary; every other value is dropped.
const STANDARD_FORMATS: &[&str] = &[
    "date-time",
    "date",
    "time",
    "duration",
    "email",
    "idn-email",
    "hostname",
    "idn-hostname",
    "ipv4",
    "ipv6",
    "uri",
    "uri-reference",
    "iri",
    "iri-reference",
    "uuid",
    "uri-template",
    "json-pointer",
    "relative-json-pointer",
    "regex",
];

/// Deepest `$ref` chain followed; our types are not recursive, so this only stops a mistake.
const MAX_DEPTH: usize = 32;

/// An output schema with every reference inlined, no `additionalProperties: false` and standard formats only.
pub fn tidy_output(schema: &JsonObject) -> JsonObject {
    tidy(schema, true)
}

/// An input schema with references inlined and standard formats only (its strictness and bounds kept).
pub fn tidy_input(schema: &JsonObject) -> JsonObject {
    tidy(schema, false)
}

fn tidy(schema: &JsonObject, output: bool) -> JsonObject {
    let mut root = schema.clone();
    let defs = root.remove("$defs").and_then(|d| d.as_object().cloned()).unwrap_or_default();
    let mut value = Value::Object(root);
    inline(&mut value, &defs, 0);
    clean(&mut value, output);
    match value {
        Value::Object(m) => m,
        _ => unreachable!("an object stays an object"),
    }
}

/// Replace each `{"$ref": "#/$defs/X", …siblings}` by the definition merged with its siblings.
fn inline(value: &mut Value, defs: &Map<String, Value>, depth: usize) {
    match value {
        Value::Object(map) => {
            if depth < MAX_DEPTH
                && let Some(Value::String(r)) = map.get("$ref")
                && let Some(def) = r.strip_prefix("#/$defs/").and_then(|name| defs.get(name))
            {
                let mut def = def.clone();
                inline(&mut def, defs, depth + 1);
                map.remove("$ref");
                let siblings = std::mem::take(map);
                *value = merge(def, siblings);
                // The merged siblings may hold references of their own.
                if let Value::Object(map) = value {
                    for v in map.values_mut() {
                        inline(v, defs, depth + 1);
                    }
                }
                return;
            }
            for v in map.values_mut() {
                inline(v, defs, depth);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| inline(v, defs, depth)),
        _ => {}
    }
}

/// A referenced definition together with the keywords written beside the reference.
fn merge(def: Value, siblings: Map<String, Value>) -> Value {
    if siblings.is_empty() {
        return def;
    }
    let Value::Object(mut base) = def else {
        // A boolean schema: keep both, applied together.
        let mut all = siblings;
        all.insert("allOf".into(), Value::Array(vec![def]));
        return Value::Object(all);
    };
    let combinable = !base.contains_key("oneOf") && !base.contains_key("anyOf") && !base.contains_key("allOf");
    if !combinable && (siblings.contains_key("properties") || siblings.contains_key("oneOf")) {
        let mut all = siblings;
        all.insert("allOf".into(), Value::Array(vec![Value::Object(base)]));
        return Value::Object(all);
    }
    if siblings.contains_key("properties") {
        // A flattened type: its own description would claim to describe the whole object.
        base.remove("description");
        base.remove("title");
    }
    for (key, extra) in siblings {
        match (key.as_str(), base.get_mut(&key), extra) {
            ("properties", Some(Value::Object(props)), Value::Object(more)) => props.extend(more),
            ("required", Some(Value::Array(req)), Value::Array(more)) => {
                for r in more {
                    if !req.contains(&r) {
                        req.push(r);
                    }
                }
            }
            (_, _, extra) => {
                base.insert(key, extra);
            }
        }
    }
    Value::Object(base)
}

fn clean(value: &mut Value, output: bool) {
    match value {
        Value::Object(map) => {
            if map.get("format").and_then(Value::as_str).is_some_and(|f| !STANDARD_FORMATS.contains(&f)) {
                map.remove("format");
            }
            if output && map.get("additionalProperties") == Some(&Value::Bool(false)) {
                map.remove("additionalProperties");
            }
            // A property named "format" or "additionalProperties" is data, not a keyword: only keyword
            // positions are cleaned, and `properties` maps hold schemas, which the recursion cleans.
            map.values_mut().for_each(|v| clean(v, output));
        }
        Value::Array(items) => items.iter_mut().for_each(|v| clean(v, output)),
        _ => {}
    }
}

/// Everything in a schema that strict validators trip over, as `path: problem` lines (empty when none).
pub fn lint_output(schema: &JsonObject) -> Vec<String> {
    let mut problems = Vec::new();
    walk(&Value::Object(schema.clone()), "$", &mut |path, map| {
        if map.contains_key("$ref") || map.contains_key("$defs") {
            problems.push(format!("{path}: holds a reference"));
        }
        if let Some(f) = map.get("format").and_then(Value::as_str).filter(|f| !STANDARD_FORMATS.contains(f)) {
            problems.push(format!("{path}: non-standard format {f:?}"));
        }
        if map.get("additionalProperties") == Some(&Value::Bool(false)) {
            problems.push(format!("{path}: additionalProperties false"));
        }
    });
    problems
}

/// Every unbounded value an agent could send, as `path: problem` lines (empty when every string has a
/// `maxLength`, every array a `maxItems`, every object refuses unknown fields, and nothing is referenced).
pub fn lint_input(schema: &JsonObject) -> Vec<String> {
    let mut problems = Vec::new();
    walk(&Value::Object(schema.clone()), "$", &mut |path, map| {
        if map.contains_key("$ref") || map.contains_key("$defs") {
            problems.push(format!("{path}: holds a reference"));
        }
        if let Some(f) = map.get("format").and_then(Value::as_str).filter(|f| !STANDARD_FORMATS.contains(f)) {
            problems.push(format!("{path}: non-standard format {f:?}"));
        }
        let types: Vec<&str> = match map.get("type") {
            Some(Value::String(t)) => vec![t.as_str()],
            Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        let constant = map.contains_key("const") || map.contains_key("enum");
        if types.contains(&"string") && !constant && !map.contains_key("maxLength") {
            problems.push(format!("{path}: string without maxLength"));
        }
        if types.contains(&"array") && !map.contains_key("maxItems") {
            problems.push(format!("{path}: array without maxItems"));
        }
        if types.contains(&"object") && map.get("additionalProperties") != Some(&Value::Bool(false)) {
            problems.push(format!("{path}: object that accepts unknown fields"));
        }
    });
    problems
}

/// Call `visit` on every schema object under `value`, with a readable path.
fn walk(value: &Value, path: &str, visit: &mut dyn FnMut(&str, &Map<String, Value>)) {
    match value {
        Value::Object(map) => {
            visit(path, map);
            for (key, v) in map {
                match key.as_str() {
                    "properties" | "$defs" | "patternProperties" => {
                        if let Value::Object(props) = v {
                            for (name, schema) in props {
                                walk(schema, &format!("{path}.{name}"), visit);
                            }
                        }
                    }
                    "const" | "enum" | "default" | "examples" => {}
                    _ => walk(v, &format!("{path}/{key}"), visit),
                }
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                walk(v, &format!("{path}[{i}]"), visit);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn obj(v: Value) -> JsonObject {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn a_flattened_reference_is_merged_with_its_siblings() {
        let schema = obj(json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "$ref": "#/$defs/Draft",
            "properties": {"id": {"type": "string"}, "version": {"type": "integer", "format": "int64"}},
            "required": ["id", "version"],
            "$defs": {"Draft": {
                "type": "object",
                "additionalProperties": false,
                "properties": {"name": {"type": "string"}, "period": {"$ref": "#/$defs/Period"}},
                "required": ["name", "period"]
            }, "Period": {"oneOf": [{"type": "object", "properties": {"kind": {"const": "daily"}},
                                      "additionalProperties": false}]}}
        }));
        let tidy = tidy_output(&schema);
        assert_eq!(lint_output(&tidy), Vec::<String>::new());
        assert_eq!(tidy["required"], json!(["name", "period", "id", "version"]));
        assert_eq!(tidy["properties"]["version"], json!({"type": "integer"}));
        assert_eq!(tidy["properties"]["period"]["oneOf"][0]["properties"]["kind"], json!({"const": "daily"}));
        assert!(!tidy.contains_key("additionalProperties"));
        assert_eq!(tidy["$schema"], "https://json-schema.org/draft/2020-12/schema");
    }

    #[test]
    fn standard_formats_stay_and_input_strictness_stays() {
        let schema = obj(json!({
            "type": "object", "additionalProperties": false,
            "properties": {"day": {"type": "string", "format": "date", "maxLength": 10},
                           "n": {"type": "integer", "format": "uint32", "minimum": 0}},
        }));
        let tidy = tidy_input(&schema);
        assert_eq!(tidy["properties"]["day"]["format"], "date");
        assert_eq!(tidy["properties"]["n"], json!({"type": "integer", "minimum": 0}));
        assert_eq!(tidy["additionalProperties"], false);
        assert_eq!(lint_input(&tidy), Vec::<String>::new());
    }

    #[test]
    fn the_input_lint_finds_unbounded_values() {
        let schema = obj(json!({
            "type": "object",
            "properties": {"s": {"type": ["string", "null"]}, "a": {"type": "array", "items": {"type": "integer"}},
                           "k": {"type": "string", "enum": ["x"]}},
        }));
        let problems = lint_input(&schema);
        assert_eq!(
            problems,
            vec![
                "$: object that accepts unknown fields".to_owned(),
                "$.a: array without maxItems".to_owned(),
                "$.s: string without maxLength".to_owned()
            ]
        );
    }
}
