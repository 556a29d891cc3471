//! Microsoft Teams: an event as an Adaptive Card for a Workflows (Power Automate) webhook.
//!
//! Workflows accept Adaptive Cards only, in a message envelope:
//! `{"type":"message","attachments":[{"contentType":"application/vnd.microsoft.card.adaptive",
//! "contentUrl":null,"content":{<card>}}]}`
//! (<https://learn.microsoft.com/en-us/microsoftteams/platform/webhooks-and-connectors/how-to/connectors-using>;
//! the old MessageCard format of Office 365 connectors is not supported there). The card is version 1.4,
//! which Teams renders (<https://learn.microsoft.com/en-us/microsoftteams/platform/task-modules-and-cards/cards/cards-reference>),
//! with `TextBlock`s and a `FactSet` (<https://adaptivecards.io/explorer/FactSet.html>). The Workflows
//! trigger answers `202 Accepted`.

use serde_json::{Value, json};

use super::{Summary, clip};

pub const CONTENT_TYPE: &str = "application/vnd.microsoft.card.adaptive";
pub const SCHEMA: &str = "http://adaptivecards.io/schemas/adaptive-card.json";
pub const VERSION: &str = "1.4";
/// Our own bound on any one text (Teams caps a message at about 28 KB in all).
pub const TEXT_MAX_CHARS: usize = 2000;

/// The message for `s` as JSON bytes.
pub fn payload(s: &Summary) -> Vec<u8> {
    serde_json::to_vec(&message(s)).expect("JSON values serialise")
}

/// The message for `s`. Texts are plain (`TextBlock`s render a Markdown subset; names are not trusted to
/// be free of it, so `*`, `_`, `[`, `]` and `` ` `` are escaped with a backslash).
pub fn message(s: &Summary) -> Value {
    let mut body = vec![
        json!({"type": "TextBlock", "text": text(&s.headline()), "size": "Large", "weight": "Bolder", "wrap": true}),
        json!({"type": "TextBlock", "text": text(&s.text), "wrap": true}),
    ];
    let mut facts: Vec<Value> = Vec::new();
    if let Some(b) = &s.budget {
        facts.push(json!({"title": "Budget", "value": text(b)}));
    }
    for (label, value) in &s.figures {
        facts.push(json!({"title": label, "value": text(value)}));
    }
    if !facts.is_empty() {
        body.push(json!({"type": "FactSet", "facts": facts}));
    }
    if !s.scenarios.is_empty() {
        let mut list: Vec<String> = s.scenarios.iter().map(|n| format!("- {}", text(n))).collect();
        if s.more_scenarios > 0 {
            list.push(format!("- … and {} more", s.more_scenarios));
        }
        body.push(json!({"type": "TextBlock", "text": "Scenarios", "weight": "Bolder", "wrap": true}));
        body.push(json!({"type": "TextBlock", "text": list.join("\n"), "wrap": true}));
    }
    body.push(json!({
        "type": "TextBlock", "isSubtle": true, "size": "Small", "wrap": true,
        "text": text(&format!("{} · {} · event {}", s.event_type, s.occurred_at, s.event_id)),
    }));
    json!({
        "type": "message",
        "attachments": [{
            "contentType": CONTENT_TYPE,
            "contentUrl": null,
            "content": {"$schema": SCHEMA, "type": "AdaptiveCard", "version": VERSION, "body": body,
                        "msteams": {"width": "Full"}},
        }],
    })
}

fn text(s: &str) -> String {
    let mut out = String::new();
    for c in clip(s, TEXT_MAX_CHARS).chars() {
        if matches!(c, '*' | '_' | '[' | ']' | '`' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::Event;

    #[test]
    fn a_crossing_is_an_adaptive_card_in_a_message_envelope() {
        let s = Summary::of(&Event {
            id: "evt_1".into(),
            event_type: "threshold_crossed".into(),
            occurred_at: "2026-01-02T03:04:05Z".into(),
            text: "[critical] budget over".into(),
            data: json!({"budget_name": "Acme *monthly*", "severity": "critical", "value": 120, "amount": 100}),
        });
        let m = message(&s);
        assert_eq!(m["type"], "message");
        let a = &m["attachments"][0];
        assert_eq!(a["contentType"], CONTENT_TYPE);
        assert!(a["contentUrl"].is_null());
        let card = &a["content"];
        assert_eq!((card["type"].as_str(), card["version"].as_str()), (Some("AdaptiveCard"), Some("1.4")));
        assert_eq!(card["$schema"], SCHEMA);
        assert_eq!(card["body"][0]["text"], "Threshold crossed: Acme \\*monthly\\*");
        let facts = card["body"][2]["facts"].as_array().unwrap();
        assert!(facts.contains(&json!({"title": "Value", "value": "120"})), "{facts:?}");
        assert!(facts.contains(&json!({"title": "Threshold amount", "value": "100"})));
    }
}
