//! Tool arguments with errors that name the field.
//!
//! rmcp's own `Parameters<T>` reports serde's message, which for a wrong type inside a nested object
//! does not say *where* ("invalid type: string, expected i64"). This extractor deserialises through
//! `serde_path_to_error`, so the message carries the JSON path (`scope.team_ids[1]: invalid type ...`).
//!
//! It is named `Parameters` on purpose: rmcp's `#[tool]` macro derives a tool's `inputSchema` from the
//! argument whose type is called `Parameters`.
//!
//! The error keeps rmcp's "failed to deserialize parameters:" prefix, which makes rmcp return it as a
//! tool result with `isError: true` (the model sees it and can correct the call, as MCP 2025-11-25
//! recommends for input validation errors) rather than as a JSON-RPC protocol error.

use rmcp::handler::server::common::FromContextPart;
use rmcp::handler::server::tool::ToolCallContext;
use schemars::JsonSchema;
use serde::de::DeserializeOwned;

/// Typed tool arguments; see the module docs.
#[derive(Debug, Clone)]
pub struct Parameters<T>(pub T);

/// The input schema is generated with every subschema inlined (no `$ref`/`$defs`): several MCP clients
/// and model tool-calling adapters resolve references poorly, and argument types here are not recursive.
impl<T: JsonSchema> JsonSchema for Parameters<T> {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        T::schema_name()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::generate::SchemaSettings::draft2020_12()
            .with(|s| s.inline_subschemas = true)
            .into_generator()
            .into_root_schema_for::<T>()
    }
}

/// For optional fields where `null` means "remove": absent → `None` (keep), `null` → `Some(None)`
/// (remove), a value → `Some(Some(v))`. Use with `#[serde(default, deserialize_with = "present")]`.
pub fn present<'de, D: serde::Deserializer<'de>, T: serde::Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    <Option<T> as serde::Deserialize>::deserialize(d).map(Some)
}

/// Deserialise arguments, naming the JSON path of the first problem. The message quotes at most a short
/// prefix of any value or key that was sent (serde quotes them whole).
pub fn parse_arguments<T: DeserializeOwned>(args: serde_json::Map<String, serde_json::Value>) -> Result<T, String> {
    let value = serde_json::Value::Object(args);
    serde_path_to_error::deserialize::<_, T>(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        let message = if path == "." {
            // Missing or unknown top-level fields: serde's message already names the field.
            inner
        } else {
            format!("invalid argument `{path}`: {inner}")
        };
        shorten_quotes(&message)
    })
}

/// Longest quoted value an error message repeats; longer ones are cut to this many characters and `…`.
pub const ECHO_MAX_CHARS: usize = 40;
/// Longest argument error message.
const MESSAGE_MAX_CHARS: usize = 400;

/// At most [`ECHO_MAX_CHARS`] of a value sent by a caller, for error messages.
pub fn echo(value: &str) -> String {
    if value.chars().count() <= ECHO_MAX_CHARS {
        return value.to_owned();
    }
    let mut short: String = value.chars().take(ECHO_MAX_CHARS).collect();
    short.push('…');
    short
}

/// Cut every `"…"` and `` `…` `` span of a message to [`ECHO_MAX_CHARS`], and the message to a few hundred
/// characters.
fn shorten_quotes(message: &str) -> String {
    let mut out = String::with_capacity(message.len().min(MESSAGE_MAX_CHARS * 4));
    let mut rest = message;
    while let Some(start) = rest.find(['"', '`']) {
        let quote = rest.as_bytes()[start] as char;
        out.push_str(&rest[..=start]);
        let after = &rest[start + 1..];
        match after.find(quote) {
            Some(end) => {
                out.push_str(&echo(&after[..end]));
                out.push(quote);
                rest = &after[end + 1..];
            }
            None => {
                out.push_str(&echo(after));
                rest = "";
            }
        }
    }
    out.push_str(rest);
    if out.chars().count() > MESSAGE_MAX_CHARS {
        out = out.chars().take(MESSAGE_MAX_CHARS).collect::<String>() + "…";
    }
    out
}

