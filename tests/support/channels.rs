//! Local stand-ins for the services notification channels post to, each checking what the real service
//! requires of a payload and answering as it does:
//!
//! - [`SlackReceiver`]: an incoming webhook. Block Kit per <https://api.slack.com/reference/block-kit/blocks>
//!   (a non-empty `text` fallback; `blocks` of at most 50, each of a known type; `header` plain_text of at
//!   most 150 characters; `section` text of at most 3000, or 1–10 `fields` of at most 2000; `context` with
//!   1–10 elements). Answers `200 ok` as Slack does, `400 invalid_blocks` when the shape is wrong.
//! - [`TeamsReceiver`]: a Workflows webhook. The message envelope with an Adaptive Card attachment
//!   (<https://learn.microsoft.com/en-us/microsoftteams/platform/webhooks-and-connectors/how-to/connectors-using>);
//!   answers `202 Accepted` as the Workflows trigger does, `400` when the shape is wrong.
//! - [`SmtpReceiver`]: an SMTP server speaking EHLO, STARTTLS (or implicit TLS), AUTH PLAIN, MAIL, RCPT,
//!   DATA, QUIT with a certificate from a test CA, offering AUTH only once the connection is encrypted.
//!
//! Each can be told to fail the next requests ([`SlackReceiver::fail_next`], [`SmtpReceiver::refuse_next`]).

use std::sync::{Arc, Mutex};

use base64::Engine as _;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio_rustls::rustls;

/// One POST a JSON receiver got.
#[derive(Debug, Clone)]
pub struct Posted {
    pub path: String,
    pub body: Value,
    /// What is wrong with the shape, if anything (the receiver then answered 400).
    pub problems: Vec<String>,
}

type Log = Arc<Mutex<Vec<Posted>>>;
/// (path suffix, status) to answer instead of accepting, first match first.
type Failures = Arc<Mutex<Vec<(String, u16)>>>;

