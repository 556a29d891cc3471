//! What the server says to a client message it cannot use, on either transport.
//!
//! rmcp drops input that is not JSON (stdio) or answers it `415` with a text body (HTTP), and it reads a
//! request for a known method whose `params` have the wrong shape as a custom request, which the handler
//! then refuses as `-32601 Method not found`. A client waiting on that id hangs, or is told the method does
//! not exist. [`classify`] is the one place that decides instead, for the stdio transport
//! ([`super::stdio`]) and for the HTTP body check (`crate::http`):
//!
//! - not JSON (invalid UTF-8, a lone surrogate, nesting beyond serde_json's limit of 128, truncated input,
//!   `NaN`, a number beyond `f64`): `-32700 Parse error`, id `null`;
//! - JSON that is not a JSON-RPC message (a batch, a scalar, `jsonrpc` other than `"2.0"`, an id that is
//!   neither a string nor an integer, a non-string `method`): `-32600 Invalid Request`, with the id when
//!   one can be read;
//! - a known MCP method (the requests of rmcp's `ClientRequest` and the notifications of
//!   `ClientNotification`) whose `params` do not deserialize into rmcp's type for it: `-32602 Invalid
//!   params`, naming the field by its JSON path (`params.name: invalid type: integer `42`, expected a
//!   string`).
//!
//! Notifications and client responses that fail are not answered (JSON-RPC forbids it); the caller logs
//! them. Values quoted in messages are cut to [`QUOTE_LIMIT`] characters, and log lines carry no value at
//! all and at most [`LOG_PREFIX_CHARS`] characters of the raw input: tool arguments can hold secrets.
//!
//! The common case costs one typed parse, as in rmcp: only input that fails it (or that rmcp would read as
//! a custom request for a known method) is parsed again as a `serde_json::Value` to find out why.

use rmcp::model::{
    CallToolRequest, CancelTaskRequest, CancelledNotification, ClientJsonRpcMessage, ClientNotification, ClientRequest,
    CompleteRequest, DiscoverRequest, GetPromptRequest, GetSkillRequest, GetTaskRequest, InitializeRequest,
    InitializedNotification, JsonRpcMessage, ListPromptsRequest, ListResourceTemplatesRequest, ListResourcesRequest,
    ListSkillsRequest, ListToolsRequest, NumberOrString, PingRequest, ProgressNotification,
    ReadResourceDirectoryRequest, ReadResourceRequest, Request, RequestNoParam, RequestOptionalParam,
    RootsListChangedNotification, SetLevelRequest, SubscribeRequest, SubscriptionsListenRequest, UnsubscribeRequest,
    UpdateTaskRequest,
};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

/// JSON-RPC error codes used here.
pub const PARSE_ERROR: i32 = -32700;
pub const INVALID_REQUEST: i32 = -32600;
pub const INVALID_PARAMS: i32 = -32602;

/// Longest value (in characters) quoted back in an error message; longer ones end in `…`.
pub const QUOTE_LIMIT: usize = 40;

/// Characters of the raw input a log line may show.
pub const LOG_PREFIX_CHARS: usize = 20;

/// Longest error message; anything beyond is cut.
const MESSAGE_LIMIT: usize = 300;

/// Why a message was refused, and the answer to send if one is due.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    /// One of [`PARSE_ERROR`], [`INVALID_REQUEST`], [`INVALID_PARAMS`].
    pub code: i32,
    /// The error message sent to the client (values quoted at most [`QUOTE_LIMIT`] characters).
    pub message: String,
    /// The request id, when one could be read (echoed in the answer).
    pub id: Option<NumberOrString>,
    /// False for notifications and client responses: JSON-RPC lets nothing answer those.
    pub answer: bool,
    /// The method named in the message, if any (for the log).
    pub method: Option<String>,
}

impl Rejection {
    fn new(code: i32, what: &str, detail: &str, id: Option<NumberOrString>, answer: bool) -> Self {
        let message = cap_message(&format!("{what}: {detail}"), QUOTE_LIMIT);
        Rejection { code, message, id, answer, method: None }
    }

