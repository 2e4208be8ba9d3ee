//! A `tracing_subscriber` layer (cargo feature `tracing`) that writes
//! `tracing` events through the same formatter, with the current
//! [`LogContext`](crate::logging::LogContext) at top level.

use std::borrow::Cow;
use std::fmt::Debug;

use tracing_core::field::{Field as TracingField, Visit};
use tracing_core::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

use super::global;
use super::level::Level;
use super::record::{Body, Field, FieldValue, Record};
use crate::context::current_shared;
use crate::event::Timestamp;

/// Writes every `tracing` event to the global writer (see
/// [`Logger::new`](super::Logger::new)): the event's target as `module`,
/// its `message` field as `message`, its other fields as extra fields.
/// Span fields are not copied; use [`with_context`](crate::logging::with_context)
/// for the fields every line should carry.
///
/// ```
/// use tracing_subscriber::layer::SubscriberExt;
/// let subscriber = tracing_subscriber::registry().with(agentgate_obs::logging::TracingLayer::new());
/// let _ = subscriber; // tracing::subscriber::set_global_default(subscriber)
/// ```
#[derive(Clone, Copy, Debug, Default)]
#[cfg_attr(docsrs, doc(cfg(feature = "tracing")))]
pub struct TracingLayer {
    _private: (),
}

impl TracingLayer {
    /// A layer writing to the global writer.
    pub fn new() -> Self {
        TracingLayer { _private: () }
    }
}

fn level_of(level: &tracing_core::Level) -> Level {
    match *level {
        tracing_core::Level::ERROR => Level::Error,
        tracing_core::Level::WARN => Level::Warn,
        tracing_core::Level::INFO => Level::Info,
        tracing_core::Level::DEBUG => Level::Debug,
        _ => Level::Trace,
    }
}

impl<S: Subscriber> Layer<S> for TracingLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        let level = level_of(meta.level());
        let routed = global::with(|d| {
            if !d.enabled(level, meta.target()) {
                return;
            }
            let mut visitor = Visitor::default();
            event.record(&mut visitor);
            d.send(Record {
                level,
                module: Cow::Borrowed(meta.target()),
                timestamp: Timestamp::now(),
                body: Body::Message {
                    message: visitor.message.unwrap_or_default(),
                    context: current_shared(),
                    fields: visitor.fields,
                },
            });
        });
        if routed.is_none() && level >= Level::Info {
            global::count_unrouted();
        }
    }
}

#[derive(Default)]
struct Visitor {
    message: Option<Cow<'static, str>>,
    fields: Vec<Field>,
}

impl Visitor {
    fn push(&mut self, field: &TracingField, value: FieldValue) {
        // `log.*` fields are tracing-log's copy of a `log` record's metadata.
        if !field.name().starts_with("log.") {
            self.fields.push((field.name(), value));
        }
    }
}

impl Visit for Visitor {
    fn record_debug(&mut self, field: &TracingField, value: &dyn Debug) {
        let text = format!("{value:?}");
        if field.name() == "message" {
            self.message = Some(Cow::Owned(text));
        } else {
            self.push(field, FieldValue::from(text));
        }
    }

    fn record_str(&mut self, field: &TracingField, value: &str) {
        if field.name() == "message" {
            self.message = Some(Cow::Owned(value.to_owned()));
        } else {
            self.push(field, FieldValue::text(value));
        }
    }

    fn record_i64(&mut self, field: &TracingField, value: i64) {
        self.push(field, value.into());
    }

    fn record_u64(&mut self, field: &TracingField, value: u64) {
        self.push(field, value.into());
    }

    fn record_f64(&mut self, field: &TracingField, value: f64) {
        self.push(field, value.into());
    }

    fn record_bool(&mut self, field: &TracingField, value: bool) {
        self.push(field, value.into());
    }

    fn record_error(&mut self, field: &TracingField, value: &(dyn std::error::Error + 'static)) {
        self.push(field, FieldValue::from(value.to_string()));
    }
}
