//! Reports: the JSON document of the DESIGN.md contract, the terminal
//! summary (worst first, for the person reading it at 2 a.m.), and the
//! per-connection JSON Lines of `--events`.

use std::collections::BTreeMap;
use std::io::{self, Write};

use serde::Serialize;

use crate::audit::{AuditResult, CaptureFacts};
use crate::classify::{HostView, Judged, RolesSource, Status, Verdict};
use crate::conversation::{direction_counts, ConvKey};
use crate::decode::{Skip, Tunnel};
use crate::flow::{ConnRecord, Outcome, TlsSeen, Ts};
use crate::rules::{RoleSet, RuleSet};

/// Exit status of an audit (DESIGN.md): 1 when anything is flagged.
pub fn exit_status(r: &AuditResult) -> u8 {
    let a = &r.assessment;
    let flagged =
        a.flows.iter().any(|j| j.verdict != Verdict::Expected) || a.missing.iter().any(|m| m.status == Status::Missing);
    u8::from(flagged)
}

/// RFC 3339 UTC time with microseconds ("2026-01-15T09:00:00.000000Z").
pub fn rfc3339(ts: Ts) -> String {
    let secs = ts.div_euclid(1_000_000);
    let micros = ts.rem_euclid(1_000_000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z", sod / 3600, sod / 60 % 60, sod % 60)
}

/// The inverse of [`rfc3339`] for the times it writes (UTC, "Z", any
/// number of fraction digits up to 6): `None` for anything else.
pub fn parse_rfc3339(t: &str) -> Option<Ts> {
    let b = t.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| t.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let rest = t.get(19..)?.strip_suffix('Z')?;
    let micros = match rest.strip_prefix('.') {
        Some(f) if !f.is_empty() && f.len() <= 6 && f.bytes().all(|c| c.is_ascii_digit()) => {
            f.parse::<i64>().ok()? * 10i64.pow(6 - f.len() as u32)
        }
        None if rest.is_empty() => 0,
        _ => return None,
    };
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    // Howard Hinnant's days_from_civil.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 86_400 + hh * 3600 + mm * 60 + ss) * 1_000_000) + micros)
}

/// The LINKTYPE_ value of a name `linktype_name` wrote (RAW is 101).
pub fn linktype_number(name: &str) -> Option<i32> {
    Some(match name {
        "NULL" => 0,
        "EN10MB" => 1,
        "RAW" => 101,
        "LOOP" => 108,
        "LINUX_SLL" => 113,
        "IPV4" => 228,
        "IPV6" => 229,
        "LINUX_SLL2" => 276,
        other => other.strip_prefix("LINKTYPE_")?.split(' ').next()?.parse().ok()?,
    })
}

fn linktype_name(lt: i32) -> String {
    match lt {
        0 => "NULL".into(),
        1 => "EN10MB".into(),
        12 | 14 | 101 => "RAW".into(),
        108 => "LOOP".into(),
        113 => "LINUX_SLL".into(),
        228 => "IPV4".into(),
        229 => "IPV6".into(),
        276 => "LINUX_SLL2".into(),
        other => format!("LINKTYPE_{other} (not decoded)"),
    }
}

/// Skips that are damage, not merely traffic kscflow has no use for (ARP,
/// ICMP, link types it does not decode are counted under `skipped` only).
const DECODE_ERRORS: [Skip; 8] = [
    Skip::LinkTruncated,
    Skip::TooManyVlanTags,
    Skip::MalformedIp,
    Skip::TruncatedTransport,
    Skip::MalformedTransport,
    Skip::OrphanFragment,
    Skip::MalformedTunnel,
    Skip::TunnelTooDeep,
];

#[derive(Serialize)]
struct JsonReport<'a> {
    kscflow: &'static str,
    rules: JsonRules<'a>,
    inventory: Option<&'a str>,
    roles_source: RolesSource,
    capture: JsonCapture,
    summary: JsonSummary,
    flows: FlowsJson<'a>,
    /// Groups of conversations folded when the conversation limit was
    /// reached (absent when none was).
    #[serde(skip_serializing_if = "FlowsJson::is_empty")]
    folded: FlowsJson<'a>,
    missing: Vec<JsonMissing>,
    observed: JsonObserved,
    /// The results a `kscflow report` merged (absent for one audit).
    #[serde(skip_serializing_if = "<[Source]>::is_empty")]
    sources: &'a [Source],
}

