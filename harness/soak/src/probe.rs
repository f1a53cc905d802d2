//! What a process holds, read from /proc: resident memory and open descriptors, the sockets among
//! them sorted by which side of the gate they face.

use std::collections::HashMap;
use std::fs;
use std::io;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Fds {
    pub total: usize,
    /// TCP connections accepted on the gate's port: one per client connection.
    pub client: usize,
    /// TCP connections to the stand-in: in use or idle in the gate's pool.
    pub upstream: usize,
    pub listening: usize,
    /// Everything else: files, pipes, epoll and event descriptors, other sockets.
    pub other: usize,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    pub rss_kib: u64,
    /// VmHWM: the kernel's own peak of resident memory since start.
    pub hwm_kib: u64,
    pub fds: Fds,
}

struct Tcp {
    local_port: u16,
    remote_port: u16,
    listening: bool,
}

/// `/proc/PID/net/tcp{,6}`: socket inode → ports and state. Kernel docs, proc_net_tcp.rst.
fn tcp_table(pid: u32) -> HashMap<u64, Tcp> {
    let mut map = HashMap::new();
    for file in ["tcp", "tcp6"] {
        let Ok(text) = fs::read_to_string(format!("/proc/{pid}/net/{file}")) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 {
                continue;
            }
            let port = |addr: &str| {
                addr.rsplit(':')
                    .next()
                    .and_then(|p| u16::from_str_radix(p, 16).ok())
                    .unwrap_or(0)
            };
            if let Ok(inode) = f[9].parse::<u64>() {
                map.insert(
                    inode,
                    Tcp {
                        local_port: port(f[1]),
                        remote_port: port(f[2]),
                        // State 0A is TCP_LISTEN (include/net/tcp_states.h).
                        listening: f[3] == "0A",
                    },
                );
            }
        }
    }
    map
}

pub fn sample(pid: u32, gate_port: u16, upstream_port: u16) -> io::Result<Sample> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let tcp = tcp_table(pid);
    let mut fds = Fds::default();
    for entry in fs::read_dir(format!("/proc/{pid}/fd"))? {
        // A descriptor closed between readdir and readlink is simply gone.
        let Ok(entry) = entry else { continue };
        let Ok(target) = fs::read_link(entry.path()) else {
            continue;
        };
        fds.total += 1;
        let target = target.to_string_lossy();
        let inode = target
            .strip_prefix("socket:[")
            .and_then(|s| s.strip_suffix(']'))
            .and_then(|s| s.parse::<u64>().ok());
        match inode.and_then(|i| tcp.get(&i)) {
            Some(t) if t.listening => fds.listening += 1,
            Some(t) if t.local_port == gate_port => fds.client += 1,
            Some(t) if t.remote_port == upstream_port => fds.upstream += 1,
            _ => fds.other += 1,
        }
    }
    Ok(Sample {
        rss_kib: kib("VmRSS:"),
        hwm_kib: kib("VmHWM:"),
        fds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Positive control for the classification: this test's own listener and connection show up.
    #[test]
    fn own_sockets_are_classified() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
        let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
        let _out =
            std::net::TcpStream::connect(("127.0.0.1", port)).unwrap_or_else(|e| panic!("{e}"));
        let (_in, _) = listener.accept().unwrap_or_else(|e| panic!("{e}"));
        let s = sample(std::process::id(), port, port).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.fds.listening, 1, "{s:?}");
        // The accepted side has local port == port; the connecting side remote port == port.
        assert_eq!((s.fds.client, s.fds.upstream), (1, 1), "{s:?}");
        assert!(s.rss_kib > 0 && s.hwm_kib >= s.rss_kib, "{s:?}");
    }
}
