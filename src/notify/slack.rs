//! Slack: an event as an incoming-webhook message in Block Kit.
//!
//! The payload is `{"text": <fallback>, "blocks": [...]}`: `text` is what notifications and clients without
//! blocks show (<https://api.slack.com/messaging/webhooks>, "Incoming webhooks"; Slack answers `200 ok`).
//! Blocks used, with the limits of <https://api.slack.com/reference/block-kit/blocks>:
//! - `header`: `plain_text`, at most 150 characters;
//! - `section`: `mrkdwn` text of at most 3000 characters, or up to 10 `fields` of at most 2000 each;
//! - `context`: up to 10 elements;
//! - at most 50 blocks per message (we send at most 5).
//!
//! User-supplied text (budget and scenario names) is escaped as
//! <https://api.slack.com/reference/surfaces/formatting#escaping> asks: `&`, `<` and `>` become entities,
//! so no name can turn into a mention or a link.

use serde_json::{Value, json};

use super::{Summary, clip};

/// Slack's limits (see the module documentation).
pub const HEADER_MAX_CHARS: usize = 150;
pub const SECTION_MAX_CHARS: usize = 3000;
pub const FIELD_MAX_CHARS: usize = 2000;
pub const MAX_FIELDS: usize = 10;
pub const MAX_CONTEXT_ELEMENTS: usize = 10;
pub const MAX_BLOCKS: usize = 50;
/// Slack recommends keeping the top-level `text` short; it is cut at this many characters.
pub const FALLBACK_MAX_CHARS: usize = 3000;

/// `&`, `<`, `>` as HTML entities: the three characters Slack's mrkdwn reserves.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Cut to `max` characters *after* escaping, without splitting an entity.
fn escaped(s: &str, max: usize) -> String {
    let e = escape(&s.replace(['\r', '\n'], " "));
    if e.chars().count() <= max {
        return e;
    }
    let mut out: String = e.chars().take(max.saturating_sub(1)).collect();
    if let Some(amp) = out.rfind('&')
        && !out[amp..].contains(';')
    {
        out.truncate(amp);
    }
    out.push('…');
    out
}

/// The message for `s` as JSON bytes.
pub fn payload(s: &Summary) -> Vec<u8> {
    serde_json::to_vec(&message(s)).expect("JSON values serialise")
}

/// The message for `s`.
pub fn message(s: &Summary) -> Value {
    let mut blocks = vec![json!({
        "type": "header",
        "text": {"type": "plain_text", "text": clip(&s.headline(), HEADER_MAX_CHARS), "emoji": false},
    })];
    blocks.push(json!({
        "type": "section",
        "text": {"type": "mrkdwn", "text": escaped(&s.text, SECTION_MAX_CHARS)},
    }));
    let mut fields: Vec<Value> = Vec::new();
    if let Some(b) = &s.budget {
        fields.push(field("Budget", b));
    }
    for (label, value) in &s.figures {
        fields.push(field(label, value));
    }
    // Ten fields per section: a second section holds the rest (at most 16 figures exist).
    for chunk in fields.chunks(MAX_FIELDS) {
        blocks.push(json!({"type": "section", "fields": chunk}));
    }
    if !s.scenarios.is_empty() {
        let mut list: Vec<String> = s.scenarios.iter().map(|n| format!("• {}", escape(n))).collect();
        if s.more_scenarios > 0 {
            list.push(format!("… and {} more", s.more_scenarios));
        }
        let text = format!("*Scenarios*\n{}", list.join("\n"));
        blocks
            .push(json!({"type": "section", "text": {"type": "mrkdwn", "text": clip_lines(&text, SECTION_MAX_CHARS)}}));
    }
    blocks.push(json!({
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": escaped(
            &format!("{} · {} · event {}", s.event_type, s.occurred_at, s.event_id), SECTION_MAX_CHARS)}],
    }));
    blocks.truncate(MAX_BLOCKS);
    json!({"text": clip(&format!("{} — {}", s.headline(), s.text), FALLBACK_MAX_CHARS), "blocks": blocks})
}

fn field(label: &str, value: &str) -> Value {
    // The label is ours; the value may be a user's name.
    let text = format!("*{label}*\n{}", escaped(value, FIELD_MAX_CHARS - label.chars().count() - 3));
    json!({"type": "mrkdwn", "text": text})
}

/// Keep whole lines up to `max` characters.
fn clip_lines(text: &str, max: usize) -> String {
    let mut out = String::new();
    for line in text.lines() {
        if out.chars().count() + line.chars().count() + 2 > max {
            out.push_str("\n…");
            break;
        }
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(line);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::Event;

    fn summary(data: Value, text: &str) -> Summary {
        Summary::of(&Event {
            id: "evt_1".into(),
            event_type: "plan_created".into(),
            occurred_at: "2026-01-02T03:04:05Z".into(),
            text: text.into(),
            data,
        })
    }

    /// The shape Slack requires, checked as tests/support's receiver checks it.
    fn check(m: &Value) {
        assert!(!m["text"].as_str().unwrap().is_empty());
        let blocks = m["blocks"].as_array().unwrap();
        assert!(blocks.len() <= MAX_BLOCKS);
        for b in blocks {
            match b["type"].as_str().unwrap() {
                "header" => {
                    assert_eq!(b["text"]["type"], "plain_text");
                    assert!(b["text"]["text"].as_str().unwrap().chars().count() <= HEADER_MAX_CHARS);
                }
                "section" => {
                    if let Some(t) = b.get("text") {
                        assert!(t["text"].as_str().unwrap().chars().count() <= SECTION_MAX_CHARS);
                    }
                    if let Some(f) = b.get("fields") {
                        let f = f.as_array().unwrap();
                        assert!(!f.is_empty() && f.len() <= MAX_FIELDS);
                        assert!(f.iter().all(|x| x["text"].as_str().unwrap().chars().count() <= FIELD_MAX_CHARS));
                    }
                }
                "context" => assert!(b["elements"].as_array().unwrap().len() <= MAX_CONTEXT_ELEMENTS),
                other => panic!("unexpected block {other}"),
            }
        }
    }

    #[test]
    fn a_plan_shows_budget_figures_and_scenarios() {
        let items: Vec<Value> = (0..12).map(|i| json!({"name": format!("S<{i}>"), "status": "pending"})).collect();
        let s = summary(
            json!({"id": "p1", "budget_id": "b1", "state": "planned", "expected_saving": 40, "items": items}),
            "Pause plan created: plan p1",
        );
        let m = message(&s);
        check(&m);
        assert_eq!(m["blocks"][0]["text"]["text"], "Pause plan created: b1");
        let all = m.to_string();
        assert!(all.contains("*Plan*\\np1") && all.contains("*Expected saving*\\n40"), "{all}");
        assert!(all.contains("• S&lt;0&gt; (pending)") && all.contains("… and 2 more"), "{all}");
        assert!(!all.contains("S<0>"));
        assert!(m["text"].as_str().unwrap().starts_with("Pause plan created: b1 — "));
    }

    #[test]
    fn long_texts_are_cut_to_the_limits() {
        let long = "x&".repeat(4000);
        let s = summary(json!({"budget_name": long, "why": long}), &long);
        let m = message(&s);
        check(&m);
        assert!(m["blocks"][1]["text"]["text"].as_str().unwrap().ends_with('…'));
        // No entity is split by the cut.
        let t = m["blocks"][1]["text"]["text"].as_str().unwrap();
        assert!(!t.trim_end_matches('…').ends_with("&am"), "{}", &t[t.len() - 10..]);
        assert_eq!(escape("a<b>&c"), "a&lt;b&gt;&amp;c");
    }
}
