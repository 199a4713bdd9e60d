//! HOT PATH. The flow table: every TCP/UDP packet lands in the entry of its
//! 5-tuple (both directions share one entry), which knows who initiated the
//! connection, how that was decided, how it ended, and what the client's
//! first payload was (TLS or not).
//!
//! A finished connection — closed, refused, timed out, evicted, superseded
//! by a new SYN on the same tuple, or open at the end of the capture —
//! leaves the table as a [`ConnRecord`] handed to a [`ConnSink`]. The table
//! is bounded: idle timeouts plus a hard cap with eviction of the longest
//! idle entries, counted, so a flood of spoofed tuples costs evictions, not
//! memory.
//!
//! Per packet: one hash of a packed key, one probe, a few adds. Nothing is
//! allocated except, once per connection at most, a small buffer when a TLS
//! ClientHello spans several segments.

use std::net::{IpAddr, Ipv6Addr};

mod map;

use crate::decode::{tcp_flags as F, FragId, Packet};
use crate::rules::Transport;
use crate::tls::{self, Inspect, TlsVersion};
use map::FlowMap;

/// Capture time in microseconds since the Unix epoch (may be negative).
pub type Ts = i64;

/// Microseconds in a second.
pub const SEC: Ts = 1_000_000;

/// Tuning of the table; defaults suit an audit of a site's capture.
#[derive(Clone, Copy, Debug)]
pub struct FlowConfig {
    /// A connection with no packet for this long is finished.
    pub tcp_idle: Ts,
    /// A SYN with no answer for this long is an unanswered attempt.
    pub tcp_handshake_idle: Ts,
    /// After FIN from both sides or a RST, how long late packets still
    /// belong to the connection.
    pub tcp_closed_linger: Ts,
    pub udp_idle: Ts,
    /// Hard cap on live entries.
    pub max_flows: usize,
    /// Fragment identities remembered (bounded), and for how long
    /// (RFC 791 §3.2 suggests 15 s; Linux keeps 30 s).
    pub max_fragments: usize,
    pub fragment_timeout: Ts,
}

impl Default for FlowConfig {
    fn default() -> Self {
        FlowConfig {
            tcp_idle: 3600 * SEC,
            tcp_handshake_idle: 60 * SEC,
            // Zeek's tcp_close_delay / tcp_reset_delay and udp_inactivity_timeout.
            tcp_closed_linger: 5 * SEC,
            udp_idle: 60 * SEC,
            max_flows: 1 << 20,
            max_fragments: 1 << 16,
            fragment_timeout: 30 * SEC,
        }
    }
}

/// How the client (initiator) of a connection was decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    /// The client sent the SYN (RFC 9293 §3.5).
    Syn,
    /// Only the SYN-ACK was seen: its receiver is the client.
    SynAck,
    /// Mid-stream: the side on a KSC rule port is the server.
    KscPort,
    /// Mid-stream, no KSC port: the side on a port below 1024 is the server.
    LowPort,
    /// Nothing better: the sender of the first packet seen is the client.
    FirstPacket,
}

impl Direction {
    pub const ALL: [Direction; 5] =
        [Direction::Syn, Direction::SynAck, Direction::KscPort, Direction::LowPort, Direction::FirstPacket];
    pub fn key(self) -> &'static str {
        match self {
            Direction::Syn => "syn",
            Direction::SynAck => "syn_ack",
            Direction::KscPort => "ksc_port",
            Direction::LowPort => "low_port",
            Direction::FirstPacket => "first_packet",
        }
    }
}

/// How a connection went.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    /// The server answered (SYN-ACK, or any packet from it).
    Answered,
    /// The server answered the SYN with a RST: nothing listens, or a firewall rejects.
    Refused,
    /// SYN (and retries) with no reply at all: a firewall drops it, or the host is down.
    Unanswered,
    /// Packets one way only without a handshake (UDP, or mid-stream TCP).
    OneWay,
}

impl Outcome {
    pub const ALL: [Outcome; 4] = [Outcome::Answered, Outcome::Refused, Outcome::Unanswered, Outcome::OneWay];
    pub fn key(self) -> &'static str {
        match self {
            Outcome::Answered => "answered",
            Outcome::Refused => "refused",
            Outcome::Unanswered => "unanswered",
            Outcome::OneWay => "one_way",
        }
    }
}

/// What the client's first payload was.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TlsSeen {
    /// No client payload seen.
    NoPayload,
    /// A TLS ClientHello; `version` is the highest the client offered.
    Hello { version: TlsVersion, sni: Option<Sni> },
    /// TLS records, but the hello itself was not readable (mid-stream start,
    /// capture cut by the snap length, a gap, an oversized hello).
    TlsUnparsed,
    /// The first client payload is not TLS.
    Plaintext,
    /// Mid-stream data that is not a TLS record: cannot tell.
    Unknown,
    /// Not looked at: the connection cannot be KSC traffic.
    NotInspected,
}

/// A server name from a ClientHello. Shared: a site's clients name the same
/// few servers again and again, so each name is allocated once per table
/// (see `Hellos`) and a connection holds a reference to it.
pub type Sni = std::sync::Arc<str>;

/// A finished connection.
#[derive(Clone, Debug)]
pub struct ConnRecord {
    pub client: IpAddr,
    pub server: IpAddr,
    pub client_port: u16,
    pub server_port: u16,
    pub transport: Transport,
    pub first_ts: Ts,
    pub last_ts: Ts,
    /// [client→server, server→client].
    pub packets: [u64; 2],
    pub bytes: [u64; 2],
    pub outcome: Outcome,
    pub direction: Direction,
    pub tls: TlsSeen,
    pub vlan: u16,
    /// The client sent to the link-layer broadcast address.
    pub to_broadcast: bool,
    /// [`Scope::may_be_ksc`] said yes when the connection began.
    pub may_be_ksc: bool,
}

/// What the flow table must know of the KSC table and the inventory; asked
/// once per new connection, never per packet.
pub trait Scope {
    /// Is `port` a KSC rule port (then its side is the server of a
    /// connection seen mid-stream)?
    fn ksc_port(&self, t: Transport, port: u16) -> bool;
    /// May this connection be KSC traffic? Only such connections get their
    /// first payload inspected: the rest is counted, never judged.
    fn may_be_ksc(&self, client: IpAddr, server: IpAddr, t: Transport, server_port: u16) -> bool;
}

/// Receives finished connections.
pub trait ConnSink {
    fn closed(&mut self, rec: ConnRecord);
}

impl<F: FnMut(ConnRecord)> ConnSink for F {
    fn closed(&mut self, rec: ConnRecord) {
        self(rec)
    }
}

