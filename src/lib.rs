//! duplicati-gate: HTTPS in front of Duplicati's web UI.
//!
//! A request's path through the modules: `server` accepts and does the TLS handshake (`tls`),
//! `connection` reads heads with the strict codec in `http`, `forward` sends each exchange to
//! Duplicati over a pooled connection (`upstream`) with heads rewritten by `rewrite`, and hands a
//! 101 to `tunnel`. `redirect` answers plain HTTP, `pages` writes the gate's own responses,
//! `accesslog` the log line. `cli` → `config` turn the command line into a checked `Config`.

pub mod access;
pub mod accesslog;
pub mod check;
pub mod cli;
pub mod clientauth;
pub mod clientca;
pub mod config;
pub mod connection;
pub mod error;
pub mod forward;
pub mod gate;
pub mod health;
pub mod http;
pub mod pages;
pub mod readahead;
pub mod redirect;
pub mod rewrite;
pub mod selfsigned;
pub mod server;
pub mod tls;
pub mod tunnel;
pub mod upstream;
