//! Logging. Everything goes to stderr: in stdio mode stdout carries the MCP protocol and nothing else.
//!
//! rmcp logs whole protocol messages at DEBUG and TRACE, and tool arguments can carry secrets (the Make
//! token given to `connect_make`). Those events are dropped by a filter that no log setting can lift:
//! rmcp is logged at INFO at most, whatever `MBM_LOG` says.

use tracing::Level;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::LogFormat;

/// True for events that must never be emitted: rmcp's message dumps.
fn carries_protocol_payloads(meta: &tracing::Metadata<'_>) -> bool {
    meta.target().starts_with("rmcp") && *meta.level() > Level::INFO
}

/// Install the global subscriber. `filter` uses `RUST_LOG` syntax (e.g. `info,sqlx=warn`); an invalid
/// filter falls back to the default with a warning rather than silencing the server.
pub fn init(filter: &str, format: LogFormat) {
    let (env_filter, bad) = match EnvFilter::try_new(filter) {
        Ok(f) => (f, None),
        Err(e) => (EnvFilter::new(crate::config::DEFAULT_LOG), Some(e)),
    };
    // Global filters, not per-layer ones: a per-layer filter keeps per-thread state between `enabled` and
    // the event, and callers that only ask `enabled!` (sqlx's query logger does) leave that state set, so
    // the thread's next event was silently dropped. Global filters keep no such state.
    let registry =
        tracing_subscriber::registry().with(env_filter).with(filter_fn(|meta| !carries_protocol_payloads(meta)));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_target(false);
    let result = match format {
        LogFormat::Text => {
            registry.with(fmt.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))).try_init()
        }
        LogFormat::Json => registry.with(fmt.json().flatten_event(true)).try_init(),
    };
    if result.is_ok()
        && let Some(e) = bad
    {
        tracing::warn!(filter, error = %e, "invalid log filter; using the default");
    }
}
