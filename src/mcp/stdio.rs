//! The stdio transport: newline-delimited JSON-RPC over stdin and stdout, in place of rmcp's
//! `AsyncRwTransport`, which drops input it cannot parse without an answer (a client waiting on that id
//! hangs) and reads wrong `params` of known methods as custom requests (answered `-32601`).
//!
//! - **Every line gets its due answer.** Lines go through [`super::jsonrpc::classify`]: what rmcp can handle
//!   is handed to it; a request that is not JSON, not JSON-RPC, or has wrong params is answered
//!   `-32700`/`-32600`/`-32602` here and logged at WARN (a short prefix of the line at most). Refused
//!   notifications and responses are logged only. Blank lines are skipped.
//! - **Lines are bounded.** A line longer than [`MAX_LINE_BYTES`] (16 MiB, rmcp's default) is answered
//!   `-32600` (with its id if the first bytes name one) and the rest of it is read and thrown away without
//!   being buffered.
//! - **One writer.** A single task owns stdout. Responses from rmcp and the error answers made here queue on
//!   one channel, so lines never interleave and stdout carries protocol lines only (logs go to stderr).
//!   [`Transport::send`] waits until its line is written and flushed, as rmcp's own transport does.
//! - **Cancellation.** rmcp polls [`Transport::receive`] inside a `select!`, so it may be dropped at any
//!   await. A partial line stays in the buffer for the next call (the read goes through `fill_buf` and
//!   `consume`), and an error answer waits in `pending` until a channel slot is reserved, then goes in
//!   without another await, so nothing is lost or written twice.

use std::io;

use rmcp::RoleServer;
use rmcp::service::{RxJsonRpcMessage, TxJsonRpcMessage};
use rmcp::transport::Transport;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, oneshot};

use super::jsonrpc::{self, Rejection};

/// Longest accepted input line, without its newline.
pub const MAX_LINE_BYTES: usize = 16 * 1024 * 1024;

/// Lines queued for the writer before senders wait.
const QUEUE: usize = 64;

/// The transport over this process's stdin and stdout.
pub fn stdio() -> StdioTransport<tokio::io::Stdin> {
    StdioTransport::new(tokio::io::stdin(), tokio::io::stdout())
}

/// See the module docs.
pub struct StdioTransport<R> {
    lines: LineReader<R>,
    out: Option<mpsc::Sender<Outgoing>>,
    /// An error answer not yet handed to the writer.
    pending: Option<Vec<u8>>,
    writer: Option<tokio::task::JoinHandle<()>>,
}

struct Outgoing {
    line: Vec<u8>,
    /// Told once the line is written and flushed (rmcp's sends wait for that; error answers do not).
    done: Option<oneshot::Sender<io::Result<()>>>,
}

impl<R: AsyncRead + Unpin + Send> StdioTransport<R> {
    pub fn new<W: AsyncWrite + Unpin + Send + 'static>(read: R, write: W) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        StdioTransport {
            lines: LineReader::new(read, MAX_LINE_BYTES),
            out: Some(tx),
            pending: None,
            writer: Some(tokio::spawn(write_lines(write, rx))),
        }
    }

    /// Accept lines of at most `max` bytes (tests use small limits).
    pub fn with_max_line_bytes(mut self, max: usize) -> Self {
        self.lines.max = max;
        self
    }
}

/// The writer task: write each queued line, flush once per burst, report to each sender. After a write
/// error every later line fails with the same kind of error.
async fn write_lines<W: AsyncWrite + Unpin>(mut w: W, mut rx: mpsc::Receiver<Outgoing>) {
    let mut broken: Option<io::ErrorKind> = None;
    let mut burst = Vec::new();
    while rx.recv_many(&mut burst, QUEUE).await > 0 {
        let result = match broken {
            Some(kind) => Err(kind),
            None => {
                let mut r = Ok(());
                for item in &burst {
                    if let Err(e) = w.write_all(&item.line).await {
                        r = Err(e);
                        break;
                    }
                }
                let r = match r {
                    Ok(()) => w.flush().await,
                    e => e,
                };
                r.map_err(|e| {
                    tracing::error!(error = %e, "writing to stdout failed");
                    e.kind()
                })
            }
        };
        if let Err(kind) = result {
            broken = Some(kind);
        }
        for item in burst.drain(..) {
            if let Some(done) = item.done {
                let _ = done.send(result.map_err(io::Error::from));
            }
        }
    }
    let _ = w.shutdown().await;
}

