//! The real-capture corpus (`shared/corpus`, see its README.md): 199 public
//! capture files written by other projects.
//!
//! 1. Robustness: `kscflow audit` runs on every file with both readers (the
//!    default fast reader and `--reader libpcap`), each under a 10 s
//!    deadline. Exit 0 or 1 with a JSON report, or exit 2 with a message
//!    that is not a panic; exit 2 only for the files in [`CANNOT_OPEN`].
//!    Both readers must give the same connections, except where
//!    [`READER_DIFFERENCES`] says why not; each reader must read as many
//!    packets as the manifest says libpcap does.
//! 2. Flow accounting: kscflow's connections (`--events`), summed per
//!    conversation the way tshark counts them (transport + unordered
//!    address/port pair; tshark's several streams of one 5-tuple and
//!    kscflow's several connections of one 5-tuple are both summed), are
//!    compared with tshark's `conv,tcp` / `conv,udp` in `truth/*.json`:
//!    conversations present, packets per direction, bytes per direction
//!    (all truth rows have exact byte sums), and the initiator of every TCP
//!    conversation in which tshark saw a SYN.
//!
//! Every disagreement is either listed in [`KNOWN`] (a small, named allow
//! list: a documented difference between the two tools, with the exact
//! number of disagreements of each kind it explains, so that a regression or
//! a fix that makes an entry stale both fail) or fails the test. Open
//! kscflow bugs are NOT allowed here: they fail, and [`OPEN_BUGS`] only adds
//! a pointer to the failure message.
//!
//! Without the corpus the test says so and passes. `KSCFLOW_CORPUS=DIR`
//! points at another copy; `KSCFLOW_CORPUS_TABLE=FILE` writes the per-file
//! table (tests/CORPUS.md is made from it). Run with `-- --nocapture` to see
//! the table.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs::{self, File};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_kscflow");
/// Longest a single `kscflow audit` of one corpus file may take.
const DEADLINE: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------
// The allow-lists. Keep them small, exact and explained.
// ---------------------------------------------------------------------------

/// Files no reader can open: both readers must exit 2 with a message that
/// contains the given word.
const CANNOT_OPEN: &[(&str, &str, &str)] = &[(
    "zeek__smtp__mime-header-size-limit.pcap.gz",
    "gzip",
    "gzip-compressed pcap: libpcap and the fast reader both see a bad magic number (tshark decompresses it)",
)];

/// Files on which the two readers may disagree, and why.
const READER_DIFFERENCES: &[(&str, &str)] = &[(
    "zeek__ldap__gap-data-missing.pcapng",
    "libpcap 1.10 refuses a pcapng whose interfaces have different snapshot lengths, so \
     `--reader libpcap` reads no packet and exits 2 saying so; the fast reader reads all 18 packets",
)];

/// Why kscflow and tshark may see a file differently (corpus README,
/// "Things to know when comparing with our flow table").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Why {
    /// kscflow does not decode this link type: every packet is skipped as
    /// `unsupported_link_type`, so it has no conversation at all.
    LinkType(&'static str),
    /// A UDP tunnel (VXLAN 4789, Geneve 6081, GTP-U 2152): kscflow's flow
    /// is the inner conversation, and it counts the outer packets per
    /// tunnel kind, not as a conversation of their own; tshark lists the
    /// outer UDP conversation as well. Every missing conversation must
    /// have a tunnel port on one side, and none may be extra.
    TunnelOuter(&'static str),
    /// IP fragments: tshark reassembles and counts only the frame that
    /// completes a datagram (nothing for a datagram never completed);
    /// kscflow counts every fragment in the flow of the first one.
    Fragments,
    /// Crafted or fuzzed packets that tshark declares malformed and leaves
    /// out of its conversation table, while kscflow keeps the 5-tuple.
    Malformed,
}

impl Why {
    fn text(self) -> String {
        match self {
            Why::LinkType(l) => format!("link type {l} not decoded"),
            Why::TunnelOuter(t) => format!("outer {t} conversation not a flow (accounted per tunnel kind)"),
            Why::Fragments => "IP fragments (tshark reassembles)".into(),
            Why::Malformed => "malformed packets".into(),
        }
    }
}

/// How many disagreements of each kind (see [`Diffs`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Counts {
    /// tshark conversations kscflow does not have.
    missing: usize,
    /// kscflow conversations tshark does not have.
    extra: usize,
    /// Conversations whose packet count differs in some direction.
    packets: usize,
    /// Same packets, different (exact) bytes in some direction.
    bytes: usize,
    /// kscflow connections whose client is not the SYN sender tshark found.
    initiator: usize,
}

const fn c(missing: usize, extra: usize, packets: usize, bytes: usize, initiator: usize) -> Counts {
    Counts { missing, extra, packets, bytes, initiator }
}

/// Documented differences with tshark. `reader`: None = both readers.
struct Known {
    file: &'static str,
    reader: Option<Reader>,
    why: Why,
    counts: Counts,
    note: &'static str,
}

const fn k(file: &'static str, why: Why, counts: Counts, note: &'static str) -> Known {
    Known { file, reader: None, why, counts, note }
}