/// The input schema of `T`, computed once per type.
fn schema_of<T: JsonSchema + 'static>() -> std::sync::Arc<serde_json::Value> {
    use std::any::TypeId;
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex, OnceLock};
    static CACHE: OnceLock<Mutex<HashMap<TypeId, Arc<serde_json::Value>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Mutex::default);
    if let Some(s) = cache.lock().expect("schema cache lock").get(&TypeId::of::<T>()) {
        return s.clone();
    }
    let schema = schemars::generate::SchemaSettings::draft2020_12()
        .with(|s| s.inline_subschemas = true)
        .into_generator()
        .into_root_schema_for::<T>();
    let schema = Arc::new(serde_json::to_value(schema).expect("schemas serialise"));
    cache.lock().expect("schema cache lock").insert(TypeId::of::<T>(), schema.clone());
    schema
}

/// Refuse strings longer than their schema's `maxLength` and arrays longer than its `maxItems` before
/// anything else reads them, so an oversized value is neither processed nor sent on (to Make, to a
/// webhook) nor repeated in an error. Other rules are checked by the types' constructors.
pub fn check_sizes(value: &serde_json::Value, schema: &serde_json::Value) -> Result<(), String> {
    sizes(value, &[schema], "")
}

/// The schemas that apply at one place: `schema` and, recursively, the members of its combinators.
fn applicable<'a>(schemas: &[&'a serde_json::Value]) -> Vec<&'a serde_json::Value> {
    let mut out = Vec::new();
    let mut todo: Vec<&serde_json::Value> = schemas.to_vec();
    while let Some(s) = todo.pop() {
        out.push(s);
        for key in ["anyOf", "oneOf", "allOf"] {
            if let Some(members) = s.get(key).and_then(|m| m.as_array()) {
                todo.extend(members.iter());
            }
        }
    }
    out
}

/// The largest bound `key` that any applicable schema sets (a value is refused only when it is longer
/// than every alternative allows).
fn bound(schemas: &[&serde_json::Value], key: &str) -> Option<u64> {
    schemas.iter().filter_map(|s| s.get(key).and_then(serde_json::Value::as_u64)).max()
}

fn sizes(value: &serde_json::Value, schemas: &[&serde_json::Value], path: &str) -> Result<(), String> {
    use serde_json::Value;
    let here = applicable(schemas);
    let field = if path.is_empty() { "(arguments)" } else { path };
    match value {
        Value::String(s) => {
            if let Some(max) = bound(&here, "maxLength") {
                let len = s.chars().count();
                if len as u64 > max {
                    let rule = match here.iter().filter_map(|s| s.get("minLength").and_then(Value::as_u64)).min() {
                        Some(min) if min > 0 => format!("must be {min} to {max} characters"),
                        _ => format!("must be at most {max} characters"),
                    };
                    return Err(format!("invalid argument `{field}`: {rule} (got {len})"));
                }
            }
        }
        Value::Array(items) => {
            if let Some(max) = bound(&here, "maxItems")
                && items.len() as u64 > max
            {
                return Err(format!("invalid argument `{field}`: may hold at most {max} items (got {})", items.len()));
            }
            let item_schemas: Vec<&Value> = here.iter().filter_map(|s| s.get("items")).collect();
            for (i, item) in items.iter().enumerate() {
                sizes(item, &item_schemas, &format!("{path}[{i}]"))?;
            }
        }
        Value::Object(map) => {
            for (key, v) in map {
                let props: Vec<&Value> =
                    here.iter().filter_map(|s| s.get("properties").and_then(|p| p.get(key))).collect();
                let child = if path.is_empty() { echo(key) } else { format!("{path}.{}", echo(key)) };
                sizes(v, &props, &child)?;
            }
        }
        _ => {}
    }
    Ok(())
}