/// A 5-tuple with the two endpoints in canonical order, so that both
/// directions hash to one entry. Addresses are packed as u128 (IPv4 mapped
/// into ::ffff:0:0/96, RFC 4291 §2.5.5.2): one fixed-width key, no length
/// prefixes, cheap to hash (`shared/notes/crates.md` §3). Stored as u64
/// halves: u128 would align the key to 16 and make it 48 bytes, not 40.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowKey {
    lo_hi: u64,
    lo_lo: u64,
    hi_hi: u64,
    hi_lo: u64,
    ports: u32,
    proto: u8,
}

#[inline]
fn pack(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

#[inline]
fn unpack(a: u128) -> IpAddr {
    let v6 = Ipv6Addr::from(a);
    match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    }
}

impl FlowKey {
    /// The key of a packet and whether its sender is the `lo` endpoint.
    #[inline]
    pub fn of(p: &Packet<'_>) -> (FlowKey, bool) {
        let (s, d) = ((pack(p.src), p.sport), (pack(p.dst), p.dport));
        let from_lo = s <= d;
        let ((lo, lp), (hi, hp)) = if from_lo { (s, d) } else { (d, s) };
        let key = FlowKey {
            lo_hi: (lo >> 64) as u64,
            lo_lo: lo as u64,
            hi_hi: (hi >> 64) as u64,
            hi_lo: hi as u64,
            ports: (lp as u32) << 16 | hp as u32,
            proto: p.transport as u8,
        };
        (key, from_lo)
    }
    fn lo(&self) -> u128 {
        (self.lo_hi as u128) << 64 | self.lo_lo as u128
    }
    fn hi(&self) -> u128 {
        (self.hi_hi as u128) << 64 | self.hi_lo as u128
    }
    fn endpoint(&self, lo: bool) -> (IpAddr, u16) {
        if lo {
            (unpack(self.lo()), (self.ports >> 16) as u16)
        } else {
            (unpack(self.hi()), self.ports as u16)
        }
    }
    fn transport(&self) -> Transport {
        if self.proto == Transport::Tcp as u8 {
            Transport::Tcp
        } else {
            Transport::Udp
        }
    }
}

/// Largest ClientHello we buffer across segments. Browser hellos are about
/// 2 KB, post-quantum key shares add 1.2 KB; 16 KiB is one full TLS record
/// (RFC 8446 §5.1) and bounds the per-flow memory.
pub const MAX_HELLO_BYTES: usize = 16 * 1024;
/// Segments we wait for before giving up on a hello.
const MAX_HELLO_SEGMENTS: u8 = 16;

// State bits of a connection.
const SYN: u8 = 1; // a SYN from the client was seen
const SYNACK: u8 = 2; // a SYN-ACK from the server was seen
const FIN_C: u8 = 4;
const FIN_S: u8 = 8;
const RST: u8 = 16;
const REFUSED: u8 = 32; // RST from the server before any SYN-ACK
const MIDSTREAM: u8 = 64; // first packet was not a SYN/SYN-ACK
const OUT_OF_SCOPE: u8 = 128; // cannot be KSC traffic: payload not inspected

#[derive(Debug)]
enum Hello {
    Pending,
    /// Reassembling an in-order ClientHello (`Conn::next_seq` is the next
    /// client sequence number expected) in buffer `buf` of the table's
    /// [`Hellos`]. `want` is the length of the first TLS record, 0 while
    /// unknown: until the buffer holds that much, segments are appended
    /// without reading it back (a cold buffer costs a trip to memory).
    Buffering {
        buf: u32,
        want: u16,
    },
    Done(TlsSeen),
}

/// What the table keeps for reading ClientHellos: the reassembly buffers
/// of the hellos that span segments, and the server names seen, each
/// allocated once.
#[derive(Default)]
struct Hellos {
    /// A connection reassembling its hello holds an index here. The
    /// buffers stay allocated when free and the last freed is reused first:
    /// it is still in cache.
    bufs: Vec<Vec<u8>>,
    free: Vec<u32>,
    /// Bytes allocated to `bufs`.
    held: usize,
    names: hashbrown::HashSet<Sni>,
}

/// Hellos reassembled at once (per table) and the bytes their buffers may
/// hold, at most. Past either, a hello that spans segments is not
/// reassembled (TLS, unreadable) and is counted. Real hellos complete within
/// a round trip; the generated 10 M-packet capture, which spreads each over
/// its connection's life, peaks at 25 000 at once, about 1 KB each.
const MAX_HELLOS_BUFFERING: usize = 1 << 16;
const MAX_HELLO_HELD: usize = 64 << 20;
/// A freed buffer keeps at most this capacity (a browser hello fits).
const KEEP_HELLO_CAPACITY: usize = 4096;
/// Distinct server names shared; past this (a flood of made-up names) each
/// connection gets its own copy, so the set stays bounded.
const SNI_NAMES: usize = 4096;

impl Hellos {
    /// A free buffer, or `None` when [`MAX_HELLOS_BUFFERING`] are in use.
    fn take(&mut self) -> Option<u32> {
        if let Some(i) = self.free.pop() {
            return Some(i);
        }
        if self.bufs.len() >= MAX_HELLOS_BUFFERING || self.held >= MAX_HELLO_HELD {
            return None;
        }
        self.bufs.push(Vec::new());
        Some(self.bufs.len() as u32 - 1)
    }

    /// Appends to buffer `i`; a fresh one gets room for `want` bytes.
    fn append(&mut self, i: u32, data: &[u8], want: usize) {
        let b = &mut self.bufs[i as usize];
        let before = b.capacity();
        if b.is_empty() {
            b.reserve(want.max(data.len()).min(MAX_HELLO_BYTES));
        }
        b.extend_from_slice(data);
        self.held += b.capacity() - before;
    }

    fn release(&mut self, i: u32) {
        let b = &mut self.bufs[i as usize];
        b.clear();
        if b.capacity() > KEEP_HELLO_CAPACITY {
            self.held -= b.capacity();
            *b = Vec::new();
        }
        self.free.push(i);
    }

    /// Gives back the buffer of a connection that ends while reassembling.
    fn release_of(&mut self, c: &Conn) {
        if let Hello::Buffering { buf, .. } = c.hello {
            self.release(buf);
        }
    }
}

