//! Logging: human-readable text or one JSON object per line, on stderr.

use tracing_subscriber::{EnvFilter, fmt};

use crate::configuration::LogFormat;

/// Installs the global subscriber. `RUST_LOG` overrides `default_level`.
pub fn init(format: LogFormat, default_level: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let builder = fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            // The delivery being handled: its queue, check number and order.
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
}
