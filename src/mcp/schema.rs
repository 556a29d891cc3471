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
    if output {
        lean_output(&mut value, true);
    } else {
        lean_input(&mut value, false);
    }
    match value {
        Value::Object(m) => m,
        _ => unreachable!("an object stays an object"),
    }
}

/// Keywords whose values are data, not schemas.
fn is_data(key: &str) -> bool {
    matches!(key, "const" | "enum" | "default" | "examples" | "required")
}

/// What an agent pays for and does not need in an input schema: `"default": null` (absent already means
/// null), and the description of a type inlined under a property that has its own (the property says
/// what to send; the type's doc comment was written for the code).
fn lean_input(value: &mut Value, described_above: bool) {
    match value {
        Value::Object(map) => {
            if map.get("default") == Some(&Value::Null) {
                map.remove("default");
            }
            if described_above {
                map.remove("description");
            }
            let described = described_above || map.contains_key("description");
            for (key, v) in map.iter_mut() {
                match key.as_str() {
                    "properties" => {
                        if let Value::Object(props) = v {
                            props.values_mut().for_each(|p| lean_input(p, false));
                        }
                    }
                    k if is_data(k) => {}
                    _ => lean_input(v, described),
                }
            }
            // After the children, whose descriptions are gone where this schema describes them.
            if map.contains_key("const") {
                // The constant says its type.
                map.remove("type");
            }
            merge_tag_variants(map);
        }
        Value::Array(items) => items.iter_mut().for_each(|v| lean_input(v, described_above)),
        _ => {}
    }
}

/// `oneOf` variants that are the same object but for the constant of one tag property (`{"kind":
/// "daily"}`, `{"kind": "weekly"}`, …) become one variant whose tag is an `enum`: the same values are
/// accepted, in a quarter of the bytes.
fn merge_tag_variants(map: &mut Map<String, Value>) {
    let Some(Value::Array(variants)) = map.get_mut("oneOf") else { return };
    // Only variants without a description of their own (they were dropped under a described property).
    let tag_of = |v: &Value| -> Option<(String, Value)> {
        let props = v.get("properties")?.as_object()?;
        if props.len() != 1 || v.get("description").is_some() {
            return None;
        }
        let (name, p) = props.iter().next()?;
        let c = p.get("const")?;
        (p.as_object()?.len() == 1).then(|| (name.clone(), c.clone()))
    };
    let mut merged: Option<(String, Vec<Value>, Value)> = None;
    let mut rest = Vec::new();
    for v in variants.drain(..) {
        match (tag_of(&v), merged.as_mut()) {
            (Some((name, c)), Some((m, values, _))) if *m == name => values.push(c),
            (Some((name, c)), None) => merged = Some((name, vec![c], v)),
            _ => rest.push(v),
        }
    }
    if let Some((name, values, mut first)) = merged {
        if values.len() > 1 {
            first["properties"][&name] = serde_json::json!({ "enum": values });
        }
        rest.insert(0, first);
    }
    *variants = rest;
    if variants.len() == 1 {
        let only = variants.pop().expect("one variant");
        map.remove("oneOf");
        if let Value::Object(o) = only {
            for (k, v) in o {
                map.entry(k).or_insert(v);
            }
        }
    }
}