/// What a readable hello tells; its server name shared through `names`.
fn hello_seen(names: &mut hashbrown::HashSet<Sni>, h: &tls::ClientHello<'_>) -> TlsSeen {
    let sni = h.sni.map(|name| match names.get(name) {
        Some(shared) => shared.clone(),
        None => {
            let new = Sni::from(name);
            if names.len() < SNI_NAMES {
                names.insert(new.clone());
            }
            new
        }
    });
    TlsSeen::Hello { version: h.version, sni }
}

/// One live connection. Kept small: it is the unit of flow-table memory.
#[derive(Debug)]
struct Conn {
    client_is_lo: bool,
    direction: Direction,
    state: u8,
    /// The client sent to the link-layer broadcast address.
    to_broadcast: bool,
    /// The key has an entry in the closing queue: closing again (a new
    /// connection on the tuple) adds none, so the queue holds one entry per
    /// connection at most however often a tuple is reused.
    queued: bool,
    vlan: u16,
    /// The client's initial sequence number: a SYN with another one is a
    /// new attempt, not a retransmission.
    isn: u32,
    /// Next client sequence number expected in the hello (after the SYN).
    next_seq: u32,
    /// Segments of the hello buffered so far.
    hello_segments: u8,
    first_ts: Ts,
    last_ts: Ts,
    /// Per direction; u32 is 4 G packets for one connection.
    packets: [u32; 2],
    bytes: [u64; 2],
    hello: Hello,
}

/// Counters the table keeps about itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowStats {
    /// Connections finished by idle timeout.
    pub timed_out: u64,
    /// Connections pushed out because the table was full.
    pub evicted: u64,
    /// High-water mark of live entries.
    pub peak_flows: u64,
    /// Fragments attributed to their datagram's flow.
    pub fragments_matched: u64,
    /// First fragments not remembered because the fragment table was full.
    pub fragments_dropped: u64,
    /// ClientHellos spanning segments not reassembled because
    /// `MAX_HELLOS_BUFFERING` (65,536) were being reassembled already.
    pub hellos_not_reassembled: u64,
}

/// The flow table.
pub struct FlowTable {
    cfg: FlowConfig,
    map: FlowMap<FlowKey, Conn>,
    /// First fragment's datagram → its flow, whether its sender is the
    /// `lo` endpoint (the later fragments carry no ports to tell), and when.
    frags: hashbrown::HashMap<FragId, (FlowKey, bool, Ts)>,
    /// Connections that closed (RST, or FIN both ways), oldest first, with
    /// the time they may leave: a closed connection leaves the table after
    /// a short linger instead of waiting for the next sweep, which keeps the
    /// table — the per-packet working set — to the connections alive.
    closing: std::collections::VecDeque<(Ts, FlowKey)>,
    hellos: Hellos,
    /// When the full fragment table was last purged.
    frags_purged: Ts,
    last_sweep: Ts,
    pub stats: FlowStats,
}

/// How far ahead in the closing queue an entry's slot is prefetched.
const RETIRE_AHEAD: usize = 8;
/// How often (capture time) the table is swept for idle entries.
const SWEEP_EVERY: Ts = 10 * SEC;
/// Entries reserved up front: growing a hash table rehashes every entry.
const INITIAL_CAPACITY: usize = 1 << 15;

impl FlowTable {
    pub fn new(cfg: FlowConfig) -> FlowTable {
        FlowTable {
            cfg,
            map: FlowMap::with_capacity(INITIAL_CAPACITY.min(cfg.max_flows)),
            frags: hashbrown::HashMap::new(),
            closing: std::collections::VecDeque::new(),
            hellos: Hellos::default(),
            frags_purged: Ts::MIN,
            last_sweep: Ts::MIN,
            stats: FlowStats::default(),
        }
    }

    /// Live entries.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Accounts one packet. `scope` decides the server of a connection seen
    /// mid-stream and whether its payload is worth a look. Finished
    /// connections go to `sink`.
    #[inline(never)]
    pub fn update<S: ConnSink>(&mut self, ts: Ts, wire_len: u32, p: &Packet<'_>, scope: &impl Scope, sink: &mut S) {
        self.advance(ts, sink);
        let (key, from_lo) = FlowKey::of(p);
        if let Some(id) = p.frag {
            self.remember_fragment(id, key, from_lo, ts);
        }
        let cfg = self.cfg;
        let i = match self.map.find(&key) {
            Some(i) => {
                let c = self.map.value(i);
                // Idle past its timeout: the connection is over, whether or
                // not a sweep came by yet (so results do not depend on when
                // sweeps run, nor on how connections are split over threads).
                let stale = ts.saturating_sub(c.last_ts) > idle_limit(&cfg, &key, c);
                // A new SYN on a tuple whose connection is over, or another
                // attempt with a new ISN, starts a new connection. A SYN from
                // the server while the client's is unanswered is a
                // simultaneous open or a split handshake (RFC 9293 §3.5).
                let restart = p.flags & (F::SYN | F::ACK) == F::SYN && {
                    let from_client = from_lo == c.client_is_lo;
                    let new_attempt = (from_client && c.state & SYN != 0 && p.seq != c.isn) || c.state & MIDSTREAM != 0;
                    c.state & (RST | FIN_C) != 0 || is_closed(c.state) || new_attempt
                };
                if stale || restart {
                    self.stats.timed_out += u64::from(stale);
                    let queued = c.queued;
                    let old = std::mem::replace(self.map.value_mut(i), new_conn(p, from_lo, ts, scope));
                    // The tuple's closing-queue entry, if any, now serves the new one.
                    self.map.value_mut(i).queued = queued;
                    sink.closed(record(&key, old, &mut self.hellos));
                }
                i
            }
            None => {
                if self.map.len() >= self.cfg.max_flows {
                    self.make_room(ts, sink);
                }
                self.map.insert_new(key, new_conn(p, from_lo, ts, scope))
            }
        };
        let c = self.map.value_mut(i);
        let from_client = from_lo == c.client_is_lo;
        let dir = if from_client { 0 } else { 1 };
        c.packets[dir] = c.packets[dir].saturating_add(1);
        c.bytes[dir] += wire_len as u64;
        // Never backwards: a packet without a timestamp (pcapng simple
        // block) or out of order must not make a live connection look idle.
        c.last_ts = c.last_ts.max(ts);
        c.to_broadcast |= from_client && p.l2_broadcast;
        if p.transport == Transport::Tcp {
            let was_closed = is_closed(c.state);
            let f = p.flags;
            if from_client {
                if f & (F::SYN | F::ACK) == F::SYN {
                    c.state |= SYN;
                    c.isn = p.seq;
                    c.next_seq = p.seq.wrapping_add(1);
                }
                if f & F::FIN != 0 {
                    c.state |= FIN_C;
                }
            } else {
                if f & (F::SYN | F::ACK) == F::SYN | F::ACK {
                    c.state |= SYNACK;
                }
                if f & F::RST != 0 && c.state & SYNACK == 0 && c.packets[1] == 1 && c.state & SYN != 0 {
                    c.state |= REFUSED;
                }
                if f & F::FIN != 0 {
                    c.state |= FIN_S;
                }
            }
            if f & F::RST != 0 {
                c.state |= RST;
            }
            if !was_closed && is_closed(c.state) && !c.queued {
                c.queued = true;
                self.closing.push_back((ts.saturating_add(self.cfg.tcp_closed_linger), key));
            }
        }
        // A payload the snap length cut away entirely tells nothing.
        if from_client && !p.payload.is_empty() && !matches!(c.hello, Hello::Done(_)) && c.state & OUT_OF_SCOPE == 0 {
            inspect(c, p, &mut self.hellos, &mut self.stats);
        }
        if self.closing.len() > 2 * self.map.len() + 1024 {
            // Out-of-order time kept the front from coming due: drop the
            // entries whose connection is gone (the queue stays bounded).
            let map = &self.map;
            self.closing.retain(|(_, k)| map.get(k).is_some_and(|c| is_closed(c.state)));
        }
    }

