//! Email: an event as a short text/plain message, sent over SMTP with TLS (`lettre`, rustls with the
//! platform's roots).
//!
//! - [`subject`] and [`body`] are pure: the subject is one line of at most [`SUBJECT_MAX_CHARS`]; the body
//!   has the event's text, the budget, the figures, the plan's scenarios and the event's id and time.
//! - [`Mailer::send`] makes one attempt. The host must pass the outbound policy like a webhook's
//!   (`outbound.rs`): a literal address is checked, a name is resolved through the policy's resolver and
//!   the connection goes to an admitted address, while the certificate is checked against the name. TLS is
//!   required: STARTTLS (refusing a server that does not offer it) or implicit TLS; `none` only to a
//!   loopback host with `outbound.allow_loopback` on. The outcome is an [`AttemptResult`] whose error
//!   is one short line without the password; `status` is the SMTP reply code when there was one.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Message};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use super::{AttemptResult, MAX_ERROR_CHARS, Summary, clip, scrub};
use crate::domain::channel::{EmailSettings, TlsMode};
use crate::outbound::{OutboundPolicy, PolicyResolver, Refused, SystemLookup};

pub const SUBJECT_MAX_CHARS: usize = 120;
/// The most addresses of one host tried in one attempt.
const MAX_ADDRESSES: usize = 3;

/// `[make-budget] <title>: <budget>`, one line.
pub fn subject(s: &Summary) -> String {
    clip(&format!("[make-budget] {}", s.headline()), SUBJECT_MAX_CHARS)
}

/// The text/plain body.
pub fn body(s: &Summary) -> String {
    let mut out = format!("{}\n\n", clip(&s.text, 2000));
    if let Some(b) = &s.budget {
        out.push_str(&format!("Budget: {}\n", clip(b, 300)));
    }
    for (label, value) in &s.figures {
        out.push_str(&format!("{label}: {}\n", clip(value, 1000)));
    }
    if !s.scenarios.is_empty() {
        out.push_str("\nScenarios:\n");
        for n in &s.scenarios {
            out.push_str(&format!("  - {}\n", clip(n, 300)));
        }
        if s.more_scenarios > 0 {
            out.push_str(&format!("  … and {} more\n", s.more_scenarios));
        }
    }
    out.push_str(&format!("\nEvent {} ({}) at {}\n-- \nmake-budget-mcp\n", s.event_id, s.event_type, s.occurred_at));
    out
}

/// Whether `host` names loopback (`localhost`, 127.0.0.0/8, ::1).
fn is_loopback(host: &str) -> bool {
    match host.parse::<IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host == "localhost" || host.ends_with(".localhost"),
    }
}

/// The form checks of [`Mailer::send`] that can be made when a channel is added: the host against the
/// policy, and plain SMTP only to loopback with loopback allowed. The error names the rule.
pub fn check_settings(e: &EmailSettings, policy: &OutboundPolicy) -> Result<(), String> {
    match e.host.parse::<IpAddr>() {
        Ok(ip) => policy.check_ip(ip).map_err(|r| r.rule())?,
        Err(_) => policy.check_name(&e.host).map_err(|r| r.rule())?,
    }
    if e.tls == TlsMode::None && !(policy.allow_loopback && is_loopback(&e.host)) {
        return Err("tls `none` is allowed only for a loopback host with outbound.allow_loopback on".into());
    }
    Ok(())
}

/// Sends email notifications; cheap to clone.
#[derive(Clone)]
pub struct Mailer {
    policy: OutboundPolicy,
    timeout: Duration,
    resolver: PolicyResolver,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer").field("policy", &self.policy).field("timeout", &self.timeout).finish()
    }
}

impl Mailer {
    pub fn new(timeout: Duration, policy: OutboundPolicy) -> Self {
        Self { policy, timeout, resolver: PolicyResolver::new(policy, Arc::new(SystemLookup)) }
    }

