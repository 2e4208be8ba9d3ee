//! Floods against the server: thousands of connections, and a client
//! flooding `/ws` with messages. A binary of their own: they raise the
//! process's open-file limit, keep both cores busy and measure the
//! process's resident set, which other tests beside them would disturb.

#[path = "../common/mod.rs"]
mod common;

mod connection_flood;
mod websocket_flood;

/// Under `cargo test` the tests of this binary share one process: one at a
/// time (nextest runs each alone, see `.config/nextest.toml`).
static ONE_AT_A_TIME: parking_lot::Mutex<()> = parking_lot::Mutex::new(());