/// The conversations (or the folded groups) of a report, written one by
/// one as they are serialised: a live sensor rewrites its report every few
/// minutes, and a list of every flow's JSON record first would double its
/// memory for the moment.
struct FlowsJson<'a> {
    rules: &'a RuleSet,
    flows: &'a [Judged],
    folded: bool,
}

impl FlowsJson<'_> {
    fn iter(&self) -> impl Iterator<Item = &Judged> {
        let folded = self.folded;
        self.flows.iter().filter(move |j| j.folded.is_some() == folded)
    }
    fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }
}

impl Serialize for FlowsJson<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter().map(|j| flow_json(self.rules, j)))
    }
}

/// What the judgement rested on besides the conversations, so that
/// `kscflow report` can merge results and judge them again.
#[derive(Serialize)]
struct JsonObserved {
    /// Addresses seen inside the inventory's networks (CIDR entries).
    network_members: Vec<String>,
    /// Link-layer broadcast destinations.
    broadcast: Vec<String>,
}

/// One result merged into a report: a JSON file of `audit` or `live`, and
/// the captures (files or interfaces) it was made from.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct Source {
    pub result: String,
    pub captures: Vec<String>,
    /// The capturing host, for a live result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sensor: Option<String>,
    pub packets: u64,
    pub first_timestamp: Option<String>,
    pub last_timestamp: Option<String>,
}

#[derive(Serialize)]
struct JsonRules<'a> {
    origin: &'a str,
    product: &'a str,
}

#[derive(Serialize)]
struct JsonFile {
    path: String,
    packets: u64,
    bytes: u64,
    link_types: Vec<String>,
    complete: bool,
    error: Option<String>,
}

#[derive(Serialize)]
struct JsonCapture {
    files: Vec<JsonFile>,
    packets: u64,
    bytes: u64,
    first_timestamp: Option<String>,
    last_timestamp: Option<String>,
    duration_seconds: u64,
    /// Damaged packets (malformed or cut headers, orphan fragments).
    decode_errors: u64,
    skipped: BTreeMap<&'static str, u64>,
    /// Packets opened out of a tunnel, per kind (absent when none).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    tunnels: BTreeMap<&'static str, u64>,
    /// libpcap's counters on a live capture (null for files, where the
    /// capturing system's drops are unknown).
    drops: Option<JsonDrops>,
    /// The capturing host (live capture only).
    #[serde(skip_serializing_if = "Option::is_none")]
    sensor: Option<String>,
    flow_table: JsonFlowTable,
    conversation_table: JsonConvTable,
}

/// The conversation limit's counters; read back by `report`.
#[derive(Serialize, serde::Deserialize, Default)]
#[serde(default)]
pub(crate) struct JsonConvTable {
    /// High-water mark of conversations kept one by one (summed over threads).
    pub(crate) peak_conversations: u64,
    /// Conversations folded into groups (see `folded`).
    pub(crate) folded_conversations: u64,
    /// Inventory-network members and broadcast destinations not remembered.
    pub(crate) members_not_tracked: u64,
}

/// Written here, read back by `report` ([`crate::merge`]).
#[derive(Serialize, serde::Deserialize)]
pub(crate) struct JsonDrops {
    /// Packets that passed the filter.
    pub(crate) received: u64,
    /// Dropped because the kernel ring was full.
    pub(crate) dropped: u64,
    /// Dropped by the interface; on Linux a lower bound.
    pub(crate) interface_dropped: u64,
}

/// Written here, read back by `report` ([`crate::merge`]); a field an
/// older result lacks reads as 0.
#[derive(Serialize, serde::Deserialize, Default)]
#[serde(default)]
pub(crate) struct JsonFlowTable {
    pub(crate) peak_flows: u64,
    pub(crate) timed_out: u64,
    pub(crate) evicted: u64,
    pub(crate) fragments_matched: u64,
    pub(crate) fragments_not_tracked: u64,
    pub(crate) hellos_not_reassembled: u64,
}

#[derive(Serialize)]
struct JsonSummary {
    conversations: usize,
    /// Groups of folded conversations; each also counts in its verdict.
    #[serde(skip_serializing_if = "is_zero")]
    folded_groups: usize,
    expected: usize,
    insecure: usize,
    unexpected: usize,
    missing: usize,
    unconfirmed: usize,
    out_of_scope_connections: u64,
    out_of_scope_packets: u64,
    out_of_scope_bytes: u64,
}