    /// One attempt to send `subject` and `body` as `settings` say, authenticating with `password` when
    /// the settings name a user. Never panics.
    pub async fn send(&self, settings: &EmailSettings, password: &str, subject: &str, body: &str) -> AttemptResult {
        let started = Instant::now();
        let (status, error) = match self.attempt(settings, password, subject, body).await {
            Ok(code) => (Some(code), None),
            Err((code, e)) => (code, Some(scrub(&e, password.as_bytes(), MAX_ERROR_CHARS))),
        };
        let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        tracing::debug!(delivered = error.is_none(), status, duration_ms, "email attempt");
        AttemptResult { delivered: error.is_none(), status, error, duration_ms }
    }

    async fn attempt(
        &self,
        s: &EmailSettings,
        password: &str,
        subject: &str,
        body: &str,
    ) -> Result<u16, (Option<u16>, String)> {
        let fail = |e: String| (None, e);
        check_settings(s, &self.policy).map_err(|e| fail(format!("refused: {e}")))?;
        // Connect to an address the policy admits; the certificate is checked against the host as given.
        let ips: Vec<IpAddr> = match s.host.parse::<IpAddr>() {
            Ok(ip) => vec![ip],
            Err(_) => match self.resolver.resolve_host(&s.host).await {
                Ok(addrs) => addrs.iter().map(|a| a.ip()).take(MAX_ADDRESSES).collect(),
                Err(e) => {
                    return Err(fail(match e.downcast_ref::<Refused>() {
                        Some(r) => r.to_string(),
                        None => format!("cannot resolve {}: {e}", s.host),
                    }));
                }
            },
        };
        if s.tls == TlsMode::None && !ips.iter().all(IpAddr::is_loopback) {
            return Err(fail("refused: tls `none` is allowed only to a loopback address".into()));
        }
        let message = build_message(s, subject, body).map_err(fail)?;
        // The next address only when this one never answered (a server that spoke has decided).
        let mut outcome = Err(fail("no address".into()));
        for ip in ips {
            outcome = self.attempt_at(ip, s, password, message.clone()).await;
            if matches!(outcome, Ok(_) | Err((Some(_), _))) {
                break;
            }
        }
        outcome
    }

    async fn attempt_at(
        &self,
        ip: IpAddr,
        s: &EmailSettings,
        password: &str,
        message: Message,
    ) -> Result<u16, (Option<u16>, String)> {
        let fail = |e: String| (None, e);
        let tls = match s.tls {
            TlsMode::None => Tls::None,
            mode => {
                let params = TlsParameters::new(s.host.clone()).map_err(|e| fail(format!("TLS setup: {e}")))?;
                if mode == TlsMode::Tls { Tls::Wrapper(params) } else { Tls::Required(params) }
            }
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(ip.to_string())
            .port(s.port)
            .tls(tls)
            .timeout(Some(self.timeout));
        if let Some(user) = &s.username {
            builder = builder.credentials(Credentials::new(user.clone(), password.to_owned()));
        }
        let transport = builder.build();
        match tokio::time::timeout(self.timeout * 3, transport.send(message)).await {
            Err(_) => Err(fail(format!("timed out after {} ms", (self.timeout * 3).as_millis()))),
            Ok(Ok(response)) => Ok(code_of(response.code())),
            Ok(Err(e)) => {
                let code = e.status().map(code_of);
                Err((code, format!("SMTP: {}", error_chain(&e))))
            }
        }
    }
}

fn code_of(c: lettre::transport::smtp::response::Code) -> u16 {
    c.to_string().parse().unwrap_or(0)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let more = s.to_string();
        if !msg.contains(&more) {
            msg = format!("{msg}: {more}");
        }
        src = s.source();
    }
    msg
}

