//! The WebSocket protocol's own messages (docs/PROTOCOL.md): what a client may
//! send, and the server's answers beside the events themselves.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use tungstenite::Message;
use tungstenite::protocol::frame::coding::CloseCode;

use crate::event::{ProgressEvent, Timestamp};

/// The protocol version in `hello` (written by [`super::hello`]).
pub(crate) const PROTOCOL_VERSION: u32 = 1;

/// A message from a client, as parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ClientMessage {
    Subscribe(Target),
    /// `None`: drop every subscription.
    Unsubscribe(Option<Target>),
    Ping,
}

/// What a subscription selects.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub(crate) enum Target {
    #[serde(rename = "workOrderId")]
    WorkOrder(String),
    #[serde(rename = "runId")]
    Run(String),
}

/// Why a client message was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Invalid(pub(crate) String);

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    #[serde(rename = "type")]
    ty: String,
    work_order_id: Option<String>,
    run_id: Option<String>,
}

/// The most characters of an id a subscription may name.
const MAX_ID_LEN: usize = 1024;

impl ClientMessage {
    /// Parses one text frame.
    pub(crate) fn parse(text: &str) -> Result<ClientMessage, Invalid> {
        let raw: Raw = serde_json::from_str(text)
            .map_err(|e| Invalid(format!("not a JSON object with a string `type`: {e}")))?;
        let target = match (raw.work_order_id, raw.run_id) {
            (Some(_), Some(_)) => {
                return Err(Invalid("name either workOrderId or runId, not both".into()));
            }
            (Some(id), None) => Some(Target::WorkOrder(id)),
            (None, Some(id)) => Some(Target::Run(id)),
            (None, None) => None,
        };
        if let Some(Target::WorkOrder(id) | Target::Run(id)) = &target
            && id.len() > MAX_ID_LEN
        {
            return Err(Invalid(format!("ids are at most {MAX_ID_LEN} bytes")));
        }
        match (raw.ty.as_str(), target) {
            ("subscribe", Some(target)) => Ok(ClientMessage::Subscribe(target)),
            ("subscribe", None) => Err(Invalid("subscribe needs workOrderId or runId".into())),
            ("unsubscribe", target) => Ok(ClientMessage::Unsubscribe(target)),
            ("ping", _) => Ok(ClientMessage::Ping),
            (other, _) => Err(Invalid(format!(
                "unknown message type `{}`; expected subscribe, unsubscribe or ping",
                other.chars().take(64).collect::<String>()
            ))),
        }
    }
}

/// A client's subscriptions: none means everything.
#[derive(Clone, Debug, Default)]
pub(crate) struct Filter {
    targets: BTreeSet<Target>,
}

/// The most subscriptions one client may hold.
pub(crate) const MAX_SUBSCRIPTIONS: usize = 256;

impl Filter {
    /// Adds a subscription; adding one the client holds already changes nothing.
    pub(crate) fn add(&mut self, target: Target) -> Result<(), Invalid> {
        if self.targets.len() >= MAX_SUBSCRIPTIONS && !self.targets.contains(&target) {
            return Err(Invalid(format!(
                "at most {MAX_SUBSCRIPTIONS} subscriptions"
            )));
        }
        self.targets.insert(target);
        Ok(())
    }

    pub(crate) fn remove(&mut self, target: Option<&Target>) {
        match target {
            Some(t) => {
                self.targets.remove(t);
            }
            None => self.targets.clear(),
        }
    }

    pub(crate) fn matches(&self, event: &ProgressEvent) -> bool {
        self.targets.is_empty()
            || self.targets.iter().any(|t| match t {
                Target::WorkOrder(id) => **id == *event.work_order_id,
                Target::Run(id) => **id == *event.run_id,
            })
    }

    /// How many subscriptions the client holds.
    pub(crate) fn len(&self) -> usize {
        self.targets.len()
    }

    #[cfg(feature = "fuzzing")]
    pub(crate) fn targets(&self) -> impl Iterator<Item = &Target> {
        self.targets.iter()
    }
}

/// The server's answers and notices, beside `hello` and the events.
pub(crate) fn lagged(seq: u64, missed: u64) -> String {
    serde_json::json!({"type": "lagged", "seq": seq, "missed": missed}).to_string()
}

pub(crate) fn pong(seq: u64) -> String {
    serde_json::json!({"type": "pong", "seq": seq, "timestamp": Timestamp::now()}).to_string()
}

/// `subscribed` / `unsubscribed`: the target the message named (none for
/// "unsubscribe from everything") and how many subscriptions the client now
/// holds. Never the whole list: a client repeating a subscribe must not get
/// back more than it sent.
pub(crate) fn subscription(kind: &str, seq: u64, count: usize, target: Option<&Target>) -> String {
    serde_json::json!({"type": kind, "seq": seq, "target": target, "count": count}).to_string()
}

