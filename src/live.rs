//! `kscflow live`: the audit's engine on a network interface, for weeks.
//!
//! One engine, two sources: frames come from [`crate::capture::live`] instead of
//! files and go through the same [`Engine`] as an audit, so a verdict means
//! the same thing in both. What differs is time:
//!
//! - every [`LiveConfig::report_every`] the JSON report (audit's contract) is
//!   written to a temporary file and renamed over the old one, so a reader
//!   never sees half a report, and a one-line summary goes to the log;
//! - every [`FINDINGS_EVERY`] the traffic so far is judged, and what became
//!   unexpected, insecure or missing since the last look (or came back from
//!   missing) is written once, as one JSON line, to the findings stream;
//! - finished connections are appended to `--events` as they are judged,
//!   flushed, and the file is reopened on SIGHUP (logrotate's `postrotate`);
//! - SIGINT or SIGTERM ends the capture within [`POLL_WAIT`] even on a
//!   silent interface, and the final report holds everything seen.
//!
//! The interface is opened (and the events file) before root is given up
//! ([`crate::privileges`]); no packet is parsed as root.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::audit::{AuditResult, Engine, FileFacts};
use crate::capture::live::{Drops, LiveOptions, LiveSource};
use crate::classify::{Status, Verdict};
use crate::conversation::ConvKey;
use crate::flow::FlowConfig;
use crate::inventory::Inventory;
use crate::report;
use crate::rules::{Role, RuleSet, Transport};

/// What to capture and where to write.
#[derive(Clone, Debug)]
pub struct LiveConfig {
    pub source: LiveOptions,
    /// Compile a BPF filter from the rules and the inventory, so the kernel
    /// drops traffic that cannot be KSC before it reaches kscflow.
    pub auto_filter: bool,
    /// The user's own BPF filter; with the automatic one, both must pass.
    pub filter: Option<String>,
    pub flow: FlowConfig,
    /// Conversations kept one by one; beyond, folded into groups.
    pub max_conversations: usize,
    /// The JSON report, rewritten every `report_every` and at the end.
    pub report: Option<PathBuf>,
    pub report_every: Duration,
    /// One JSON line per finished connection, appended.
    pub events: Option<PathBuf>,
    /// Stop after this long, or this many packets.
    pub duration: Option<Duration>,
    pub count: Option<u64>,
    /// Become this user once the interface is open.
    pub user: Option<String>,
}

/// How often the traffic so far is judged for new findings.
pub const FINDINGS_EVERY: Duration = Duration::from_secs(10);
/// Longest wait for a packet before the loop looks at signals and clocks.
pub const POLL_WAIT: Duration = Duration::from_millis(200);
/// Frames handed over per call, between looks at signals and clocks.
const BATCH: usize = 512;

/// The BPF filter (tcpdump syntax) that keeps what may be KSC traffic:
/// the rules' KSC and shared ports, every port of the inventory's KSC
/// infrastructure hosts and of its `[[allow]]` servers, and IP fragments
/// after the first (they carry no ports and must meet their first). On
/// Ethernet the same again behind one 802.1Q tag (`vlan` shifts the
/// offsets of what follows it).
pub fn auto_filter(rules: &RuleSet, inventory: Option<&Inventory>, ethernet: bool) -> String {
    let mut terms = Vec::new();
    for t in [Transport::Tcp, Transport::Udp] {
        let mut ports: Vec<u16> = rules.ksc_ports.ports(t).chain(rules.shared_ports.ports(t)).collect();
        ports.sort_unstable();
        ports.dedup();
        let list: Vec<String> = ranges(&ports)
            .into_iter()
            .map(|(a, b)| if a == b { format!("port {a}") } else { format!("portrange {a}-{b}") })
            .collect();
        if !list.is_empty() {
            terms.push(format!("({} and ({}))", t.name(), list.join(" or ")));
        }
    }
    if let Some(inv) = inventory {
        for h in &inv.hosts {
            if rules.expand(h.roles).intersects(Role::INFRASTRUCTURE) {
                terms.push(format!("net {}", h.net));
            }
        }
        for a in &inv.allows {
            terms.push(format!("(net {} and {})", a.server, a.transport.name()));
        }
    }
    terms.push("(ip and ip[6:2] & 0x1fff != 0)".into());
    terms.push("(ip6 and ip6[6] == 44)".into());
    let core = terms.join(" or ");
    if ethernet {
        format!("({core}) or (vlan and ({core}))")
    } else {
        core
    }
}

