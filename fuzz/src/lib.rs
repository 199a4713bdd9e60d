//! The bodies of kscflow's fuzz targets, in one place.
//!
//! Each `fuzz_targets/NAME.rs` is one line calling `NAME` here, and the
//! stable test `tests/fuzz_corpus.rs` of kscflow includes this file by path
//! and replays every file of `fuzz/corpus/NAME` through the same function,
//! so CI catches a regression without nightly or libFuzzer. This file must
//! therefore use only `kscflow` and `std`.
//!
//! A body returns normally for any input; a panic, an abort, a hang or
//! unbounded memory is the bug the fuzzer looks for. The few `assert!`s
//! check documented contracts, not implementation details.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use kscflow::audit::{audit, AuditConfig};
use kscflow::capture::Reader;
use kscflow::decode::{self, Decoded, Link};
use kscflow::flow::{ConnRecord, FlowConfig, FlowTable, Scope, Ts, SEC};
use kscflow::inventory::Inventory;
use kscflow::rules::{RoleSet, RuleSet, Transport};
use kscflow::tls::{self, Inspect};

/// Every link type [`Link`] decodes; the first input byte picks one.
pub const LINKS: [Link; 5] = [Link::Ethernet, Link::LinuxSll, Link::LinuxSll2, Link::RawIp, Link::Null];

/// Separates the frames of one `decode` input (after the selector byte).
pub const FRAME_SEP: &[u8] = b"--8<";

fn builtin_rules() -> &'static RuleSet {
    static RULES: OnceLock<RuleSet> = OnceLock::new();
    RULES.get_or_init(RuleSet::builtin)
}

/// A scope that judges every connection possibly KSC, so that every first
/// payload goes through the TLS inspection and hello reassembly; server
/// ports are the built-in table's.
struct EverythingMayBeKsc(&'static RuleSet);

impl Scope for EverythingMayBeKsc {
    fn ksc_port(&self, t: Transport, port: u16) -> bool {
        self.0.ksc_ports.contains(t, port)
    }
    fn may_be_ksc(&self, _: IpAddr, _: IpAddr, _: Transport, _: u16) -> bool {
        true
    }
}

/// `decode`: packet decoding on every supported link type, and the flow
/// table behind it.
///
/// Input: byte 0 selects the link type (`LINKS[b % 5]`) and the time step
/// between frames (`(b >> 3) & 3`: 1 ms, 1 s, 61 s, 3601 s, so that
/// handshake, UDP and TCP idle timeouts all fire); the rest is one or more
/// frames separated by [`FRAME_SEP`]. Each frame is decoded and fed to a
/// small [`FlowTable`] (8 flows, 8 fragment ids, so eviction paths run),
/// which is drained at the end.
pub fn decode(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else { return };
    let link = LINKS[sel as usize % LINKS.len()];
    let step: Ts = [SEC / 1000, SEC, 61 * SEC, 3601 * SEC][(sel as usize >> 3) & 3];
    let scope = EverythingMayBeKsc(builtin_rules());
    let mut table = FlowTable::new(FlowConfig { max_flows: 8, max_fragments: 8, ..FlowConfig::default() });
    let mut closed = 0u64;
    let mut sink = |_: ConnRecord| closed += 1;
    let mut ts: Ts = 1_768_467_600 * SEC;
    for frame in split(rest, FRAME_SEP) {
        ts += step;
        let _ = decode::quick_addresses(link, frame);
        let wire_len = frame.len() as u32;
        match decode::decode(link, frame) {
            Decoded::Packet(p) => {
                assert!(p.payload.len() <= frame.len(), "payload longer than the frame");
                table.prefetch(&p);
                table.update(ts, wire_len, &p, &scope, &mut sink);
            }
            Decoded::LaterFragment(id) => {
                let _ = table.update_fragment(ts, wire_len, &id);
            }
            Decoded::Skip(s) => {
                let _ = (s.key(), s.describe());
            }
        }
        assert!(table.len() <= 8, "flow table above its cap: {}", table.len());
    }
    let mut live = 0u64;
    table.each_live(&mut |_: ConnRecord| live += 1);
    table.advance(ts + 3601 * SEC, &mut sink);
    table.drain(&mut sink);
    assert!(table.is_empty());
}

/// Splits `data` at every `sep` (like `str::split`).
fn split<'a>(data: &'a [u8], sep: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
    let mut rest = Some(data);
    std::iter::from_fn(move || {
        let r = rest?;
        match r.windows(sep.len()).position(|w| w == sep) {
            Some(i) => {
                rest = Some(&r[i + sep.len()..]);
                Some(&r[..i])
            }
            None => {
                rest = None;
                Some(r)
            }
        }
    })
}

