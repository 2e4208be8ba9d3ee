//! The pipeline's own reports about itself (a listener panicked), written
//! as error records through the pipeline's log writer.

use crate::event::ProgressEvent;
use crate::log::Dispatch;

/// Reports a listener panic. Runs on the drain thread, rarely; nothing is
/// written when logging is off (the panic is still counted).
pub(crate) fn listener_panicked(log: Option<&Dispatch>, event: &ProgressEvent, panic: &str) {
    if let Some(log) = log {
        crate::log::listener_panicked(log, event, panic);
    }
}

/// Warns, once at start, when the server listens on an address other than
/// loopback without a token: anyone who can reach it reads every run and
/// the metrics. Through the pipeline's log when it has one, else straight
/// to stderr (the warning matters more than a quiet library).
pub(crate) fn warn_if_public_without_token(
    addr: Option<std::net::SocketAddr>,
    has_token: bool,
    log: Option<&std::sync::Arc<Dispatch>>,
) {
    let Some(addr) = addr else {
        return;
    };
    let loopback = match addr.ip() {
        std::net::IpAddr::V6(v6) => v6.to_canonical().is_loopback(),
        ip => ip.is_loopback(),
    };
    if has_token || loopback {
        return;
    }
    let message = "serving without a token on an address other than loopback: anyone who can \
                   reach it can read every run and the metrics; set a token or bind 127.0.0.1";
    match log {
        Some(log) => crate::log::Logger::bound("agentgate_obs::server", log.clone())
            .warn(message, [("addr", addr.to_string().into())]),
        None => eprintln!("agentgate-obs: WARNING: {addr}: {message}"),
    }
}
