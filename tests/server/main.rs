//! The HTTP and WebSocket server against well-behaved, broken and hostile
//! clients.

#[path = "../common/mod.rs"]
mod common;

mod hostile_clients;
mod http_guard;
mod http_server;
mod websocket_budget;
mod websocket_hostile;
mod websocket_progress;
mod websocket_resume_across_restarts;
