//! Benchmarks of the per-packet hot path (`cargo bench --bench hot_path`).
//!
//! Three groups, each reporting packets per second (`Throughput::Elements`):
//!
//! - `decode`: [`decode::decode`] on single kinds of frame (Ethernet IPv4
//!   TCP with and without payload, 802.1Q VLAN, IPv6, UDP) and on a strided
//!   sample of the realistic stream below.
//! - `flow_update`: [`FlowTable::update`] over a pre-decoded stream of about
//!   60 k packets on 10 k flows: full TCP handshakes with data and FIN, TLS
//!   1.2 ClientHellos on a third of the flows, mid-stream TCP, UDP, IPv6,
//!   VLAN, refused and unanswered SYNs.
//! - `flow_update/large_table_500k_hits`: 200 k pure ACKs to flows of a
//!   table holding 500 k live entries (far beyond the caches): the cost of
//!   a lookup that misses, which dominates long captures.
//! - `per_packet`: [`Engine::on_frame`] on the same stream as raw frames:
//!   the whole per-packet path (facts, link dispatch, decode, flow update,
//!   conversation sink).
//!
//! `fresh_table` starts every iteration from an empty table (the table's
//! growth is measured, its drop is not); `steady` keeps one table across
//! iterations, so each SYN lands on a finished connection of the previous
//! round and closes it into the conversation sink (connection churn).
//!
//! Every frame is built with `etherparse::PacketBuilder` in the setup; the
//! ClientHello is a hand-built TLS 1.2 record checked by `tls::inspect_client_hello`.
//! Measurement time is 3 s per bench so that the suite stays short on a 2-core VM.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use etherparse::{PacketBuilder, VlanId};

use kscflow::audit::Engine;
use kscflow::capture::Frame;
use kscflow::conversation::{Conversations, KscScope};
use kscflow::decode::{decode, tcp_flags as F, Decoded, Link, Packet};
use kscflow::flow::{FlowConfig, FlowTable, Ts};
use kscflow::rules::RuleSet;
use kscflow::tls::{self, Inspect, TlsVersion};

/// Flows in the realistic stream.
const FLOWS: u32 = 10_000;
/// Flows opened together: within a chunk the stream goes stage by stage
/// (all SYNs, all SYN-ACKs, ...), so about this many connections are in
/// flight at once while finished ones stay in the table until the end.
const CHUNK: u32 = 1_000;
/// Capture time between two packets (µs): 60 k packets span ~1.2 s, so the
/// table's 10 s sweep runs once, on the first packet.
const GAP: Ts = 20;
/// Frames per single-kind decode batch.
const BATCH: usize = 1024;
/// Frames in the decode mix (a strided sample of the stream).
const MIX: usize = 4096;

// ---------------------------------------------------------------- frames

#[derive(Clone, Copy)]
enum Addrs {
    V4([u8; 4], [u8; 4]),
    V6([u8; 16], [u8; 16]),
}

/// One flow: endpoints as seen from its client.
#[derive(Clone, Copy)]
struct Flow {
    addrs: Addrs,
    vlan: Option<u16>,
    cport: u16,
    sport: u16,
}

#[derive(Clone, Copy)]
enum L4 {
    Tcp { flags: u8, seq: u32, ack: u32 },
    Udp,
}

const CMAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const SMAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