#[rustfmt::skip]
const KNOWN: &[Known] = &[
    // Link types kscflow does not decode (src/decode.rs `Link::from_linktype`).
    k("ndpi__BGP_redist.pcap", Why::LinkType("C_HDLC"), c(2, 0, 0, 0, 0), "2 BGP TCP conversations"),
    k("ndpi__dlt_ppp.pcap", Why::LinkType("PPP"), c(1, 0, 0, 0, 0), "1 QUIC UDP conversation"),
    k("ndpi__someip_sd_sample.pcap", Why::LinkType("PPI"), c(2, 0, 0, 0, 0), "2 SOME/IP UDP conversations"),
    k("tcpdump__LINKTYPE_PKTAP.pcap", Why::LinkType("PKTAP"), c(1, 0, 0, 0, 0), "1 DNS UDP conversation"),
    k("tcpdump__arcnet-rfc1201-arp-icmp-http.pcap", Why::LinkType("ARCNET_LINUX"), c(2, 0, 0, 0, 0), "HTTP and DNS"),
    k("tcpdump__ipoib.pcap", Why::LinkType("IPOIB"), c(6, 0, 0, 0, 0), "SSH and 5 probes"),
    k("tcpdump__mpls-traceroute.pcap", Why::LinkType("PPP"), c(9, 0, 0, 0, 0), "MPLS-labelled UDP traceroute probes inside PPP"),
    k("tcpdump__nflog.pcap", Why::LinkType("NFLOG"), c(4, 0, 0, 0, 0), "4 DNS UDP conversations"),
    k("zeek__dns-inverse-query.pcap", Why::LinkType("FDDI"), c(1, 0, 0, 0, 0), "1 DNS-over-TCP conversation"),
    k("zeek__nflog-http.pcap", Why::LinkType("NFLOG"), c(1, 0, 0, 0, 0), "1 HTTP conversation"),
    k("zeek__quic__interop__quic-go_quic-go__handshake.pcap", Why::LinkType("PPP"), c(1, 0, 0, 0, 0), "1 QUIC conversation"),
    k("zeek__radiotap.pcap", Why::LinkType("IEEE802_11_RADIO"), c(2, 0, 0, 0, 0), "2 UDP conversations"),
    // UDP tunnels: the inner conversations agree; the outer ones tshark lists
    // are tunnel packets to kscflow (src/decode/tunnel.rs).
    k("ndpi__reasm_segv_anon.pcapng", Why::TunnelOuter("GTP-U"), c(1, 0, 0, 0, 0),
      "the UDP 2152 conversation carrying the inner HTTP connection (which agrees)"),
    k("ndpi__tls_invalid_reads.pcap", Why::TunnelOuter("GTP-U"), c(1, 0, 0, 0, 0),
      "GTP-U over QinQ: the UDP 2152 conversation; the inner TLS connection agrees"),
    k("ndpi__vxlan.pcap", Why::TunnelOuter("VXLAN"), c(9, 0, 0, 0, 0),
      "9 UDP 4789 conversations (the VXLAN source port is per inner flow and direction); the 2 inner TLS and 2 inner DNS conversations agree"),
    k("tcpdump__geneve.pcap", Why::TunnelOuter("Geneve"), c(4, 0, 0, 0, 0),
      "4 UDP 6081 conversations; the inner SSH connection agrees"),
    k("tcpdump__gso-ipv6-vxlan-ipv4.pcap", Why::TunnelOuter("VXLAN"), c(1, 0, 0, 0, 0),
      "the UDP 4789 conversation over IPv6; the inner TCP connection agrees"),
    k("tcpdump__vxlan.pcap", Why::TunnelOuter("VXLAN"), c(4, 0, 0, 0, 0),
      "4 UDP 4789 conversations carrying only ICMP and ARP (no inner TCP/UDP: skipped as not_tcp_udp, not_ip)"),
    k("zeek__tunnels__geneve-truncated.pcapng", Why::TunnelOuter("Geneve"), c(1, 0, 0, 0, 0),
      "the UDP 6081 conversation of a packet cut inside the inner Ethernet header (skipped as link_truncated)"),
    k("zeek__tunnels__gtp__gtp1_gn_normal_incl_fragmentation.pcap", Why::TunnelOuter("GTP-U"), c(1, 0, 1, 0, 0),
      "the UDP 2152 conversation, which is IP-fragmented: kscflow opens the GTP-U packet in each of the 40 first \
       fragments (4 never complete) and skips the 36 later ones as orphan_fragment (a tunnel is not reassembled), so \
       the inner HTTP connection's server side counts 45 packets where tshark counts 41 reassembled ones"),
    k("zeek__tunnels__vxlan-encapsulated-http.pcap", Why::TunnelOuter("VXLAN"), c(1, 0, 0, 0, 0),
      "the UDP 4789 conversation; the inner HTTP connection agrees"),
    // IP fragments.
    k("suricata__defrag__bug-6942-6887-defrag-eth-ip-gre-ppp-ip-udp-data__eth-ip-gre-ppp-max-ip-packet.pcap",
      Why::Fragments, c(0, 0, 1, 0, 0),
      "one UDP datagram in 1024 IPv4 fragments, each in GRE version 1 (PPTP) carrying PPP: tshark counts the frame \
       that completes it, kscflow every fragment (1024 packets)"),
    k("ndpi__dns_fragmented.pcap", Why::Fragments, c(0, 0, 7, 0, 0), "7 DNS answers in 2 fragments each"),
    k("ndpi__ip_fragmented_garbage.pcap", Why::Fragments, c(0, 0, 2, 0, 0),
      "4 datagrams of 313 overlapping 16-byte fragments: tshark completes 2 (1 frame each) and never the other 2; kscflow \
       counts every fragment of the 2 it can attribute, and skips the 2 unfragmented 16-byte TCP datagrams as \
       malformed_transport (their 312 later fragments are orphans)"),
    k("ndpi__quic-fuzz-overflow.pcapng", Why::Fragments, c(0, 1, 0, 0, 0),
      "a lone first fragment (MF set) that never completes: no conversation for tshark, 1 packet for kscflow"),
    k("suricata__defrag__bug-6887-defrag-eth-vlan-ipv4-tcp-syn__frag-eth-vlan-ip-tcp-syn.pcap", Why::Fragments, c(0, 0, 1, 0, 0),
      "a SYN in 3 fragments; the first carries only 8 bytes of TCP header (no flags), so kscflow decides the client by the KSC port 8080 (same client as tshark)"),
    k("suricata__defrag__bug-6887-defrag-ipv4-tcp-syn__frag-ip-tcp-syn.pcap", Why::Fragments, c(0, 0, 1, 0, 0),
      "same as above without VLAN"),
    k("suricata__defrag__bug-6887-defrag-ipv6-tcp__frag-ip-tcp.pcap", Why::Fragments, c(0, 0, 1, 0, 0),
      "one IPv6 TCP segment in 3 fragments, ::1 to ::1"),
    k("suricata__security-8510__defrag-af-confusion-spray-h8.pcap", Why::Fragments, c(0, 0, 4096, 0, 0),
      "4096 IPv6 UDP datagrams in 2 fragments each (the IPv4 fragments carry proto 44 and are not TCP/UDP)"),
    k("zeek__ipv4__fragmented-1.pcap", Why::Fragments, c(0, 0, 1, 0, 0), "one UDP datagram in 3 fragments"),
    k("zeek__ipv4__fragmented-4.pcap", Why::Fragments, c(0, 0, 1, 0, 0), "TCP segments in fragments"),
    k("zeek__ipv4__fragmented-syn.pcap", Why::Fragments, c(0, 0, 1, 0, 0), "a SYN in 2 fragments"),
    k("zeek__ipv6-fragmented-dns.pcap", Why::Fragments, c(0, 0, 1, 0, 0), "a DNS answer in 3 IPv6 fragments"),
    // Malformed packets.
    k("ndpi__fuzz-2006-06-26-2594.pcap", Why::Fragments, c(0, 0, 1, 0, 0),
      "a DNS query with MF set that never completes: kscflow counts it (4 packets), tshark does not (3)"),
    k("suricata__firewall__tcp-session-decode-malformed-ipv4__input.pcap", Why::Malformed, c(0, 0, 1, 0, 0),
      "one IPv4 packet with a security option of length 2: tshark stops at IP, kscflow (like tcpdump) reads the \
       TCP header after IHL and counts it (+1 packet, +67 bytes)"),
    k("zeek__tcp__truncated-header.pcap", Why::Malformed, c(0, 0, 1, 0, 0),
      "the first SYN's TCP header is cut by the snap length: tshark leaves it out (23 of 24 frames), kscflow counts it"),
    k("tcpdump__tcp_header_heapoverflow.pcap", Why::Malformed, c(0, 1, 0, 0, 0),
      "snap length 46 cuts the TCP header after the ports: kscflow keeps the 5-tuple (by design, src/decode.rs), tshark drops it"),
    k("tcpdump__udp-length-heapoverflow.pcap", Why::Malformed, c(0, 1, 0, 0, 0),
      "snap length 38 leaves 4 bytes of UDP header: kscflow keeps the ports, tshark drops it"),
];