fn build_message(s: &EmailSettings, subject: &str, body: &str) -> Result<Message, String> {
    let mailbox = |a: &str| a.parse::<Mailbox>().map_err(|e| format!("invalid address {a:?}: {e}"));
    let mut m = Message::builder().from(mailbox(&s.from)?).subject(subject).header(ContentType::TEXT_PLAIN);
    for to in &s.to {
        m = m.to(mailbox(to)?);
    }
    m.body(body.to_owned()).map_err(|e| format!("cannot build the message: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::Event;

    fn settings(host: &str, tls: TlsMode) -> EmailSettings {
        EmailSettings {
            host: host.into(),
            port: 2525,
            tls,
            from: "budget@example.com".into(),
            to: vec!["ops@example.com".into()],
            username: None,
        }
    }

    #[test]
    fn subject_and_body_carry_the_budget_the_figures_and_the_plan() {
        let s = Summary::of(&Event {
            id: "evt_1".into(),
            event_type: "plan_executed".into(),
            occurred_at: "2026-01-02T03:04:05Z".into(),
            text: "Plan p1 executed".into(),
            data: json!({"id": "p1", "budget_id": "b1", "state": "executed", "expected_saving": 12,
                         "items": [{"name": "Orders", "status": "stopped"}]}),
        });
        assert_eq!(subject(&s), "[make-budget] Plan executed: b1");
        let b = body(&s);
        for want in
            ["Plan p1 executed\n", "Budget: b1\n", "Plan: p1\n", "Expected saving: 12\n", "  - Orders (stopped)\n"]
        {
            assert!(b.contains(want), "{want:?} in {b}");
        }
        let long = Summary { title: "T\r\nBcc: x@y".into(), budget: Some("b".repeat(500)), ..s };
        let subj = subject(&long);
        assert!(!subj.contains('\n') && subj.chars().count() <= SUBJECT_MAX_CHARS, "{subj}");
    }

    #[test]
    fn hosts_pass_the_outbound_policy_and_plain_smtp_only_to_loopback() {
        let default = OutboundPolicy::default();
        let local = OutboundPolicy::ALLOW_LOOPBACK;
        assert!(check_settings(&settings("smtp.example.com", TlsMode::Starttls), &default).is_ok());
        assert!(check_settings(&settings("127.0.0.1", TlsMode::Tls), &default).unwrap_err().contains("loopback"));
        assert!(check_settings(&settings("10.1.2.3", TlsMode::Tls), &local).unwrap_err().contains("private"));
        assert!(check_settings(&settings("169.254.169.254", TlsMode::Tls), &local).unwrap_err().contains("metadata"));
        assert!(check_settings(&settings("localhost", TlsMode::Starttls), &default).is_err());
        assert!(check_settings(&settings("127.0.0.1", TlsMode::None), &local).is_ok());
        assert!(check_settings(&settings("smtp.example.com", TlsMode::None), &local).unwrap_err().contains("none"));
        assert!(check_settings(&settings("127.0.0.1", TlsMode::None), &default).is_err());
    }

    #[tokio::test]
    async fn a_refused_host_is_not_contacted_and_the_password_never_shows() {
        let m = Mailer::new(Duration::from_secs(2), OutboundPolicy::default());
        let r = m.send(&settings("127.0.0.1", TlsMode::Starttls), "pw-secret", "s", "b").await;
        assert!(!r.delivered);
        let e = r.error.unwrap();
        assert!(e.starts_with("refused:"), "{e}");
        // Nothing listens on this port: a connection error, scrubbed.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let m = Mailer::new(Duration::from_secs(2), OutboundPolicy::ALLOW_LOOPBACK);
        let mut s = settings("127.0.0.1", TlsMode::None);
        s.port = port;
        s.username = Some("user".into());
        let r = m.send(&s, "pw-secret", "s", "b").await;
        assert!(!r.delivered);
        let e = r.error.unwrap();
        assert!(e.starts_with("SMTP:") && !e.contains("pw-secret") && !e.contains('\n'), "{e}");
    }

    use serde_json::json;
}