/// An Ethernet frame of `flow`, sent by the client when `from_client`.
fn frame(flow: &Flow, from_client: bool, l4: L4, payload: &[u8]) -> Vec<u8> {
    let (smac, dmac, sp, dp) =
        if from_client { (CMAC, SMAC, flow.cport, flow.sport) } else { (SMAC, CMAC, flow.sport, flow.cport) };
    let mut v = Vec::with_capacity(128 + payload.len());
    macro_rules! finish {
        ($ip:expr) => {{
            match l4 {
                L4::Udp => $ip.udp(sp, dp).write(&mut v, payload).unwrap(),
                L4::Tcp { flags, seq, ack } => {
                    let mut b = $ip.tcp(sp, dp, seq, 64240);
                    if flags & F::SYN != 0 {
                        b = b.syn();
                    }
                    if flags & F::ACK != 0 {
                        b = b.ack(ack);
                    }
                    if flags & F::FIN != 0 {
                        b = b.fin();
                    }
                    if flags & F::RST != 0 {
                        b = b.rst();
                    }
                    if flags & F::PSH != 0 {
                        b = b.psh();
                    }
                    b.write(&mut v, payload).unwrap()
                }
            }
        }};
    }
    let eth = PacketBuilder::ethernet2(smac, dmac);
    match (flow.vlan, flow.addrs) {
        (None, Addrs::V4(c, s)) => {
            let (a, b) = if from_client { (c, s) } else { (s, c) };
            finish!(eth.ipv4(a, b, 64))
        }
        (None, Addrs::V6(c, s)) => {
            let (a, b) = if from_client { (c, s) } else { (s, c) };
            finish!(eth.ipv6(a, b, 64))
        }
        (Some(id), Addrs::V4(c, s)) => {
            let (a, b) = if from_client { (c, s) } else { (s, c) };
            finish!(eth.single_vlan(VlanId::try_new(id).unwrap()).ipv4(a, b, 64))
        }
        (Some(id), Addrs::V6(c, s)) => {
            let (a, b) = if from_client { (c, s) } else { (s, c) };
            finish!(eth.single_vlan(VlanId::try_new(id).unwrap()).ipv6(a, b, 64))
        }
    }
    v
}

/// A minimal TLS 1.2 ClientHello record: one cipher suite pair, SNI,
/// supported_groups, ec_point_formats, signature_algorithms.
fn client_hello(sni: &str) -> Vec<u8> {
    fn ext(out: &mut Vec<u8>, ty: u16, data: &[u8]) {
        out.extend_from_slice(&ty.to_be_bytes());
        out.extend_from_slice(&(data.len() as u16).to_be_bytes());
        out.extend_from_slice(data);
    }
    let mut exts = Vec::new();
    let name = sni.as_bytes();
    let mut sn = Vec::new();
    sn.extend_from_slice(&(3 + name.len() as u16).to_be_bytes()); // server_name_list
    sn.push(0); // host_name
    sn.extend_from_slice(&(name.len() as u16).to_be_bytes());
    sn.extend_from_slice(name);
    ext(&mut exts, 0x0000, &sn);
    ext(&mut exts, 0x000a, &[0, 4, 0, 0x17, 0, 0x1d]);
    ext(&mut exts, 0x000b, &[1, 0]);
    ext(&mut exts, 0x000d, &[0, 4, 4, 1, 4, 3]);

    let mut body = vec![3, 3]; // client_version TLS 1.2
    body.extend_from_slice(&[0x5a; 32]); // random
    body.push(0); // session_id
    body.extend_from_slice(&[0, 4, 0xc0, 0x2f, 0x00, 0x9c]); // cipher_suites
    body.extend_from_slice(&[1, 0]); // compression: null
    body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
    body.extend_from_slice(&exts);

    let mut hs = vec![1]; // client_hello
    hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend_from_slice(&body);

    let mut rec = vec![0x16, 3, 1];
    rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    rec.extend_from_slice(&hs);
    rec
}

/// The stream as a capture reader would hold it: every frame back to back
/// in one buffer (like the fast reader's read buffer), plus an index.
struct Stream {
    buf: Vec<u8>,
    /// (timestamp, start, end) of each frame in `buf`.
    index: Vec<(Ts, usize, usize)>,
}

impl Stream {
    fn len(&self) -> usize {
        self.index.len()
    }
    fn iter(&self) -> impl Iterator<Item = (Ts, &[u8])> + '_ {
        self.index.iter().map(|&(ts, a, b)| (ts, &self.buf[a..b]))
    }
}

fn v4_client(i: u32) -> [u8; 4] {
    [10, 1 + (i >> 16) as u8, (i >> 8) as u8, i as u8]
}

