//! TCP reassembly: every direction of every connection rebuilt in sequence order.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;

use super::capture::Packet;
use super::secret::{Finding, Secret};
use crate::error::Result;

/// One direction of one TCP connection, in sequence order.
pub struct Flow {
    pub src: SocketAddrV4,
    pub dst: SocketAddrV4,
    pub bytes: Vec<u8>,
    /// Sequence ranges never seen (lost or truncated): a hole could hide a secret.
    pub gaps: usize,
}

impl fmt::Display for Flow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} -> {} ({} bytes",
            self.src,
            self.dst,
            self.bytes.len()
        )?;
        if self.gaps > 0 {
            write!(f, ", {} gaps", self.gaps)?;
        }
        write!(f, ")")
    }
}

pub struct Trace {
    pub iface: String,
    pub pcap: PathBuf,
    pub packets: usize,
    /// Filtered packets the capture socket had no room for: any makes an absence unprovable.
    pub dropped: u32,
    pub truncated: usize,
    pub not_ipv4_tcp: usize,
    pub flows: Vec<Flow>,
}

#[derive(Default)]
struct Segments {
    isn: Option<u32>,
    first_seq: Option<u32>,
    /// Offset from the stream start → payload; a retransmission overwrites the same offset.
    data: BTreeMap<i64, Vec<u8>>,
}

impl Trace {
    pub(super) fn reassemble(&mut self, packets: &[Packet]) {
        let mut flows: BTreeMap<(SocketAddrV4, SocketAddrV4), Segments> = BTreeMap::new();
        for packet in packets {
            let Some(seg) = parse_ethernet_ipv4_tcp(&packet.data) else {
                self.not_ipv4_tcp += 1;
                continue;
            };
            let entry = flows.entry((seg.src, seg.dst)).or_default();
            if seg.syn {
                entry.isn = Some(seg.seq);
            }
            entry.first_seq.get_or_insert(seg.seq);
            if !seg.payload.is_empty() {
                // Offsets relative to the first sequence number seen; fixed up below once the
                // ISN is known (a SYN may be captured after data only if capture started late).
                let base = entry.first_seq.unwrap_or(seg.seq);
                let off = i64::from(seg.seq.wrapping_sub(base) as i32);
                let slot = entry.data.entry(off).or_default();
                if seg.payload.len() > slot.len() {
                    *slot = seg.payload.to_vec();
                }
            }
        }
        for ((src, dst), segs) in flows {
            let shift = match (segs.isn, segs.first_seq) {
                (Some(isn), Some(first)) => {
                    i64::from(first.wrapping_sub(isn.wrapping_add(1)) as i32)
                }
                _ => 0,
            };
            let mut bytes = Vec::new();
            let mut gaps = 0;
            let mut cursor: i64 = if segs.isn.is_some() {
                0
            } else {
                segs.data.keys().next().map_or(0, |k| k + shift)
            };
            for (off, payload) in &segs.data {
                let off = off + shift;
                let end = off + payload.len() as i64;
                if end <= cursor {
                    continue;
                }
                if off > cursor {
                    gaps += 1;
                    cursor = off;
                }
                let skip = (cursor - off) as usize;
                bytes.extend_from_slice(&payload[skip..]);
                cursor = end;
            }
            self.flows.push(Flow {
                src,
                dst,
                bytes,
                gaps,
            });
        }
    }

    /// Flows whose destination or source port is `port`.
    pub fn flows_on_port(&self, port: u16) -> impl Iterator<Item = &Flow> {
        self.flows
            .iter()
            .filter(move |f| f.dst.port() == port || f.src.port() == port)
    }

    /// Every place any form of any secret occurs.
    pub fn search(&self, secrets: &[Secret]) -> Vec<Finding> {
        let mut found = Vec::new();
        for secret in secrets {
            for (form, needle) in secret.forms() {
                for flow in &self.flows {
                    if let Some(at) = find(&flow.bytes, &needle) {
                        found.push(Finding {
                            secret: secret.label.clone(),
                            form,
                            flow: flow.to_string(),
                            offset: at,
                            before: String::from_utf8_lossy(&flow.bytes[at.saturating_sub(48)..at])
                                .into_owned(),
                        });
                    }
                }
            }
        }
        found
    }

    /// Whether the trace can prove an absence at all.
    pub fn completeness(&self) -> Result<()> {
        let gaps: Vec<String> = self
            .flows
            .iter()
            .filter(|f| f.gaps > 0)
            .map(ToString::to_string)
            .collect();
        crate::ensure!(
            self.dropped == 0 && self.truncated == 0 && gaps.is_empty(),
            "the capture on {} is incomplete ({} dropped, {} truncated, flows with gaps: {:?}); \
             an absence proves nothing",
            self.iface,
            self.dropped,
            self.truncated,
            gaps
        );
        Ok(())
    }

