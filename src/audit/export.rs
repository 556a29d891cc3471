//! Exports of one tenant's audit chain, and the offline verifier for them.
//!
//! **JSON Lines** (`--format jsonl`), one JSON object per line, each with a `type`:
//!
//! ```text
//! {"type":"header","format":"make-budget-mcp/audit-export/v1","tenant_id":…,"tenant_name":…,"exported_at":…,"records":N}
//! {"type":"record","tenant_id":…,"seq":1,"at":…,"actor":{…},"action":…,…,"prev_hash":…,"hash":…}
//! {"type":"checkpoint","tenant_id":…,"seq":1000,"head_hash":…,"at":…,"key_id":…,"signature":…}
//! ```
//!
//! Records come in sequence order; each checkpoint follows the record it covers, and the export ends with
//! a checkpoint of its last record, so every record in an honest export is vouched for by a signature.
//! [`verify_jsonl`] checks such a file with nothing but the public key: the chain, every checkpoint's
//! signature, and that nothing follows the last checkpoint.
//!
//! **CEF** (`--format cef`): one ArcSight Common Event Format line per record, for SIEM ingestion. It
//! carries the chain fields (seq, hash) so a SIEM can correlate, but is not meant to be verified.

use std::io::BufRead;

use serde::{Deserialize, Serialize};

use super::{AuditRecord, BreakKind, ChainBreak, ChainVerifier, Checkpoint, Link, Outcome, TrustedKeys, Verified};

/// The `format` of a JSON Lines export's header.
pub const EXPORT_FORMAT: &str = "make-budget-mcp/audit-export/v1";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportHeader {
    pub format: String,
    pub tenant_id: String,
    pub tenant_name: String,
    pub exported_at: String,
    /// How many records follow (the sequence number of the last one).
    pub records: i64,
}

/// One line of a JSON Lines export (written with serde; read back with [`parse_line`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ExportLine {
    Header(ExportHeader),
    Record(Box<AuditRecord>),
    Checkpoint(Checkpoint),
}

impl ExportLine {
    /// The line as written, with its newline.
    pub fn to_line(&self) -> String {
        let mut s = serde_json::to_string(self).expect("export lines always serialise");
        s.push('\n');
        s
    }
}

/// Any line of an export, as flat optional fields: deserialising into this plain struct avoids the
/// buffering serde needs for an internally tagged enum with a flattened member, which doubles the cost
/// of reading a line. [`parse_line`] then checks that the fields its `type` needs are there.
#[derive(Deserialize)]
struct RawLine {
    #[serde(rename = "type")]
    kind: String,
    format: Option<String>,
    tenant_name: Option<String>,
    exported_at: Option<String>,
    records: Option<i64>,
    tenant_id: Option<String>,
    seq: Option<i64>,
    at: Option<String>,
    actor: Option<super::Actor>,
    action: Option<String>,
    target: Option<String>,
    outcome: Option<Outcome>,
    reason: Option<String>,
    request_id: Option<String>,
    before: Option<serde_json::Value>,
    after: Option<serde_json::Value>,
    prev_hash: Option<String>,
    hash: Option<String>,
    head_hash: Option<String>,
    key_id: Option<String>,
    signature: Option<String>,
}

