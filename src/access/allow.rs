//! `--allow CIDR`: only these client addresses are served; others get 403 and nothing is
//! forwarded. IPv4-mapped IPv6 addresses (`::ffff:192.168.1.5`, what a dual-stack `[::]`
//! listener reports for IPv4 clients) are compared as the IPv4 address they are.

use std::net::IpAddr;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, String> {
        let (address, prefix) = match raw.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (raw, None),
        };
        let address: IpAddr = address
            .parse()
            .map_err(|_| format!("{raw:?} is not an IP address or CIDR range"))?;
        let address = address.to_canonical();
        let max = if address.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{raw:?}: the prefix length must be 0 to {max}"))?,
            None => max,
        };
        Ok(Cidr {
            network: mask(address, prefix),
            prefix,
        })
    }
}

impl Cidr {
    pub fn contains(&self, address: IpAddr) -> bool {
        let address = address.to_canonical();
        address.is_ipv4() == self.network.is_ipv4() && mask(address, self.prefix) == self.network
    }
}

fn mask(address: IpAddr, prefix: u8) -> IpAddr {
    match address {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4) & u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4(bits.into())
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6(bits.into())
        }
    }
}

/// Empty means everyone.
#[derive(Debug, Clone, Default)]
pub struct AllowList(pub Vec<Cidr>);

impl AllowList {
    pub fn permits(&self, address: IpAddr) -> bool {
        self.0.is_empty() || self.0.iter().any(|cidr| cidr.contains(address))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allow(ranges: &[&str]) -> AllowList {
        AllowList(ranges.iter().map(|r| r.parse().unwrap()).collect())
    }

    #[test]
    fn matches_ipv4_ipv6_and_mapped_addresses() {
        let list = allow(&["192.168.1.0/24", "fd00:1::/64", "10.0.0.7"]);
        for ok in [
            "192.168.1.1",
            "192.168.1.255",
            "::ffff:192.168.1.20",
            "fd00:1::abcd",
            "10.0.0.7",
        ] {
            assert!(list.permits(ok.parse().unwrap()), "{ok}");
        }
        for no in [
            "192.168.2.1",
            "10.0.0.8",
            "fd00:2::1",
            "::ffff:10.0.0.8",
            "::1",
        ] {
            assert!(!list.permits(no.parse().unwrap()), "{no}");
        }
        assert!(AllowList::default().permits("203.0.113.9".parse().unwrap()));
        assert!(allow(&["0.0.0.0/0"]).permits("::ffff:203.0.113.9".parse().unwrap()));
    }

    #[test]
    fn refuses_malformed_ranges() {
        for bad in [
            "192.168.1.0/33",
            "fd00::/129",
            "lan",
            "192.168.1/24",
            "10.0.0.0/-1",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }
}