impl<R: AsyncRead + Unpin + Send> Transport<RoleServer> for StdioTransport<R> {
    type Error = io::Error;

    fn send(
        &mut self,
        item: TxJsonRpcMessage<RoleServer>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        let out = self.out.clone();
        let line = serde_json::to_vec(&item).map(|mut line| {
            line.push(b'\n');
            line
        });
        async move {
            let line = line.map_err(io::Error::other)?;
            let out = out.ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "the transport is closed"))?;
            let (done, written) = oneshot::channel();
            let stopped = || io::Error::new(io::ErrorKind::BrokenPipe, "the stdout writer has stopped");
            out.send(Outgoing { line, done: Some(done) }).await.map_err(|_| stopped())?;
            written.await.unwrap_or_else(|_| Err(stopped()))
        }
    }

    async fn receive(&mut self) -> Option<RxJsonRpcMessage<RoleServer>> {
        loop {
            if self.pending.is_some() {
                let permit = self.out.as_ref()?.reserve().await.ok()?;
                let line = self.pending.take().expect("checked above");
                permit.send(Outgoing { line, done: None });
            }
            match self.lines.read_line().await {
                Line::Complete => {}
                Line::Oversized(rejection) => {
                    self.pending = Some(rejection.to_line());
                    continue;
                }
                Line::Eof => {
                    if !self.lines.buf.is_empty() {
                        tracing::warn!(bytes = self.lines.buf.len(), "stdin ended inside a message; it is ignored");
                    }
                    return None;
                }
                Line::Failed(e) => {
                    tracing::error!(error = %e, "reading stdin failed");
                    return None;
                }
            }
            let verdict = {
                let line = self.lines.buf.strip_suffix(b"\n").unwrap_or(&self.lines.buf);
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                if line.iter().all(u8::is_ascii_whitespace) {
                    None
                } else {
                    let verdict = jsonrpc::classify(line);
                    if let Err(rejection) = &verdict {
                        rejection.log("stdio", line);
                    }
                    Some(verdict)
                }
            };
            self.lines.clear();
            match verdict {
                None => continue,
                Some(Ok(msg)) => return Some(msg),
                Some(Err(rejection)) => {
                    if rejection.answer {
                        self.pending = Some(rejection.to_line());
                    }
                }
            }
        }
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        drop(self.out.take());
        if let Some(writer) = self.writer.take() {
            // Let queued lines out, but do not hang on a client that stopped reading.
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), writer).await;
        }
        Ok(())
    }
}

/// What one bounded line read produced.
enum Line {
    /// A `\n`-terminated line is in the buffer.
    Complete,
    /// The line exceeds the limit: answered with this, its rest is being discarded.
    Oversized(Rejection),
    Eof,
    Failed(io::Error),
}

/// Newline-delimited reads that never buffer more than `max` bytes of one line.
struct LineReader<R> {
    read: BufReader<R>,
    buf: Vec<u8>,
    max: usize,
    /// Set while the rest of an oversized line is being skipped; on the struct because a read can be
    /// cancelled half-way through.
    discarding: bool,
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    fn new(read: R, max: usize) -> Self {
        LineReader { read: BufReader::with_capacity(64 * 1024, read), buf: Vec::new(), max, discarding: false }
    }

    /// Forget the line just handled, and give back the memory of a big one.
    fn clear(&mut self) {
        self.buf.clear();
        if self.buf.capacity() > 1024 * 1024 {
            self.buf.shrink_to(64 * 1024);
        }
    }

