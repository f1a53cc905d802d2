//! Login throttling: failed logins (401 from Duplicati's login endpoints) are counted per client;
//! after `limit` failures further attempts get 429 with `Retry-After`, without reaching Duplicati,
//! for a back-off that doubles with every further failure. A success resets the count.
//!
//! The endpoints are recognised the way Kestrel routes (duplicati-wire.md §1): path compared
//! case-insensitively, percent-escapes decoded (except `%2F`), dot segments removed, a trailing
//! slash ignored; `/API/v1/auth/%6Cogin` or `/api/v1/x/../auth/login/` must not slip past.
//! Memory is bounded: at most `MAX_TRACKED` clients are remembered, the stalest forgotten first.
//! IPv6 clients are counted per /64, which is what one household or attacker controls.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const LOGIN_PATHS: [&str; 4] = [
    "/api/v1/auth/login",
    "/api/v1/auth/signin",
    "/api/v1/auth/issuesignintoken",
    "/login.cgi",
];
const MAX_TRACKED: usize = 4096;
const FIRST_BLOCK: Duration = Duration::from_secs(30);
const LONGEST_BLOCK: Duration = Duration::from_secs(3600);
/// A client quiet this long starts over.
const FORGET_AFTER: Duration = Duration::from_secs(3600);

pub struct Throttle {
    limit: u32,
    clients: Mutex<HashMap<IpAddr, Record>>,
}

struct Record {
    failures: u32,
    blocked_until: Option<Instant>,
    last_seen: Instant,
}

/// What a login response did to a client's standing.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Unchanged,
    Reset,
    Failed { failures: u32 },
    Blocked { failures: u32, for_: Duration },
}