    /// Moves the table's clock to `ts`: closed connections past their
    /// linger and, every `SWEEP_EVERY` (10 s), idle ones leave. Every packet
    /// does this; a live capture also does it when no packet comes, so
    /// that a quiet interface still finishes its connections.
    #[inline]
    pub fn advance<S: ConnSink>(&mut self, ts: Ts, sink: &mut S) {
        if ts >= self.last_sweep.saturating_add(SWEEP_EVERY) {
            self.sweep(ts, sink);
        }
        while self.closing.front().is_some_and(|(due, _)| *due <= ts) {
            // The queue says which entries leave next: load one a few ahead.
            if let Some((_, k)) = self.closing.get(RETIRE_AHEAD) {
                self.map.prefetch(k);
            }
            self.retire_closed(ts, sink);
        }
    }

    /// Starts loading the packet's slot of the table, so that it is in cache
    /// when [`FlowTable::update`] comes: the engine decodes a few packets
    /// ahead and prefetches them together, and their memory loads overlap
    /// instead of queueing (the table of a busy span port does not fit in
    /// cache).
    #[inline]
    pub fn prefetch(&self, p: &Packet<'_>) {
        self.map.prefetch(&FlowKey::of(p).0);
    }

    /// Accounts a later IP fragment to the flow of its first fragment.
    /// Returns false when that first fragment is unknown (an orphan).
    #[inline]
    pub fn update_fragment(&mut self, ts: Ts, wire_len: u32, id: &FragId) -> bool {
        let Some(&(key, from_lo, _)) = self.frags.get(id) else {
            return false;
        };
        let Some(c) = self.map.get_mut(&key) else {
            return false;
        };
        let from_client = from_lo == c.client_is_lo;
        let dir = if from_client { 0 } else { 1 };
        c.packets[dir] = c.packets[dir].saturating_add(1);
        c.bytes[dir] += wire_len as u64;
        c.last_ts = c.last_ts.max(ts);
        self.stats.fragments_matched += 1;
        true
    }

    fn remember_fragment(&mut self, id: FragId, key: FlowKey, from_lo: bool, ts: Ts) {
        if self.frags.len() >= self.cfg.max_fragments && !self.frags.contains_key(&id) {
            // Full: purge expired identities, at most once a second of
            // capture time (a flood must not buy a full scan per packet).
            if ts >= self.frags_purged.saturating_add(SEC) {
                self.frags_purged = ts;
                let limit = ts.saturating_sub(self.cfg.fragment_timeout);
                self.frags.retain(|_, (_, _, t)| *t >= limit);
            }
            if self.frags.len() >= self.cfg.max_fragments {
                self.stats.fragments_dropped += 1;
                return;
            }
        }
        self.frags.insert(id, (key, from_lo, ts));
    }

    /// Takes the oldest closed connection off the queue and finishes it if it
    /// has lingered long enough; one that saw packets since goes back in line.
    #[cold]
    fn retire_closed<S: ConnSink>(&mut self, now: Ts, sink: &mut S) {
        let Some((_, key)) = self.closing.pop_front() else { return };
        let linger = self.cfg.tcp_closed_linger;
        let Some(i) = self.map.find(&key) else { return }; // gone already (swept, evicted)
        let c = self.map.value_mut(i);
        if !is_closed(c.state) {
            // A new connection on the tuple, open: it queues when it closes.
            c.queued = false;
        } else if c.last_ts.saturating_add(linger) <= now {
            let c = self.map.remove(&key).expect("present");
            sink.closed(record(&key, c, &mut self.hellos));
        } else {
            // Packets came since: back in line.
            self.closing.push_back((c.last_ts.saturating_add(linger), key));
        }
    }

    /// Finishes every connection idle past its timeout at capture time `now`.
    pub fn sweep<S: ConnSink>(&mut self, now: Ts, sink: &mut S) {
        self.last_sweep = now;
        let cfg = self.cfg;
        let mut timed_out = 0;
        let hellos = &mut self.hellos;
        self.map.retain(|k, c| {
            if now.saturating_sub(c.last_ts) > idle_limit(&cfg, k, c) {
                timed_out += u64::from(!is_closed(c.state));
                sink.closed(record(k, std::mem::replace(c, placeholder()), hellos));
                false
            } else {
                true
            }
        });
        self.stats.timed_out += timed_out;
        let limit = now.saturating_sub(cfg.fragment_timeout);
        self.frags.retain(|_, (_, _, t)| *t >= limit);
        self.stats.peak_flows = self.stats.peak_flows.max(self.map.len() as u64);
    }

    /// The table is full: sweep, and if that frees too little, evict the
    /// longest-idle tenth (their records still reach the report).
    #[cold]
    fn make_room<S: ConnSink>(&mut self, now: Ts, sink: &mut S) {
        self.stats.peak_flows = self.stats.peak_flows.max(self.map.len() as u64);
        self.sweep(now, sink);
        if self.map.len() < self.cfg.max_flows {
            return;
        }
        let mut ages: Vec<Ts> = self.map.values().map(|c| c.last_ts).collect();
        let n = (ages.len() / 10).max(1);
        let (_, cut, _) = ages.select_nth_unstable(n - 1);
        let cut = *cut;
        let mut evicted = 0;
        let hellos = &mut self.hellos;
        self.map.retain(|k, c| {
            if c.last_ts <= cut && evicted < n as u64 {
                evicted += 1;
                sink.closed(record(k, std::mem::replace(c, placeholder()), hellos));
                false
            } else {
                true
            }
        });
        self.stats.evicted += evicted;
    }