pub(crate) fn error(seq: u64, code: &str, message: &str) -> String {
    serde_json::json!({"type": "error", "seq": seq, "code": code, "message": message}).to_string()
}

/// What the server does with one message from a client.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Reply {
    /// Answer with this text message.
    Send(String),
    /// Nothing to answer (pings and pongs are tungstenite's business).
    Ignore,
    /// The client closed.
    Close,
}

/// Answers one message from a client, updating its subscriptions. Every
/// text message gets exactly one answer, an `error` for anything invalid;
/// the connection stays. `seq` is the last event the client was sent.
pub(crate) fn reply(filter: &mut Filter, seq: u64, message: &Message) -> Reply {
    let text = match message {
        Message::Text(text) => match ClientMessage::parse(text.as_str()) {
            Ok(ClientMessage::Ping) => pong(seq),
            Ok(ClientMessage::Subscribe(target)) => match filter.add(target.clone()) {
                Ok(()) => subscription("subscribed", seq, filter.len(), Some(&target)),
                Err(invalid) => error(seq, "INVALID_MESSAGE", &invalid.0),
            },
            Ok(ClientMessage::Unsubscribe(target)) => {
                filter.remove(target.as_ref());
                subscription("unsubscribed", seq, filter.len(), target.as_ref())
            }
            Err(invalid) => error(seq, "INVALID_MESSAGE", &invalid.0),
        },
        Message::Binary(_) => error(
            seq,
            "INVALID_MESSAGE",
            "binary frames are not supported; send JSON text",
        ),
        Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => return Reply::Ignore,
        Message::Close(_) => return Reply::Close,
    };
    Reply::Send(text)
}

/// The close code and reason for an error reading a client's frames;
/// `None` when the connection is simply gone (reset, closed, I/O error).
pub(crate) fn close_for(error: &tungstenite::Error) -> Option<(CloseCode, &'static str)> {
    use tungstenite::Error;
    use tungstenite::error::CapacityError;
    match error {
        Error::Capacity(CapacityError::MessageTooLong { .. }) => {
            Some((CloseCode::Size, "message too big"))
        }
        Error::Capacity(_) => Some((CloseCode::Size, "frame too big")),
        Error::Utf8(_) => Some((CloseCode::Invalid, "text is not UTF-8")),
        Error::Protocol(_) => Some((CloseCode::Protocol, "protocol error")),
        _ => None,
    }
}

/// One event's WebSocket message, serialized at most once however many
/// clients send it.
pub(crate) fn event_message(seq: u64, event: &ProgressEvent) -> String {
    let mut out = Vec::with_capacity(256);
    write_event_message(&mut out, seq, event);
    // Made of UTF-8 strings and ASCII; the check is a formality.
    String::from_utf8(out).unwrap_or_default()
}

/// Appends [`event_message`]'s bytes to `out`: the journal's lines are
/// these very bytes, so a journal and a `/ws` capture compare equal.
pub(crate) fn write_event_message(out: &mut Vec<u8>, seq: u64, event: &ProgressEvent) {
    crate::event::write_wire(out, seq, event);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_messages_parse_by_the_protocol() {
        assert_eq!(
            ClientMessage::parse(r#"{"type":"subscribe","runId":"r"}"#),
            Ok(ClientMessage::Subscribe(Target::Run("r".into())))
        );
        assert_eq!(
            ClientMessage::parse(r#"{"type":"unsubscribe"}"#),
            Ok(ClientMessage::Unsubscribe(None))
        );
        assert_eq!(
            ClientMessage::parse(r#"{"type":"ping"}"#),
            Ok(ClientMessage::Ping)
        );
        for bad in [
            "",
            "nope",
            "[]",
            r#"{"type":1}"#,
            r#"{"type":"subscribe"}"#,
            r#"{"type":"subscribe","runId":"r","workOrderId":"w"}"#,
            r#"{"type":"explode"}"#,
        ] {
            assert!(ClientMessage::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_duplicate_subscribe_is_answered_as_briefly_as_the_first_and_adds_nothing() {
        let mut filter = Filter::default();
        let long = "l".repeat(MAX_ID_LEN);
        for i in 0..MAX_SUBSCRIPTIONS - 1 {
            filter
                .add(Target::Run(format!("{i}{}", &long[..MAX_ID_LEN - 4])))
                .unwrap();
        }
        let subscribe = Message::Text(r#"{"type":"subscribe","runId":"r"}"#.into());
        let first = reply(&mut filter, 1, &subscribe);
        let again = reply(&mut filter, 1, &subscribe);
        assert_eq!(first, again);
        let Reply::Send(text) = again else {
            panic!("{again:?}")
        };
        assert!(text.len() < 100, "{text}");
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["count"], MAX_SUBSCRIPTIONS);
        assert_eq!(value["target"], serde_json::json!({"runId": "r"}));
        assert_eq!(filter.len(), MAX_SUBSCRIPTIONS);
    }
}
