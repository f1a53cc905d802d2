//! Who may reach Duplicati at all, before a byte is forwarded: the address allow-list and the
//! login throttle. (Client certificates are checked earlier, in the TLS handshake: `clientauth`.)

pub mod allow;
pub mod throttle;