    /// Hands a record of every live connection, as if it ended now, to
    /// `sink`; the table is unchanged (`live`'s periodic reports).
    pub fn each_live<S: ConnSink>(&self, sink: &mut S) {
        for (k, c) in self.map.iter() {
            sink.closed(record_of(k, c));
        }
    }

    /// Finishes every live connection (end of the capture).
    pub fn drain<S: ConnSink>(&mut self, sink: &mut S) {
        self.stats.peak_flows = self.stats.peak_flows.max(self.map.len() as u64);
        for (k, c) in self.map.drain() {
            sink.closed(record(&k, c, &mut self.hellos));
        }
        self.frags.clear();
        self.closing.clear();
    }
}

fn idle_limit(cfg: &FlowConfig, k: &FlowKey, c: &Conn) -> Ts {
    if k.proto != Transport::Tcp as u8 {
        cfg.udp_idle
    } else if is_closed(c.state) {
        cfg.tcp_closed_linger
    } else if c.state & SYN != 0 && c.packets[1] == 0 {
        cfg.tcp_handshake_idle
    } else {
        cfg.tcp_idle
    }
}

/// RST seen, or FIN from both sides.
#[inline]
fn is_closed(state: u8) -> bool {
    state & RST != 0 || state & (FIN_C | FIN_S) == FIN_C | FIN_S
}

fn placeholder() -> Conn {
    Conn {
        client_is_lo: true,
        direction: Direction::FirstPacket,
        state: 0,
        to_broadcast: false,
        queued: false,
        vlan: 0,
        isn: 0,
        next_seq: 0,
        hello_segments: 0,
        first_ts: 0,
        last_ts: 0,
        packets: [0; 2],
        bytes: [0; 2],
        hello: Hello::Pending,
    }
}

/// Decides who the client is from the first packet of a connection.
#[inline]
fn new_conn(p: &Packet<'_>, from_lo: bool, ts: Ts, scope: &impl Scope) -> Conn {
    let (src_is_client, direction, midstream) =
        if p.transport == Transport::Tcp && p.flags & (F::SYN | F::ACK) == F::SYN {
            (true, Direction::Syn, false)
        } else if p.transport == Transport::Tcp && p.flags & (F::SYN | F::ACK) == F::SYN | F::ACK {
            (false, Direction::SynAck, false)
        } else {
            let (s, d) = (scope.ksc_port(p.transport, p.sport), scope.ksc_port(p.transport, p.dport));
            let (client, how) = if d && !s {
                (true, Direction::KscPort)
            } else if s && !d {
                (false, Direction::KscPort)
            } else if p.dport < 1024 && p.sport >= 1024 {
                (true, Direction::LowPort)
            } else if p.sport < 1024 && p.dport >= 1024 {
                (false, Direction::LowPort)
            } else {
                (true, Direction::FirstPacket)
            };
            (client, how, p.transport == Transport::Tcp)
        };
    let ((client, server), server_port) =
        if src_is_client { ((p.src, p.dst), p.dport) } else { ((p.dst, p.src), p.sport) };
    let in_scope = scope.may_be_ksc(client, server, p.transport, server_port);
    Conn {
        client_is_lo: from_lo == src_is_client,
        direction,
        state: if midstream { MIDSTREAM } else { 0 } | if in_scope { 0 } else { OUT_OF_SCOPE },
        to_broadcast: false,
        queued: false,
        vlan: p.vlan,
        isn: 0,
        next_seq: 0,
        hello_segments: 0,
        first_ts: ts,
        last_ts: ts,
        packets: [0; 2],
        bytes: [0; 2],
        hello: Hello::Pending,
    }
}

/// Looks at client payload until the first one is judged: TLS ClientHello
/// (version, SNI), TLS we cannot read, or plaintext.
fn inspect(c: &mut Conn, p: &Packet<'_>, hellos: &mut Hellos, stats: &mut FlowStats) {
    let seen_syn = p.transport == Transport::Tcp && c.state & SYN != 0;
    let truncated = (p.payload.len() as u32) < p.payload_len;
    if p.transport == Transport::Tcp && c.state & (SYN | SYNACK) == 0 {
        // Mid-stream: this is not the first payload of the connection.
        // A TLS record header is still recognisable; anything else is not
        // proof of plaintext (a segment need not start a record).
        c.hello =
            Hello::Done(if tls::looks_like_tls_record(p.payload) { TlsSeen::TlsUnparsed } else { TlsSeen::Unknown });
        return;
    }
    match &mut c.hello {
        Hello::Pending => {
            if seen_syn && p.seq != c.next_seq {
                if seq_before(p.seq, c.next_seq) {
                    return; // retransmission of something already seen
                }
                c.hello = Hello::Done(TlsSeen::TlsUnparsed.unless_plain(p.payload));
                return;
            }
            match tls::inspect_client_hello(p.payload) {
                Inspect::Hello(h) => c.hello = Hello::Done(hello_seen(&mut hellos.names, &h)),
                Inspect::NotTls => c.hello = Hello::Done(TlsSeen::Plaintext),
                Inspect::Malformed => c.hello = Hello::Done(TlsSeen::TlsUnparsed),
                Inspect::NeedMore if truncated || !seen_syn && p.transport == Transport::Tcp => {
                    c.hello = Hello::Done(TlsSeen::TlsUnparsed)
                }
                Inspect::NeedMore if p.transport == Transport::Udp => c.hello = Hello::Done(TlsSeen::TlsUnparsed),
                Inspect::NeedMore => {
                    if p.payload.len() >= MAX_HELLO_BYTES {
                        // A first segment this large (offload, loopback) that
                        // still holds no complete hello: past our bound.
                        c.hello = Hello::Done(TlsSeen::TlsUnparsed);
                        return;
                    }
                    let Some(i) = hellos.take() else {
                        stats.hellos_not_reassembled += 1;
                        c.hello = Hello::Done(TlsSeen::TlsUnparsed);
                        return;
                    };
                    let want = record_len(p.payload);
                    hellos.append(i, p.payload, want);
                    c.next_seq = c.next_seq.wrapping_add(p.payload.len() as u32);
                    c.hello_segments = 1;
                    c.hello = Hello::Buffering { buf: i, want: want.min(u16::MAX as usize) as u16 };
                }
            }
        }
        Hello::Buffering { buf, want } => {
            let i = *buf;
            let seen = if p.seq != c.next_seq {
                if seq_before(p.seq, c.next_seq) {
                    return; // retransmission of something already seen
                }
                Some(TlsSeen::TlsUnparsed) // a gap: give up
            } else {
                if truncated
                    || hellos.bufs[i as usize].len() + p.payload.len() > MAX_HELLO_BYTES
                    || c.hello_segments >= MAX_HELLO_SEGMENTS
                {
                    Some(TlsSeen::TlsUnparsed)
                } else {
                    hellos.append(i, p.payload, 0);
                    let buf = &hellos.bufs[i as usize];
                    c.hello_segments += 1;
                    c.next_seq = c.next_seq.wrapping_add(p.payload.len() as u32);
                    if *want == 0 {
                        *want = record_len(buf).min(u16::MAX as usize) as u16;
                    }
                    // Parse only once the first record is complete.
                    if buf.len() < *want as usize {
                        None
                    } else {
                        match tls::inspect_client_hello(buf) {
                            Inspect::Hello(h) => Some(hello_seen(&mut hellos.names, &h)),
                            Inspect::NeedMore => None,
                            Inspect::NotTls | Inspect::Malformed => Some(TlsSeen::TlsUnparsed),
                        }
                    }
                }
            };
            if let Some(s) = seen {
                hellos.release(i);
                c.hello = Hello::Done(s);
            }
        }
        Hello::Done(_) => {}
    }
}