#[derive(Serialize)]
pub(crate) struct JsonTls {
    pub(crate) version: Option<String>,
    pub(crate) min_version: Option<String>,
    pub(crate) sni: Option<String>,
    pub(crate) hellos: u64,
    pub(crate) unparsed: u64,
    /// The versions as numbers (0x0303 = TLS 1.2), exact where the name
    /// is "unknown".
    pub(crate) version_number: Option<u16>,
    pub(crate) min_version_number: Option<u16>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// A flow of the JSON; in `folded`, a group: no `client` (nor `server`
/// when folded across servers) and a `group`.
#[derive(Serialize)]
pub(crate) struct JsonFlow {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) client: Option<String>,
    pub(crate) client_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) server: Option<String>,
    pub(crate) server_name: Option<String>,
    pub(crate) server_port: u16,
    pub(crate) transport: &'static str,
    pub(crate) connections: u64,
    pub(crate) packets: u64,
    pub(crate) bytes: u64,
    pub(crate) packets_to_server: u64,
    pub(crate) packets_to_client: u64,
    pub(crate) bytes_to_server: u64,
    pub(crate) bytes_to_client: u64,
    pub(crate) first_seen: String,
    pub(crate) last_seen: String,
    pub(crate) client_role: String,
    pub(crate) server_role: String,
    pub(crate) client_roles: Vec<&'static str>,
    pub(crate) server_roles: Vec<&'static str>,
    pub(crate) tls: Option<JsonTls>,
    pub(crate) plaintext_connections: u64,
    pub(crate) outcomes: BTreeMap<&'static str, u64>,
    pub(crate) direction: BTreeMap<&'static str, u64>,
    pub(crate) rule: Option<String>,
    /// The inventory `[[allow]]` entry that accepted it, if any.
    pub(crate) allow: Option<String>,
    pub(crate) verdict: Verdict,
    pub(crate) reason: String,
    pub(crate) seed: Vec<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) group: Option<JsonGroup>,
}

/// What a folded group is: how many conversations, how many distinct
/// clients (estimated; `client_sketch` holds the estimator's registers so
/// that `report` merges groups without counting a client twice), and the
/// roles its clients were declared with (none: hosts the inventory lacks).
#[derive(Serialize, serde::Deserialize)]
pub(crate) struct JsonGroup {
    pub(crate) conversations: u64,
    pub(crate) clients: u64,
    pub(crate) client_roles: Vec<String>,
    pub(crate) client_sketch: String,
}

#[derive(Serialize)]
struct JsonMissing {
    host: String,
    host_name: Option<String>,
    role: &'static str,
    expectation: String,
    reason: String,
    status: Status,
    seed: Vec<u32>,
}

fn roles_list(h: &HostView) -> Vec<&'static str> {
    let shown = if h.declared.is_empty() { h.roles } else { h.declared };
    shown.iter().filter(|r| *r != crate::rules::Role::Any).map(|r| r.name()).collect()
}

/// The JSON record of a conversation (also the CSV row).
pub(crate) fn flow_json(rules: &RuleSet, j: &Judged) -> JsonFlow {
    let s = &j.stats;
    let rule = j.rule.map(|i| &rules.rules[i]);
    let tls = (s.tls_hellos + s.tls_unparsed > 0).then(|| JsonTls {
        version: s.tls_max.map(|v| v.name().to_string()),
        min_version: s.tls_min.map(|v| v.name().to_string()),
        sni: s.sni.as_deref().map(str::to_owned),
        hellos: s.tls_hellos,
        unparsed: s.tls_unparsed,
        version_number: s.tls_max.map(|v| v.0),
        min_version_number: s.tls_min.map(|v| v.0),
    });
    JsonFlow {
        client: j.folded.is_none().then(|| j.key.client.to_string()),
        client_name: j.client.name.clone(),
        server: (!j.key.server.is_unspecified() || j.folded.is_none()).then(|| j.key.server.to_string()),
        server_name: j.server.name.clone(),
        server_port: j.key.server_port,
        transport: j.key.transport.name(),
        connections: s.connections,
        packets: s.packets_total(),
        bytes: s.bytes_total(),
        packets_to_server: s.packets[0],
        packets_to_client: s.packets[1],
        bytes_to_server: s.bytes[0],
        bytes_to_client: s.bytes[1],
        first_seen: rfc3339(s.first_ts),
        last_seen: rfc3339(s.last_ts),
        client_role: j.client.role_for(rule.map_or(RoleSet(!0), |r| r.initiator)),
        server_role: j.server.role_for(rule.map_or(RoleSet(!0), |r| r.responder)),
        client_roles: roles_list(&j.client),
        server_roles: roles_list(&j.server),
        tls,
        plaintext_connections: s.plaintext,
        outcomes: Outcome::ALL.iter().map(|o| (o.key(), s.outcome(*o))).collect(),
        direction: direction_counts(s).into_iter().collect(),
        rule: rule.map(|r| r.id.clone()),
        allow: j.allow.clone(),
        verdict: j.verdict,
        reason: j.reason.clone(),
        seed: j.seed.clone(),
        group: j.folded.as_deref().map(|(f, g)| JsonGroup {
            conversations: g.conversations,
            clients: g.clients.estimate(),
            client_roles: f.client_roles.iter().map(|r| r.name().to_string()).collect(),
            client_sketch: g.clients.to_hex(),
        }),
    }
}