/// Parse one line of a JSON Lines export.
pub fn parse_line(line: &str) -> Result<ExportLine, String> {
    let raw: RawLine = serde_json::from_str(line).map_err(|e| e.to_string())?;
    fn need<T>(v: Option<T>, kind: &str, field: &str) -> Result<T, String> {
        v.ok_or_else(|| format!("a {kind} line lacks `{field}`"))
    }
    Ok(match raw.kind.as_str() {
        "header" => ExportLine::Header(ExportHeader {
            format: need(raw.format, "header", "format")?,
            tenant_id: need(raw.tenant_id, "header", "tenant_id")?,
            tenant_name: need(raw.tenant_name, "header", "tenant_name")?,
            exported_at: need(raw.exported_at, "header", "exported_at")?,
            records: need(raw.records, "header", "records")?,
        }),
        "record" => ExportLine::Record(Box::new(AuditRecord {
            tenant_id: need(raw.tenant_id, "record", "tenant_id")?,
            seq: need(raw.seq, "record", "seq")?,
            at: need(raw.at, "record", "at")?,
            entry: super::AuditEntry {
                actor: need(raw.actor, "record", "actor")?,
                action: need(raw.action, "record", "action")?,
                target: need(raw.target, "record", "target")?,
                outcome: need(raw.outcome, "record", "outcome")?,
                reason: raw.reason,
                request_id: need(raw.request_id, "record", "request_id")?,
                before: raw.before,
                after: raw.after,
            },
            prev_hash: need(raw.prev_hash, "record", "prev_hash")?,
            hash: need(raw.hash, "record", "hash")?,
        })),
        "checkpoint" => ExportLine::Checkpoint(Checkpoint {
            tenant_id: need(raw.tenant_id, "checkpoint", "tenant_id")?,
            seq: need(raw.seq, "checkpoint", "seq")?,
            head_hash: need(raw.head_hash, "checkpoint", "head_hash")?,
            at: need(raw.at, "checkpoint", "at")?,
            key_id: need(raw.key_id, "checkpoint", "key_id")?,
            signature: need(raw.signature, "checkpoint", "signature")?,
        }),
        other => return Err(format!("unknown line type {other:?}")),
    })
}

/// The verdict on an export file.
#[derive(Debug, Clone, Serialize)]
pub struct FileReport {
    pub tenant_id: String,
    pub tenant_name: String,
    pub records_checked: i64,
    /// Set when the file verified: how far it goes and which checkpoint vouches for it.
    pub verified: Option<Verified>,
    pub first_break: Option<ChainBreak>,
}

impl FileReport {
    pub fn is_valid(&self) -> bool {
        self.first_break.is_none()
    }
}

/// Bytes of whole lines a worker of [`verify_jsonl`] takes at a time.
const CHUNK_BYTES: usize = 256 * 1024;

/// Whole lines read by [`verify_jsonl`]'s reader, and the bytes read so far.
struct Chunk {
    bytes: Vec<u8>,
    read_so_far: u64,
}

/// A worker's verdict on one line: what the verifier needs of it, and nothing more (the parsed record is
/// dropped where it was made).
enum Checked {
    Record { seq: i64, tenant_id: Option<String>, prev_hash: String, hash: String, hash_ok: bool },
    Checkpoint(Checkpoint),
    Header,
    Malformed(String),
}

/// A chunk's lines: each line's number within the chunk (from 0) and verdict; blank lines are left out.
struct CheckedChunk {
    lines: Vec<(u64, Checked)>,
    line_count: u64,
    read_so_far: u64,
}