fn v6(net: u16, host: u32) -> [u8; 16] {
    let mut a = [0u8; 16];
    a[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
    a[4..6].copy_from_slice(&net.to_be_bytes());
    a[12..].copy_from_slice(&host.to_be_bytes());
    a
}

/// The packets of flow `i`, in order. Kinds by `i % 10`:
/// 0–2 TCP to KSC 13000 with a TLS ClientHello (every 20th on VLAN 10),
/// 3–4 TCP HTTP plaintext, 5 TCP over IPv6 with a ClientHello to 443,
/// 6 mid-stream TCP (TLS application data both ways), 7 UDP to KSC 15000,
/// 8 UDP DNS over IPv6, 9 SYN refused by RST or unanswered twice (VLAN 20).
fn flow_packets(i: u32, hello: &[u8]) -> Vec<Vec<u8>> {
    let srv4 = [10, 0, 0, 1 + (i % 16) as u8];
    let cport = 49152 + (i % 16000) as u16;
    let v4 = |sport, vlan| Flow { addrs: Addrs::V4(v4_client(i), srv4), vlan, cport, sport };
    let isn = 1000 + i.wrapping_mul(7919);
    let sisn = 5000 + i.wrapping_mul(104729);
    let tcp = |flags, seq, ack| L4::Tcp { flags, seq, ack };
    let full = |f: &Flow, client_data: &[u8], server_data: &[u8]| {
        let c1 = isn + 1;
        let s1 = sisn + 1;
        let c2 = c1 + client_data.len() as u32;
        let s2 = s1 + server_data.len() as u32;
        vec![
            frame(f, true, tcp(F::SYN, isn, 0), b""),
            frame(f, false, tcp(F::SYN | F::ACK, sisn, c1), b""),
            frame(f, true, tcp(F::ACK, c1, s1), b""),
            frame(f, true, tcp(F::ACK | F::PSH, c1, s1), client_data),
            frame(f, false, tcp(F::ACK | F::PSH, s1, c2), server_data),
            frame(f, true, tcp(F::FIN | F::ACK, c2, s2), b""),
            frame(f, false, tcp(F::FIN | F::ACK, s2, c2 + 1), b""),
            frame(f, true, tcp(F::ACK, c2 + 1, s2 + 1), b""),
        ]
    };
    let server_hello_ish =
        [0x16u8, 3, 3, 0, 40].iter().copied().chain(std::iter::repeat_n(0x33, 40)).collect::<Vec<u8>>();
    match i % 10 {
        0..=2 => {
            let vlan = i.is_multiple_of(20).then_some(10);
            full(&v4(13000, vlan), hello, &server_hello_ish)
        }
        3 | 4 => full(
            &v4(8080, None),
            b"GET /ksc/status HTTP/1.1\r\nHost: ksc\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        ),
        5 => {
            let f = Flow { addrs: Addrs::V6(v6(1, i), v6(0xff, 1 + i % 16)), vlan: None, cport, sport: 443 };
            full(&f, hello, &server_hello_ish)
        }
        6 => {
            let f = v4(13000, None);
            let app = [0x17u8, 3, 3, 0, 32].iter().copied().chain(std::iter::repeat_n(0x44, 32)).collect::<Vec<u8>>();
            vec![
                frame(&f, true, tcp(F::ACK | F::PSH, isn, sisn), &app),
                frame(&f, false, tcp(F::ACK, sisn, isn + 37), b""),
                frame(&f, false, tcp(F::ACK | F::PSH, sisn, isn + 37), &app),
                frame(&f, true, tcp(F::ACK, isn + 37, sisn + 37), b""),
            ]
        }
        7 => {
            let f = v4(15000, None);
            vec![
                frame(&f, true, L4::Udp, &[0x5c; 24]),
                frame(&f, false, L4::Udp, &[0x5d; 16]),
                frame(&f, true, L4::Udp, &[0x5c; 24]),
            ]
        }
        8 => {
            let f = Flow { addrs: Addrs::V6(v6(2, i), v6(0xff, 0x35)), vlan: None, cport, sport: 53 };
            vec![frame(&f, true, L4::Udp, &[0x11; 30]), frame(&f, false, L4::Udp, &[0x22; 46])]
        }
        _ => {
            let f = v4(13291, Some(20));
            if i % 20 == 9 {
                vec![frame(&f, true, tcp(F::SYN, isn, 0), b""), frame(&f, false, tcp(F::RST | F::ACK, 0, isn + 1), b"")]
            } else {
                vec![frame(&f, true, tcp(F::SYN, isn, 0), b""), frame(&f, true, tcp(F::SYN, isn, 0), b"")]
            }
        }
    }
}

/// The whole stream: ~60 k frames over `FLOWS` flows, interleaved.
fn stream() -> Stream {
    let hello = client_hello("ksc.corp.example");
    match tls::inspect_client_hello(&hello) {
        Inspect::Hello(h) => {
            assert_eq!(h.version, TlsVersion::TLS12);
            assert_eq!(h.sni, Some("ksc.corp.example"));
        }
        other => panic!("hand-built ClientHello does not parse: {other:?}"),
    }
    let mut out = Stream { buf: Vec::new(), index: Vec::new() };
    let mut ts: Ts = 1_764_000_000 * 1_000_000;
    let mut start = 0;
    while start < FLOWS {
        let n = CHUNK.min(FLOWS - start);
        let flows: Vec<Vec<Vec<u8>>> = (start..start + n).map(|i| flow_packets(i, &hello)).collect();
        let stages = flows.iter().map(Vec::len).max().unwrap_or(0);
        for s in 0..stages {
            // Visit the chunk's flows in a scrambled order (7919 is prime, n = 1000).
            for j in 0..n {
                let k = (j as u64 * 7919 % n as u64) as usize;
                if let Some(f) = flows[k].get(s) {
                    // 16 bytes between frames, as a pcap record header.
                    out.buf.extend_from_slice(&[0; 16]);
                    let a = out.buf.len();
                    out.buf.extend_from_slice(f);
                    out.index.push((ts, a, out.buf.len()));
                    ts += GAP;
                }
            }
        }
        start += n;
    }
    out
}

fn frames(s: &Stream) -> Vec<Frame<'_>> {
    s.iter().map(|(ts, data)| Frame { ts, wire_len: data.len() as u32, linktype: 1, data }).collect()
}

fn decoded(s: &Stream) -> Vec<(Ts, u32, Packet<'_>)> {
    s.iter()
        .map(|(ts, data)| match decode(Link::Ethernet, data) {
            Decoded::Packet(p) => (ts, data.len() as u32, p),
            other => panic!("stream frame does not decode: {other:?}"),
        })
        .collect()
}

// ---------------------------------------------------------------- benches

/// Builds the i-th frame of a single-kind decode batch.
type MakeFrame = fn(u32) -> Vec<u8>;

fn bench_decode(c: &mut Criterion) {
    let kinds: [(&str, MakeFrame); 6] = [
        ("eth_ipv4_tcp_syn", |i| {
            let f = Flow {
                addrs: Addrs::V4(v4_client(i), [10, 0, 0, 1]),
                vlan: None,
                cport: 40000 + i as u16,
                sport: 13000,
            };
            frame(&f, true, L4::Tcp { flags: F::SYN, seq: i, ack: 0 }, b"")
        }),
        ("eth_ipv4_tcp_payload200", |i| {
            let f = Flow {
                addrs: Addrs::V4(v4_client(i), [10, 0, 0, 1]),
                vlan: None,
                cport: 40000 + i as u16,
                sport: 13000,
            };
            let l4 = L4::Tcp { flags: F::ACK | F::PSH, seq: i, ack: 1 };
            frame(&f, true, l4, &[0x61u8; 200])
        }),
        ("vlan_ipv4_tcp", |i| {
            let f = Flow {
                addrs: Addrs::V4(v4_client(i), [10, 0, 0, 1]),
                vlan: Some(100),
                cport: 40000 + i as u16,
                sport: 13000,
            };
            frame(&f, true, L4::Tcp { flags: F::ACK, seq: i, ack: 1 }, b"")
        }),
        ("eth_ipv6_tcp", |i| {
            let f = Flow { addrs: Addrs::V6(v6(1, i), v6(0xff, 1)), vlan: None, cport: 40000 + i as u16, sport: 443 };
            frame(&f, true, L4::Tcp { flags: F::ACK, seq: i, ack: 1 }, &[0x17; 40])
        }),
        ("eth_ipv4_udp", |i| {
            let f = Flow {
                addrs: Addrs::V4(v4_client(i), [10, 0, 0, 1]),
                vlan: None,
                cport: 40000 + i as u16,
                sport: 15000,
            };
            frame(&f, true, L4::Udp, &[0x5c; 24])
        }),
        ("eth_ipv6_udp", |i| {
            let f = Flow { addrs: Addrs::V6(v6(2, i), v6(0xff, 0x35)), vlan: None, cport: 40000 + i as u16, sport: 53 };
            frame(&f, true, L4::Udp, &[0x11; 30])
        }),
    ];

    let mut g = c.benchmark_group("decode");
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(3));
    g.throughput(Throughput::Elements(BATCH as u64));
    for (name, make) in kinds {
        let batch: Vec<Vec<u8>> = (0..BATCH as u32).map(make).collect();
        for f in &batch {
            assert!(matches!(decode(Link::Ethernet, f), Decoded::Packet(_)), "{name}");
        }
        g.bench_function(name, |b| {
            b.iter(|| {
                for f in &batch {
                    black_box(decode(Link::Ethernet, black_box(f)));
                }
            })
        });
    }

    let recs = stream();
    let step = (recs.len() / MIX).max(1);
    let mix: Vec<&[u8]> = recs.iter().step_by(step).take(MIX).map(|(_, d)| d).collect();
    g.throughput(Throughput::Elements(mix.len() as u64));
    g.bench_function("mix_stream_sample", |b| {
        b.iter(|| {
            for f in &mix {
                black_box(decode(Link::Ethernet, black_box(f)));
            }
        })
    });
    g.finish();
}