    pub fn parse_error(detail: &str) -> Self {
        Self::new(PARSE_ERROR, "Parse error", detail, None, true)
    }

    pub fn invalid_request(detail: &str, id: Option<NumberOrString>, answer: bool) -> Self {
        Self::new(INVALID_REQUEST, "Invalid Request", detail, id, answer)
    }

    pub fn invalid_params(detail: &str, id: Option<NumberOrString>, answer: bool) -> Self {
        Self::new(INVALID_PARAMS, "Invalid params", detail, id, answer)
    }

    /// The JSON-RPC error response: `{"jsonrpc":"2.0","id":…,"error":{"code":…,"message":…}}`.
    pub fn to_json(&self) -> Value {
        let id = match &self.id {
            Some(NumberOrString::Number(n)) => json!(n),
            Some(NumberOrString::String(s)) => json!(s.as_ref()),
            None => Value::Null,
        };
        json!({"jsonrpc": "2.0", "id": id, "error": {"code": self.code, "message": self.message}})
    }

    /// The answer as one line (with its `\n`), for the stdio transport.
    pub fn to_line(&self) -> Vec<u8> {
        let mut line = serde_json::to_vec(&self.to_json()).expect("a JSON value serializes");
        line.push(b'\n');
        line
    }

    /// Log the refusal at WARN: the code, the reason without any quoted value, the size and a short
    /// prefix of the raw input. Never more of the input than that: tool arguments may hold secrets.
    pub fn log(&self, transport: &'static str, raw: &[u8]) {
        tracing::warn!(
            transport,
            code = self.code,
            method = self.method.as_deref().unwrap_or(""),
            answered = self.answer,
            bytes = raw.len(),
            prefix = %log_prefix(raw),
            reason = %cap_message(&self.message, 0),
            "refused a malformed MCP message"
        );
    }
}

/// Read one message (a stdio line without its newline, or an HTTP body): the message rmcp can handle, or
/// why not.
pub fn classify(raw: &[u8]) -> Result<ClientJsonRpcMessage, Rejection> {
    let raw = raw.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(raw);
    let typed = match serde_json::from_slice::<ClientJsonRpcMessage>(raw) {
        Ok(msg) if !reads_known_method_as_custom(&msg) => return Ok(msg),
        other => other,
    };
    let value = match serde_json::from_slice::<Value>(raw) {
        Ok(v) => v,
        Err(e) => return Err(Rejection::parse_error(&e.to_string())),
    };
    match diagnose(&value) {
        Some(rejection) => Err(rejection),
        None => match typed {
            Ok(msg) => Ok(msg),
            // The shape is right as far as these checks go, but rmcp's types refuse it: say what serde said.
            Err(e) => {
                let (id, answer) = match &value {
                    Value::Object(obj) => (obj.get("id").and_then(readable_id), answer_due(obj)),
                    _ => (None, true),
                };
                Err(Rejection::invalid_request(&strip_position(&e.to_string()), id, answer)
                    .with_method(value.get("method").and_then(Value::as_str)))
            }
        },
    }
}

/// Whether JSON-RPC lets the server answer a refused message: not a response, and not a notification
/// (a string `method` and no `id`). Anything else, even without an id, is answered with id `null`.
fn answer_due(obj: &Map<String, Value>) -> bool {
    let is_response = obj.contains_key("result") || obj.contains_key("error");
    let is_notification = !obj.contains_key("id") && obj.get("method").is_some_and(Value::is_string);
    !is_response && !is_notification
}

impl Rejection {
    fn with_method(mut self, method: Option<&str>) -> Self {
        self.method = method.map(|m| m.chars().take(64).collect());
        self
    }
}

/// The message for an input line longer than the transport accepts, with the id if its first bytes
/// name one (see [`sniff_id`]).
pub fn oversized(limit: usize, prefix: &[u8]) -> Rejection {
    Rejection::invalid_request(&format!("message longer than {limit} bytes"), sniff_id(prefix), true)
}

