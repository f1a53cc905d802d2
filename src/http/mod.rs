//! Strict HTTP/1.1 framing on httparse: heads, body framing, body streaming.
//!
//! Nothing here touches sockets directly or knows about Duplicati; `forward` drives it.

pub mod body;
pub mod head;
pub mod inbound;
pub mod message;
