//! Frames from a network interface, through libpcap (`kscflow live`).
//!
//! The handle is non-blocking and waited on with `poll(2)` in slices of at
//! most [`LiveSource::next_batch`]'s timeout, so the caller gets control back
//! on a silent interface: libpcap's own timeout is a packet-buffer timeout,
//! not a read timeout, and on Linux a blocking read can wait forever for a
//! packet (`shared/notes/crates.md` §1.5; libpcap issues #1001, #572).

use std::time::Duration;

use pcap::{Active, Capture, Device};

use super::Frame;

/// How to open the interface.
#[derive(Clone, Debug)]
pub struct LiveOptions {
    pub interface: String,
    /// Bytes kept of each frame. See [`DEFAULT_SNAPLEN`].
    pub snaplen: i32,
    /// The kernel ring libpcap reads from, in bytes.
    pub buffer_bytes: i32,
    pub promisc: bool,
}

/// Every frame whole up to jumbo size (9000-byte MTU plus link headers):
/// a ClientHello segment is never cut, so its version and server name can
/// be read. With TPACKET_V3 the ring stores what was captured, not the
/// snap length, so small frames cost no more; only frames larger than a
/// jumbo frame (offloaded segments of the sensor's own traffic) are cut.
pub const DEFAULT_SNAPLEN: i32 = 9216;
/// 64 MiB of kernel ring: about 0.4 s of a saturated gigabit link of
/// average 500-byte frames before the kernel must drop.
pub const DEFAULT_BUFFER_BYTES: i32 = 64 << 20;

/// An open interface.
pub struct LiveSource {
    cap: Capture<Active>,
    linktype: i32,
    counters: DropCounters,
}

/// libpcap's counters since the capture began, widened to 64 bits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Drops {
    /// Packets that passed the filter.
    pub received: u64,
    /// Dropped because the ring was full (kscflow did not keep up).
    pub dropped: u64,
    /// Dropped by the interface or its driver; on Linux a lower bound.
    pub if_dropped: u64,
}

/// Accumulates libpcap's u32 counters, which wrap (after 4 G packets: a
/// few hours of a busy 10 GbE port), into u64 totals.
#[derive(Clone, Copy, Debug, Default)]
pub struct DropCounters {
    last: [u32; 3],
    pub total: Drops,
}

impl DropCounters {
    /// Takes a new reading of libpcap's cumulative u32 counters.
    pub fn advance(&mut self, received: u32, dropped: u32, if_dropped: u32) {
        let now = [received, dropped, if_dropped];
        let t = &mut self.total;
        for (total, (last, now)) in
            [&mut t.received, &mut t.dropped, &mut t.if_dropped].into_iter().zip(self.last.iter_mut().zip(now))
        {
            *total += u64::from(now.wrapping_sub(*last));
            *last = now;
        }
    }
}

impl LiveSource {
    /// Opens `o.interface`. An interface that does not exist is an error
    /// that lists the ones that do.
    pub fn open(o: &LiveOptions) -> Result<LiveSource, crate::Error> {
        let devices = Device::list().map_err(|e| live_error(&o.interface, e.to_string()))?;
        if !devices.iter().any(|d| d.name == o.interface) {
            let names: Vec<String> = devices.iter().map(|d| d.name.clone()).collect();
            return Err(crate::Error::Interface { interface: o.interface.clone(), available: names.join(", ") });
        }
        let cap = Capture::from_device(o.interface.as_str())
            .and_then(|c| {
                c.promisc(o.promisc)
                    .snaplen(o.snaplen)
                    .buffer_size(o.buffer_bytes)
                    // Blocks of packets, not a wakeup per packet (TPACKET_V3).
                    .immediate_mode(false)
                    .timeout(100)
                    .open()
            })
            .map_err(|e| live_error(&o.interface, explain(&e)))?;
        let cap = cap.setnonblock().map_err(|e| live_error(&o.interface, e.to_string()))?;
        let linktype = cap.get_datalink().0;
        Ok(LiveSource { cap, linktype, counters: DropCounters::default() })
    }

    /// Compiles `filter` (BPF, tcpdump syntax) into the kernel: what it
    /// rejects never reaches user space.
    pub fn set_filter(&mut self, filter: &str) -> Result<(), crate::Error> {
        self.cap
            .filter(filter, true)
            .map_err(|e| crate::Error::Filter { filter: filter.into(), message: e.to_string() })
    }

    /// LINKTYPE_ of the interface.
    pub fn linktype(&self) -> i32 {
        self.linktype
    }

    /// Hands up to `max` waiting frames to `on`; when none is waiting,
    /// waits up to `wait` for one first. Returns the number handed over.
    pub fn next_batch(&mut self, max: usize, wait: Duration, on: &mut dyn FnMut(Frame<'_>)) -> Result<usize, String> {
        let mut n = 0;
        while n < max {
            match self.cap.next_packet() {
                Ok(p) => {
                    #[allow(clippy::useless_conversion)]
                    let ts = super::sane_ts(
                        i64::from(p.header.ts.tv_sec)
                            .saturating_mul(1_000_000)
                            .saturating_add(i64::from(p.header.ts.tv_usec)),
                    );
                    on(Frame { ts, wire_len: p.header.len, linktype: self.linktype, data: p.data });
                    n += 1;
                }
                Err(pcap::Error::TimeoutExpired) if n == 0 => {
                    if !self.wait(wait)? {
                        return Ok(0);
                    }
                }
                Err(pcap::Error::TimeoutExpired) => break,
                Err(e) => return Err(e.to_string()),
            }
        }
        Ok(n)
    }

    /// Waits until the handle is readable or `wait` passes; false on timeout.
    fn wait(&self, wait: Duration) -> Result<bool, String> {
        use std::os::fd::AsRawFd;
        let mut fds = [libc::pollfd { fd: self.cap.as_raw_fd(), events: libc::POLLIN, revents: 0 }];
        let ms = wait.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd for the duration of the call; poll only
        // writes `revents`.
        #[allow(unsafe_code)]
        let r = unsafe { libc::poll(fds.as_mut_ptr(), 1, ms) };
        if r < 0 {
            let e = std::io::Error::last_os_error();
            // A signal (SIGHUP, SIGTERM) woke us: the caller looks at its flags.
            return if e.kind() == std::io::ErrorKind::Interrupted { Ok(false) } else { Err(e.to_string()) };
        }
        Ok(r > 0)
    }

    /// libpcap's counters, updated.
    pub fn drops(&mut self) -> Drops {
        if let Ok(s) = self.cap.stats() {
            self.counters.advance(s.received, s.dropped, s.if_dropped);
        }
        self.counters.total
    }
}

fn live_error(interface: &str, message: String) -> crate::Error {
    crate::Error::Live { interface: interface.into(), message }
}

/// libpcap's activation errors, with what to do about them.
fn explain(e: &pcap::Error) -> String {
    let m = e.to_string();
    if m.contains("ermission") || m.contains("not permitted") {
        format!("{m}: capture needs root or the CAP_NET_RAW capability (setcap cap_net_raw,cap_net_admin=eip kscflow)")
    } else {
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_counters_survive_the_u32_wrap() {
        let mut c = DropCounters::default();
        c.advance(4_000_000_000, 10, 1);
        c.advance(4_294_967_000, 20, 1);
        // received wrapped past 2^32: 296 + 1_000 more.
        c.advance(1_000, 25, 3);
        assert_eq!(c.total, Drops { received: 4_294_968_296, dropped: 25, if_dropped: 3 });
    }
}