/// Open kscflow bugs found with this corpus: they are NOT allowed, the test
/// fails on them; this only points the failure at the explanation.
/// Remove an entry when the bug is fixed.
const OPEN_BUGS: &[(&str, &str)] = &[];

// ---------------------------------------------------------------------------
// Running kscflow.
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Reader {
    /// No `--reader` option: the default (fast) reader.
    Fast,
    Libpcap,
}

impl Reader {
    const ALL: [Reader; 2] = [Reader::Fast, Reader::Libpcap];
    fn name(self) -> &'static str {
        match self {
            Reader::Fast => "fast",
            Reader::Libpcap => "libpcap",
        }
    }
}

struct Run {
    reader: Reader,
    /// Exit status; None when killed (deadline) or ended by a signal.
    code: Option<i32>,
    hang: bool,
    secs: f64,
    stderr: String,
    /// The JSON report (exit 0 or 1).
    report: Option<Value>,
    /// One line per connection (exit 0 or 1).
    events: Vec<Value>,
    /// Robustness failures.
    problems: Vec<String>,
}

fn run(file: &Path, reader: Reader, dir: &Path, tag: usize) -> Run {
    let out = dir.join(format!("{tag}.out"));
    let err = dir.join(format!("{tag}.err"));
    let ev = dir.join(format!("{tag}.events"));
    let mut cmd = Command::new(BIN);
    cmd.arg("audit").arg(file).args(["--format", "json", "--no-progress", "--events"]).arg(&ev);
    if reader == Reader::Libpcap {
        cmd.args(["--reader", "libpcap"]);
    }
    cmd.stdin(Stdio::null())
        .stdout(File::create(&out).unwrap())
        .stderr(File::create(&err).unwrap())
        .env("RUST_BACKTRACE", "1");
    let start = Instant::now();
    let mut child = cmd.spawn().expect("spawn kscflow");
    let mut hang = false;
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break Some(st);
        }
        if start.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            hang = true;
            break None;
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let secs = start.elapsed().as_secs_f64();
    let stderr = fs::read_to_string(&err).unwrap_or_default();
    let code = status.and_then(|s| s.code());
    let mut r = Run { reader, code, hang, secs, stderr, report: None, events: Vec::new(), problems: Vec::new() };
    let name = reader.name();
    if hang {
        r.problems.push(format!("{name}: hang: killed after {}s", DEADLINE.as_secs()));
        return r;
    }
    if r.stderr.contains("panicked") || r.stderr.contains("stack backtrace") {
        r.problems.push(format!("{name}: panic: {}", first_lines(&r.stderr, 6)));
    }
    match code {
        Some(0) | Some(1) => {
            let stdout = fs::read_to_string(&out).unwrap_or_default();
            match serde_json::from_str::<Value>(&stdout) {
                Ok(v) if v["capture"]["files"].is_array() => r.report = Some(v),
                Ok(_) => r.problems.push(format!("{name}: JSON report without capture.files")),
                Err(e) => r.problems.push(format!("{name}: report is not JSON: {e}")),
            }
            match fs::read_to_string(&ev) {
                Ok(text) => {
                    for (i, line) in text.lines().enumerate() {
                        match serde_json::from_str::<Value>(line) {
                            Ok(v) => r.events.push(v),
                            Err(e) => {
                                r.problems.push(format!("{name}: events line {}: {e}", i + 1));
                                break;
                            }
                        }
                    }
                }
                Err(e) => r.problems.push(format!("{name}: no events file: {e}")),
            }
        }
        Some(2) => {
            if r.stderr.trim().is_empty() {
                r.problems.push(format!("{name}: exit 2 without a message on stderr"));
            }
        }
        Some(c) => r
            .problems
            .push(format!("{name}: exit status {c} (expected 0, 1 or 2); stderr: {}", first_lines(&r.stderr, 6))),
        None => r.problems.push(format!("{name}: killed by a signal; stderr: {}", first_lines(&r.stderr, 6))),
    }
    r
}

