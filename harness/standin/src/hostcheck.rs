//! DNS-rebinding protection: which Host names the server answers.
//! 2.3: // Duplicati/WebserverCore/Services/HostnameValidator.cs, Middlewares/HostnameFilter.cs
//! (an endpoint filter on the /api/v1 and /api/v2 groups only, so it runs after authorization).
//! 2.0: // Duplicati/Server/WebServer/Server.cs (HostHeaderChecker, first module: every path).

use std::net::IpAddr;

use http_types::Response;

use crate::reply;

pub struct HostCheck {
    allowed: Vec<String>,
    any: bool,
}

// HostnameValidator.cs: always allowed besides the configured names.
const DEFAULTS: &[&str] = &[
    "localhost",
    "127.0.0.1",
    "[::1]",
    "::1",
    "localhost.localdomain",
];

impl HostCheck {
    pub fn new(configured: &[String]) -> HostCheck {
        HostCheck {
            any: configured.iter().any(|h| h == "*"),
            allowed: configured.iter().map(|h| h.to_ascii_lowercase()).collect(),
        }
    }

    /// `host` is the Host header without its port.
    pub fn allows(&self, host: &str) -> bool {
        if self.any {
            return true;
        }
        if host.is_empty() {
            return false;
        }
        let h = host.to_ascii_lowercase();
        // HostnameValidator.cs: IPAddress.TryParse(host) => allowed (brackets included for v6).
        let bare = h.trim_start_matches('[').trim_end_matches(']');
        DEFAULTS.contains(&h.as_str())
            || self.allowed.contains(&h)
            || bare.parse::<IpAddr>().is_ok()
    }

    /// 2.3: `403 {"Error":"Invalid hostname: <host>","Code":403}`.
    /// // Duplicati/WebserverCore/Exceptions/InvalidHostnameException.cs
    pub fn refuse_current(host: &str) -> Response {
        reply::error(403, &format!("Invalid hostname: {host}"))
    }

    /// 2.0: `403` text/plain, reason and body "The host header sent by the client is not allowed".
    pub fn refuse_legacy() -> Response {
        reply::text(403, "The host header sent by the client is not allowed")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_ips_and_configured_names() {
        let c = HostCheck::new(&["Backup.Example.com".to_string()]);
        assert!(c.allows("localhost"));
        assert!(c.allows("backup.example.COM"));
        assert!(c.allows("10.1.2.3"));
        assert!(c.allows("[::1]"));
        assert!(c.allows("[2001:db8::1]"));
        assert!(!c.allows("evil.example"));
        assert!(!c.allows(""));
        assert!(HostCheck::new(&["*".to_string()]).allows("anything.example"));
    }
}