fn bench_flow_update(c: &mut Criterion) {
    let rules = RuleSet::builtin();
    let recs = stream();
    let pkts = decoded(&recs);
    let mut g = c.benchmark_group("flow_update");
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(3));
    g.sample_size(20);
    g.throughput(Throughput::Elements(pkts.len() as u64));
    g.bench_function("fresh_table", |b| {
        b.iter_batched(
            || (FlowTable::new(FlowConfig::default()), Conversations::new(&rules, None, false, usize::MAX)),
            |(mut table, mut convs)| {
                for (ts, len, p) in &pkts {
                    table.update(*ts, *len, black_box(p), &KscScope { rules: &rules, inventory: None }, &mut convs);
                }
                (table, convs)
            },
            BatchSize::PerIteration,
        )
    });
    let mut table = FlowTable::new(FlowConfig::default());
    let mut convs = Conversations::new(&rules, None, false, usize::MAX);
    // Each round continues the capture in time (the stream shifted by its
    // own span): the same timestamps again would make every closed
    // connection's linger never come due and measure that instead.
    let span = pkts.last().map_or(0, |(ts, ..)| *ts) - pkts.first().map_or(0, |(ts, ..)| *ts) + 1;
    let mut round = 0;
    g.bench_function("steady", |b| {
        b.iter(|| {
            round += 1;
            for (ts, len, p) in &pkts {
                let ts = *ts + round * span;
                table.update(ts, *len, black_box(p), &KscScope { rules: &rules, inventory: None }, &mut convs);
            }
        })
    });
    g.finish();
    black_box((table.len(), convs.observed.map.len()));

    // A table far larger than the caches, as in a long capture where closed
    // TCP connections linger 30 s and UDP flows 120 s (the 10 M-packet
    // `big` fixture peaks at ~480 k entries): every lookup misses.
    let (big, probes) = large_table_streams(LARGE_FLOWS, LARGE_PROBES);
    let big_pkts = decoded(&big);
    let probe_pkts = decoded(&probes);
    let mut table = FlowTable::new(FlowConfig::default());
    for (ts, len, p) in &big_pkts {
        table.update(*ts, *len, p, &KscScope { rules: &rules, inventory: None }, &mut convs);
    }
    assert_eq!(table.len(), LARGE_FLOWS as usize);
    let mut g = c.benchmark_group("flow_update");
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(3));
    g.sample_size(10);
    g.throughput(Throughput::Elements(probe_pkts.len() as u64));
    g.bench_function("large_table_500k_hits", |b| {
        b.iter(|| {
            for (ts, len, p) in &probe_pkts {
                table.update(*ts, *len, black_box(p), &KscScope { rules: &rules, inventory: None }, &mut convs);
            }
        })
    });
    g.finish();
    assert_eq!(table.len(), LARGE_FLOWS as usize);
}