/// What a report is written from: one audit, or several results merged by
/// `kscflow report` (then `sources` lists them).
#[derive(Clone, Copy)]
pub struct ReportData<'a> {
    pub rules: &'a RuleSet,
    /// The inventory's path, when one was given.
    pub inventory: Option<&'a str>,
    pub result: &'a AuditResult,
    pub sources: &'a [Source],
}

/// Writes the JSON document (DESIGN.md "Contracts").
pub fn write_json(out: &mut dyn Write, rules: &RuleSet, inventory: Option<&str>, r: &AuditResult) -> io::Result<()> {
    write_json_report(out, &ReportData { rules, inventory, result: r, sources: &[] })
}

/// Writes the JSON document of an audit or a merge.
pub fn write_json_report(out: &mut dyn Write, d: &ReportData<'_>) -> io::Result<()> {
    let (rules, inventory, r) = (d.rules, d.inventory, d.result);
    let a = &r.assessment;
    let c = &r.capture;
    let count = |v: Verdict| a.flows.iter().filter(|j| j.verdict == v).count();
    let doc = JsonReport {
        kscflow: env!("CARGO_PKG_VERSION"),
        rules: JsonRules { origin: &rules.origin, product: &rules.product },
        inventory,
        roles_source: a.roles_source,
        capture: JsonCapture {
            files: c
                .files
                .iter()
                .map(|f| JsonFile {
                    path: f.path.display().to_string(),
                    packets: f.packets,
                    bytes: f.bytes,
                    link_types: f.linktypes.iter().map(|l| linktype_name(*l)).collect(),
                    complete: f.error.is_none(),
                    error: f.error.clone(),
                })
                .collect(),
            packets: c.packets,
            bytes: c.bytes,
            first_timestamp: c.first_ts.map(rfc3339),
            last_timestamp: c.last_ts.map(rfc3339),
            duration_seconds: c.duration_secs(),
            decode_errors: DECODE_ERRORS.iter().map(|s| c.skipped.get(*s)).sum(),
            skipped: skipped_counts(c).iter().map(|x| (x.key, x.n)).collect(),
            tunnels: tunnel_counts(c).iter().map(|x| (x.key, x.n)).collect(),
            drops: c.drops.map(|d| JsonDrops {
                received: d.received,
                dropped: d.dropped,
                interface_dropped: d.if_dropped,
            }),
            sensor: c.sensor.clone(),
            flow_table: JsonFlowTable {
                peak_flows: c.flows.peak_flows,
                timed_out: c.flows.timed_out,
                evicted: c.flows.evicted,
                fragments_matched: c.flows.fragments_matched,
                fragments_not_tracked: c.flows.fragments_dropped,
                hellos_not_reassembled: c.flows.hellos_not_reassembled,
            },
            conversation_table: JsonConvTable {
                peak_conversations: c.conversations.peak,
                folded_conversations: c.conversations.folded,
                members_not_tracked: c.conversations.members_not_tracked,
            },
        },
        summary: JsonSummary {
            conversations: a.flows.iter().filter(|j| j.folded.is_none()).count(),
            folded_groups: a.flows.iter().filter(|j| j.folded.is_some()).count(),
            expected: count(Verdict::Expected),
            insecure: count(Verdict::Insecure),
            unexpected: count(Verdict::Unexpected),
            missing: a.missing.iter().filter(|m| m.status == Status::Missing).count(),
            unconfirmed: a.missing.iter().filter(|m| m.status == Status::Unconfirmed).count(),
            out_of_scope_connections: r.assessment.out_of_scope.connections + out_of_scope_total(r).0,
            out_of_scope_packets: r.assessment.out_of_scope.packets + out_of_scope_total(r).1,
            out_of_scope_bytes: r.assessment.out_of_scope.bytes + out_of_scope_total(r).2,
        },
        flows: FlowsJson { rules, flows: &a.flows, folded: false },
        folded: FlowsJson { rules, flows: &a.flows, folded: true },
        missing: a
            .missing
            .iter()
            .map(|m| JsonMissing {
                host: m.host.addr.to_string(),
                host_name: m.host.name.clone(),
                role: m.role.name(),
                expectation: m.expectation.clone(),
                reason: m.reason.clone(),
                status: m.status,
                seed: m.seed.clone(),
            })
            .collect(),
        observed: JsonObserved {
            network_members: a.seen_in_networks.iter().map(|a| a.to_string()).collect(),
            broadcast: a.l2_broadcast.iter().map(|a| a.to_string()).collect(),
        },
        sources: d.sources,
    };
    serde_json::to_writer_pretty(&mut *out, &doc)?;
    writeln!(out)
}