impl TlsSeen {
    fn unless_plain(self, payload: &[u8]) -> TlsSeen {
        if tls::looks_like_tls(payload) {
            self
        } else {
            TlsSeen::Unknown
        }
    }
}

/// The length of the TLS record that `b` starts with (header included;
/// RFC 8446 §5.1), or 0 when `b` does not start with a handshake record
/// header.
fn record_len(b: &[u8]) -> usize {
    match *b {
        [0x16, 3, _, hi, lo, ..] => 5 + u16::from_be_bytes([hi, lo]) as usize,
        _ => 0,
    }
}

/// RFC 9293 §3.4 sequence comparison (modulo 2^32).
#[inline]
fn seq_before(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

/// The record of a finished connection; a hello buffer it held goes back.
fn record(k: &FlowKey, c: Conn, hellos: &mut Hellos) -> ConnRecord {
    hellos.release_of(&c);
    record_of(k, &c)
}

/// The record of connection `c` as it stands.
fn record_of(k: &FlowKey, c: &Conn) -> ConnRecord {
    let (client, client_port) = k.endpoint(c.client_is_lo);
    let (server, server_port) = k.endpoint(!c.client_is_lo);
    let outcome = if c.state & REFUSED != 0 {
        Outcome::Refused
    } else if c.state & SYNACK != 0 || c.packets[1] > 0 {
        Outcome::Answered
    } else if c.state & SYN != 0 {
        Outcome::Unanswered
    } else {
        Outcome::OneWay
    };
    let tls = match &c.hello {
        _ if c.state & OUT_OF_SCOPE != 0 => TlsSeen::NotInspected,
        Hello::Done(t) => t.clone(),
        Hello::Pending => TlsSeen::NoPayload,
        // The hello never completed: TLS it is, unreadable.
        Hello::Buffering { .. } => TlsSeen::TlsUnparsed,
    };
    ConnRecord {
        client,
        server,
        client_port,
        server_port,
        transport: k.transport(),
        first_ts: c.first_ts,
        last_ts: c.last_ts,
        packets: [c.packets[0] as u64, c.packets[1] as u64],
        bytes: c.bytes,
        outcome,
        direction: c.direction,
        tls,
        vlan: c.vlan,
        to_broadcast: c.to_broadcast,
        may_be_ksc: c.state & OUT_OF_SCOPE == 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{decode, Decoded, Link};
    use crate::rules::PortSet;
    use etherparse::PacketBuilder;

    const C: [u8; 4] = [10, 0, 1, 20];
    const S: [u8; 4] = [10, 0, 0, 10];

    fn tcp(src: [u8; 4], dst: [u8; 4], sp: u16, dp: u16, flags: u8, seq: u32, data: &[u8]) -> Vec<u8> {
        let mut b = PacketBuilder::ipv4(src, dst, 64).tcp(sp, dp, seq, 1000);
        if flags & F::SYN != 0 {
            b = b.syn();
        }
        if flags & F::ACK != 0 {
            b = b.ack(1);
        }
        if flags & F::RST != 0 {
            b = b.rst();
        }
        if flags & F::FIN != 0 {
            b = b.fin();
        }
        let mut v = Vec::new();
        b.write(&mut v, data).unwrap();
        v
    }

    /// TCP 13000 is KSC; everything may be KSC (payloads inspected).
    struct TestScope(PortSet);

    impl Scope for TestScope {
        fn ksc_port(&self, t: Transport, port: u16) -> bool {
            self.0.contains(t, port)
        }
        fn may_be_ksc(&self, _: IpAddr, _: IpAddr, _: Transport, _: u16) -> bool {
            true
        }
    }

    fn ksc() -> TestScope {
        let mut p = PortSet::new();
        p.insert(Transport::Tcp, 13000);
        TestScope(p)
    }

    fn feed(t: &mut FlowTable, out: &mut Vec<ConnRecord>, ts: Ts, frame: &[u8]) {
        let ports = ksc();
        match decode(Link::RawIp, frame) {
            Decoded::Packet(p) => t.update(ts, frame.len() as u32, &p, &ports, &mut |r| out.push(r)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn handshake_gives_client_and_answered() {
        let mut t = FlowTable::new(FlowConfig::default());
        let mut out = Vec::new();
        feed(&mut t, &mut out, 0, &tcp(C, S, 50000, 13000, F::SYN, 100, b""));
        feed(&mut t, &mut out, 1, &tcp(S, C, 13000, 50000, F::SYN | F::ACK, 900, b""));
        feed(&mut t, &mut out, 2, &tcp(C, S, 50000, 13000, F::ACK, 101, b"GET / HTTP/1.1\r\n"));
        t.drain(&mut |r| out.push(r));
        assert_eq!(out.len(), 1);
        let r = &out[0];
        assert_eq!(r.client, IpAddr::from(C));
        assert_eq!((r.server_port, r.direction, r.outcome), (13000, Direction::Syn, Outcome::Answered));
        assert_eq!(r.packets, [2, 1]);
        assert_eq!(r.tls, TlsSeen::Plaintext);
    }

    #[test]
    fn syn_ack_only_and_midstream_directions() {
        let mut t = FlowTable::new(FlowConfig::default());
        let mut out = Vec::new();
        feed(&mut t, &mut out, 0, &tcp(S, C, 13000, 50001, F::SYN | F::ACK, 1, b""));
        feed(&mut t, &mut out, 0, &tcp(S, C, 13000, 50002, F::ACK, 1, b"\x17\x03\x03\x00\x05hello"));
        feed(&mut t, &mut out, 0, &tcp(S, C, 2000, 3000, F::ACK, 1, b"x"));
        t.drain(&mut |r| out.push(r));
        out.sort_by_key(|r| r.client_port.min(r.server_port));
        let by_port =
            |p: u16| out.iter().find(|r| r.client_port == p || r.server_port == p && r.client_port != 2000).unwrap();
        let a = by_port(50001);
        assert_eq!((a.client, a.direction), (IpAddr::from(C), Direction::SynAck));
        let b = by_port(50002);
        assert_eq!((b.client, b.direction, b.outcome), (IpAddr::from(C), Direction::KscPort, Outcome::Answered));
        let c = out.iter().find(|r| r.server_port == 3000).unwrap();
        assert_eq!(c.direction, Direction::FirstPacket);
    }

    #[test]
    fn refused_unanswered_and_new_syn_after_rst() {
        let mut t = FlowTable::new(FlowConfig::default());
        let mut out = Vec::new();
        feed(&mut t, &mut out, 0, &tcp(C, S, 50000, 13000, F::SYN, 100, b""));
        feed(&mut t, &mut out, 1, &tcp(S, C, 13000, 50000, F::RST | F::ACK, 0, b""));
        // Same tuple, new attempt after the RST: a second connection.
        feed(&mut t, &mut out, 2 * SEC, &tcp(C, S, 50000, 13000, F::SYN, 5000, b""));
        feed(&mut t, &mut out, 3 * SEC, &tcp(C, S, 50000, 13000, F::SYN, 5000, b"")); // retransmission
        t.drain(&mut |r| out.push(r));
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].outcome, Outcome::Refused);
        assert_eq!((out[1].outcome, out[1].packets), (Outcome::Unanswered, [2, 0]));
    }

    #[test]
    fn split_handshake_is_one_connection() {
        // SYN, SYN back from the server, SYN-ACK, ACK (suricata's 4whs case).
        let mut t = FlowTable::new(FlowConfig::default());
        let mut out = Vec::new();
        feed(&mut t, &mut out, 0, &tcp(C, S, 50000, 13000, F::SYN, 100, b""));
        feed(&mut t, &mut out, 1, &tcp(S, C, 13000, 50000, F::SYN, 900, b""));
        feed(&mut t, &mut out, 2, &tcp(C, S, 50000, 13000, F::SYN | F::ACK, 100, b""));
        feed(&mut t, &mut out, 3, &tcp(S, C, 13000, 50000, F::ACK, 901, b""));
        t.drain(&mut |r| out.push(r));
        assert_eq!(out.len(), 1);
        assert_eq!(
            (out[0].client, out[0].direction, out[0].outcome),
            (IpAddr::from(C), Direction::Syn, Outcome::Answered)
        );
    }

    #[test]
    fn idle_timeout_and_cap_are_bounded_and_counted() {
        let cfg = FlowConfig { max_flows: 100, ..FlowConfig::default() };
        let mut t = FlowTable::new(cfg);
        let mut out = Vec::new();
        for i in 0..1000u32 {
            let src = [10, 1, (i >> 8) as u8, i as u8];
            feed(&mut t, &mut out, i as Ts, &tcp(src, S, 40000, 13000, F::SYN, i, b""));
            assert!(t.len() <= 100);
        }
        assert!(t.stats.evicted >= 900 - 10, "{:?}", t.stats);
        // UDP idles out after udp_idle.
        let mut t = FlowTable::new(FlowConfig::default());
        let mut v = Vec::new();
        PacketBuilder::ipv4(S, C, 64).udp(40000, 15000).write(&mut v, b"x").unwrap();
        feed(&mut t, &mut out, 0, &v);
        feed(&mut t, &mut out, 200 * SEC, &tcp(C, S, 1, 2, F::SYN, 1, b""));
        assert_eq!(t.stats.timed_out, 1);
    }

    #[test]
    fn entries_stay_small() {
        // The flow table's memory is slots × (key + Conn), the slots at most
        // twice the entries: keep an eye on it. 128 bytes is two cache lines.
        assert_eq!(std::mem::size_of::<FlowKey>(), 40);
        assert!(std::mem::size_of::<Conn>() <= 88, "{}", std::mem::size_of::<Conn>());
        assert_eq!(FlowMap::<FlowKey, Conn>::SLOT_BYTES, 128);
    }

    #[test]
    fn closed_connections_leave_after_the_linger() {
        let mut t = FlowTable::new(FlowConfig::default());
        let mut out = Vec::new();
        feed(&mut t, &mut out, 0, &tcp(C, S, 50000, 13000, F::SYN, 100, b""));
        feed(&mut t, &mut out, 1, &tcp(S, C, 13000, 50000, F::RST | F::ACK, 0, b""));
        assert_eq!(t.len(), 1);
        feed(&mut t, &mut out, 6 * SEC, &tcp(C, S, 50001, 13000, F::SYN, 100, b""));
        assert_eq!(out.len(), 1, "the refused connection left after 5 s");
        assert_eq!(out[0].outcome, Outcome::Refused);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn regression_first_segment_over_16k_does_not_panic() {
        // Found by review: a first client segment above MAX_HELLO_BYTES that
        // starts like a TLS hello made `clamp(min > max)` panic.
        let mut t = FlowTable::new(FlowConfig::default());
        let mut out = Vec::new();
        let mut big = vec![0u8; 17_000];
        big[..11].copy_from_slice(&[0x16, 3, 3, 0x48, 0, 1, 1, 0x86, 0xa0, 3, 3]);
        feed(&mut t, &mut out, 0, &tcp(C, S, 50000, 13000, F::SYN, 100, b""));
        feed(&mut t, &mut out, 1, &tcp(S, C, 13000, 50000, F::SYN | F::ACK, 900, b""));
        feed(&mut t, &mut out, 2, &tcp(C, S, 50000, 13000, F::ACK, 101, &big));
        t.drain(&mut |r| out.push(r));
        assert_eq!(out[0].tls, TlsSeen::TlsUnparsed);
    }

    #[test]
    fn hello_reassembly_is_bounded_and_counted() {
        // A flood of connections that each start a ClientHello (a record of
        // 500 bytes announced, 11 sent) and never finish it.
        let mut t = FlowTable::new(FlowConfig::default());
        let mut out = Vec::new();
        let start = [0x16, 3, 1, 0x01, 0xf4, 1, 0, 1, 0xf0, 3, 3];
        let n = MAX_HELLOS_BUFFERING + 100;
        for i in 0..n {
            let c = [10, (i >> 16) as u8, (i >> 8) as u8, i as u8];
            feed(&mut t, &mut out, i as Ts, &tcp(c, S, 50000, 13000, F::SYN, 100, b""));
            feed(&mut t, &mut out, i as Ts, &tcp(c, S, 50000, 13000, F::ACK, 101, &start));
        }
        assert_eq!(t.stats.hellos_not_reassembled, 100);
        assert_eq!(t.hellos.bufs.len(), MAX_HELLOS_BUFFERING);
        assert!(t.hellos.held <= MAX_HELLO_HELD, "{}", t.hellos.held);
        t.drain(&mut |r| out.push(r));
        assert_eq!(out.len(), n);
        assert!(out.iter().all(|r| r.tls == TlsSeen::TlsUnparsed));
        // Every buffer came back.
        assert_eq!(t.hellos.free.len(), t.hellos.bufs.len());
    }

    #[test]
    fn regression_a_tuple_reused_within_the_linger_queues_once() {
        // Found by the steady-state bench: each new connection on a tuple
        // that closes within the 5 s linger queued the key again, and past
        // 2 x entries + 1024 queued the whole queue was rescanned on every
        // packet (200 ms per 59k packets). SYN/RST on one tuple, 100k times
        // in one second, must leave one queue entry.
        let mut t = FlowTable::new(FlowConfig::default());
        let mut out = Vec::new();
        for i in 0..100_000u32 {
            feed(&mut t, &mut out, 2 * i as Ts, &tcp(C, S, 50000, 13000, F::SYN, i * 7, b""));
            feed(&mut t, &mut out, 2 * i as Ts + 1, &tcp(S, C, 13000, 50000, F::RST | F::ACK, 0, b""));
        }
        assert_eq!((t.len(), t.closing.len()), (1, 1));
        assert_eq!(out.len(), 99_999);
        assert!(out.iter().all(|r| r.outcome == Outcome::Refused));
        // The linger still ends it.
        t.advance(10 * SEC, &mut |r| out.push(r));
        assert_eq!((t.len(), out.len()), (0, 100_000));
    }

    #[test]
    fn fragment_flood_is_bounded_and_counted() {
        // First fragments of datagrams that never complete, each with a new
        // identification: the table of identities stays at its bound, the
        // rest are counted, and room comes back once they time out (30 s).
        let mut t = FlowTable::new(FlowConfig { max_fragments: 1000, ..FlowConfig::default() });
        let mut out = Vec::new();
        let first_fragment = |id: u16| {
            let mut b = Vec::new();
            PacketBuilder::ipv4(C, S, 64).udp(5000, 13000).write(&mut b, &[0x5a; 64]).unwrap();
            b[4..6].copy_from_slice(&id.to_be_bytes());
            b[6] = 0x20; // more fragments, offset 0
            b
        };
        for i in 0..5000u16 {
            feed(&mut t, &mut out, i as Ts, &first_fragment(i));
        }
        assert_eq!((t.frags.len(), t.stats.fragments_dropped), (1000, 4000));
        feed(&mut t, &mut out, 2 * SEC, &first_fragment(9998));
        assert_eq!((t.frags.len(), t.stats.fragments_dropped), (1000, 4001));
        feed(&mut t, &mut out, 40 * SEC, &first_fragment(9999));
        assert_eq!((t.frags.len(), t.stats.fragments_dropped), (1, 4001));
    }

    #[test]
    fn hello_in_hundreds_of_tiny_segments_is_given_up_within_bounds() {
        let mut t = FlowTable::new(FlowConfig::default());
        let mut out = Vec::new();
        let hello = [[0x16, 3, 1, 0x01, 0xf4, 1, 0, 1, 0xf0, 3, 3].as_slice(), &[0x42; 289]].concat();
        feed(&mut t, &mut out, 0, &tcp(C, S, 50000, 13000, F::SYN, 100, b""));
        feed(&mut t, &mut out, 1, &tcp(S, C, 13000, 50000, F::SYN | F::ACK, 900, b""));
        for (i, byte) in hello.iter().enumerate() {
            feed(&mut t, &mut out, 2 + i as Ts, &tcp(C, S, 50000, 13000, F::ACK, 101 + i as u32, &[*byte]));
        }
        // Given up after MAX_HELLO_SEGMENTS: the buffer is back, small.
        assert_eq!(t.hellos.free.len(), t.hellos.bufs.len());
        assert!(t.hellos.held <= KEEP_HELLO_CAPACITY, "{}", t.hellos.held);
        t.drain(&mut |r| out.push(r));
        assert_eq!((out.len(), &out[0].tls), (1, &TlsSeen::TlsUnparsed));
        assert_eq!(out[0].packets[0], 1 + hello.len() as u64);
    }

    #[test]
    fn regression_timestamps_at_the_limit_do_not_hang() {
        // Found by review: a closed connection queued at i64::MAX was put
        // back in line forever. Readers clamp to TS_LIMIT; both must end.
        for ts in [crate::capture::TS_LIMIT, Ts::MAX] {
            let mut t = FlowTable::new(FlowConfig::default());
            let mut out = Vec::new();
            feed(&mut t, &mut out, ts, &tcp(C, S, 50000, 13000, F::SYN, 100, b""));
            feed(&mut t, &mut out, ts, &tcp(S, C, 13000, 50000, F::RST | F::ACK, 0, b""));
            feed(&mut t, &mut out, ts, &tcp(C, S, 50001, 13000, F::SYN, 100, b""));
            feed(&mut t, &mut out, ts, &tcp(C, S, 50002, 13000, F::SYN, 100, b""));
            t.drain(&mut |r| out.push(r));
            assert_eq!(out.len(), 3);
        }
    }

    #[test]
    fn canonical_key_is_direction_free() {
        let a = tcp(C, S, 50000, 13000, F::SYN, 1, b"");
        let b = tcp(S, C, 13000, 50000, F::ACK, 1, b"");
        let (ka, la) = match decode(Link::RawIp, &a) {
            Decoded::Packet(p) => FlowKey::of(&p),
            _ => unreachable!(),
        };
        let (kb, lb) = match decode(Link::RawIp, &b) {
            Decoded::Packet(p) => FlowKey::of(&p),
            _ => unreachable!(),
        };
        assert_eq!(ka, kb);
        assert_ne!(la, lb);
    }
}