fn first_lines(s: &str, n: usize) -> String {
    s.lines().take(n).collect::<Vec<_>>().join(" | ")
}

// ---------------------------------------------------------------------------
// Conversations, as tshark counts them.
// ---------------------------------------------------------------------------

type Ep = (IpAddr, u16);

/// Transport + unordered endpoint pair (`lo` <= `hi`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    transport: String,
    lo: Ep,
    hi: Ep,
}

impl Key {
    fn new(transport: &str, a: Ep, b: Ep) -> (Key, bool) {
        let a_is_lo = a <= b;
        let (lo, hi) = if a_is_lo { (a, b) } else { (b, a) };
        (Key { transport: transport.to_string(), lo, hi }, a_is_lo)
    }
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} <-> {}", self.transport, ep(self.lo), ep(self.hi))
    }
}

fn ep((a, p): Ep) -> String {
    match a {
        IpAddr::V4(_) => format!("{a}:{p}"),
        IpAddr::V6(_) => format!("[{a}]:{p}"),
    }
}

/// Totals of one conversation; index 0 = sent by `lo`, 1 = sent by `hi`.
#[derive(Clone, Debug, Default)]
struct Conv {
    packets: [u64; 2],
    bytes: [u64; 2],
    /// tshark rows / kscflow connections summed here.
    parts: usize,
    bytes_exact: bool,
    /// kscflow: (client, direction) of each connection.
    clients: Vec<(Ep, String)>,
}

fn ip(v: &Value) -> Result<IpAddr, String> {
    v.as_str()
        .ok_or_else(|| format!("address is not a string: {v}"))?
        .parse()
        .map_err(|e| format!("bad address {v}: {e}"))
}

fn port(v: &Value) -> Result<u16, String> {
    v.as_u64().and_then(|p| u16::try_from(p).ok()).ok_or_else(|| format!("bad port {v}"))
}