/// rmcp falls back to `CustomRequest`/`CustomNotification` when the typed variant of a known method does
/// not deserialize; the handler would answer such a request `-32601`.
fn reads_known_method_as_custom(msg: &ClientJsonRpcMessage) -> bool {
    match msg {
        JsonRpcMessage::Request(r) => match &r.request {
            ClientRequest::CustomRequest(c) => is_known_method(&c.method),
            _ => false,
        },
        JsonRpcMessage::Notification(n) => match &n.notification {
            ClientNotification::CustomNotification(c) => is_known_method(&c.method),
            _ => false,
        },
        _ => false,
    }
}

/// Methods of client-to-server messages in rmcp's model (`ClientRequest`, `ClientNotification`).
pub fn is_known_method(method: &str) -> bool {
    check_known(method, None).is_some()
}

/// What is wrong with a JSON value as a client message, if these checks find anything.
fn diagnose(value: &Value) -> Option<Rejection> {
    let obj = match value {
        Value::Object(obj) => obj,
        Value::Array(_) => {
            return Some(Rejection::invalid_request(
                "batches are not supported; send one JSON-RPC message",
                None,
                true,
            ));
        }
        other => {
            let what = format!("a JSON-RPC message is a JSON object, not {}", kind(other));
            return Some(Rejection::invalid_request(&what, None, true));
        }
    };
    let is_response = obj.contains_key("result") || obj.contains_key("error");
    let has_id = obj.contains_key("id");
    let id = obj.get("id").and_then(readable_id);
    let answer = answer_due(obj);
    let method = obj.get("method");
    let method_name = method.and_then(Value::as_str);
    let refuse = |detail: &str| Some(Rejection::invalid_request(detail, id.clone(), answer).with_method(method_name));
    if obj.get("jsonrpc") != Some(&Value::String("2.0".into())) {
        return refuse("`jsonrpc` must be \"2.0\"");
    }
    if has_id && id.is_none() {
        return refuse("`id` must be a string or an integer");
    }
    let Some(method) = method else {
        if is_response {
            return None;
        }
        return refuse("a message needs `method` (a request or notification) or `result`/`error` (a response)");
    };
    let Some(method) = method.as_str() else {
        return refuse("`method` must be a string");
    };
    if let Some(Err(detail)) = check_known(method, Some(obj.get("params"))) {
        return Some(Rejection::invalid_params(&detail, id, answer).with_method(Some(method)));
    }
    None
}

/// A request id rmcp accepts (a string, or an integer in `i64`), as rmcp would echo it.
fn readable_id(id: &Value) -> Option<NumberOrString> {
    serde_json::from_value::<NumberOrString>(id.clone()).ok()
}

/// How a request or notification type of rmcp carries its `params`.
enum Presence {
    Required,
    Optional,
    Ignored,
}

/// rmcp's generic message types, by how they take `params`.
trait Shape: DeserializeOwned {
    type Params: DeserializeOwned;
    const PRESENCE: Presence;
}

impl<M: DeserializeOwned, P: DeserializeOwned> Shape for Request<M, P> {
    type Params = P;
    const PRESENCE: Presence = Presence::Required;
}

impl<M: DeserializeOwned, P: DeserializeOwned> Shape for RequestOptionalParam<M, P> {
    type Params = P;
    const PRESENCE: Presence = Presence::Optional;
}

impl<M: DeserializeOwned> Shape for RequestNoParam<M> {
    type Params = serde::de::IgnoredAny;
    const PRESENCE: Presence = Presence::Ignored;
}

impl<M: DeserializeOwned, P: DeserializeOwned> Shape for rmcp::model::Notification<M, P> {
    type Params = P;
    const PRESENCE: Presence = Presence::Required;
}

impl<M: DeserializeOwned> Shape for rmcp::model::NotificationNoParam<M> {
    type Params = serde::de::IgnoredAny;
    const PRESENCE: Presence = Presence::Ignored;
}