/// Verify a JSON Lines export with nothing but trusted public keys. Streams the file (memory bounded by a
/// few chunks); `progress` is told the bytes read so far every few megabytes. I/O errors are returned as
/// such; a malformed or tampered file is a report with `first_break` set.
///
/// Parsing and hashing a record does not depend on the records before it (a record stores the hash it
/// follows), so that work runs on one worker thread per core: a reader thread hands out chunks of whole
/// lines in turn, and this thread takes the workers' verdicts back in the same turn and follows the chain's
/// links in file order with [`ChainVerifier`].
pub fn verify_jsonl<R: BufRead + Send>(
    mut reader: R,
    keys: &TrustedKeys,
    mut progress: impl FnMut(u64),
) -> std::io::Result<FileReport> {
    let mut line = String::new();
    let malformed = |seq: i64, detail: String| ChainBreak::new(seq, BreakKind::Malformed, detail);
    let mut report = FileReport {
        tenant_id: String::new(),
        tenant_name: String::new(),
        records_checked: 0,
        verified: None,
        first_break: None,
    };
    if reader.read_line(&mut line)? == 0 {
        report.first_break = Some(malformed(1, "the file is empty".into()));
        return Ok(report);
    }
    let header_bytes = line.len() as u64;
    let header = match parse_line(&line) {
        Ok(ExportLine::Header(h)) if h.format == EXPORT_FORMAT => h,
        Ok(ExportLine::Header(h)) => {
            report.first_break = Some(malformed(1, format!("unknown export format {:?}", h.format)));
            return Ok(report);
        }
        _ => {
            report.first_break = Some(malformed(1, format!("line 1 is not an export header ({EXPORT_FORMAT})")));
            return Ok(report);
        }
    };
    report.tenant_id = header.tenant_id.clone();
    report.tenant_name = header.tenant_name.clone();
    let mut verifier = ChainVerifier::new(header.tenant_id.clone(), Some(keys));
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 8);
    let tenant_id = header.tenant_id.as_str();

    let outcome = std::thread::scope(|scope| -> std::io::Result<Result<Verified, ChainBreak>> {
        use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
        let (mut to_workers, mut from_workers) = (Vec::new(), Vec::new());
        for _ in 0..workers {
            let (chunk_tx, chunk_rx) = sync_channel::<Chunk>(2);
            let (done_tx, done_rx) = sync_channel::<CheckedChunk>(2);
            scope.spawn(move || {
                for chunk in chunk_rx {
                    if done_tx.send(check_chunk(&chunk, tenant_id)).is_err() {
                        return; // the verifier stopped at a break
                    }
                }
            });
            to_workers.push(chunk_tx);
            from_workers.push(done_rx);
        }
        // The reader hands chunk i to worker i mod n; the verifier takes verdicts back in the same turn,
        // so lines stay in file order. A read error ends the chunks and is reported after them.
        let reading = scope.spawn(move || -> std::io::Result<()> {
            let to_workers: Vec<SyncSender<Chunk>> = to_workers;
            let mut read_so_far = header_bytes;
            for turn in 0.. {
                let mut bytes = Vec::with_capacity(CHUNK_BYTES + 4096);
                while bytes.len() < CHUNK_BYTES {
                    let n = reader.read_until(b'\n', &mut bytes)?;
                    if n == 0 {
                        break;
                    }
                    read_so_far += n as u64;
                }
                let last = bytes.len() < CHUNK_BYTES;
                if to_workers[turn % to_workers.len()].send(Chunk { bytes, read_so_far }).is_err() || last {
                    return Ok(());
                }
            }
            Ok(())
        });
        let from_workers: Vec<Receiver<CheckedChunk>> = from_workers;
        let (mut first_line, mut read_so_far, mut reported) = (2u64, header_bytes, 0u64);
        let verdict = 'chunks: {
            for turn in 0.. {
                let Ok(chunk) = from_workers[turn % from_workers.len()].recv() else {
                    break 'chunks verifier.finish();
                };
                for (i, checked) in chunk.lines {
                    let line_no = first_line + i;
                    let step = match checked {
                        Checked::Record { seq, tenant_id: other, prev_hash, hash, hash_ok } => {
                            let tenant_id = other.as_deref().unwrap_or(tenant_id);
                            let link = Link { seq, tenant_id, prev_hash: &prev_hash, hash: &hash, hash_ok };
                            verifier.check_link(&link)
                        }
                        Checked::Checkpoint(cp) => verifier.checkpoint(&cp),
                        Checked::Header => {
                            Err(malformed(verifier.checked() + 1, format!("line {line_no}: a second header")))
                        }
                        Checked::Malformed(e) => Err(malformed(verifier.checked() + 1, format!("line {line_no}: {e}"))),
                    };
                    if let Err(b) = step {
                        report.records_checked = verifier.checked();
                        break 'chunks Err(b);
                    }
                }
                first_line += chunk.line_count;
                read_so_far = chunk.read_so_far;
                if read_so_far - reported >= PROGRESS_BYTES {
                    reported = read_so_far;
                    progress(read_so_far);
                }
            }
            unreachable!("the loop over turns ends only by a break")
        };
        drop(from_workers);
        reading.join().expect("the export reader does not panic")?;
        progress(read_so_far);
        Ok(verdict)
    })?;
    match outcome {
        Ok(v) => {
            report.records_checked = v.records_checked;
            if v.records_checked == 0 {
                report.first_break = Some(malformed(1, "the export holds no records".into()));
            } else if v.anchored_seq < v.records_checked {
                report.first_break = Some(ChainBreak::new(
                    v.anchored_seq + 1,
                    BreakKind::Unanchored,
                    format!(
                        "records {}..={} follow the last signed checkpoint; nothing vouches for them",
                        v.anchored_seq + 1,
                        v.records_checked
                    ),
                ));
            } else if v.records_checked != header.records {
                report.first_break = Some(ChainBreak::new(
                    v.records_checked + 1,
                    BreakKind::MissingTail,
                    format!("the header announces {} records; the file holds {}", header.records, v.records_checked),
                ));
            }
            report.verified = Some(v);
        }
        Err(b) => report.first_break = Some(b),
    }
    Ok(report)
}