/// Live flows in the large-table bench.
const LARGE_FLOWS: u32 = 500_000;
/// Packets per iteration of the large-table bench (ACKs to existing flows).
const LARGE_PROBES: u32 = 200_000;

/// SYNs opening `flows` TCP flows, then `probes` pure ACKs from their
/// clients in scattered order (no payload, so no TLS inspection).
fn large_table_streams(flows: u32, probes: u32) -> (Stream, Stream) {
    let flow = |i: u32| Flow {
        addrs: Addrs::V4([10, 64 + (i >> 16) as u8, (i >> 8) as u8, i as u8], [10, 0, 0, 1 + (i % 64) as u8]),
        vlan: None,
        cport: 1024 + (i % 60_000) as u16,
        sport: [13000, 443, 445, 80][(i % 4) as usize],
    };
    let t0: Ts = 1_764_000_000 * 1_000_000;
    let mut open = Stream { buf: Vec::new(), index: Vec::new() };
    for i in 0..flows {
        let f = frame(&flow(i), true, L4::Tcp { flags: F::SYN, seq: i, ack: 0 }, b"");
        let a = open.buf.len();
        open.buf.extend_from_slice(&f);
        open.index.push((t0, a, open.buf.len()));
    }
    let mut probe = Stream { buf: Vec::new(), index: Vec::new() };
    for j in 0..probes {
        let i = (j as u64 * 1_000_003 % flows as u64) as u32;
        let l4 = L4::Tcp { flags: F::ACK, seq: i + 1, ack: 1 };
        let f = frame(&flow(i), true, l4, b"");
        probe.buf.extend_from_slice(&[0; 16]);
        let a = probe.buf.len();
        probe.buf.extend_from_slice(&f);
        probe.index.push((t0 + 1, a, probe.buf.len()));
    }
    (open, probe)
}