    pub fn summary(&self) -> String {
        let mut s = format!(
            "{}: {} packets, {} flows, {} not IPv4/TCP, pcap {}",
            self.iface,
            self.packets,
            self.flows.len(),
            self.not_ipv4_tcp,
            self.pcap.display()
        );
        for flow in &self.flows {
            s.push_str(&format!("\n    {flow}"));
        }
        s
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || needle.len() > haystack.len() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

struct TcpSegment<'a> {
    src: SocketAddrV4,
    dst: SocketAddrV4,
    seq: u32,
    syn: bool,
    payload: &'a [u8],
}

fn parse_ethernet_ipv4_tcp(frame: &[u8]) -> Option<TcpSegment<'_>> {
    let mut at = 12;
    let mut ethertype = u16::from_be_bytes([*frame.get(at)?, *frame.get(at + 1)?]);
    // 802.1Q tags.
    while ethertype == 0x8100 || ethertype == 0x88a8 {
        at += 4;
        ethertype = u16::from_be_bytes([*frame.get(at)?, *frame.get(at + 1)?]);
    }
    if ethertype != 0x0800 {
        return None;
    }
    let ip = frame.get(at + 2..)?;
    let ihl = usize::from(ip.first()? & 0x0f) * 4;
    if ip.first()? >> 4 != 4 || ip.get(9)? != &6 || ihl < 20 {
        return None;
    }
    let total = usize::from(u16::from_be_bytes([*ip.get(2)?, *ip.get(3)?]));
    // GSO packets captured before segmentation carry total length 0 on some paths.
    let ip = if total >= ihl && total <= ip.len() {
        &ip[..total]
    } else {
        ip
    };
    let src_ip = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
    let dst_ip = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
    let tcp = ip.get(ihl..)?;
    let data_off = usize::from(tcp.get(12)? >> 4) * 4;
    if data_off < 20 {
        return None;
    }
    Some(TcpSegment {
        src: SocketAddrV4::new(src_ip, u16::from_be_bytes([tcp[0], tcp[1]])),
        dst: SocketAddrV4::new(dst_ip, u16::from_be_bytes([tcp[2], tcp[3]])),
        seq: u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]),
        syn: tcp[13] & 0x02 != 0,
        payload: tcp.get(data_off..)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(src_port: u16, seq: u32, syn: bool, payload: &[u8]) -> Packet {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&0x0800u16.to_be_bytes());
        let total = (20 + 20 + payload.len()) as u16;
        let mut ip = vec![
            0x45, 0, 0, 0, 0, 0, 0, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        ip[2..4].copy_from_slice(&total.to_be_bytes());
        f.extend_from_slice(&ip);
        let mut tcp = vec![0u8; 20];
        tcp[0..2].copy_from_slice(&src_port.to_be_bytes());
        tcp[2..4].copy_from_slice(&8443u16.to_be_bytes());
        tcp[4..8].copy_from_slice(&seq.to_be_bytes());
        tcp[12] = 5 << 4;
        tcp[13] = if syn { 0x02 } else { 0x10 };
        f.extend_from_slice(&tcp);
        f.extend_from_slice(payload);
        Packet {
            data: f,
            truncated: false,
        }
    }

    fn trace(packets: &[Packet]) -> Trace {
        let mut t = Trace {
            iface: "test".into(),
            pcap: PathBuf::new(),
            packets: packets.len(),
            dropped: 0,
            truncated: 0,
            not_ipv4_tcp: 0,
            flows: Vec::new(),
        };
        t.reassemble(packets);
        t
    }
    #[test]
    fn finds_a_secret_split_across_reordered_and_retransmitted_segments() {
        let isn = u32::MAX - 3; // sequence numbers wrap inside the secret
        let t = trace(&[
            frame(40000, isn, true, b""),
            frame(40000, isn.wrapping_add(1 + 9), false, b"swordfish\"}"),
            frame(40000, isn.wrapping_add(1), false, b"{\"P\":\"pas"),
            frame(40000, isn.wrapping_add(1), false, b"{\"P\":\"pas"),
        ]);
        assert_eq!(t.flows.len(), 1);
        assert_eq!(t.flows[0].bytes, b"{\"P\":\"passwordfish\"}");
        assert_eq!(t.flows[0].gaps, 0);
        let found = t.search(&[Secret::new("password", "passwordfish")]);
        assert_eq!(
            found.len(),
            1,
            "{}",
            found
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    #[test]
    fn a_missing_segment_is_a_gap() {
        let t = trace(&[
            frame(40001, 100, true, b""),
            frame(40001, 101, false, b"abc"),
            frame(40001, 110, false, b"xyz"),
        ]);
        assert_eq!(t.flows[0].gaps, 1);
        assert!(t.completeness().is_err());
    }
}