/// How often [`verify_jsonl`] reports progress.
const PROGRESS_BYTES: u64 = 4 << 20;

/// A worker's part of [`verify_jsonl`]: parse each line of a chunk and, for a record, check its hash.
/// `tenant_id` is the export's tenant: a record of another tenant keeps its own id for the report.
fn check_chunk(chunk: &Chunk, tenant_id: &str) -> CheckedChunk {
    let mut text = chunk.bytes.as_slice();
    if let Some(rest) = text.strip_suffix(b"\n") {
        text = rest;
    }
    let mut out = CheckedChunk { lines: Vec::new(), line_count: 0, read_so_far: chunk.read_so_far };
    if chunk.bytes.is_empty() {
        return out;
    }
    for (i, line) in text.split(|b| *b == b'\n').enumerate() {
        out.line_count += 1;
        if line.trim_ascii().is_empty() {
            continue;
        }
        let checked = match std::str::from_utf8(line).map_err(|e| e.to_string()).and_then(parse_line) {
            Ok(ExportLine::Record(r)) => {
                let hash_ok = r.hash_matches();
                let AuditRecord { seq, tenant_id: own, prev_hash, hash, .. } = *r;
                Checked::Record { seq, tenant_id: (own != tenant_id).then_some(own), prev_hash, hash, hash_ok }
            }
            Ok(ExportLine::Checkpoint(cp)) => Checked::Checkpoint(cp),
            Ok(ExportLine::Header(_)) => Checked::Header,
            Err(e) => Checked::Malformed(e),
        };
        out.lines.push((i as u64, checked));
    }
    out
}

/// One record as an ArcSight CEF (Common Event Format, revision 25) line, without the newline.
///
/// Header fields escape `\` and `|`; extension values escape `\`, `=` and line breaks, as the CEF
/// specification requires. Field mapping: `rt` the record time (epoch milliseconds), `suser` the actor,
/// `act` the tool or command, `outcome`, `reason`, `externalId` and `cn1` the sequence number, `cs1`–`cs6`
/// tenant, role, transport, target, request id and record hash (each named by its `csNLabel`).
pub fn cef_line(r: &AuditRecord, product_version: &str) -> String {
    let e = &r.entry;
    let severity = match e.outcome {
        Outcome::Success => 3,
        Outcome::Denied => 6,
    };
    let rt = r.at.parse::<jiff::Timestamp>().map(|t| t.as_millisecond().to_string()).unwrap_or_default();
    let mut ext: Vec<(&str, String)> = vec![
        ("rt", rt),
        ("suser", e.actor.subject.clone()),
        ("act", e.action.clone()),
        ("outcome", e.outcome.as_str().into()),
        ("externalId", r.seq.to_string()),
        ("cn1Label", "seq".into()),
        ("cn1", r.seq.to_string()),
        ("cs1Label", "tenantId".into()),
        ("cs1", r.tenant_id.clone()),
        ("cs2Label", "actorRole".into()),
        ("cs2", e.actor.role.clone()),
        ("cs3Label", "transport".into()),
        ("cs3", e.actor.transport.clone()),
        ("cs4Label", "target".into()),
        ("cs4", e.target.clone()),
        ("cs5Label", "requestId".into()),
        ("cs5", e.request_id.clone()),
        ("cs6Label", "recordHash".into()),
        ("cs6", r.hash.clone()),
    ];
    if let Some(reason) = &e.reason {
        ext.push(("reason", reason.clone()));
    }
    let extension: Vec<String> = ext.into_iter().map(|(k, v)| format!("{k}={}", cef_value(&v))).collect();
    format!(
        "CEF:0|make-budget-mcp|make-budget-mcp|{}|{}|{}|{severity}|{}",
        cef_header(product_version),
        cef_header(&e.action),
        cef_header(&format!("{} {}", e.action, e.outcome.as_str())),
        extension.join(" ")
    )
}