/// Out-of-scope traffic counted while collecting (not a KSC port at all).
fn out_of_scope_total(r: &AuditResult) -> (u64, u64, u64) {
    let o = r.capture_out_of_scope;
    (o.connections, o.packets, o.bytes)
}

/// A non-zero count by reason or kind, as every report shows it.
pub(crate) struct Count {
    pub(crate) key: &'static str,
    pub(crate) what: &'static str,
    pub(crate) n: u64,
}

/// Packets skipped, by reason (non-zero only, in `Skip::ALL` order).
pub(crate) fn skipped_counts(c: &CaptureFacts) -> Vec<Count> {
    Skip::ALL
        .iter()
        .map(|s| Count { key: s.key(), what: s.describe(), n: c.skipped.get(*s) })
        .filter(|x| x.n > 0)
        .collect()
}

/// Packets decapsulated, by tunnel kind (non-zero only).
pub(crate) fn tunnel_counts(c: &CaptureFacts) -> Vec<Count> {
    Tunnel::ALL
        .iter()
        .map(|t| Count { key: t.key(), what: t.describe(), n: c.tunnels.get(*t) })
        .filter(|x| x.n > 0)
        .collect()
}

/// Integers with thousands separators ("1,234,567").
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

fn tls_text(j: &Judged) -> String {
    let s = &j.stats;
    match (s.tls_min, s.tls_max) {
        (Some(a), Some(b)) if a == b => format!(", {a}"),
        (Some(a), Some(b)) => format!(", {a}–{b}"),
        _ if s.tls_unparsed > 0 => ", TLS (hello not readable)".into(),
        _ if s.plaintext > 0 => ", plaintext".into(),
        _ => String::new(),
    }
}

fn attempts_text(j: &Judged) -> String {
    let s = &j.stats;
    let (un, rf) = (s.outcome(Outcome::Unanswered), s.outcome(Outcome::Refused));
    let mut t = format!("{} conn", s.connections);
    if un + rf > 0 {
        t.push_str(&format!(" ({un} unanswered, {rf} refused)"));
    }
    t
}

fn flow_line(rules: &RuleSet, j: &Judged) -> String {
    let rule = j.rule.map(|i| &rules.rules[i]);
    format!(
        "{} [{}] → {} [{}]  {} {}  {}{}",
        j.client.label(),
        j.client.role_for(rule.map_or(RoleSet(!0), |r| r.initiator)),
        j.server.label(),
        j.server.role_for(rule.map_or(RoleSet(!0), |r| r.responder)),
        j.key.transport,
        j.key.server_port,
        attempts_text(j),
        tls_text(j)
    )
}

/// Findings of one kind listed one by one; more are summed up (a scan of
/// 10,000 sources is one paragraph at 2 a.m., not 10,000 lines).
const SHOWN_ALIKE: usize = 5;

