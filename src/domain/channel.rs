//! Notification channels: their kinds, the event types they may subscribe to, and the SMTP settings of an
//! email channel. Pure types and rules; delivery is `engine::deliveries`, formatting `notify::{slack,teams,
//! email}`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::ValidationError;

/// How a channel is delivered to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChannelKind {
    // The signed JSON POST (HMAC-SHA256 with the channel's secret).
    #[default]
    Webhook,
    // A Slack incoming webhook: Block Kit.
    Slack,
    // A Microsoft Teams Workflows webhook: an Adaptive Card.
    Teams,
    // Email over SMTP.
    Email,
}

str_enum!(ChannelKind { Webhook => "webhook", Slack => "slack", Teams => "teams", Email => "email" });

/// The events the server emits (the `type` of a notification). A channel with no filter receives them all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    ThresholdCrossed,
    PlanCreated,
    ApprovalNeeded,
    PlanApproved,
    PlanRejected,
    PlanScheduled,
    PlanCancelled,
    PlanExecuted,
    PlanReversed,
    PlanExpired,
    RunawayDetected,
}

str_enum!(EventType {
    ThresholdCrossed => "threshold_crossed",
    PlanCreated => "plan_created",
    ApprovalNeeded => "approval_needed",
    PlanApproved => "plan_approved",
    PlanRejected => "plan_rejected",
    PlanScheduled => "plan_scheduled",
    PlanCancelled => "plan_cancelled",
    PlanExecuted => "plan_executed",
    PlanReversed => "plan_reversed",
    PlanExpired => "plan_expired",
    RunawayDetected => "runaway_detected",
});

impl EventType {
    /// Every event type, in the order above.
    pub const ALL: [EventType; 11] = [
        Self::ThresholdCrossed,
        Self::PlanCreated,
        Self::ApprovalNeeded,
        Self::PlanApproved,
        Self::PlanRejected,
        Self::PlanScheduled,
        Self::PlanCancelled,
        Self::PlanExecuted,
        Self::PlanReversed,
        Self::PlanExpired,
        Self::RunawayDetected,
    ];

    /// A short human title, e.g. "Threshold crossed".
    pub fn title(self) -> &'static str {
        match self {
            Self::ThresholdCrossed => "Threshold crossed",
            Self::PlanCreated => "Pause plan created",
            Self::ApprovalNeeded => "Approval needed",
            Self::PlanApproved => "Plan approved",
            Self::PlanRejected => "Plan rejected",
            Self::PlanScheduled => "Plan scheduled",
            Self::PlanCancelled => "Plan cancelled",
            Self::PlanExecuted => "Plan executed",
            Self::PlanReversed => "Plan reversed",
            Self::PlanExpired => "Plan expired",
            Self::RunawayDetected => "Runaway scenario detected",
        }
    }
}

/// The event filter as given: `None` = every event; a given list is deduplicated and kept in
/// [`EventType::ALL`] order, and may not be empty.
pub fn event_filter(events: Option<&[EventType]>) -> Result<Option<Vec<EventType>>, ValidationError> {
    let Some(events) = events else { return Ok(None) };
    if events.is_empty() {
        return Err(ValidationError::new("events", "must name at least one event type (omit it for all)"));
    }
    Ok(Some(EventType::ALL.into_iter().filter(|e| events.contains(e)).collect()))
}

/// How an SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TlsMode {
    // Plain connection upgraded with STARTTLS, which is required (port 587 by default).
    #[default]
    Starttls,
    // TLS from the first byte (port 465 by default).
    Tls,
    // No TLS: only to a loopback host with `outbound.allow_loopback` on (local relays and tests).
    None,
}

str_enum!(TlsMode { Starttls => "starttls", Tls => "tls", None => "none" });

impl TlsMode {
    pub fn default_port(self) -> u16 {
        match self {
            Self::Starttls => 587,
            Self::Tls => 465,
            Self::None => 25,
        }
    }
}

/// The most recipients of one email channel.
pub const MAX_RECIPIENTS: usize = 10;
/// The longest address or user name, in characters (RFC 5321's path limit).
pub const MAX_ADDRESS_CHARS: usize = 254;
/// The longest host name (RFC 1035).
pub const MAX_HOST_CHARS: usize = 253;

/// What an email channel connects to and sends as. The password is sealed apart from these.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct EmailSettings {
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
    pub from: String,
    pub to: Vec<String>,
    /// The SMTP user; `None` sends without AUTH.
    pub username: Option<String>,
}

/// A plausible mailbox address: `local@domain`, one `@`, no spaces, angle brackets or control characters.
/// (The SMTP library parses it again when sending.)
pub fn check_address(field: &str, a: &str) -> Result<String, ValidationError> {
    let a = a.trim();
    let bad = a.chars().count() > MAX_ADDRESS_CHARS
        || a.chars().any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | ',' | ';' | '"'))
        || !matches!(a.split_once('@'), Some((l, d)) if !l.is_empty() && !d.is_empty() && !d.contains('@'));
    if bad {
        return Err(ValidationError::new(
            field,
            "must be an email address like alerts@example.com (at most 254 characters)",
        ));
    }
    Ok(a.to_owned())
}

/// A host name or IP literal of the form SMTP accepts.
pub fn check_host(h: &str) -> Result<String, ValidationError> {
    let h = h.trim().trim_end_matches('.').to_ascii_lowercase();
    let ok_name = !h.is_empty()
        && h.len() <= MAX_HOST_CHARS
        && h.split('.')
            .all(|l| !l.is_empty() && l.len() <= 63 && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
    if ok_name || h.parse::<std::net::IpAddr>().is_ok() {
        Ok(h)
    } else {
        Err(ValidationError::new("smtp.host", "must be a host name or an IP address (at most 253 characters)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_names_round_trip_and_serde_agrees() {
        for e in EventType::ALL {
            assert_eq!(EventType::parse(e.as_str()), Some(e));
            assert_eq!(serde_json::to_value(e).unwrap(), e.as_str());
        }
        for k in [ChannelKind::Webhook, ChannelKind::Slack, ChannelKind::Teams, ChannelKind::Email] {
            assert_eq!(ChannelKind::parse(k.as_str()), Some(k));
            assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
        }
    }

    #[test]
    fn filters_are_deduplicated_in_a_fixed_order_and_never_empty() {
        use EventType::*;
        assert_eq!(event_filter(None), Ok(None));
        assert_eq!(
            event_filter(Some(&[PlanExecuted, ThresholdCrossed, PlanExecuted])),
            Ok(Some(vec![ThresholdCrossed, PlanExecuted]))
        );
        assert!(event_filter(Some(&[])).is_err());
    }

    #[test]
    fn addresses_and_hosts() {
        assert_eq!(check_address("f", " a@b.example ").as_deref(), Ok("a@b.example"));
        for bad in ["", "a", "@b", "a@", "a@b@c", "a b@c", "<a@b>", "a@b\r\nBcc: x@y", "a,b@c"] {
            assert!(check_address("f", bad).is_err(), "{bad:?}");
        }
        assert_eq!(check_host("SMTP.Example.com.").as_deref(), Ok("smtp.example.com"));
        assert_eq!(check_host("127.0.0.1").as_deref(), Ok("127.0.0.1"));
        assert_eq!(check_host("::1").as_deref(), Ok("::1"));
        for bad in ["", "a..b", "a b", "smtp.example.com:25", "a/b", "a".repeat(64).as_str()] {
            assert!(check_host(bad).is_err(), "{bad:?}");
        }
    }
}