fn cef_header(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '|' => out.push_str("\\|"),
            '\r' | '\n' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

fn cef_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '=' => out.push_str("\\="),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{Actor, AuditEntry, AuditKeys, GENESIS_HASH};

    fn record(seq: i64, prev: &str, target: &str, reason: Option<&str>) -> AuditRecord {
        AuditRecord::seal(
            "t1".into(),
            seq,
            "2026-03-01T12:00:00.250000Z".into(),
            AuditEntry {
                actor: Actor { subject: "alice|ops".into(), role: "admin".into(), transport: "http".into() },
                action: "update_budget".into(),
                target: target.into(),
                outcome: Outcome::Denied,
                reason: reason.map(Into::into),
                request_id: "req-1".into(),
                before: None,
                after: None,
            },
            prev.into(),
        )
    }

    #[test]
    fn cef_lines_map_and_escape_per_the_spec() {
        let r = record(7, GENESIS_HASH, "budget:a=b", Some("line1\nline2 \\ done"));
        let line = cef_line(&r, "1.2|3");
        assert!(
            line.starts_with("CEF:0|make-budget-mcp|make-budget-mcp|1.2\\|3|update_budget|update_budget denied|6|"),
            "{line}"
        );
        assert!(line.contains("rt=1772366400250 "), "{line}");
        assert!(line.contains("suser=alice|ops "), "pipes need no escape in the extension: {line}");
        assert!(line.contains("cs4Label=target cs4=budget:a\\=b "), "{line}");
        assert!(line.contains("reason=line1\\nline2 \\\\ done"), "{line}");
        assert!(line.contains("externalId=7 ") && line.contains(&format!("cs6={}", r.hash)), "{line}");
        assert!(!line.contains('\n'));
    }

    fn export(records: &[AuditRecord], cps: &[Checkpoint]) -> String {
        let mut out = ExportLine::Header(ExportHeader {
            format: EXPORT_FORMAT.into(),
            tenant_id: "t1".into(),
            tenant_name: "acme".into(),
            exported_at: "2026-03-02T00:00:00.000000Z".into(),
            records: records.len() as i64,
        })
        .to_line();
        for r in records {
            out.push_str(&ExportLine::Record(Box::new(r.clone())).to_line());
            for cp in cps.iter().filter(|c| c.seq == r.seq) {
                out.push_str(&ExportLine::Checkpoint(cp.clone()).to_line());
            }
        }
        out
    }

    #[test]
    fn lines_parse_back_to_what_was_written() {
        let r = record(3, GENESIS_HASH, "budget:x", Some("why"));
        let line = ExportLine::Record(Box::new(r.clone()));
        assert_eq!(parse_line(&line.to_line()).unwrap(), line);
        let cp = AuditKeys::generate().sign("t1", 3, &r.hash, "2026-03-01T13:00:00.000000Z");
        let line = ExportLine::Checkpoint(cp);
        assert_eq!(parse_line(&line.to_line()).unwrap(), line);
        assert_eq!(parse_line(r#"{"type":"record","seq":1}"#).unwrap_err(), "a record line lacks `tenant_id`");
        assert!(parse_line(r#"{"type":"footer"}"#).unwrap_err().contains("unknown line type"));
    }

    /// Records 1..=n of one chain, each over its own target.
    fn chain(n: i64) -> Vec<AuditRecord> {
        let mut prev = GENESIS_HASH.to_string();
        (1..=n)
            .map(|s| {
                let r = record(s, &prev, &format!("budget:{s}"), None);
                prev = r.hash.clone();
                r
            })
            .collect()
    }

    #[test]
    fn honest_exports_verify_and_unsigned_tails_do_not() {
        let keys = AuditKeys::generate();
        let records = chain(5);
        let at = "2026-03-01T13:00:00.000000Z";
        let cps = [keys.sign("t1", 2, &records[1].hash, at), keys.sign("t1", 5, &records[4].hash, at)];
        let report = verify_jsonl(export(&records, &cps).as_bytes(), keys.trusted(), |_| {}).unwrap();
        assert!(report.is_valid(), "{report:?}");
        assert_eq!(report.verified.unwrap().anchored_seq, 5);

        let report = verify_jsonl(export(&records, &cps[..1]).as_bytes(), keys.trusted(), |_| {}).unwrap();
        let b = report.first_break.unwrap();
        assert_eq!((b.seq, b.kind), (3, BreakKind::Unanchored));

        let other = AuditKeys::generate();
        let report = verify_jsonl(export(&records, &cps).as_bytes(), other.trusted(), |_| {}).unwrap();
        assert_eq!(report.first_break.unwrap().kind, BreakKind::BadCheckpoint, "a key the verifier does not trust");

        let report = verify_jsonl("{\"type\":\"record\"}\n".as_bytes(), keys.trusted(), |_| {}).unwrap();
        assert_eq!(report.first_break.unwrap().kind, BreakKind::Malformed);
    }

    /// A chain long enough to pass through every worker several times: a break in a late batch is found at
    /// its record, a read error surfaces as such, and progress ends at the file's size.
    #[test]
    fn long_exports_are_checked_in_order_across_batches() {
        let keys = AuditKeys::generate();
        let records = chain(3000);
        let at = "2026-03-01T13:00:00.000000Z";
        let cps: Vec<Checkpoint> =
            (1..=3).map(|k| keys.sign("t1", k * 1000, &records[k as usize * 1000 - 1].hash, at)).collect();
        let honest = export(&records, &cps);
        let mut seen = 0;
        let report = verify_jsonl(honest.as_bytes(), keys.trusted(), |b| seen = b).unwrap();
        assert!(report.is_valid(), "{report:?}");
        assert_eq!((report.records_checked, report.verified.unwrap().anchored_seq), (3000, 3000));
        assert_eq!(seen, honest.len() as u64, "progress ends at the whole file");

        let tampered = honest.replace("\"budget:2345\"", "\"budget:2346\"");
        let report = verify_jsonl(tampered.as_bytes(), keys.trusted(), |_| {}).unwrap();
        let b = report.first_break.unwrap();
        assert_eq!((b.seq, b.kind, report.records_checked), (2345, BreakKind::HashMismatch, 2344));

        let mut lines: Vec<&str> = honest.lines().collect();
        lines.swap(1700, 1701);
        let report = verify_jsonl(format!("{}\n", lines.join("\n")).as_bytes(), keys.trusted(), |_| {}).unwrap();
        assert_eq!(report.first_break.unwrap().kind, BreakKind::Reordered);

        /// Serves the honest export's first bytes, then fails.
        struct Failing<'a>(&'a [u8]);
        impl std::io::Read for Failing<'_> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                if self.0.is_empty() {
                    return Err(std::io::Error::other("disk went away"));
                }
                let n = buf.len().min(self.0.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let cut = std::io::BufReader::new(Failing(&honest.as_bytes()[..honest.len() / 2]));
        let err = verify_jsonl(cut, keys.trusted(), |_| {}).unwrap_err();
        assert_eq!(err.to_string(), "disk went away");
    }
}