/// A JSON-posting receiver with a shape check and a success answer.
async fn json_receiver(check: fn(&Value) -> Vec<String>, ok: (u16, &'static str)) -> (String, Log, Failures) {
    use axum::http::{StatusCode, Uri};
    let log: Log = Arc::default();
    let failures: Failures = Arc::default();
    let (l, f) = (log.clone(), failures.clone());
    let app = axum::Router::new().route(
        "/{*path}",
        axum::routing::post(move |uri: Uri, body: axum::body::Bytes| {
            let (l, f) = (l.clone(), f.clone());
            async move {
                let failing = {
                    let mut f = f.lock().unwrap();
                    f.iter().position(|(suffix, _)| uri.path().ends_with(suffix.as_str())).map(|i| f.remove(i).1)
                };
                if let Some(status) = failing {
                    return (StatusCode::from_u16(status).unwrap(), "temporarily unavailable".to_owned());
                }
                let (body, problems) = match serde_json::from_slice::<Value>(&body) {
                    Ok(v) => {
                        let p = check(&v);
                        (v, p)
                    }
                    Err(e) => (Value::Null, vec![format!("not JSON: {e}")]),
                };
                let bad = !problems.is_empty();
                l.lock().unwrap().push(Posted { path: uri.path().to_owned(), body, problems: problems.clone() });
                if bad {
                    (StatusCode::BAD_REQUEST, format!("invalid_blocks: {}", problems.join("; ")))
                } else {
                    (StatusCode::from_u16(ok.0).unwrap(), ok.1.to_owned())
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, log, failures)
}

fn chars(v: &Value) -> Option<usize> {
    v.as_str().map(|s| s.chars().count())
}

/// Slack's Block Kit rules for an incoming-webhook message (see the module documentation).
pub fn slack_problems(m: &Value) -> Vec<String> {
    let mut p = Vec::new();
    match chars(&m["text"]) {
        Some(n) if n > 0 => {}
        _ => p.push("`text` fallback missing or empty".into()),
    }
    let Some(blocks) = m["blocks"].as_array() else {
        p.push("`blocks` is not an array".into());
        return p;
    };
    if blocks.is_empty() || blocks.len() > 50 {
        p.push(format!("{} blocks (1 to 50 allowed)", blocks.len()));
    }
    let text_obj = |t: &Value, kinds: &[&str], max: usize, at: &str, p: &mut Vec<String>| {
        let kind = t["type"].as_str().unwrap_or("");
        if !kinds.contains(&kind) {
            p.push(format!("{at}: text type {kind:?}"));
        }
        match chars(&t["text"]) {
            Some(n) if (1..=max).contains(&n) => {}
            n => p.push(format!("{at}: text length {n:?} (1 to {max})")),
        }
    };
    for (i, b) in blocks.iter().enumerate() {
        let at = format!("blocks[{i}]");
        match b["type"].as_str() {
            Some("header") => text_obj(&b["text"], &["plain_text"], 150, &at, &mut p),
            Some("section") => {
                let has_text = b.get("text").is_some();
                if has_text {
                    text_obj(&b["text"], &["plain_text", "mrkdwn"], 3000, &at, &mut p);
                }
                match b.get("fields").map(|f| f.as_array()) {
                    None if has_text => {}
                    Some(Some(f)) if (1..=10).contains(&f.len()) => {
                        for (j, x) in f.iter().enumerate() {
                            text_obj(x, &["plain_text", "mrkdwn"], 2000, &format!("{at}.fields[{j}]"), &mut p);
                        }
                    }
                    _ => p.push(format!("{at}: section needs text or 1 to 10 fields")),
                }
            }
            Some("context") => match b["elements"].as_array() {
                Some(e) if (1..=10).contains(&e.len()) => {
                    for (j, x) in e.iter().enumerate() {
                        text_obj(x, &["plain_text", "mrkdwn"], 3000, &format!("{at}.elements[{j}]"), &mut p);
                    }
                }
                _ => p.push(format!("{at}: context needs 1 to 10 elements")),
            },
            Some("divider") => {}
            other => p.push(format!("{at}: unknown block type {other:?}")),
        }
    }
    p
}

/// The Workflows envelope and an Adaptive Card with the elements we use (see the module documentation).
pub fn teams_problems(m: &Value) -> Vec<String> {
    let mut p = Vec::new();
    if m["type"] != "message" {
        p.push("`type` must be \"message\"".into());
    }
    let Some(atts) = m["attachments"].as_array().filter(|a| !a.is_empty()) else {
        p.push("`attachments` must be a non-empty array".into());
        return p;
    };
    for (i, a) in atts.iter().enumerate() {
        let at = format!("attachments[{i}]");
        if a["contentType"] != "application/vnd.microsoft.card.adaptive" {
            p.push(format!("{at}.contentType is {:?}", a["contentType"]));
        }
        if !a.get("contentUrl").is_some_and(Value::is_null) {
            p.push(format!("{at}.contentUrl must be null"));
        }
        let c = &a["content"];
        if c["type"] != "AdaptiveCard" {
            p.push(format!("{at}.content.type must be AdaptiveCard"));
        }
        if c["$schema"] != "http://adaptivecards.io/schemas/adaptive-card.json" {
            p.push(format!("{at}.content.$schema is {:?}", c["$schema"]));
        }
        if !matches!(c["version"].as_str(), Some("1.0" | "1.1" | "1.2" | "1.3" | "1.4" | "1.5")) {
            p.push(format!("{at}.content.version {:?} is not one Teams renders", c["version"]));
        }
        let Some(body) = c["body"].as_array().filter(|b| !b.is_empty()) else {
            p.push(format!("{at}.content.body must be a non-empty array"));
            continue;
        };
        for (j, e) in body.iter().enumerate() {
            let at = format!("{at}.content.body[{j}]");
            match e["type"].as_str() {
                Some("TextBlock") => {
                    if chars(&e["text"]).is_none_or(|n| n == 0) {
                        p.push(format!("{at}: TextBlock needs text"));
                    }
                }
                Some("FactSet") => match e["facts"].as_array() {
                    Some(f) if f.iter().all(|x| x["title"].is_string() && x["value"].is_string()) => {}
                    _ => p.push(format!("{at}: FactSet needs facts of string title and value")),
                },
                other => p.push(format!("{at}: unexpected element {other:?}")),
            }
        }
    }
    p
}

/// A Slack incoming-webhook stand-in; every path is a webhook (`/services/T…/B…/…`).
#[derive(Clone)]
pub struct SlackReceiver {
    pub base: String,
    log: Log,
    failures: Failures,
}

impl SlackReceiver {
    pub async fn start() -> Self {
        let (base, log, failures) = json_receiver(slack_problems, (200, "ok")).await;
        SlackReceiver { base, log, failures }
    }

    /// The URL of a webhook with this secret last segment.
    pub fn url(&self, secret: &str) -> String {
        format!("{}/services/T0TEST/B0TEST/{secret}", self.base)
    }

    /// Answer the next requests to the webhook with this secret with these statuses.
    pub fn fail_next(&self, secret: &str, statuses: &[u16]) {
        self.failures.lock().unwrap().extend(statuses.iter().map(|s| (secret.to_owned(), *s)));
    }

    pub fn posted(&self) -> Vec<Posted> {
        self.log.lock().unwrap().clone()
    }
}

/// A Teams Workflows webhook stand-in.
#[derive(Clone)]
pub struct TeamsReceiver {
    pub base: String,
    log: Log,
}

impl TeamsReceiver {
    pub async fn start() -> Self {
        let (base, log, _) = json_receiver(teams_problems, (202, "")).await;
        TeamsReceiver { base, log }
    }

    pub fn url(&self, secret: &str) -> String {
        format!("{}/workflows/{secret}/triggers/manual/paths/invoke?api-version=1&sig={secret}", self.base)
    }

    pub fn posted(&self) -> Vec<Posted> {
        self.log.lock().unwrap().clone()
    }
}

/// A test CA and a certificate for localhost / 127.0.0.1 signed by it.
pub struct TestCerts {
    /// The CA certificate as PEM (give it to the server under test as `SSL_CERT_FILE`).
    pub ca_pem: String,
    pub config: Arc<rustls::ServerConfig>,
}

impl TestCerts {
    pub fn generate() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, "make-budget-mcp SMTP test CA");
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let mut leaf = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        leaf.distinguished_name.push(DnType::CommonName, "smtp test");
        let key = KeyPair::generate().unwrap();
        let cert = leaf.signed_by(&key, &*ca).unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                rustls::pki_types::PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
            )
            .unwrap();
        TestCerts { ca_pem: ca.pem(), config: Arc::new(config) }
    }
}

/// One message the SMTP receiver accepted (or refused at the end of DATA).
#[derive(Debug, Clone, Default)]
pub struct Mail {
    /// Whether the connection was encrypted when MAIL FROM came.
    pub encrypted: bool,
    /// The user and password of AUTH PLAIN, if the client authenticated.
    pub auth: Option<(String, String)>,
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    /// The message as sent (headers and body, CRLF line ends, dot-stuffing undone).
    pub data: String,
}

impl Mail {
    /// A header's value (first occurrence, unfolded).
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.data.split("\r\n\r\n").next()?;
        let unfolded = head.replace("\r\n ", " ").replace("\r\n\t", " ");
        unfolded.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    }

    /// The body, with quoted-printable or base64 undone if the message says it is encoded so.
    pub fn body(&self) -> String {
        let raw = self.data.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default();
        match self.header("Content-Transfer-Encoding").as_deref().map(str::to_ascii_lowercase).as_deref() {
            Some("quoted-printable") => decode_qp(raw),
            Some("base64") => {
                let compact: String = raw.split_whitespace().collect();
                String::from_utf8_lossy(&base64::engine::general_purpose::STANDARD.decode(compact).unwrap()).into()
            }
            _ => raw.to_owned(),
        }
    }
}

fn decode_qp(s: &str) -> String {
    let s = s.replace("=\r\n", "");
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'='
            && i + 2 < b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into()
}

#[derive(Default)]
struct SmtpState {
    mails: Vec<Mail>,
    /// Replies to send instead of accepting the next DATA (e.g. "451 try again later").
    refuse_next: Vec<String>,
    /// Every command line seen, AUTH arguments masked.
    transcript: Vec<String>,
}

/// A tiny SMTP server (see the module documentation).
#[derive(Clone)]
pub struct SmtpReceiver {
    pub port: u16,
    /// The CA that signed its certificate, as PEM.
    pub ca_pem: String,
    state: Arc<Mutex<SmtpState>>,
}

impl SmtpReceiver {
    /// `implicit_tls`: TLS from the first byte (as on port 465); otherwise plain with STARTTLS.
    pub async fn start(implicit_tls: bool) -> Self {
        let certs = TestCerts::generate();
        let acceptor = tokio_rustls::TlsAcceptor::from(certs.config.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state: Arc<Mutex<SmtpState>> = Arc::default();
        let st = state.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (st, acceptor) = (st.clone(), acceptor.clone());
                tokio::spawn(async move {
                    if implicit_tls {
                        if let Ok(tls) = acceptor.accept(tcp).await {
                            let _ = converse(tls, true, true, &st).await;
                        }
                    } else if let Ok(Some(tcp)) = converse(tcp, false, true, &st).await
                        && let Ok(tls) = acceptor.accept(tcp).await
                    {
                        let _ = converse(tls, true, false, &st).await;
                    }
                });
            }
        });
        SmtpReceiver { port, ca_pem: certs.ca_pem, state }
    }

    pub fn mails(&self) -> Vec<Mail> {
        self.state.lock().unwrap().mails.clone()
    }

    pub fn transcript(&self) -> Vec<String> {
        self.state.lock().unwrap().transcript.clone()
    }

    /// Refuse the next messages at the end of DATA with these replies.
    pub fn refuse_next(&self, replies: &[&str]) {
        self.state.lock().unwrap().refuse_next.extend(replies.iter().map(|r| r.to_string()));
    }
}