/// Findings grouped when they differ only by client: same server, port,
/// rule and kind of client (known or not, its roles); folded groups on
/// their own. Largest first by connections, so what dominates is on top.
fn similar_findings<'a>(list: &[&'a Judged]) -> Vec<Vec<&'a Judged>> {
    let mut index: hashbrown::HashMap<_, usize> = hashbrown::HashMap::new();
    let mut groups: Vec<Vec<&Judged>> = Vec::new();
    for &j in list {
        let k = (
            j.key.server,
            j.key.transport,
            j.key.server_port,
            j.rule,
            j.client.known,
            j.client.declared,
            j.folded.is_some().then_some(j.key.client),
        );
        let i = *index.entry(k).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[i].push(j);
    }
    groups.sort_by_key(|g| std::cmp::Reverse(g.iter().map(|j| j.stats.connections).sum::<u64>()));
    groups
}

fn seed_text(seed: &[u32]) -> String {
    if seed.is_empty() {
        String::new()
    } else {
        format!("  [seed {}]", seed.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(", "))
    }
}

/// Writes the terminal summary: worst first.
pub fn write_text(out: &mut dyn Write, rules: &RuleSet, inventory: Option<&str>, r: &AuditResult) -> io::Result<()> {
    write_text_report(out, &ReportData { rules, inventory, result: r, sources: &[] })
}