/// Runs of consecutive values of sorted `v`, as (first, last).
fn ranges(v: &[u16]) -> Vec<(u16, u16)> {
    let mut out: Vec<(u16, u16)> = Vec::new();
    for &p in v {
        match out.last_mut() {
            Some((_, last)) if p > 0 && *last == p - 1 => *last = p,
            _ => out.push((p, p)),
        }
    }
    out
}

/// One line of the findings stream.
#[derive(Serialize)]
struct FindingLine<'a> {
    finding: &'static str,
    time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    client: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    server: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    server_port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    transport: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expectation: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rule: Option<&'a str>,
    reason: &'a str,
    seed: &'a [u32],
}

/// What has been reported as a finding already: each is said once. Only
/// what the latest judgement still holds is remembered (at most the
/// conversation limit): a conversation folded away, or a group that
/// changed, and seen again is said again.
#[derive(Default)]
struct Said {
    flagged: hashbrown::HashSet<(ConvKey, Verdict)>,
    missing: hashbrown::HashSet<(std::net::IpAddr, String)>,
}

impl Said {
    /// Writes the findings of `r` not said before; returns how many.
    fn tell(&mut self, rules: &RuleSet, r: &AuditResult, out: &mut dyn Write) -> std::io::Result<usize> {
        let now = report::rfc3339(r.capture.last_ts.unwrap_or(0));
        let mut n = 0;
        let mut now_flagged = hashbrown::HashSet::new();
        for j in &r.assessment.flows {
            if j.verdict == Verdict::Expected {
                continue;
            }
            now_flagged.insert((j.key, j.verdict));
            if self.flagged.contains(&(j.key, j.verdict)) {
                continue;
            }
            let line = FindingLine {
                finding: j.verdict.name(),
                time: now.clone(),
                client: Some(j.client.label()),
                server: Some(j.server.label()),
                server_port: Some(j.key.server_port),
                transport: Some(j.key.transport.name()),
                host: None,
                expectation: None,
                rule: j.rule.map(|i| rules.rules[i].id.as_str()),
                reason: &j.reason,
                seed: &j.seed,
            };
            write_line(out, &line)?;
            n += 1;
        }
        let mut now_missing = hashbrown::HashSet::new();
        for m in r.assessment.missing.iter().filter(|m| m.status == Status::Missing) {
            let id = (m.host.addr, m.expectation.clone());
            if !self.missing.contains(&id) {
                let line = FindingLine {
                    finding: "missing",
                    time: now.clone(),
                    client: None,
                    server: None,
                    server_port: None,
                    transport: None,
                    host: Some(m.host.label()),
                    expectation: Some(&m.expectation),
                    rule: None,
                    reason: &m.reason,
                    seed: &m.seed,
                };
                write_line(out, &line)?;
                n += 1;
            }
            now_missing.insert(id);
        }
        for (host, expectation) in self.missing.difference(&now_missing) {
            let line = FindingLine {
                finding: "recovered",
                time: now.clone(),
                client: None,
                server: None,
                server_port: None,
                transport: None,
                host: Some(host.to_string()),
                expectation: Some(expectation),
                rule: None,
                reason: "seen again: the expectation is met",
                seed: &[],
            };
            write_line(out, &line)?;
            n += 1;
        }
        self.missing = now_missing;
        self.flagged = now_flagged;
        out.flush()?;
        Ok(n)
    }
}

/// This host's name, so that results merged from several sensors say which
/// saw what (Linux: the kernel's UTS name).
fn sensor_name() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    Some(name.trim().to_string()).filter(|n| !n.is_empty())
}

fn write_line(out: &mut dyn Write, v: &impl Serialize) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, v)?;
    out.write_all(b"\n")
}

fn write_error(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> crate::Error {
    let what = what.into();
    move |source| crate::Error::Write { what, source }
}

fn open_events(path: &Path) -> Result<BufWriter<File>, crate::Error> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map(BufWriter::new)
        .map_err(write_error(path.display().to_string()))
}

/// Writes `r` to `path` through a temporary file in the same directory
/// and a rename: readers see the old report or the new one, never half.
fn write_report_atomically(
    path: &Path,
    rules: &RuleSet,
    inventory_name: Option<&str>,
    r: &AuditResult,
) -> Result<(), crate::Error> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "report.json".into());
    let tmp = dir.join(format!(".{name}.tmp"));
    let what = || format!("{} (its directory must be writable by the user kscflow runs as)", tmp.display());
    let mut f = BufWriter::new(File::create(&tmp).map_err(write_error(what()))?);
    report::write_json(&mut f, rules, inventory_name, r).map_err(write_error(what()))?;
    let f = f.into_inner().map_err(|e| crate::Error::Write { what: what(), source: e.into_error() })?;
    f.sync_all().map_err(write_error(what()))?;
    std::fs::rename(&tmp, path).map_err(write_error(path.display().to_string()))
}

