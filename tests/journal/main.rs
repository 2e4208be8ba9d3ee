//! The event journal on disk, and replaying it.

#[path = "../common/mod.rs"]
mod common;

mod replay;
mod writing;