fn bench_per_packet(c: &mut Criterion) {
    let rules = RuleSet::builtin();
    let recs = stream();
    let frames = frames(&recs);
    let mut g = c.benchmark_group("per_packet");
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(3));
    g.sample_size(20);
    g.throughput(Throughput::Elements(frames.len() as u64));
    g.bench_function("fresh_table", |b| {
        b.iter_batched(
            || Engine::new(&rules, None, FlowConfig::default(), usize::MAX, false),
            |mut engine| {
                for f in &frames {
                    engine.on_frame(black_box(*f));
                }
                engine
            },
            BatchSize::PerIteration,
        )
    });
    let mut engine = Engine::new(&rules, None, FlowConfig::default(), usize::MAX, false);
    let span = frames.last().map_or(0, |f| f.ts) - frames.first().map_or(0, |f| f.ts) + 1;
    let mut round = 0;
    g.bench_function("steady", |b| {
        b.iter(|| {
            round += 1;
            for f in &frames {
                engine.on_frame(black_box(Frame { ts: f.ts + round * span, ..*f }));
            }
        })
    });
    g.finish();
    engine.finish();
    black_box(engine.facts.packets);
}

criterion_group!(benches, bench_decode, bench_flow_update, bench_per_packet);
criterion_main!(benches);