/// For a known method: `Some(Ok)` if `params` (the outer option: whether to check at all; the inner:
/// whether the message has them) deserialize into rmcp's type, `Some(Err(detail))` if not; `None` for
/// methods rmcp's model does not know.
fn check_known(method: &str, params: Option<Option<&Value>>) -> Option<Result<(), String>> {
    fn check<T: Shape>(method: &str, params: Option<Option<&Value>>) -> Option<Result<(), String>> {
        Some(match params {
            None => Ok(()),
            Some(params) => check_params::<T>(method, params),
        })
    }
    match method {
        "initialize" => check::<InitializeRequest>(method, params),
        "ping" => check::<PingRequest>(method, params),
        "server/discover" => check::<DiscoverRequest>(method, params),
        "completion/complete" => check::<CompleteRequest>(method, params),
        "logging/setLevel" => check::<SetLevelRequest>(method, params),
        "prompts/get" => check::<GetPromptRequest>(method, params),
        "prompts/list" => check::<ListPromptsRequest>(method, params),
        "resources/list" => check::<ListResourcesRequest>(method, params),
        "resources/templates/list" => check::<ListResourceTemplatesRequest>(method, params),
        "resources/read" => check::<ReadResourceRequest>(method, params),
        "resources/subscribe" => check::<SubscribeRequest>(method, params),
        "resources/unsubscribe" => check::<UnsubscribeRequest>(method, params),
        "resources/directory/read" => check::<ReadResourceDirectoryRequest>(method, params),
        "subscriptions/listen" => check::<SubscriptionsListenRequest>(method, params),
        "tools/call" => check::<CallToolRequest>(method, params),
        "tools/list" => check::<ListToolsRequest>(method, params),
        "tasks/get" => check::<GetTaskRequest>(method, params),
        "tasks/update" => check::<UpdateTaskRequest>(method, params),
        "tasks/cancel" => check::<CancelTaskRequest>(method, params),
        "skills/list" => check::<ListSkillsRequest>(method, params),
        "skills/get" => check::<GetSkillRequest>(method, params),
        "notifications/cancelled" => check::<CancelledNotification>(method, params),
        "notifications/progress" => check::<ProgressNotification>(method, params),
        "notifications/initialized" => check::<InitializedNotification>(method, params),
        "notifications/roots/list_changed" => check::<RootsListChangedNotification>(method, params),
        _ => None,
    }
}

/// Whether `{method, params}` deserializes as rmcp's `T`; if not, the most precise reason found: the JSON
/// path inside `params` (from `serde_path_to_error` on the params type), else serde's message.
fn check_params<T: Shape>(method: &str, params: Option<&Value>) -> Result<(), String> {
    let mut msg = Map::new();
    msg.insert("method".into(), Value::String(method.into()));
    if let Some(p) = params {
        msg.insert("params".into(), p.clone());
    }
    let Err(whole) = serde_json::from_value::<T>(Value::Object(msg)) else {
        return Ok(());
    };
    Err(params_detail::<T>(params).unwrap_or_else(|| format!("params: {}", strip_position(&whole.to_string()))))
}

fn params_detail<T: Shape>(params: Option<&Value>) -> Option<String> {
    let params = match (T::PRESENCE, params) {
        (Presence::Ignored, _) | (Presence::Optional, None | Some(Value::Null)) => return None,
        (Presence::Required, None) => return Some("params: missing (this method takes an object)".into()),
        (_, Some(Value::Object(p))) => p,
        (_, Some(other)) => return Some(format!("params: invalid type: {}, expected an object", kind(other))),
    };
    // rmcp takes `_meta` out of params before the rest becomes the params type.
    let mut rest = params.clone();
    if let Some(meta) = rest.remove("_meta")
        && !meta.is_object()
    {
        return Some(format!("params._meta: invalid type: {}, expected an object", kind(&meta)));
    }
    let e = serde_path_to_error::deserialize::<_, T::Params>(Value::Object(rest)).err()?;
    let path = e.path().to_string();
    let inner = strip_position(&e.into_inner().to_string());
    Some(if path == "." { format!("params: {inner}") } else { format!("params.{path}: {inner}") })
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// serde_json appends " at line L column C" to messages from a parse; for a value it says nothing useful.
fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) if msg[i..].contains(" column ") => msg[..i].to_owned(),
        _ => msg.to_owned(),
    }
}