/// An output schema describes what the server writes; the tool's description says what it means. So
/// below the root only the shape stays: no descriptions, and a `oneOf` of described constants becomes
/// one `enum`.
fn lean_output(value: &mut Value, root: bool) {
    match value {
        Value::Object(map) => {
            if !root {
                map.remove("description");
            }
            if map.contains_key("const") {
                map.remove("type");
            }
            let constants = match map.get("oneOf") {
                Some(Value::Array(variants)) => variants
                    .iter()
                    .map(|v| v.get("const").cloned().filter(|_| v.get("properties").is_none()))
                    .collect::<Option<Vec<Value>>>(),
                _ => None,
            };
            if let Some(values) = constants {
                map.remove("oneOf");
                map.insert("enum".into(), Value::Array(values));
            }
            for (key, v) in map.iter_mut() {
                match key.as_str() {
                    "properties" => {
                        if let Value::Object(props) = v {
                            props.values_mut().for_each(|p| lean_output(p, false));
                        }
                    }
                    k if is_data(k) => {}
                    _ => lean_output(v, false),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| lean_output(v, false)),
        _ => {}
    }
}

/// The output schema of a tool whose result has the same shape as `canonical`'s: its top-level keys and
/// their types, and a pointer to where the full shape is (every byte of `tools/list` is paid for by the
/// agent's context, and repeating a 3 KB shape in five tools tells it nothing new).
pub fn same_as(canonical: &str, schema: &JsonObject) -> JsonObject {
    let mut out = Map::new();
    out.insert("type".into(), Value::String("object".into()));
    out.insert("description".into(), Value::String(format!("The same shape as {canonical}'s result.")));
    if let Some(Value::Object(props)) = schema.get("properties") {
        let shallow: Map<String, Value> = props
            .iter()
            .map(|(k, p)| {
                let mut s = Map::new();
                if let Some(t) = p.get("type") {
                    s.insert("type".into(), t.clone());
                }
                (k.clone(), Value::Object(s))
            })
            .collect();
        out.insert("properties".into(), Value::Object(shallow));
    }
    if let Some(req) = schema.get("required") {
        out.insert("required".into(), req.clone());
    }
    out
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
    fn lean_schemas_keep_bounds_and_shape_but_not_repeated_prose() {
        let input = obj(json!({
            "type": "object", "additionalProperties": false,
            "properties": {"period": {"description": "The period.", "default": null,
                "oneOf": [{"description": "Each day.", "type": "object", "additionalProperties": false,
                           "properties": {"kind": {"const": "daily", "description": "kept: a property's own"}}}]},
                "n": {"type": "integer", "minimum": 1, "maximum": 9, "default": 3}},
        }));
        let lean = tidy_input(&input);
        assert_eq!(lean["properties"]["period"]["description"], "The period.");
        assert!(!lean["properties"]["period"].as_object().unwrap().contains_key("default"));
        // One variant left: it is the schema.
        assert!(lean["properties"]["period"].get("oneOf").is_none());
        assert_eq!(lean["properties"]["period"]["properties"]["kind"]["description"], "kept: a property's own");
        assert_eq!(lean["properties"]["n"], json!({"type": "integer", "minimum": 1, "maximum": 9, "default": 3}));
        assert_eq!(lint_input(&lean), Vec::<String>::new());

        let output = obj(json!({
            "type": "object", "description": "A plan.",
            "properties": {"state": {"description": "State.", "oneOf": [
                {"const": "planned", "type": "string", "description": "Made."},
                {"const": "executed", "type": "string", "description": "Done."}]},
                "n": {"type": "integer", "description": "How many."}},
            "required": ["state", "n"],
        }));
        let lean = tidy_output(&output);
        assert_eq!(lean["description"], "A plan.");
        assert_eq!(lean["properties"]["state"], json!({"enum": ["planned", "executed"]}));
        assert_eq!(lean["properties"]["n"], json!({"type": "integer"}));
        let same = same_as("get_action", &lean);
        assert_eq!(same["properties"], json!({"state": {}, "n": {"type": "integer"}}));
        assert_eq!(same["required"], json!(["state", "n"]));
        assert_eq!(same["description"], "The same shape as get_action's result.");
    }

    #[test]
    fn unit_variants_of_a_tagged_type_merge_into_one_enum() {
        let unit = |k: &str| {
            json!({"type": "object", "additionalProperties": false,
                                    "properties": {"kind": {"const": k, "type": "string"}}, "required": ["kind"]})
        };
        let custom = json!({"type": "object", "additionalProperties": false, "required": ["kind", "start"],
                            "properties": {"kind": {"const": "custom"}, "start": {"type": "string", "maxLength": 10}}});
        let input = obj(json!({"type": "object", "additionalProperties": false, "properties": {
            "period": {"description": "The period.", "oneOf": [unit("daily"), unit("weekly"), custom]},
            "only": {"description": "One kind.", "oneOf": [unit("daily"), unit("monthly")]}}}));
        let lean = tidy_input(&input);
        let period = &lean["properties"]["period"]["oneOf"];
        assert_eq!(period[0]["properties"]["kind"], json!({"enum": ["daily", "weekly"]}));
        assert_eq!(period[1]["properties"]["kind"], json!({"const": "custom"}));
        assert_eq!(period.as_array().unwrap().len(), 2);
        let only = &lean["properties"]["only"];
        assert!(only.get("oneOf").is_none());
        assert_eq!(only["properties"]["kind"], json!({"enum": ["daily", "monthly"]}));
        assert_eq!((only["required"].clone(), only["additionalProperties"].clone()), (json!(["kind"]), json!(false)));
        assert_eq!(lint_input(&lean), Vec::<String>::new());
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