/// Runs the capture until a signal, `duration` or `count`; returns the final
/// result. `findings` gets one JSON line per new finding, `log` the
/// periodic one-line summaries and warnings.
pub fn run(
    rules: &RuleSet,
    inventory: Option<&Inventory>,
    inventory_name: Option<&str>,
    cfg: &LiveConfig,
    findings: &mut dyn Write,
    log: &mut dyn Write,
) -> Result<AuditResult, crate::Error> {
    let iface = cfg.source.interface.clone();
    let mut src = LiveSource::open(&cfg.source)?;
    let auto = cfg.auto_filter.then(|| auto_filter(rules, inventory, src.linktype() == 1));
    let filter = match (&auto, &cfg.filter) {
        (Some(a), Some(u)) => Some(format!("({a}) and ({u})")),
        (a, u) => a.clone().or_else(|| u.clone()),
    };
    if let Some(f) = &filter {
        src.set_filter(f)?;
    }
    let mut events = cfg.events.as_deref().map(open_events).transpose()?;

    // Flags only: the work happens in the loop. A second SIGINT while
    // stopping ends the process at once.
    let stop = Arc::new(AtomicBool::new(false));
    let hup = Arc::new(AtomicBool::new(false));
    let sig = |e: std::io::Error| crate::Error::Live { interface: iface.clone(), message: format!("signals: {e}") };
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    signal_hook::flag::register_conditional_shutdown(SIGINT, 130, Arc::clone(&stop)).map_err(sig)?;
    for s in [SIGINT, SIGTERM] {
        signal_hook::flag::register(s, Arc::clone(&stop)).map_err(sig)?;
    }
    signal_hook::flag::register(SIGHUP, Arc::clone(&hup)).map_err(sig)?;

    if let Some(user) = &cfg.user {
        let (uid, gid) = crate::privileges::drop_to(user)?;
        let _ = writeln!(log, "kscflow: capturing on {iface}; now running as {user} (uid {uid}, gid {gid})");
    } else {
        let _ = writeln!(log, "kscflow: capturing on {iface}");
    }
    if let Some(f) = &filter {
        let _ = writeln!(log, "kscflow: BPF filter: {f}");
    }

    let mut engine = Engine::new(rules, inventory, cfg.flow, cfg.max_conversations, cfg.events.is_some());
    engine.facts.sensor = sensor_name();
    engine.facts.files.push(FileFacts {
        path: format!("live:{iface}").into(),
        linktypes: vec![src.linktype()],
        ..Default::default()
    });
    let started = Instant::now();
    let mut said = Said::default();
    let mut next_report = started;
    let mut next_findings = started + FINDINGS_EVERY;
    let mut last_drops = Drops::default();
    loop {
        let want = cfg.count.map_or(BATCH, |c| c.saturating_sub(engine.facts.packets).min(BATCH as u64) as usize);
        if want == 0 || stop.load(Ordering::Relaxed) || cfg.duration.is_some_and(|d| started.elapsed() >= d) {
            break;
        }
        if let Err(message) = src.next_batch(want, POLL_WAIT, &mut |f| engine.on_frame(f)) {
            let _ = writeln!(log, "kscflow: capture on {iface} failed: {message}; writing the report of what was seen");
            break;
        }
        if hup.swap(false, Ordering::Relaxed) {
            if let Some(p) = &cfg.events {
                if let Some(mut old) = events.take() {
                    let _ = old.flush();
                }
                events = Some(open_events(p)?);
            }
        }
        let now = Instant::now();
        if now >= next_findings || now >= next_report {
            // Capture time is the kernel's wall clock: let it pass for the
            // connections too, packets or not.
            engine.tick(wall_clock_us());
            next_findings = now + FINDINGS_EVERY;
            let drops = note_source(&mut engine, &mut src);
            let r = engine.snapshot(wall_clock_us());
            said.tell(rules, &r, findings).map_err(write_error("the findings stream"))?;
            if let (Some(out), Some(done)) = (&mut events, engine.convs.records.as_mut()) {
                report::write_events(out, rules, &r, done).map_err(write_error("the events file"))?;
                out.flush().map_err(write_error("the events file"))?;
                done.clear();
            }
            if now >= next_report {
                next_report = now + cfg.report_every;
                if let Some(p) = &cfg.report {
                    write_report_atomically(p, rules, inventory_name, &r)?;
                }
                summary(log, &iface, &r, drops, &mut last_drops);
            }
        }
    }

    // The end: every open connection finishes, one last judgement.
    engine.finish();
    let drops = note_source(&mut engine, &mut src);
    let mut r = engine.into_result(Some(wall_clock_us()));
    said.tell(rules, &r, findings).map_err(write_error("the findings stream"))?;
    if let (Some(out), Some(done)) = (&mut events, r.records.take()) {
        report::write_events(out, rules, &r, &done).map_err(write_error("the events file"))?;
        out.flush().map_err(write_error("the events file"))?;
    }
    if let Some(p) = &cfg.report {
        write_report_atomically(p, rules, inventory_name, &r)?;
    }
    summary(log, &iface, &r, drops, &mut last_drops);
    Ok(r)
}