/// Cut every value quoted in `msg` (between `"…"`, with backslash escapes, or between backticks) to
/// `limit` characters, and the whole message to `MESSAGE_LIMIT`. With `limit` 0 quoted values are
/// replaced by `…` (for log lines).
pub fn cap_message(msg: &str, limit: usize) -> String {
    let mut out = String::with_capacity(msg.len().min(MESSAGE_LIMIT + 8));
    let mut chars = msg.chars();
    while let Some(c) = chars.next() {
        if out.chars().count() >= MESSAGE_LIMIT {
            out.push('…');
            return out;
        }
        if c != '"' && c != '`' {
            out.push(c);
            continue;
        }
        let close = c;
        out.push(close);
        let mut kept = 0;
        let mut cut = false;
        let mut escaped = false;
        for q in chars.by_ref() {
            if close == '"' && !escaped && q == '\\' {
                escaped = true;
                if kept < limit {
                    out.push(q);
                }
                continue;
            }
            if q == close && !escaped {
                break;
            }
            escaped = false;
            if kept < limit {
                out.push(q);
                kept += 1;
            } else {
                cut = true;
            }
        }
        if cut {
            out.push('…');
        }
        out.push(close);
    }
    out
}

/// The first [`LOG_PREFIX_CHARS`] characters of the input, escaped for a log line.
pub fn log_prefix(raw: &[u8]) -> String {
    let head = &raw[..raw.len().min(LOG_PREFIX_CHARS * 4)];
    let text: String = String::from_utf8_lossy(head).chars().take(LOG_PREFIX_CHARS).collect();
    let more = if text.chars().count() < String::from_utf8_lossy(raw).chars().count() { "…" } else { "" };
    format!("{}{more}", text.escape_debug())
}

/// The request id of a message from its first bytes alone (for a line too long to buffer): the value of
/// a top-level `"id"` key, if it is a string or an integer and comes before the input ends.
pub fn sniff_id(prefix: &[u8]) -> Option<NumberOrString> {
    let mut s = Scanner { b: prefix.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(prefix), i: 0 };
    s.ws();
    s.eat(b'{')?;
    loop {
        s.ws();
        let key = s.string()?;
        s.ws();
        s.eat(b':')?;
        s.ws();
        if key == b"\"id\"" {
            let start = s.i;
            match *s.b.get(s.i)? {
                b'"' => {
                    let raw = s.string()?;
                    let id: String = serde_json::from_slice(raw).ok()?;
                    return Some(NumberOrString::String(id.into()));
                }
                b'-' | b'0'..=b'9' => {
                    s.i += 1;
                    while s.b.get(s.i).is_some_and(u8::is_ascii_digit) {
                        s.i += 1;
                    }
                    // The number must end here (not `1.5`, not cut off by the end of the prefix).
                    if !matches!(s.b.get(s.i)?, b' ' | b'\t' | b'\r' | b'\n' | b',' | b'}') {
                        return None;
                    }
                    let n: i64 = std::str::from_utf8(&s.b[start..s.i]).ok()?.parse().ok()?;
                    return Some(NumberOrString::Number(n));
                }
                _ => return None,
            }
        }
        s.skip_value()?;
        s.ws();
        match *s.b.get(s.i)? {
            b',' => s.i += 1,
            _ => return None,
        }
    }
}