/// `tls_hello`: the ClientHello parser, whole and on prefixes, as the flow
/// table calls it while a hello arrives segment by segment.
pub fn tls_hello(data: &[u8]) {
    let whole = tls::inspect_client_hello(data);
    check_tls_contract(data, whole);
    let _ = tls::looks_like_tls_record(data);
    if let Inspect::Hello(h) = whole {
        let _ = (h.version.name(), h.version.is_obsolete(), h.record_version.name(), h.legacy_version.name());
        if let Some(sni) = h.sni {
            assert!(within(data, sni.as_bytes()), "SNI does not point into the buffer");
        }
        if let Some(alpn) = h.alpn_first {
            assert!(within(data, alpn), "ALPN does not point into the buffer");
        }
    }
    // The flow table asks again with a longer buffer after `NeedMore`: a
    // prefix of a buffer holding a complete hello must not be refused.
    let cuts = [data.len() / 2, data.len().saturating_sub(1), 5.min(data.len())];
    for &n in &cuts {
        let p = tls::inspect_client_hello(&data[..n]);
        check_tls_contract(&data[..n], p);
        if matches!(whole, Inspect::Hello(_)) {
            assert!(
                matches!(p, Inspect::NeedMore | Inspect::Hello(_)),
                "prefix of {n} bytes of a complete hello gave {p:?}"
            );
        }
    }
}

/// `inspect_client_hello`'s documented link with `looks_like_tls`: for five
/// bytes or more, `NotTls` exactly when `looks_like_tls` is false.
fn check_tls_contract(buf: &[u8], r: Inspect<'_>) {
    if buf.len() >= 5 {
        assert_eq!(matches!(r, Inspect::NotTls), !tls::looks_like_tls(buf), "NotTls vs looks_like_tls on {buf:02x?}");
    }
}

fn within(buf: &[u8], part: &[u8]) -> bool {
    let (b, p) = (buf.as_ptr() as usize, part.as_ptr() as usize);
    part.is_empty() || (p >= b && p + part.len() <= b + buf.len())
}

/// Checks what every configuration error must be: located when it has a
/// line, within the text, and printable.
fn check_config_error(text: &str, e: &kscflow::ConfigError) {
    let shown = e.to_string();
    assert!(!shown.is_empty() && !e.message.is_empty());
    if e.line > 0 {
        assert!(e.column > 0, "line without column: {shown}");
        assert!(e.line <= text.matches('\n').count() + 1, "line {} beyond the text: {shown}", e.line);
    }
}

/// `rules_toml`: parsing and validating a rules file, then printing it
/// (`kscflow rules`) and asking it the hot-path questions.
pub fn rules_toml(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    match RuleSet::parse(Path::new("fuzz.toml"), &text) {
        Err(e) => check_config_error(&text, &e),
        Ok(rs) => {
            let _ = rs.to_string();
            for r in &rs.rules {
                for &p in &r.ports {
                    assert!(rs.candidates(r.transport, p).iter().any(|&i| rs.rules[i].id == r.id));
                }
                let _ = (rs.expand(r.initiator), rs.expand(r.responder), r.source(), r.sni_matches("a.example.com"));
            }
            let _ = rs.expand(RoleSet(u16::MAX));
        }
    }
}

/// `inventory_toml`: parsing an inventory, then looking up addresses in
/// and around its networks.
pub fn inventory_toml(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    match Inventory::parse(Path::new("fuzz.inventory.toml"), &text) {
        Err(e) => check_config_error(&text, &e),
        Ok(inv) => {
            for h in &inv.hosts {
                for a in [h.net.addr(), h.net.network(), h.net.broadcast()] {
                    assert!(inv.lookup(a).is_some(), "{a} is in {} but not found", h.net);
                    let _ = inv.allowed(a, a, Transport::Tcp, 13000);
                }
            }
            for a in &inv.allows {
                let _ = inv.allowed(a.server.addr(), a.server.addr(), a.transport, a.ports[0]);
            }
        }
    }
}

static TEMP_SEQ: AtomicU64 = AtomicU64::new(0);

/// A file of the temporary directory removed on drop.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `capture_file`: the input as a capture file, audited with both readers
/// (fast with two threads, libpcap with one) through [`audit`], the
/// library's entry point for `kscflow audit`.
pub fn capture_file(data: &[u8]) {
    let n = TEMP_SEQ.fetch_add(1, Ordering::Relaxed);
    let file = TempFile(std::env::temp_dir().join(format!("kscflow-fuzz-{}-{n}.pcap", std::process::id())));
    std::fs::write(&file.0, data).expect("cannot write the temporary capture");
    for (reader, threads) in [(Reader::Fast, 2), (Reader::Libpcap, 1)] {
        let cfg = AuditConfig {
            files: vec![file.0.clone()],
            reader,
            keep_records: true,
            threads,
            flow: FlowConfig { max_flows: 64, ..FlowConfig::default() },
            ..AuditConfig::default()
        };
        if let Ok(r) = audit(builtin_rules(), None, &cfg) {
            let _ = (r.capture.duration_secs(), r.capture.damaged());
        }
    }
}