    /// Read up to the next newline into `buf`. Cancel-safe: the copy into `buf` and the `consume` of the
    /// same bytes happen with no await between them, so a dropped call leaves a partial line for the next.
    async fn read_line(&mut self) -> Line {
        loop {
            let available = match self.read.fill_buf().await {
                Ok(a) => a,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Line::Failed(e),
            };
            if available.is_empty() {
                return Line::Eof;
            }
            let newline = available.iter().position(|b| *b == b'\n');
            let take = newline.map_or(available.len(), |i| i + 1);
            let content = newline.map_or(take, |i| i);
            if self.discarding {
                self.read.consume(take);
                if newline.is_some() {
                    self.discarding = false;
                }
                continue;
            }
            if self.buf.len() + content > self.max {
                let prefix: &[u8] = if self.buf.is_empty() { available } else { &self.buf };
                let rejection = jsonrpc::oversized(self.max, prefix);
                rejection.log("stdio", prefix);
                self.discarding = newline.is_none();
                self.read.consume(take);
                self.clear();
                return Line::Oversized(rejection);
            }
            self.buf.extend_from_slice(&available[..take]);
            self.read.consume(take);
            if newline.is_some() {
                return Line::Complete;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

    /// A transport on an in-memory pipe, and the client's ends of it.
    fn pair(max: usize) -> (StdioTransport<tokio::io::ReadHalf<tokio::io::DuplexStream>>, ClientEnd) {
        let (server, client) = tokio::io::duplex(1 << 20);
        let (sr, sw) = tokio::io::split(server);
        let (cr, cw) = tokio::io::split(client);
        (StdioTransport::new(sr, sw).with_max_line_bytes(max), ClientEnd { w: cw, r: tokio::io::BufReader::new(cr) })
    }

    struct ClientEnd {
        w: tokio::io::WriteHalf<tokio::io::DuplexStream>,
        r: tokio::io::BufReader<tokio::io::ReadHalf<tokio::io::DuplexStream>>,
    }

    impl ClientEnd {
        async fn answer(&mut self) -> Value {
            let mut line = String::new();
            self.r.read_line(&mut line).await.unwrap();
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))
        }
    }

    #[tokio::test]
    async fn bad_lines_are_answered_in_order_and_good_ones_come_through() {
        let (mut t, mut c) = pair(1024);
        c.w.write_all(
            b"not json\n\n  \r\n{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"tools/call\",\"params\":{\"name\":7}}\n",
        )
        .await
        .unwrap();
        c.w.write_all(b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\",\"params\":{\"requestId\":[]}}\n")
            .await
            .unwrap();
        c.w.write_all(b"{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"ping\"}\n").await.unwrap();
        let msg = t.receive().await.expect("the ping");
        assert_eq!(serde_json::to_value(&msg).unwrap()["id"], 4);
        let first = c.answer().await;
        assert_eq!((first["id"].clone(), first["error"]["code"].clone()), (Value::Null, json!(-32700)), "{first}");
        let second = c.answer().await;
        assert_eq!((second["id"].clone(), second["error"]["code"].clone()), (json!(3), json!(-32602)), "{second}");
        assert!(second["error"]["message"].as_str().unwrap().contains("params.name"), "{second}");
        // The refused notification got no answer: the next line out is the response sent now.
        let response: TxJsonRpcMessage<RoleServer> = rmcp::model::JsonRpcMessage::response(
            rmcp::model::ServerResult::empty(()),
            rmcp::model::RequestId::Number(4),
        );
        t.send(response).await.unwrap();
        assert_eq!(c.answer().await["id"], 4);
    }

    #[tokio::test]
    async fn an_oversized_line_is_answered_and_skipped_without_buffering_it() {
        let (mut t, mut c) = pair(100);
        let big = format!(
            "{{\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"tools/call\",\"params\":{{\"x\":\"{}\"}}}}\n",
            "a".repeat(5000)
        );
        c.w.write_all(big.as_bytes()).await.unwrap();
        c.w.write_all(b"{\"jsonrpc\":\"2.0\",\"id\":10,\"method\":\"ping\"}\n").await.unwrap();
        let msg = t.receive().await.expect("the ping after the big line");
        assert_eq!(serde_json::to_value(&msg).unwrap()["id"], 10);
        assert!(t.lines.buf.capacity() <= 64 * 1024, "the big line was not buffered");
        let answer = c.answer().await;
        assert_eq!((answer["id"].clone(), answer["error"]["code"].clone()), (json!(9), json!(-32600)), "{answer}");
        assert!(answer["error"]["message"].as_str().unwrap().contains("longer than 100 bytes"), "{answer}");
    }

    #[tokio::test]
    async fn a_cancelled_receive_loses_neither_the_partial_line_nor_the_pending_answer() {
        let (mut t, mut c) = pair(1024);
        c.w.write_all(b"{oops\n{\"jsonrpc\":\"2.0\",\"id\":1,").await.unwrap();
        let cut = tokio::time::timeout(std::time::Duration::from_millis(50), t.receive()).await;
        assert!(cut.is_err(), "the line is incomplete, so receive was still waiting when dropped");
        c.w.write_all(b"\"method\":\"ping\"}\n").await.unwrap();
        let msg = t.receive().await.expect("the completed line");
        assert_eq!(serde_json::to_value(&msg).unwrap()["id"], 1);
        assert_eq!(c.answer().await["error"]["code"], -32700);
        c.w.shutdown().await.unwrap();
        assert!(t.receive().await.is_none(), "EOF ends the stream");
        t.close().await.unwrap();
    }
}