impl Throttle {
    pub fn new(limit: u32) -> Self {
        Throttle {
            limit,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// `Some(retry_after)` while the client is blocked.
    pub fn blocked(&self, client: IpAddr) -> Option<Duration> {
        let now = Instant::now();
        let clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        let until = clients.get(&key(client))?.blocked_until?;
        (until > now).then(|| until - now)
    }

    /// Counts a login response: 401 is a failure, 2xx a success.
    pub fn record(&self, client: IpAddr, status: u16) -> Verdict {
        let now = Instant::now();
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        let key = key(client);
        if (200..300).contains(&status) {
            return if clients.remove(&key).is_some() {
                Verdict::Reset
            } else {
                Verdict::Unchanged
            };
        }
        if status != 401 {
            return Verdict::Unchanged;
        }
        if !clients.contains_key(&key) && clients.len() >= MAX_TRACKED {
            forget_stalest(&mut clients, now);
        }
        let record = clients.entry(key).or_insert(Record {
            failures: 0,
            blocked_until: None,
            last_seen: now,
        });
        if now.duration_since(record.last_seen) > FORGET_AFTER {
            record.failures = 0;
        }
        record.failures += 1;
        record.last_seen = now;
        if record.failures < self.limit {
            return Verdict::Failed {
                failures: record.failures,
            };
        }
        let doublings = (record.failures - self.limit).min(16);
        let block = FIRST_BLOCK
            .saturating_mul(1 << doublings)
            .min(LONGEST_BLOCK);
        record.blocked_until = Some(now + block);
        Verdict::Blocked {
            failures: record.failures,
            for_: block,
        }
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.clients.lock().unwrap().len()
    }
}

fn forget_stalest(clients: &mut HashMap<IpAddr, Record>, now: Instant) {
    clients.retain(|_, r| now.duration_since(r.last_seen) < FORGET_AFTER);
    if clients.len() >= MAX_TRACKED {
        if let Some(stalest) = clients
            .iter()
            .min_by_key(|(_, r)| r.last_seen)
            .map(|(k, _)| *k)
        {
            clients.remove(&stalest);
        }
    }
}

fn key(client: IpAddr) -> IpAddr {
    match client.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        v4 => v4,
    }
}

/// True if `target` routes to one of Duplicati's login endpoints.
pub fn is_login(target: &[u8]) -> bool {
    let path = routed_path(target);
    LOGIN_PATHS.iter().any(|login| path == login.as_bytes())
}

/// The path as Kestrel routes it: lower-cased, `%XX` decoded except `%2F`, dot segments removed,
/// no trailing slash.
fn routed_path(target: &[u8]) -> Vec<u8> {
    let end = target
        .iter()
        .position(|&b| b == b'?' || b == b'#')
        .unwrap_or(target.len());
    let mut decoded = Vec::with_capacity(end);
    let mut i = 0;
    while i < end {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            target[i],
            target.get(i + 1).copied(),
            target.get(i + 2).copied(),
        ) {
            (b'%', Some(h), Some(l)) if i + 2 < end => match (hex(h), hex(l)) {
                (Some(h), Some(l)) if h * 16 + l != u32::from(b'/') => {
                    decoded.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => decoded.push(b'%'),
            },
            (b, ..) => decoded.push(b),
        }
        i += 1;
    }
    decoded.make_ascii_lowercase();
    let mut segments: Vec<&[u8]> = Vec::new();
    for segment in decoded.split(|&b| b == b'/').skip(1) {
        match segment {
            b"." => {}
            b".." => {
                segments.pop();
            }
            other => segments.push(other),
        }
    }
    while segments.last() == Some(&&b""[..]) {
        segments.pop();
    }
    let mut path = Vec::with_capacity(decoded.len());
    for segment in segments {
        path.push(b'/');
        path.extend_from_slice(segment);
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_login_endpoints_however_they_are_spelled() {
        for target in [
            "/api/v1/auth/login",
            "/API/V1/Auth/Login?x=1",
            "/api/v1/auth/%6Cogin",
            "/api/v1/x/../auth/login/",
            "/api/v1/./auth/signin",
            "/api/v1/auth/issuesignintoken",
            "/login.cgi",
        ] {
            assert!(is_login(target.as_bytes()), "{target}");
        }
        for target in [
            "/api/v1/auth/refresh",
            "/api/v1/auth%2Flogin",
            "/api/v1/auth/login2",
            "/ngclient/login",
        ] {
            assert!(!is_login(target.as_bytes()), "{target}");
        }
    }

    #[test]
    fn blocks_after_the_limit_with_growing_back_off_and_resets_on_success() {
        let throttle = Throttle::new(3);
        let client: IpAddr = "192.0.2.5".parse().unwrap();
        assert_eq!(
            throttle.record(client, 401),
            Verdict::Failed { failures: 1 }
        );
        assert_eq!(
            throttle.record(client, 401),
            Verdict::Failed { failures: 2 }
        );
        assert!(throttle.blocked(client).is_none());
        assert_eq!(
            throttle.record(client, 401),
            Verdict::Blocked {
                failures: 3,
                for_: FIRST_BLOCK
            }
        );
        assert!(throttle.blocked(client).is_some());
        assert_eq!(
            throttle.record(client, 401),
            Verdict::Blocked {
                failures: 4,
                for_: FIRST_BLOCK * 2
            }
        );
        assert!(
            throttle.blocked("192.0.2.6".parse().unwrap()).is_none(),
            "others are not affected"
        );
        assert_eq!(throttle.record(client, 200), Verdict::Reset);
        assert!(throttle.blocked(client).is_none());
        assert_eq!(throttle.record(client, 500), Verdict::Unchanged);
    }

    #[test]
    fn counts_an_ipv6_client_per_64_and_mapped_ipv4_as_ipv4() {
        let throttle = Throttle::new(2);
        throttle.record("2001:db8:1:2::1".parse().unwrap(), 401);
        throttle.record("2001:db8:1:2::ffff".parse().unwrap(), 401);
        assert!(throttle
            .blocked("2001:db8:1:2::abcd".parse().unwrap())
            .is_some());
        throttle.record("::ffff:192.0.2.7".parse().unwrap(), 401);
        throttle.record("192.0.2.7".parse().unwrap(), 401);
        assert!(throttle.blocked("192.0.2.7".parse().unwrap()).is_some());
    }

    #[test]
    fn memory_stays_bounded_under_many_addresses() {
        let throttle = Throttle::new(5);
        for i in 0..(MAX_TRACKED as u32 + 1000) {
            throttle.record(IpAddr::V4((0x0a00_0000 + i).into()), 401);
        }
        assert!(throttle.tracked() <= MAX_TRACKED);
    }
}