/// Writes the terminal summary of an audit or a merge (which first lists
/// the results it merged).
pub fn write_text_report(out: &mut dyn Write, d: &ReportData<'_>) -> io::Result<()> {
    let (rules, inventory, r) = (d.rules, d.inventory, d.result);
    let a = &r.assessment;
    let c = &r.capture;
    let span = match (c.first_ts, c.last_ts) {
        (Some(f), Some(l)) => format!(
            "{} → {} ({} min)",
            &rfc3339(f)[..19].replace('T', " "),
            &rfc3339(l)[..19].replace('T', " "),
            c.duration_secs() / 60
        ),
        _ => "no timestamps".into(),
    };
    if d.sources.is_empty() {
        writeln!(out, "kscflow audit: {} file(s), {} packets, {} UTC", c.files.len(), thousands(c.packets), span)?;
        if let Some(h) = &c.sensor {
            writeln!(out, "Sensor: {h}")?;
        }
    } else {
        writeln!(
            out,
            "kscflow report: {} result(s) merged, {} capture(s), {} packets, {} UTC",
            d.sources.len(),
            c.files.len(),
            thousands(c.packets),
            span
        )?;
        for s in d.sources {
            let on = s.sensor.as_ref().map_or(String::new(), |h| format!(" on {h}"));
            writeln!(out, "  {}: {}{on}", s.result, s.captures.join(", "))?;
        }
    }
    match (a.roles_source, inventory) {
        (RolesSource::Inventory, Some(p)) => writeln!(out, "Roles: from the inventory {p}")?,
        _ => writeln!(out, "Roles: INFERRED from the traffic (no inventory given); check them with `kscflow discover` and pass --inventory")?,
    }
    writeln!(out, "Rules: {} ({})", rules.product, rules.origin)?;
    for f in &c.files {
        if let Some(e) = &f.error {
            writeln!(
                out,
                "WARNING: {} is damaged: {}; the report covers the {} packets before it.",
                f.path.display(),
                e,
                thousands(f.packets)
            )?;
        }
    }
    let n = |v: Verdict| a.flows.iter().filter(|j| j.verdict == v).count();
    let missing = a.missing.iter().filter(|m| m.status == Status::Missing).count();
    let unconfirmed = a.missing.len() - missing;
    let oos = a.out_of_scope.connections + r.capture_out_of_scope.connections;
    writeln!(
        out,
        "Verdict: {} unexpected, {} insecure, {} missing, {} not seen yet (unconfirmed), {} expected conversation(s); {} out-of-scope connection(s) counted",
        n(Verdict::Unexpected),
        n(Verdict::Insecure),
        missing,
        unconfirmed,
        n(Verdict::Expected),
        thousands(oos)
    )?;

    for (v, title) in [(Verdict::Unexpected, "UNEXPECTED"), (Verdict::Insecure, "INSECURE")] {
        let list: Vec<&Judged> = a.flows.iter().filter(|j| j.verdict == v).collect();
        if list.is_empty() {
            continue;
        }
        writeln!(out, "\n{title} ({})", list.len())?;
        for g in similar_findings(&list) {
            if g.len() <= SHOWN_ALIKE {
                for j in g {
                    writeln!(out, "  {}", flow_line(rules, j))?;
                    writeln!(out, "      {}{}", j.reason, seed_text(&j.seed))?;
                }
                continue;
            }
            let j = g[0];
            let conns: u64 = g.iter().map(|j| j.stats.connections).sum();
            writeln!(
                out,
                "  {} clients → {} [{}]  {} {}  {} conn, alike: same server, port, rule and kind of client",
                thousands(g.len() as u64),
                j.server.label(),
                j.server.role_for(j.rule.map_or(RoleSet(!0), |i| rules.rules[i].responder)),
                j.key.transport,
                j.key.server_port,
                thousands(conns)
            )?;
            for j in g.iter().take(3) {
                writeln!(out, "    {}", flow_line(rules, j))?;
                writeln!(out, "        {}{}", j.reason, seed_text(&j.seed))?;
            }
            writeln!(out, "    … and {} more like these (see --format json)", thousands(g.len() as u64 - 3))?;
        }
    }
    for (st, title) in [(Status::Missing, "MISSING"), (Status::Unconfirmed, "NOT SEEN YET (unconfirmed)")] {
        let list: Vec<_> = a.missing.iter().filter(|m| m.status == st).collect();
        if list.is_empty() {
            continue;
        }
        writeln!(out, "\n{title} ({})", list.len())?;
        for m in list {
            writeln!(out, "  {} [{}] {}: {}{}", m.host.label(), m.role, m.expectation, m.reason, seed_text(&m.seed))?;
        }
    }
    let expected: Vec<&Judged> = a.flows.iter().filter(|j| j.verdict == Verdict::Expected).collect();
    if !expected.is_empty() {
        writeln!(out, "\nEXPECTED ({} conversation(s), by rule)", expected.len())?;
        let mut by_rule: BTreeMap<String, Vec<&Judged>> = BTreeMap::new();
        for j in expected {
            let k = j
                .rule
                .map(|i| rules.rules[i].id.clone())
                .or_else(|| j.allow.as_ref().map(|a| format!("allow:{a}")))
                .unwrap_or_default();
            by_rule.entry(k).or_default().push(j);
        }
        for (id, list) in by_rule {
            let (conns, un, rf): (u64, u64, u64) = list.iter().fold((0, 0, 0), |(c, u, r), j| {
                (
                    c + j.stats.connections,
                    u + j.stats.outcome(Outcome::Unanswered),
                    r + j.stats.outcome(Outcome::Refused),
                )
            });
            let head = match rules.rule(&id) {
                Some(rule) => format!(
                    "{id}: {} → {} on {} {}  [source {}]",
                    rule.initiator.names(),
                    rule.responder.names(),
                    rule.transport,
                    rule.ports.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(","),
                    rule.source()
                ),
                None => id.clone(),
            };
            writeln!(out, "  {head}")?;
            writeln!(
                out,
                "      {} conversation(s), {} connection(s), {} unanswered, {} refused",
                list.len(),
                conns,
                un,
                rf
            )?;
            for j in list.iter().take(20) {
                writeln!(out, "      {}", flow_line(rules, j))?;
            }
            if list.len() > 20 {
                writeln!(out, "      … and {} more (see --format json)", list.len() - 20)?;
            }
        }
    }
    let blocks = [
        (format!("PACKETS SKIPPED ({} of {})", thousands(c.skipped.total()), thousands(c.packets)), skipped_counts(c)),
        (
            format!(
                "PACKETS DECAPSULATED (of {}; a packet counts once per kind it came through)",
                thousands(c.packets)
            ),
            tunnel_counts(c),
        ),
    ];
    for (title, rows) in blocks.iter().filter(|(_, rows)| !rows.is_empty()) {
        writeln!(out, "\n{title}")?;
        for x in rows {
            writeln!(out, "  {:>10}  {} ({})", thousands(x.n), x.what, x.key)?;
        }
    }
    if c.flows.evicted > 0 {
        writeln!(
            out,
            "\nNOTE: the flow table was full: {} connection(s) were closed early (raise --max-flows).",
            thousands(c.flows.evicted)
        )?;
    }
    let cc = &c.conversations;
    if cc.folded > 0 {
        writeln!(
            out,
            "\nNOTE: the conversation limit was reached: {} conversation(s) of hosts the inventory lacks or that exchanged no data were folded into {} group(s) per server and port (raise --max-conversations).",
            thousands(cc.folded),
            a.flows.iter().filter(|j| j.folded.is_some()).count()
        )?;
    }
    if cc.members_not_tracked > 0 {
        writeln!(
            out,
            "\nNOTE: {} address(es) of inventory networks or broadcast destinations were not remembered (the conversation limit): \
             devices among them are not checked for missing.",
            thousands(cc.members_not_tracked)
        )?;
    }
    Ok(())
}