/// Brings the capture facts up to date with the source: libpcap's
/// counters, and the interface's totals as its "file".
fn note_source(engine: &mut Engine<'_>, src: &mut LiveSource) -> Drops {
    let drops = src.drops();
    let facts = &mut engine.facts;
    facts.drops = Some(drops);
    facts.files[0].packets = facts.packets;
    facts.files[0].bytes = facts.bytes;
    drops
}

fn wall_clock_us() -> crate::flow::Ts {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros().min(crate::capture::TS_LIMIT as u128) as crate::flow::Ts)
}

/// The periodic one-line summary, and a warning when drops grew.
fn summary(log: &mut dyn Write, iface: &str, r: &AuditResult, drops: Drops, last: &mut Drops) {
    let a = &r.assessment;
    let count = |v: Verdict| a.flows.iter().filter(|j| j.verdict == v).count();
    let missing = a.missing.iter().filter(|m| m.status == Status::Missing).count();
    let _ = writeln!(
        log,
        "kscflow: {iface}: {} packets, {} conversations ({} expected, {} insecure, {} unexpected), {} missing; \
         libpcap received {}, dropped {}, interface dropped {}",
        r.capture.packets,
        a.flows.len(),
        count(Verdict::Expected),
        count(Verdict::Insecure),
        count(Verdict::Unexpected),
        missing,
        drops.received,
        drops.dropped,
        drops.if_dropped,
    );
    if drops.dropped > last.dropped || drops.if_dropped > last.if_dropped {
        let _ = writeln!(
            log,
            "kscflow: warning: {} packets dropped since the last report ({} by the kernel ring: raise --buffer-mib or \
             narrow --filter; {} by the interface, a lower bound on Linux)",
            (drops.dropped - last.dropped) + (drops.if_dropped - last.if_dropped),
            drops.dropped - last.dropped,
            drops.if_dropped - last.if_dropped,
        );
    }
    *last = drops;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_of_ports() {
        assert_eq!(ranges(&[1, 2, 3, 5, 7, 8]), vec![(1, 3), (5, 5), (7, 8)]);
        assert_eq!(ranges(&[0, 1, 65535]), vec![(0, 1), (65535, 65535)]);
        assert!(ranges(&[]).is_empty());
    }

    /// The automatic filter must be valid BPF: compiled here by libpcap
    /// for Ethernet (with the VLAN clause) and for Linux SLL2 (`-i any`).
    #[test]
    fn auto_filter_compiles_and_covers_ksc_ports() {
        let rules = RuleSet::builtin();
        let inv = Inventory::parse(
            Path::new("t.toml"),
            "[[host]]\nname = \"ksc\"\naddr = \"10.0.0.10\"\nrole = \"administration-server\"\n\n\
             [[host]]\nname = \"lan\"\naddr = \"10.0.1.0/24\"\nrole = \"managed-device\"\n",
        )
        .unwrap();
        for (ethernet, lt) in [(true, pcap::Linktype::ETHERNET), (false, pcap::Linktype(276))] {
            let f = auto_filter(&rules, Some(&inv), ethernet);
            assert!(f.contains("13000") && f.contains("net 10.0.0.10/32"), "{f}");
            assert!(!f.contains("10.0.1.0"), "managed devices are not infrastructure: {f}");
            let dead = pcap::Capture::dead(lt).unwrap();
            dead.compile(&f, true).unwrap_or_else(|e| panic!("{e}: {f}"));
        }
    }
}