fn num(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

struct Truth {
    convs: BTreeMap<Key, Conv>,
    /// TCP conversation -> the senders of tshark's first SYN of each stream.
    initiators: BTreeMap<Key, BTreeSet<Ep>>,
}

fn truth_convs(t: &Value) -> Result<Truth, String> {
    let mut convs: BTreeMap<Key, Conv> = BTreeMap::new();
    for transport in ["tcp", "udp"] {
        let rows = t[format!("{transport}_conversations")].as_array().ok_or("truth without conversations")?;
        for r in rows {
            let a = (ip(&r["address_a"])?, port(&r["port_a"])?);
            let b = (ip(&r["address_b"])?, port(&r["port_b"])?);
            let (key, a_is_lo) = Key::new(transport, a, b);
            let (ia, ib) = if a_is_lo { (0, 1) } else { (1, 0) };
            let c = convs.entry(key).or_insert_with(|| Conv { bytes_exact: true, ..Conv::default() });
            c.parts += 1;
            c.packets[ia] += num(&r["frames_a_to_b"]);
            c.packets[ib] += num(&r["frames_b_to_a"]);
            c.bytes[ia] += num(&r["bytes_a_to_b"]);
            c.bytes[ib] += num(&r["bytes_b_to_a"]);
            c.bytes_exact &= r["bytes_exact"].as_bool() == Some(true);
        }
    }
    let mut initiators: BTreeMap<Key, BTreeSet<Ep>> = BTreeMap::new();
    for i in t["tcp_initiators"].as_array().into_iter().flatten() {
        let client = (ip(&i["client"])?, port(&i["client_port"])?);
        let server = (ip(&i["server"])?, port(&i["server_port"])?);
        let (key, _) = Key::new("tcp", client, server);
        initiators.entry(key).or_default().insert(client);
    }
    Ok(Truth { convs, initiators })
}

fn kscflow_convs(events: &[Value]) -> Result<BTreeMap<Key, Conv>, String> {
    let mut convs: BTreeMap<Key, Conv> = BTreeMap::new();
    for e in events {
        let transport = e["transport"].as_str().ok_or("event without transport")?;
        let client = (ip(&e["client"])?, port(&e["client_port"])?);
        let server = (ip(&e["server"])?, port(&e["server_port"])?);
        let (key, client_is_lo) = Key::new(transport, client, server);
        let (ic, is) = if client_is_lo { (0, 1) } else { (1, 0) };
        let c = convs.entry(key).or_default();
        c.parts += 1;
        c.packets[ic] += num(&e["packets_to_server"]);
        c.packets[is] += num(&e["packets_to_client"]);
        c.bytes[ic] += num(&e["bytes_to_server"]);
        c.bytes[is] += num(&e["bytes_to_client"]);
        let dir = e["direction"].as_str().unwrap_or("?").to_string();
        c.clients.push((client, dir));
    }
    Ok(convs)
}

/// Every disagreement between kscflow and tshark on one file.
#[derive(Default)]
struct Diffs {
    counts: Counts,
    details: Vec<String>,
    /// Initiators that agree, decided otherwise than by a SYN.
    notes: BTreeSet<String>,
    /// Missing conversations with no tunnel port (4789, 6081, 2152) on
    /// either side.
    missing_not_tunnel: Vec<String>,
    /// Fragment sanity: directions where kscflow counts fewer packets than
    /// tshark, or packets where tshark has none.
    fragment_guard: Vec<String>,
}

fn compare(truth: &Truth, ksc: &BTreeMap<Key, Conv>) -> Diffs {
    let mut d = Diffs::default();
    let pair = |k: &Key, v: [u64; 2]| format!("{} {} / {} {}", ep(k.lo), v[0], ep(k.hi), v[1]);
    for (key, t) in &truth.convs {
        let Some(x) = ksc.get(key) else {
            d.counts.missing += 1;
            if key.transport != "udp" || ![key.lo.1, key.hi.1].iter().any(|p| matches!(p, 4789 | 6081 | 2152)) {
                d.missing_not_tunnel.push(key.to_string());
            }
            d.details.push(format!("missing: {key} (tshark packets sent: {})", pair(key, t.packets)));
            continue;
        };
        if t.packets != x.packets {
            d.counts.packets += 1;
            d.details.push(format!(
                "packets: {key}: tshark {} | kscflow {}",
                pair(key, t.packets),
                pair(key, x.packets)
            ));
            for i in 0..2 {
                if x.packets[i] < t.packets[i] || (t.packets[i] == 0) != (x.packets[i] == 0) {
                    let who = if i == 0 { key.lo } else { key.hi };
                    d.fragment_guard.push(format!(
                        "{key}: sent by {}: kscflow {} packets, tshark {}",
                        ep(who),
                        x.packets[i],
                        t.packets[i]
                    ));
                }
            }
        } else if t.bytes_exact && t.bytes != x.bytes {
            d.counts.bytes += 1;
            d.details.push(format!("bytes: {key}: tshark {} | kscflow {}", pair(key, t.bytes), pair(key, x.bytes)));
        }
    }
    for (key, x) in ksc {
        if !truth.convs.contains_key(key) {
            d.counts.extra += 1;
            d.details.push(format!(
                "extra: {key} (kscflow packets sent: {}; direction {})",
                pair(key, x.packets),
                x.clients.iter().map(|c| c.1.as_str()).collect::<Vec<_>>().join(",")
            ));
        }
        let Some(init) = truth.initiators.get(key) else {
            continue;
        };
        for (client, dir) in &x.clients {
            if !init.contains(client) {
                d.counts.initiator += 1;
                d.details.push(format!(
                    "initiator: {key}: kscflow client {} (direction {dir}), tshark's SYN from {}",
                    ep(*client),
                    init.iter().map(|e| ep(*e)).collect::<Vec<_>>().join(", ")
                ));
            } else if dir != "syn" {
                d.notes.insert(format!("initiator agrees, decided by {dir}"));
            }
        }
    }
    d
}

fn counts_text(c: Counts) -> String {
    let mut parts = Vec::new();
    for (n, what) in [
        (c.missing, "missing"),
        (c.extra, "extra"),
        (c.packets, "packet counts"),
        (c.bytes, "byte counts"),
        (c.initiator, "initiator"),
    ] {
        if n > 0 {
            parts.push(format!("{n} {what}"));
        }
    }
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(", ")
    }
}

// ---------------------------------------------------------------------------
// Corpus files.
// ---------------------------------------------------------------------------

struct Manifest {
    linktype: String,
    /// `tcpdump --count` (libpcap 1.10).
    libpcap_packets: Option<u64>,
    /// capinfos (Wireshark's reader), when it read the whole file.
    wireshark_packets: Option<u64>,
}

fn read_manifest(corpus: &Path) -> BTreeMap<String, Manifest> {
    let mut m = BTreeMap::new();
    let Ok(text) = fs::read_to_string(corpus.join("MANIFEST.tsv")) else {
        return m;
    };
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or("").split('\t').collect();
    let col = |name: &str| header.iter().position(|h| *h == name);
    let (Some(cf), Some(cl), Some(cp), Some(clp)) =
        (col("file"), col("linktype"), col("packets"), col("libpcap_packets"))
    else {
        return m;
    };
    for line in lines {
        let f: Vec<&str> = line.split('\t').collect();
        let get = |i: usize| f.get(i).copied().unwrap_or("");
        let name = get(cf).trim_start_matches("pcaps/").to_string();
        m.insert(
            name,
            Manifest {
                linktype: get(cl).split(" (").next().unwrap_or("").to_string(),
                libpcap_packets: get(clp).parse().ok(),
                wireshark_packets: get(cp).parse().ok(),
            },
        );
    }
    m
}

fn corpus_dir() -> Option<PathBuf> {
    let dir = match std::env::var_os("KSCFLOW_CORPUS") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus"),
    };
    if dir.join("pcaps").is_dir() {
        Some(dir)
    } else {
        println!(
            "corpus not found at {} (no pcaps/ directory), skipping the corpus test; \
             set KSCFLOW_CORPUS to its location",
            dir.display()
        );
        None
    }
}

