//! End-to-end harness for duplicati-gate: Duplicati (real or the stand-in) and the gate in
//! containers on a private Docker network, the client in its own network namespace behind a veth
//! pair, and a packet sniffer on both legs. The tests in `tests/e2e/` say what must hold.
//!
//! Needs root and a Docker engine, and the images from `just image`; nothing is ever pulled.

pub mod api;
pub mod certs;
pub mod client;
pub mod docker;
pub mod duplicati;
mod error;
pub mod gate;
pub mod legacy_api;
pub mod netns;
pub mod percent;
pub mod random;
pub mod sniffer;
pub mod stack;
pub mod tree;
pub mod websocket;

pub use error::{Context, Error, Result};
/// Re-exported so the tests build JSON with the same crate the harness parses it with.
pub use serde_json;