pub const SMTP_USER: &str = "budget-bot";

/// One SMTP conversation on `stream`. Returns the stream when the client asked for STARTTLS (the caller
/// upgrades it and converses again), `None` when it quit.
async fn converse<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    encrypted: bool,
    greet: bool,
    state: &Arc<Mutex<SmtpState>>,
) -> std::io::Result<Option<S>> {
    let mut io = BufReader::new(stream);
    if greet {
        io.get_mut().write_all(b"220 smtp.test ESMTP ready\r\n").await?;
    }
    let mut mail = Mail { encrypted, ..Mail::default() };
    let mut line = String::new();
    loop {
        line.clear();
        if io.read_line(&mut line).await? == 0 {
            return Ok(None);
        }
        let cmd = line.trim_end().to_owned();
        let upper = cmd.to_ascii_uppercase();
        let shown = if upper.starts_with("AUTH") { "AUTH ***".to_owned() } else { cmd.clone() };
        state.lock().unwrap().transcript.push(shown);
        let reply: String = if upper.starts_with("EHLO") || upper.starts_with("HELO") {
            let mut r = String::from("250-smtp.test\r\n250-8BITMIME\r\n250-SIZE 1000000\r\n");
            if encrypted {
                r.push_str("250 AUTH PLAIN\r\n");
            } else {
                r.push_str("250 STARTTLS\r\n");
            }
            r
        } else if upper == "STARTTLS" && !encrypted {
            io.get_mut().write_all(b"220 2.0.0 go ahead\r\n").await?;
            return Ok(Some(io.into_inner()));
        } else if let Some(arg) = upper.strip_prefix("AUTH PLAIN").map(|_| cmd[10..].trim().to_owned()) {
            if !encrypted {
                "538 5.7.11 encryption required\r\n".into()
            } else {
                let decoded = base64::engine::general_purpose::STANDARD.decode(arg).unwrap_or_default();
                let parts: Vec<String> =
                    decoded.split(|b| *b == 0).map(|p| String::from_utf8_lossy(p).into_owned()).collect();
                match parts.as_slice() {
                    [_, user, pass] => {
                        mail.auth = Some((user.clone(), pass.clone()));
                        "235 2.7.0 authenticated\r\n".into()
                    }
                    _ => "501 5.5.2 cannot decode\r\n".into(),
                }
            }
        } else if upper.starts_with("MAIL FROM:") {
            mail.mail_from = angle(&cmd[10..]);
            mail.encrypted = encrypted;
            "250 2.1.0 ok\r\n".into()
        } else if upper.starts_with("RCPT TO:") {
            mail.rcpt_to.push(angle(&cmd[8..]));
            "250 2.1.5 ok\r\n".into()
        } else if upper == "DATA" {
            io.get_mut().write_all(b"354 end with <CRLF>.<CRLF>\r\n").await?;
            let mut data = String::new();
            loop {
                let mut l = String::new();
                if io.read_line(&mut l).await? == 0 {
                    return Ok(None);
                }
                if l == ".\r\n" {
                    break;
                }
                data.push_str(l.strip_prefix('.').unwrap_or(&l));
            }
            let done = Mail { data, ..std::mem::take(&mut mail) };
            mail.encrypted = encrypted;
            mail.auth = done.auth.clone();
            let refuse = {
                let mut s = state.lock().unwrap();
                if s.refuse_next.is_empty() { None } else { Some(s.refuse_next.remove(0)) }
            };
            match refuse {
                Some(r) => format!("{r}\r\n"),
                None => {
                    state.lock().unwrap().mails.push(done);
                    "250 2.0.0 queued\r\n".into()
                }
            }
        } else if upper == "RSET" {
            mail = Mail { encrypted, auth: mail.auth.clone(), ..Mail::default() };
            "250 ok\r\n".into()
        } else if upper == "NOOP" {
            "250 ok\r\n".into()
        } else if upper == "QUIT" {
            io.get_mut().write_all(b"221 bye\r\n").await?;
            let _ = io.get_mut().shutdown().await;
            return Ok(None);
        } else {
            "502 5.5.1 not implemented\r\n".into()
        };
        io.get_mut().write_all(reply.as_bytes()).await?;
        io.get_mut().flush().await?;
    }
}

fn angle(s: &str) -> String {
    let s = s.trim();
    let inner = s.split_once('<').and_then(|(_, r)| r.split_once('>')).map(|(a, _)| a).unwrap_or(s);
    inner.to_owned()
}