#[derive(Serialize)]
struct JsonEvent<'a> {
    client: String,
    client_port: u16,
    server: String,
    server_port: u16,
    transport: &'static str,
    start: String,
    end: String,
    packets_to_server: u64,
    packets_to_client: u64,
    bytes_to_server: u64,
    bytes_to_client: u64,
    outcome: &'static str,
    direction: &'static str,
    tls: Option<JsonEventTls<'a>>,
    first_payload: &'static str,
    vlan: Option<u16>,
    rule: Option<&'a str>,
    verdict: &'static str,
    reason: &'a str,
}

#[derive(Serialize)]
struct JsonEventTls<'a> {
    version: Option<&'static str>,
    sni: Option<&'a str>,
}

/// Writes one JSON line per connection (`--events`).
pub fn write_events(out: &mut dyn Write, rules: &RuleSet, r: &AuditResult, records: &[ConnRecord]) -> io::Result<()> {
    let judged: hashbrown::HashMap<ConvKey, &Judged> = r.assessment.flows.iter().map(|j| (j.key, j)).collect();
    for rec in records {
        let key =
            ConvKey { client: rec.client, server: rec.server, transport: rec.transport, server_port: rec.server_port };
        let j = judged.get(&key);
        let (tls, first_payload) = match &rec.tls {
            TlsSeen::Hello { version, sni } => {
                (Some(JsonEventTls { version: Some(version.name()), sni: sni.as_deref() }), "tls")
            }
            TlsSeen::TlsUnparsed => (Some(JsonEventTls { version: None, sni: None }), "tls"),
            TlsSeen::Plaintext => (None, "plaintext"),
            TlsSeen::NoPayload => (None, "none"),
            TlsSeen::Unknown => (None, "unknown"),
            TlsSeen::NotInspected => (None, "not_inspected"),
        };
        let ev = JsonEvent {
            client: rec.client.to_string(),
            client_port: rec.client_port,
            server: rec.server.to_string(),
            server_port: rec.server_port,
            transport: rec.transport.name(),
            start: rfc3339(rec.first_ts),
            end: rfc3339(rec.last_ts),
            packets_to_server: rec.packets[0],
            packets_to_client: rec.packets[1],
            bytes_to_server: rec.bytes[0],
            bytes_to_client: rec.bytes[1],
            outcome: rec.outcome.key(),
            direction: rec.direction.key(),
            tls,
            first_payload,
            vlan: (rec.vlan != 0).then_some(rec.vlan),
            rule: j.and_then(|j| j.rule.map(|i| rules.rules[i].id.as_str())),
            verdict: j.map_or("out_of_scope", |j| j.verdict.name()),
            reason: j.map_or("", |j| j.reason.as_str()),
        };
        serde_json::to_writer(&mut *out, &ev)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_known_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(rfc3339(1_768_467_600_000_000), "2026-01-15T09:00:00.000000Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59.999999Z");
        assert_eq!(rfc3339(951_782_400_000_000), "2000-02-29T00:00:00.000000Z");
    }

    #[test]
    fn rfc3339_parses_back() {
        for ts in [0, 1_768_467_600_000_000, -1, 951_782_400_000_000, 1_768_467_600_123_456, 4_102_444_799_999_999] {
            assert_eq!(parse_rfc3339(&rfc3339(ts)), Some(ts), "{}", rfc3339(ts));
        }
        assert_eq!(parse_rfc3339("2026-01-15T09:00:00Z"), Some(1_768_467_600_000_000));
        assert_eq!(parse_rfc3339("2026-01-15T09:00:00.5Z"), Some(1_768_467_600_500_000));
        assert_eq!(parse_rfc3339("2026-01-15 09:00:00Z"), None);
        assert_eq!(parse_rfc3339("2026-13-15T09:00:00Z"), None);
        assert_eq!(parse_rfc3339("2026-01-15T09:00:00+01:00"), None);
    }

    #[test]
    fn linktypes_parse_back() {
        for lt in [0, 1, 101, 108, 113, 228, 229, 276, 147] {
            assert_eq!(linktype_number(&linktype_name(lt)), Some(lt));
        }
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(thousands(999), "999");
    }
}