/// A forward-only reader over JSON text that may stop anywhere; every method returns `None` at the end.
struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Scanner<'a> {
    fn ws(&mut self) {
        while self.b.get(self.i).is_some_and(|c| matches!(c, b' ' | b'\t' | b'\r' | b'\n')) {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        (*self.b.get(self.i)? == c).then(|| self.i += 1)
    }

    /// A string with its quotes, raw (escapes not decoded).
    fn string(&mut self) -> Option<&'a [u8]> {
        let start = self.i;
        self.eat(b'"')?;
        loop {
            match *self.b.get(self.i)? {
                b'\\' => self.i += 2,
                b'"' => {
                    self.i += 1;
                    return Some(&self.b[start..self.i]);
                }
                _ => self.i += 1,
            }
        }
    }

    /// Skip one value of any kind, nested ones included.
    fn skip_value(&mut self) -> Option<()> {
        match *self.b.get(self.i)? {
            b'"' => {
                self.string()?;
            }
            b'{' | b'[' => {
                let mut depth = 0usize;
                loop {
                    match *self.b.get(self.i)? {
                        b'"' => {
                            self.string()?;
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth -= 1;
                            if depth == 0 {
                                self.i += 1;
                                return Some(());
                            }
                        }
                        _ => {}
                    }
                    self.i += 1;
                }
            }
            _ => {
                while !matches!(*self.b.get(self.i)?, b',' | b'}' | b']' | b' ' | b'\t' | b'\r' | b'\n') {
                    self.i += 1;
                }
            }
        }
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(raw: &str) -> Rejection {
        classify(raw.as_bytes()).expect_err(raw)
    }

    #[test]
    fn well_formed_messages_pass() {
        for raw in [
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami","arguments":{}}}"#,
            r#"{"jsonrpc":"2.0","id":"a","method":"tools/list"}"#,
            r#"{"jsonrpc":"2.0","id":2,"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
            r#"{"jsonrpc":"2.0","id":3,"method":"vendor/unknown","params":{"x":1}}"#,
            r#"{"jsonrpc":"2.0","id":4,"result":{}}"#,
            "\u{feff}{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"ping\"}",
        ] {
            classify(raw.as_bytes()).unwrap_or_else(|e| panic!("{raw}: {e:?}"));
        }
    }

    #[test]
    fn input_that_is_not_json_is_a_parse_error_with_a_null_id() {
        let deep = "[".repeat(10_000);
        for raw in [
            &b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"x\":\"\xff\"}"[..],
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"\ud800"}}"#,
            deep.as_bytes(),
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"#,
            b"NaN",
            br#"{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":1e400}}"#,
            b"   ",
        ] {
            let r = classify(raw).expect_err(&String::from_utf8_lossy(raw));
            assert_eq!((r.code, &r.id, r.answer), (PARSE_ERROR, &None, true), "{r:?}");
            assert!(r.message.starts_with("Parse error: "), "{}", r.message);
            assert_eq!(r.to_json()["id"], Value::Null);
        }
    }

    #[test]
    fn json_that_is_not_a_message_is_an_invalid_request_with_the_id_if_readable() {
        let cases = [
            (r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#, None, "batches"),
            ("42", None, "not a number"),
            (r#"{"jsonrpc":"1.0","id":7,"method":"ping"}"#, Some(7), "`jsonrpc`"),
            (r#"{"jsonrpc":"2.0","id":1.5,"method":"ping"}"#, None, "`id`"),
            (r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#, None, "`id`"),
            (r#"{"jsonrpc":"2.0","id":8,"method":9}"#, Some(8), "`method`"),
            (r#"{"jsonrpc":"2.0","id":9}"#, Some(9), "needs `method`"),
            (r#"{"foo":"bar"}"#, None, "`jsonrpc`"),
        ];
        for (raw, id, needle) in cases {
            let r = refused(raw);
            assert_eq!(r.code, INVALID_REQUEST, "{raw}: {r:?}");
            assert_eq!(r.id, id.map(NumberOrString::Number), "{raw}");
            assert!(r.message.contains(needle), "{raw}: {}", r.message);
        }
        assert!(!refused(r#"{"jsonrpc":"1.0","method":"notifications/initialized"}"#).answer, "a notification");
        assert!(!refused(r#"{"jsonrpc":"1.0","id":1,"result":{}}"#).answer, "a response");
    }

    #[test]
    fn wrong_params_of_known_methods_are_invalid_params_naming_the_field() {
        let cases = [
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":42}}"#,
                "params.name: invalid type: integer `42`",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":[1]}}"#,
                "params.arguments: invalid type: sequence",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":"s"}}"#,
                "params.arguments: invalid type: string",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":"x"}"#,
                "params: invalid type: a string, expected an object",
            ),
            (r#"{"jsonrpc":"2.0","id":1,"method":"tools/call"}"#, "params: missing"),
            (r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{}}"#, "params: missing field `name`"),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":[]}}"#,
                "params.uri: invalid type: sequence",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"p","arguments":5}}"#,
                "params.arguments",
            ),
            (r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"_meta":3,"name":"x"}}"#, "params._meta"),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"logging/setLevel","params":{"level":"loud"}}"#,
                "params.level: unknown variant `loud`",
            ),
        ];
        for (raw, needle) in cases {
            let r = refused(raw);
            assert_eq!((r.code, &r.id, r.answer), (INVALID_PARAMS, &Some(NumberOrString::Number(1)), true), "{raw}");
            assert!(r.message.starts_with("Invalid params: ") && r.message.contains(needle), "{raw}: {}", r.message);
        }
        let n = refused(r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":[]}}"#);
        assert_eq!((n.code, n.answer), (INVALID_PARAMS, false), "notifications are not answered: {n:?}");
        // rmcp reads list requests with unusable params as having none (the first page); that stays.
        classify(br#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"cursor":5}}"#).unwrap();
        // Unknown methods stay rmcp's business (-32601 from the handler).
        assert!(classify(br#"{"jsonrpc":"2.0","id":1,"method":"tools/calls","params":"x"}"#).is_err());
        classify(br#"{"jsonrpc":"2.0","id":1,"method":"tools/calls","params":{"name":42}}"#).unwrap();
    }

    #[test]
    fn long_values_are_not_echoed() {
        let long = "s".repeat(10_000);
        let raw =
            format!(r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"x","arguments":"{long}"}}}}"#);
        let r = refused(&raw);
        assert!(r.message.len() < 200, "{}", r.message);
        assert!(r.message.contains(&format!("\"{}…\"", "s".repeat(QUOTE_LIMIT))), "{}", r.message);
        assert_eq!(cap_message(&r.message, 0).matches('s').count(), r.message.matches('s').count() - QUOTE_LIMIT);
        assert_eq!(cap_message(r#"a "x\"yz" b `abcdef`"#, 2), r#"a "x\"…" b `ab…`"#);
        assert_eq!(log_prefix(b"{\"token\":\"mbm_0123456789abcdef\"}"), "{\\\"token\\\":\\\"mbm_012345…");
    }

    #[test]
    fn ids_are_sniffed_from_the_start_of_a_message() {
        let n = |n| Some(NumberOrString::Number(n));
        assert_eq!(sniff_id(br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"#), n(7));
        assert_eq!(sniff_id(br#" { "params" : {"a":[1,{"id":3}],"b":"}\"id\""}, "id" : -12 ,"#), n(-12));
        assert_eq!(sniff_id(br#"{"id":"abc","#), Some(NumberOrString::String("abc".into())));
        assert_eq!(sniff_id(br#"{"method":"x","params":{"#), None, "cut off before any id");
        assert_eq!(sniff_id(br#"{"id":12"#), None, "the number may go on");
        assert_eq!(sniff_id(br#"{"id":1.5,"#), None);
        assert_eq!(sniff_id(br#"[{"id":1}]"#), None);
        assert_eq!(oversized(16, br#"{"id":4,"x":"#).to_json()["id"], 4);
    }
}
