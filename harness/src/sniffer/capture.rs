//! Capture on one interface with libpcap, in a thread, into memory and a pcap file.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use super::trace::Trace;
use crate::error::{Context, Error, Result};

/// A whole IPv4 packet (at most 65535 bytes, the size of a GSO super-packet on a veth) plus
/// Ethernet and VLAN headers: a truncated packet would be a hole in the reassembled stream.
const SNAPLEN: i32 = 65_600;
/// The kernel ring. libpcap sizes each slot by the snaplen, so the default 2 MiB would hold only
/// ~30 packets and a burst of ACKs overflows it between two reads.
const RING_BYTES: i32 = 64 << 20;
/// Pause between reads of an empty ring. Reads are nonblocking: libpcap's blocking read on
/// Linux polls again after every timeout instead of returning, so a blocked thread would never
/// see its stop flag. The ring (`RING_BYTES`) holds far more than a test sends in 2 ms.
const IDLE: std::time::Duration = std::time::Duration::from_millis(2);

pub(super) struct Packet {
    pub(super) data: Vec<u8>,
    pub(super) truncated: bool,
}

/// What the capture thread hands back: every packet, and libpcap's counters.
type Captured = Result<(Vec<Packet>, pcap::Stat)>;

/// A running capture on one interface; packets are also written to a pcap file.
pub struct Capture {
    iface: String,
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Captured>>,
}

impl Capture {
    /// Starts capturing; returns once the capture is live, so traffic sent afterwards is seen.
    /// `promiscuous` is needed on a bridge: frames between two containers are forwarded from port
    /// to port and reach the bridge device's taps only when it is promiscuous.
    pub fn start(iface: &str, filter: &str, path: &Path, promiscuous: bool) -> Result<Capture> {
        let cap = pcap::Capture::from_device(iface)
            .with_context(|| format!("no capture device {iface}"))?
            .immediate_mode(true)
            .promisc(promiscuous)
            .snaplen(SNAPLEN)
            .buffer_size(RING_BYTES)
            .open()
            .with_context(|| {
                format!("cannot capture on {iface} (needs CAP_NET_RAW: run as root)")
            })?;
        let mut cap = cap
            .setnonblock()
            .with_context(|| format!("cannot make the capture on {iface} nonblocking"))?;
        cap.filter(filter, true)
            .with_context(|| format!("bad capture filter {filter:?}"))?;
        let mut savefile = cap
            .savefile(path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop_seen = stop.clone();
        let thread = std::thread::Builder::new()
            .name(format!("sniff-{iface}"))
            .spawn(move || {
                let mut packets = Vec::new();
                loop {
                    // Read the flag before the read: an empty ring after stop was requested
                    // means everything delivered before the request has been drained.
                    let stopping = stop_seen.load(Ordering::SeqCst);
                    match cap.next_packet() {
                        Ok(p) => {
                            savefile.write(&p);
                            packets.push(Packet {
                                data: p.data.to_vec(),
                                truncated: p.header.caplen < p.header.len,
                            });
                        }
                        Err(pcap::Error::TimeoutExpired) if stopping => break,
                        Err(pcap::Error::TimeoutExpired) => std::thread::sleep(IDLE),
                        Err(e) => return Err(e).context("capture read failed"),
                    }
                }
                savefile.flush().context("cannot flush the pcap file")?;
                let stats = cap.stats().context("cannot read capture statistics")?;
                Ok((packets, stats))
            })
            .context("cannot spawn the capture thread")?;
        Ok(Capture {
            iface: iface.to_owned(),
            path: path.to_owned(),
            stop,
            thread: Some(thread),
        })
    }

    /// Stops the capture and reassembles what it saw.
    pub fn stop(mut self) -> Result<Trace> {
        self.stop.store(true, Ordering::SeqCst);
        let thread = self
            .thread
            .take()
            .ok_or_else(|| Error::msg("capture already stopped"))?;
        let (packets, stats) = thread
            .join()
            .map_err(|_| Error::msg(format!("the capture thread on {} panicked", self.iface)))??;
        let mut trace = Trace {
            iface: self.iface.clone(),
            pcap: self.path.clone(),
            packets: packets.len(),
            // Only drops of packets that passed our filter count. `if_dropped` is the
            // interface's own rx_dropped delta: on a veth that is IPv6 neighbour discovery and
            // the like, never TCP the kernel accepted, and a hole in a TCP stream shows as a gap.
            dropped: stats.dropped,
            flows: Vec::new(),
            not_ipv4_tcp: 0,
            truncated: packets.iter().filter(|p| p.truncated).count(),
        };
        trace.reassemble(&packets);
        Ok(trace)
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
