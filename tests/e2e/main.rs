//! End-to-end: the gate's image in front of Duplicati (the stand-in, or the real image when
//! `DUPLICATI_IMAGE` is set), on a private Docker network, with the client in its own network
//! namespace and a sniffer on both legs.
//!
//! Needs root, a Docker engine and the images from `just image`; run with `just e2e`. Missing
//! any of them is a failure, never a skip: the harness's preflight says which and how to fix it.

mod clientcert;
mod deploy;
mod hostcheck;
mod restore;
mod sniffer;
mod websocket;