/// The part of a run both readers must agree on.
fn reader_view(r: &Run) -> (Vec<String>, String) {
    let mut ev: Vec<String> = r.events.iter().map(|e| e.to_string()).collect();
    ev.sort();
    let cap = r.report.as_ref().map(|v| &v["capture"]);
    let summary = match cap {
        Some(c) => {
            let files: Vec<String> = c["files"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|f| {
                    format!(
                        "packets {} bytes {} link types {} broken {}",
                        f["packets"],
                        f["bytes"],
                        f["link_types"],
                        !f["error"].is_null()
                    )
                })
                .collect();
            format!("{}; skipped {}", files.join("; "), c["skipped"])
        }
        None => String::new(),
    };
    (ev, summary)
}

fn skipped(report: &Value, reason: &str) -> u64 {
    num(&report["capture"]["skipped"][reason])
}

// ---------------------------------------------------------------------------
// One file: all checks, one table row.
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Verdict {
    Agrees,
    Documented,
    CannotOpen,
    NoTruth,
    Failed,
}

struct FileResult {
    verdict: Verdict,
    row: String,
    failures: Vec<String>,
}

fn md(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn check_file(corpus: &Path, name: &str, runs: &[Run], manifest: Option<&Manifest>) -> FileResult {
    let mut failures: Vec<String> = Vec::new();
    let mut result = String::new();
    let mut verdict = Verdict::Agrees;
    for r in runs {
        failures.extend(r.problems.iter().cloned());
    }
    let ok: Vec<&Run> = runs.iter().filter(|r| matches!(r.code, Some(0) | Some(1)) && r.report.is_some()).collect();

    // Files that cannot be opened.
    // A file whose every packet has a link type kscflow does not decode
    // cannot be audited: both readers must refuse it (exit 2) and say so.
    let undecoded = !runs.is_empty() && runs.iter().all(|r| r.code == Some(2) && r.stderr.contains("is not decoded"));
    let not_decoded =
        (name, "is not decoded", "link type not decoded: kscflow would skip every packet, so it refuses the run");
    let cannot = CANNOT_OPEN.iter().find(|c| c.0 == name).or(undecoded.then_some(&not_decoded));
    for r in runs {
        if r.code == Some(2) {
            match cannot {
                Some((_, word, _)) if r.stderr.to_lowercase().contains(word) => {}
                Some((_, word, _)) => failures.push(format!(
                    "{}: exit 2 but the message does not say {word:?}: {}",
                    r.reader.name(),
                    first_lines(&r.stderr, 3)
                )),
                // A documented reader limitation: that reader refuses the file.
                None if r.reader == Reader::Libpcap
                    && READER_DIFFERENCES.iter().any(|d| d.0 == name)
                    && r.stderr.contains("no packet could be read") => {}
                None => {
                    failures.push(format!("{}: could not run (exit 2): {}", r.reader.name(), first_lines(&r.stderr, 3)))
                }
            }
        } else if cannot.is_some() && !r.hang {
            failures.push(format!("{}: listed in CANNOT_OPEN but exited {:?}: stale entry?", r.reader.name(), r.code));
        }
    }
    if let Some((_, _, why)) = cannot {
        verdict = Verdict::CannotOpen;
        let msg = runs
            .iter()
            .find(|r| r.code == Some(2))
            .map(|r| {
                let path = corpus.join("pcaps").join(name);
                r.stderr.trim().replace(&path.display().to_string(), name)
            })
            .unwrap_or_default();
        result = format!("cannot open ({why}); both readers exit 2: `{}`", msg);
    }

    // Packets read, against the manifest.
    for r in &ok {
        let got = num(&r.report.as_ref().unwrap()["capture"]["packets"]);
        if let Some(m) = manifest {
            let mut accept: Vec<u64> = m.libpcap_packets.into_iter().collect();
            if r.reader == Reader::Fast {
                accept.extend(m.wireshark_packets);
            }
            if !accept.is_empty() && !accept.contains(&got) {
                failures.push(format!(
                    "{}: read {got} packets; libpcap reads {:?}, Wireshark {:?}",
                    r.reader.name(),
                    m.libpcap_packets,
                    m.wireshark_packets
                ));
            }
        }
    }

    // Both readers, the same connections.
    let reader_note = READER_DIFFERENCES.iter().find(|d| d.0 == name);
    let mut readers_col = String::from(if ok.len() == 2 { "same" } else { "–" });
    if ok.len() == 2 {
        let (ea, sa) = reader_view(ok[0]);
        let (eb, sb) = reader_view(ok[1]);
        let same = ea == eb && sa == sb;
        match (same, reader_note) {
            (true, None) => {}
            (true, Some(_)) => {
                failures.push("readers agree although READER_DIFFERENCES lists this file: stale entry?".into())
            }
            (false, Some((_, why))) => readers_col = format!("differ (documented): {why}"),
            (false, None) => {
                readers_col = "**differ**".into();
                let only_a = ea.iter().filter(|e| !eb.contains(e)).count();
                let only_b = eb.iter().filter(|e| !ea.contains(e)).count();
                let mut msg = format!(
                    "fast and libpcap readers disagree: {only_a} connection event(s) only with fast, {only_b} only with libpcap"
                );
                if sa != sb {
                    let _ = write!(msg, "; fast: {sa}; libpcap: {sb}");
                }
                for e in ea.iter().filter(|e| !eb.contains(e)).take(2) {
                    let _ = write!(msg, "\n      fast only: {e}");
                }
                for e in eb.iter().filter(|e| !ea.contains(e)).take(2) {
                    let _ = write!(msg, "\n      libpcap only: {e}");
                }
                failures.push(msg);
            }
        }
    } else if cannot.is_some() {
        readers_col = "both exit 2".into();
    }

    // Against tshark.
    let truth_path = corpus.join("truth").join(format!("{name}.json"));
    let (mut tshark_col, mut ksc_col) = (String::from("–"), String::from("–"));
    if let Some(r0) = ok.first() {
        let n = r0.events.len();
        let convs = kscflow_convs(&r0.events).map(|c| c.len()).unwrap_or(0);
        ksc_col = format!("{convs} ({n} conn.)");
    }
    if cannot.is_none() {
        match fs::read_to_string(&truth_path) {
            Err(_) => {
                verdict = Verdict::NoTruth;
                let lt = manifest.map(|m| m.linktype.as_str()).unwrap_or("?");
                result = format!("no truth: tshark cannot read link type {lt}; kscflow runs clean");
            }
            Ok(text) => {
                let truth =
                    serde_json::from_str::<Value>(&text).map_err(|e| e.to_string()).and_then(|v| truth_convs(&v));
                match truth {
                    Err(e) => failures.push(format!("unreadable truth {}: {e}", truth_path.display())),
                    Ok(truth) => {
                        let tcp = truth.convs.keys().filter(|k| k.transport == "tcp").count();
                        tshark_col = format!("{} ({tcp} tcp)", truth.convs.len());
                        let mut per_reader = Vec::new();
                        for r in &ok {
                            per_reader.push(compare_one(name, r, &truth, &mut failures));
                        }
                        let (first_text, first_verdict) =
                            per_reader.first().cloned().unwrap_or_else(|| ("not compared".into(), Verdict::Failed));
                        verdict = first_verdict;
                        result = first_text;
                        if per_reader.len() == 2 && per_reader[0] != per_reader[1] {
                            result = format!("fast: {}; libpcap: {}", per_reader[0].0, per_reader[1].0);
                            verdict = verdict.max(per_reader[1].1);
                        }
                    }
                }
            }
        }
    }

    if !failures.is_empty() {
        verdict = Verdict::Failed;
        let bugs: Vec<&str> = OPEN_BUGS.iter().filter(|b| b.0 == name).map(|b| b.1).collect();
        if !bugs.is_empty() {
            failures.push(format!("open bug: {}", bugs.join("; ")));
            result = format!("**BUG**: {}", bugs.join("; "));
        } else {
            result = format!("**FAILS**: {}", failures.join("; "));
        }
    }
    let packets = ok
        .iter()
        .map(|r| num(&r.report.as_ref().unwrap()["capture"]["packets"]).to_string())
        .collect::<Vec<_>>()
        .join(" / ");
    let row = format!(
        "| `{}` | {} | {} | {} | {} | {} | {} |",
        name,
        md(manifest.map(|m| m.linktype.as_str()).unwrap_or("?")),
        if packets.is_empty() { "–".into() } else { packets },
        tshark_col,
        ksc_col,
        md(&readers_col),
        md(&result)
    );
    FileResult { verdict, row, failures }
}

/// Compares one reader's connections with tshark; pushes failures; returns
/// the table text and verdict.
fn compare_one(name: &str, r: &Run, truth: &Truth, failures: &mut Vec<String>) -> (String, Verdict) {
    let rn = r.reader.name();
    let ksc = match kscflow_convs(&r.events) {
        Ok(k) => k,
        Err(e) => {
            failures.push(format!("{rn}: bad event: {e}"));
            return (format!("bad events: {e}"), Verdict::Failed);
        }
    };
    let d = compare(truth, &ksc);
    let known = KNOWN.iter().find(|k| k.file == name && k.reader.is_none_or(|x| x == r.reader));
    let expected = known.map(|k| k.counts).unwrap_or_default();
    let report = r.report.as_ref().unwrap();
    let notes = if d.notes.is_empty() {
        String::new()
    } else {
        format!(" ({})", d.notes.iter().cloned().collect::<Vec<_>>().join("; "))
    };
    if d.counts != expected {
        let mut msg = match known {
            Some(k) => format!(
                "{rn}: disagreements with tshark do not match the KNOWN entry ({}): expected {}, found {}",
                k.why.text(),
                counts_text(expected),
                counts_text(d.counts)
            ),
            None => {
                format!("{rn}: disagrees with tshark ({}) and no documented difference applies", counts_text(d.counts))
            }
        };
        for line in d.details.iter().take(8) {
            let _ = write!(msg, "\n      {line}");
        }
        if d.details.len() > 8 {
            let _ = write!(msg, "\n      … {} more", d.details.len() - 8);
        }
        failures.push(msg);
    }
    // Mechanical checks that the documented reason really applies.
    if let Some(k) = known {
        match k.why {
            Why::LinkType(_) => {
                let all = num(&report["capture"]["packets"]);
                if skipped(report, "unsupported_link_type") != all || !ksc.is_empty() {
                    failures.push(format!(
                        "{rn}: KNOWN says the link type is not decoded, but kscflow skipped {} of {all} packets as unsupported and made {} conversations",
                        skipped(report, "unsupported_link_type"),
                        ksc.len()
                    ));
                }
            }
            Why::TunnelOuter(_) if !d.missing_not_tunnel.is_empty() || d.counts.extra != 0 => {
                failures.push(format!(
                    "{rn}: KNOWN says only outer tunnel conversations are missing, but these are not UDP to a tunnel port: {:?} (and {} extra)",
                    d.missing_not_tunnel, d.counts.extra
                ));
            }
            Why::Fragments | Why::TunnelOuter(_) if !d.fragment_guard.is_empty() => {
                failures.push(format!(
                    "{rn}: packet counts differ in a way fragments do not explain (kscflow must count at least tshark's packets, and none where tshark has none): {}",
                    d.fragment_guard.join("; ")
                ));
            }
            _ => {}
        }
    }
    if d.counts == Counts::default() {
        let text = if truth.convs.is_empty() {
            let lt: Vec<String> = report["capture"]["files"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|f| f["link_types"].as_array().cloned().unwrap_or_default())
                .filter_map(|v| v.as_str().map(String::from))
                .filter(|s| s.contains("not decoded"))
                .collect();
            if lt.is_empty() {
                "agrees (no TCP/UDP conversation)".to_string()
            } else {
                format!("agrees (no TCP/UDP conversation; kscflow does not decode {})", lt.join(", "))
            }
        } else {
            format!("agrees{notes}")
        };
        (text, Verdict::Agrees)
    } else {
        match known {
            Some(k) if d.counts == expected => (
                format!("differs, documented: {} ({}): {}{notes}", k.why.text(), counts_text(d.counts), k.note),
                Verdict::Documented,
            ),
            _ => (format!("differs: {}", counts_text(d.counts)), Verdict::Failed),
        }
    }
}

// ---------------------------------------------------------------------------
// The test.
// ---------------------------------------------------------------------------

#[test]
fn corpus_robustness_and_flow_accounting() {
    let Some(corpus) = corpus_dir() else {
        return;
    };
    let started = Instant::now();
    let mut files: Vec<String> = fs::read_dir(corpus.join("pcaps"))
        .expect("read pcaps/")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no files in {}", corpus.join("pcaps").display());
    let manifest = read_manifest(&corpus);

    // Every allow-list entry must name a corpus file.
    let names: BTreeSet<&str> = files.iter().map(String::as_str).collect();
    let mut stale: Vec<String> = Vec::new();
    for f in KNOWN
        .iter()
        .map(|k| k.file)
        .chain(CANNOT_OPEN.iter().map(|c| c.0))
        .chain(READER_DIFFERENCES.iter().map(|d| d.0))
        .chain(OPEN_BUGS.iter().map(|b| b.0))
    {
        if !names.contains(f) {
            stale.push(format!("allow-list names {f}, which is not in the corpus"));
        }
    }

    // Run kscflow: every file, both readers, in parallel.
    let tmp = tempfile::tempdir().expect("temp dir");
    let jobs: Vec<(usize, Reader)> = (0..files.len()).flat_map(|i| Reader::ALL.map(|r| (i, r))).collect();
    let results: Mutex<Vec<Option<Run>>> = Mutex::new((0..jobs.len()).map(|_| None).collect());
    let next = AtomicUsize::new(0);
    let workers = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2).clamp(1, 4);
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let j = next.fetch_add(1, Ordering::Relaxed);
                let Some(&(i, reader)) = jobs.get(j) else {
                    break;
                };
                let r = run(&corpus.join("pcaps").join(&files[i]), reader, tmp.path(), j);
                results.lock().unwrap()[j] = Some(r);
            });
        }
    });
    let mut results: Vec<Run> = results.into_inner().unwrap().into_iter().map(|r| r.expect("every job ran")).collect();
    let run_secs = started.elapsed().as_secs_f64();
    let slowest = results
        .iter()
        .zip(&jobs)
        .max_by(|a, b| a.0.secs.total_cmp(&b.0.secs))
        .map(|(r, (i, _))| format!("{} ({}, {:.2}s)", files[*i], r.reader.name(), r.secs))
        .unwrap_or_default();

    // Check each file.
    let mut table = String::new();
    let _ = writeln!(
        table,
        "| file | link type | packets read (fast / libpcap) | tshark conversations | kscflow conversations (connections) | readers | result |"
    );
    let _ = writeln!(table, "|---|---|---|---|---|---|---|");
    let mut tally: BTreeMap<Verdict, usize> = BTreeMap::new();
    let mut all_failures: Vec<String> = Vec::new();
    let mut per_file = results.chunks_mut(2);
    for name in &files {
        let runs = per_file.next().unwrap();
        let fr = check_file(&corpus, name, runs, manifest.get(name));
        *tally.entry(fr.verdict).or_default() += 1;
        let _ = writeln!(table, "{}", fr.row);
        if !fr.failures.is_empty() {
            all_failures.push(format!("{name}:\n    {}", fr.failures.join("\n    ")));
        }
    }
    all_failures.extend(stale);

    let count = |v: Verdict| tally.get(&v).copied().unwrap_or(0);
    let summary = format!(
        "{} files: {} agree with tshark, {} differ for a documented reason, {} cannot be opened (documented), \
         {} have no tshark truth (ran clean), {} FAIL. {} kscflow runs in {:.1}s on {} threads (slowest: {}).",
        files.len(),
        count(Verdict::Agrees),
        count(Verdict::Documented),
        count(Verdict::CannotOpen),
        count(Verdict::NoTruth),
        count(Verdict::Failed),
        jobs.len(),
        run_secs,
        workers,
        slowest
    );
    println!("{table}\n{summary}");
    if let Some(path) = std::env::var_os("KSCFLOW_CORPUS_TABLE") {
        fs::write(&path, format!("{table}\n{summary}\n")).expect("write KSCFLOW_CORPUS_TABLE");
    }
    assert!(
        all_failures.is_empty(),
        "{} corpus problem(s) (see tests/CORPUS.md):\n  {}\n{summary}",
        all_failures.len(),
        all_failures.join("\n  ")
    );
}
