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

/// Deserialise arguments, naming the JSON path of the first problem.
pub fn parse_arguments<T: DeserializeOwned>(args: serde_json::Map<String, serde_json::Value>) -> Result<T, String> {
    let value = serde_json::Value::Object(args);
    serde_path_to_error::deserialize::<_, T>(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        if path == "." {
            // Missing or unknown top-level fields: serde's message already names the field.
            inner
        } else {
            format!("invalid argument `{path}`: {inner}")
        }
    })
}

impl<S, T: DeserializeOwned> FromContextPart<ToolCallContext<'_, S>> for Parameters<T> {
    fn from_context_part(context: &mut ToolCallContext<'_, S>) -> Result<Self, rmcp::ErrorData> {
        let args = context.arguments.take().unwrap_or_default();
        parse_arguments(args)
            .map(Parameters)
            .map_err(|msg| rmcp::ErrorData::invalid_params(format!("failed to deserialize parameters: {msg}"), None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::budget::BudgetDraft;

    fn parse(v: serde_json::Value) -> Result<BudgetDraft, String> {
        parse_arguments(v.as_object().unwrap().clone())
    }

    fn good() -> serde_json::Value {
        serde_json::json!({"name": "n", "unit": "credits", "limit": 5, "period": {"kind": "daily"},
                           "scope": {"organization_id": 1}})
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
        assert!(e.starts_with("invalid argument `period`") && e.contains("day"), "{e}");
    }
}