impl<S, T: DeserializeOwned + JsonSchema + 'static> FromContextPart<ToolCallContext<'_, S>> for Parameters<T> {
    fn from_context_part(context: &mut ToolCallContext<'_, S>) -> Result<Self, rmcp::ErrorData> {
        let args = context.arguments.take().unwrap_or_default();
        let fail =
            |msg: String| rmcp::ErrorData::invalid_params(format!("failed to deserialize parameters: {msg}"), None);
        let value = serde_json::Value::Object(args);
        check_sizes(&value, &schema_of::<T>()).map_err(fail)?;
        let serde_json::Value::Object(args) = value else { unreachable!("arguments are an object") };
        parse_arguments(args).map(Parameters).map_err(fail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::budget::{BudgetDraft, NAME_MAX_CHARS};

    fn parse(v: serde_json::Value) -> Result<BudgetDraft, String> {
        parse_arguments(v.as_object().unwrap().clone())
    }

    fn good() -> serde_json::Value {
        serde_json::json!({"name": "n", "unit": "credits", "limit": 5, "period": {"kind": "daily"},
                           "scope": {"organization_id": 1}})
    }

    #[test]
    fn oversized_values_are_refused_by_their_schema_bound_without_echo() {
        let schema = serde_json::to_value(
            schemars::generate::SchemaSettings::draft2020_12()
                .with(|s| s.inline_subschemas = true)
                .into_generator()
                .into_root_schema_for::<BudgetDraft>(),
        )
        .unwrap();
        assert!(check_sizes(&good(), &schema).is_ok());
        let mut v = good();
        v["name"] = "x".repeat(1 << 20).into();
        let e = check_sizes(&v, &schema).unwrap_err();
        assert_eq!(e, format!("invalid argument `name`: must be 1 to {NAME_MAX_CHARS} characters (got 1048576)"));
        let mut v = good();
        v["scope"]["team_ids"] = (0..10_000).collect::<Vec<i64>>().into();
        let e = check_sizes(&v, &schema).unwrap_err();
        assert!(e.starts_with("invalid argument `scope.team_ids`: may hold at most 500 items"), "{e}");
        // Inside a tagged union (period is a oneOf): the custom variant's dates are bounded too.
        let mut v = good();
        v["period"] = serde_json::json!({"kind": "custom", "start": "2".repeat(5000), "end": "2026-01-01"});
        let e = check_sizes(&v, &schema).unwrap_err();
        assert!(e.starts_with("invalid argument `period.start`"), "{e}");
    }

    #[test]
    fn serde_messages_quote_only_a_prefix() {
        let mut v = good();
        v["limit"] = "9".repeat(100_000).into();
        let e = parse(v).unwrap_err();
        assert!(e.len() < 300 && e.starts_with("invalid argument `limit`: invalid type: string \"9999"), "{e}");
        let mut v = good();
        v[&"k".repeat(100_000)] = 1.into();
        let e = parse(v).unwrap_err();
        assert!(e.len() < 300 && e.contains("unknown field `kkkk"), "{e}");
        assert_eq!(echo("short"), "short");
        assert_eq!(echo(&"é".repeat(50)).chars().count(), ECHO_MAX_CHARS + 1);
    }

    #[test]
    fn errors_name_the_path() {
        assert!(parse(good()).is_ok());

        let mut v = good();
        v["scope"]["team_ids"] = serde_json::json!([1, "two"]);
        let e = parse(v).unwrap_err();
        assert!(e.starts_with("invalid argument `scope.team_ids[1]`"), "{e}");

        let mut v = good();
        v["limit"] = "many".into();
        assert!(parse(v).unwrap_err().starts_with("invalid argument `limit`"));

        let mut v = good();
        v.as_object_mut().unwrap().remove("unit");
        assert!(parse(v).unwrap_err().contains("missing field `unit`"));

        let mut v = good();
        v["bogus"] = 1.into();
        assert!(parse(v).unwrap_err().contains("unknown field `bogus`"));

        let mut v = good();
        v["period"] = serde_json::json!({"kind": "fortnightly"});
        let e = parse(v).unwrap_err();
        assert!(e.starts_with("invalid argument `period.kind`: unknown variant `fortnightly`"), "{e}");

        let mut v = good();
        v["period"] = serde_json::json!({"kind": "custom", "start": "2026-02-30", "end": "2026-03-01"});
        let e = parse(v).unwrap_err();
        assert!(e.starts_with("invalid argument `period.start`") && e.contains("day"), "{e}");
    }
}

/// The arguments of a tool that takes none: an empty object (unknown fields refused).
#[derive(Debug, Default, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoArgs {}
