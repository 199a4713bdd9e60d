//! The formats a report is handed over in: Markdown for tickets and wikis,
//! CSV for spreadsheets, HTML (with the topology picture) for auditors,
//! DOT for Graphviz users.
//!
//! Every format is written from one [`Model`]: the findings worst first,
//! the missing expectations, the per-rule and per-host tables and the
//! capture facts are computed here once, so the formats differ in markup
//! only and cannot disagree with each other (or with the JSON, whose flow
//! records `report::flow_json` builds for the CSV too).

pub mod csv;
pub mod html;

pub mod markdown;
pub mod scheme;
pub mod topology;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use crate::classify::{HostView, Judged, MissingEntry, RolesSource, Status, Verdict};
use crate::flow::Outcome;
pub use crate::report::thousands;
use crate::report::{exit_status, rfc3339, skipped_counts, tunnel_counts, Count, ReportData};
use crate::rules::{Role, RoleSet, Transport};

/// Counts per verdict.
#[derive(Clone, Copy, Debug, Default)]
pub struct Counts {
    pub conversations: usize,
    pub expected: usize,
    pub insecure: usize,
    pub unexpected: usize,
    pub missing: usize,
    pub unconfirmed: usize,
    pub out_of_scope_connections: u64,
}

/// One row of the per-rule table: what a rule (or an `[[allow]]` entry,
/// or no rule at all) accounts for.
#[derive(Clone, Debug)]
pub struct RuleRow {
    /// Rule id, `allow: NAME`, or `(no rule)`.
    pub id: String,
    pub seed: Vec<u32>,
    pub conversations: usize,
    pub connections: u64,
    /// Distinct addresses on either side.
    pub hosts: usize,
    /// TLS versions offered ("TLS 1.2, TLS 1.3"), "plaintext", or "".
    pub tls: String,
    pub refused: u64,
    pub unanswered: u64,
    /// The worst verdict among its conversations.
    pub worst: Verdict,
}

/// One row of the per-host table.
#[derive(Clone, Debug)]
pub struct HostRow {
    pub label: String,
    pub addr: Option<IpAddr>,
    /// Roles, and whether they were declared or inferred.
    pub roles: String,
    pub conversations_out: usize,
    pub conversations_in: usize,
    /// Flagged conversations it is on, plus its missing expectations.
    pub findings: usize,
    /// Hosts folded into this row (plain devices without findings).
    pub folded: usize,
}

/// Everything a human-readable report shows.
pub struct Model<'a> {
    pub data: &'a ReportData<'a>,
    /// "FAIL" or "PASS", and one sentence.
    pub status: (&'static str, String),
    pub counts: Counts,
    /// Unexpected first, then insecure.
    pub findings: Vec<&'a Judged>,
    /// `missing` first, then `unconfirmed`.
    pub missing: Vec<&'a MissingEntry>,
    /// The sentence that says when `missing` is certain.
    pub window_caveat: String,
    pub rules: Vec<RuleRow>,
    pub hosts: Vec<HostRow>,
    /// (label, value) rows about the capture.
    pub facts: Vec<(String, String)>,
    pub scheme: scheme::SchemeMatch,
}

/// Above this many plain managed devices or mobiles without findings, the
/// per-host table folds them into one row per inventory network.
pub const FOLD_HOSTS_ABOVE: usize = 25;

/// The name of a rule row of `j`.
/// A host of the pictures and the host table: an address, or one side of a
/// folded group (its clients, or its servers when folded across servers),
/// which shows as the unspecified address and must not merge with another
/// group's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct HostKey(IpAddr, Option<(IpAddr, Transport, u16, u16, bool)>);

impl HostKey {
    /// The host of a missing entry (always an address).
    pub fn host(a: IpAddr) -> HostKey {
        HostKey(a, None)
    }
    /// The address, unless this is a folded group.
    pub fn addr(&self) -> Option<IpAddr> {
        self.1.is_none().then_some(self.0)
    }
}

/// A conversation's client and server, with their keys.
pub fn sides(j: &Judged) -> [(HostKey, &HostView); 2] {
    let key = |v: &HostView, server: bool| {
        let group = j
            .folded
            .as_ref()
            .filter(|_| v.addr.is_unspecified())
            .map(|b| (b.0.server, b.0.transport, b.0.server_port, b.0.client_roles.0, server));
        HostKey(v.addr, group)
    };
    [(key(&j.client, false), &j.client), (key(&j.server, true), &j.server)]
}

pub fn rule_label(data: &ReportData<'_>, j: &Judged) -> String {
    match (j.rule, &j.allow) {
        (Some(i), _) => data.rules.rules[i].id.clone(),
        (None, Some(a)) => format!("allow: {a}"),
        (None, None) => "(no rule)".into(),
    }
}

/// Roles to show for a host: declared (or inferred) ones, else the rule's.
pub fn roles_text(h: &HostView) -> String {
    let shown = if h.declared.is_empty() { h.roles } else { h.declared };
    let names: Vec<&str> = shown.iter().filter(|r| *r != Role::Any).map(|r| r.name()).collect();
    if names.is_empty() {
        "unknown".into()
    } else {
        names.join(", ")
    }
}

/// "123 conn, TLS 1.2" style TLS summary of a conversation.
pub fn tls_summary(j: &Judged) -> String {
    let s = &j.stats;
    match (s.tls_min, s.tls_max) {
        (Some(a), Some(b)) if a == b => a.name().to_string(),
        (Some(a), Some(b)) => format!("{}–{}", a.name(), b.name()),
        _ if s.tls_unparsed > 0 => "TLS (hello not readable)".into(),
        _ if s.plaintext > 0 => "plaintext".into(),
        _ => String::new(),
    }
}

/// Seed topics as "183039, 158545".
pub fn seed_list(seed: &[u32]) -> String {
    seed.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(", ")
}

impl<'a> Model<'a> {
    pub fn new(data: &'a ReportData<'a>) -> Model<'a> {
        let r = data.result;
        let a = &r.assessment;
        let count = |v: Verdict| a.flows.iter().filter(|j| j.verdict == v).count();
        let missing_n = a.missing.iter().filter(|m| m.status == Status::Missing).count();
        let counts = Counts {
            conversations: a.flows.len(),
            expected: count(Verdict::Expected),
            insecure: count(Verdict::Insecure),
            unexpected: count(Verdict::Unexpected),
            missing: missing_n,
            unconfirmed: a.missing.len() - missing_n,
            out_of_scope_connections: a.out_of_scope.connections + r.capture_out_of_scope.connections,
        };
        let status = if exit_status(r) == 1 {
            (
                "FAIL",
                format!(
                    "{} unexpected, {} insecure conversation(s) and {} missing expectation(s) deviate from the vendor's table.",
                    counts.unexpected, counts.insecure, counts.missing
                ),
            )
        } else {
            ("PASS", "Every KSC conversation seen matches the vendor's table; nothing is certainly missing.".into())
        };
        let mut findings: Vec<&Judged> = a.flows.iter().filter(|j| j.verdict != Verdict::Expected).collect();
        findings.sort_by_key(|j| (j.verdict, j.key));
        let mut missing: Vec<&MissingEntry> = a.missing.iter().collect();
        missing.sort_by_key(|m| (m.status, m.host.addr, m.expectation.clone()));
        let window = data.rules.expectations.iter().map(|e| e.window_secs).max().unwrap_or(0) / 60;
        let window_caveat = format!(
            "An expectation is `missing` only when the answered KSC traffic spans its interval ({window} min: {} missed sync intervals of {} min); the capture spans {} min. Entries marked `unconfirmed` were not seen yet in a shorter window, or a shutdown notice explains them.",
            data.rules.missed_intervals,
            data.rules.sync_interval_minutes,
            r.capture.duration_secs() / 60
        );
        Model {
            data,
            status,
            counts,
            findings,
            missing,
            window_caveat,
            rules: rule_rows(data),
            hosts: host_rows(data),
            facts: facts(data),
            scheme: scheme::best_match(data),
        }
    }
}

fn rule_rows(data: &ReportData<'_>) -> Vec<RuleRow> {
    let mut by: BTreeMap<String, Vec<&Judged>> = BTreeMap::new();
    for j in &data.result.assessment.flows {
        by.entry(rule_label(data, j)).or_default().push(j);
    }
    let mut rows: Vec<RuleRow> = by
        .into_iter()
        .map(|(id, list)| {
            let hosts: BTreeSet<HostKey> = list.iter().flat_map(|j| sides(j).map(|(k, _)| k)).collect();
            let mut versions = BTreeSet::new();
            let mut plaintext = false;
            for j in &list {
                versions.extend(j.stats.tls_min);
                versions.extend(j.stats.tls_max);
                plaintext |= j.stats.plaintext > 0;
            }
            let mut tls: Vec<&str> = versions.iter().map(|v| v.name()).collect();
            if plaintext {
                tls.push("plaintext");
            }
            let seed = list[0].rule.map_or_else(Vec::new, |i| data.rules.rules[i].seed.clone());
            RuleRow {
                id,
                seed,
                conversations: list.len(),
                connections: list.iter().map(|j| j.stats.connections).sum(),
                hosts: hosts.len(),
                tls: tls.join(", "),
                refused: list.iter().map(|j| j.stats.outcome(Outcome::Refused)).sum(),
                unanswered: list.iter().map(|j| j.stats.outcome(Outcome::Unanswered)).sum(),
                worst: list.iter().map(|j| j.verdict).min().unwrap_or(Verdict::Expected),
            }
        })
        .collect();
    rows.sort_by_key(|r| (r.worst, r.id == "(no rule)", r.id.clone()));
    rows
}

fn host_rows(data: &ReportData<'_>) -> Vec<HostRow> {
    let a = &data.result.assessment;
    struct Acc<'v> {
        view: &'v HostView,
        out: usize,
        inn: usize,
        findings: usize,
    }
    let mut hosts: BTreeMap<HostKey, Acc<'_>> = BTreeMap::new();
    for j in &a.flows {
        let flagged = usize::from(j.verdict != Verdict::Expected);
        let [(ck, cv), (sk, sv)] = sides(j);
        let c = hosts.entry(ck).or_insert(Acc { view: cv, out: 0, inn: 0, findings: 0 });
        c.out += 1;
        c.findings += flagged;
        let s = hosts.entry(sk).or_insert(Acc { view: sv, out: 0, inn: 0, findings: 0 });
        s.inn += 1;
        s.findings += flagged;
    }
    for m in &a.missing {
        let h = hosts.entry(HostKey::host(m.host.addr));
        h.or_insert(Acc { view: &m.host, out: 0, inn: 0, findings: 0 }).findings += 1;
    }
    let source = match a.roles_source {
        RolesSource::Inventory => "declared",
        RolesSource::Inferred => "inferred",
    };
    let plain = RoleSet::of(&[Role::ManagedDevice, Role::MobileDevice, Role::Browser]);
    let is_plain = |h: &HostView| {
        let shown = if h.declared.is_empty() { h.roles } else { h.declared };
        let real = RoleSet(shown.0 & !RoleSet::of(&[Role::Any]).0);
        !real.is_empty() && RoleSet(real.0 & !plain.0).is_empty()
    };
    let foldable = hosts.values().filter(|h| h.findings == 0 && is_plain(h.view)).count();
    let fold = foldable > FOLD_HOSTS_ABOVE;
    let mut rows = Vec::new();
    let mut folded: BTreeMap<String, HostRow> = BTreeMap::new();
    for (addr, h) in &hosts {
        let roles = if h.view.known {
            format!("{} ({source})", roles_text(h.view))
        } else {
            match h.view.roles.first_in(RoleSet::of(&[Role::Multicast, Role::Broadcast])) {
                Some(r) => r.name().to_string(),
                None => "not in the inventory".into(),
            }
        };
        if fold && h.findings == 0 && is_plain(h.view) {
            let group = h.view.name.clone().filter(|_| h.view.in_network).unwrap_or_else(|| roles_text(h.view));
            let row = folded.entry(group.clone()).or_insert(HostRow {
                label: String::new(),
                addr: None,
                roles: roles.clone(),
                conversations_out: 0,
                conversations_in: 0,
                findings: 0,
                folded: 0,
            });
            row.folded += 1;
            row.conversations_out += h.out;
            row.conversations_in += h.inn;
            row.label = format!("{} hosts without findings ({group})", thousands(row.folded as u64));
            continue;
        }
        rows.push(HostRow {
            label: h.view.label(),
            addr: addr.addr(),
            roles,
            conversations_out: h.out,
            conversations_in: h.inn,
            findings: h.findings,
            folded: 0,
        });
    }
    rows.sort_by_key(|r| std::cmp::Reverse(r.findings));
    rows.extend(folded.into_values());
    rows
}

fn facts(data: &ReportData<'_>) -> Vec<(String, String)> {
    let r = data.result;
    let c = &r.capture;
    let mut f = Vec::new();
    for s in data.sources {
        f.push((
            "Result merged".into(),
            format!(
                "{} ({}{}; {} packets, {} → {})",
                s.result,
                s.captures.join(", "),
                s.sensor.as_ref().map_or(String::new(), |h| format!(" on {h}")),
                thousands(s.packets),
                s.first_timestamp.as_deref().unwrap_or("-"),
                s.last_timestamp.as_deref().unwrap_or("-")
            ),
        ));
    }
    if let Some(h) = &c.sensor {
        f.push(("Sensor".into(), h.clone()));
    }
    for file in &c.files {
        let state = match &file.error {
            Some(e) => format!("DAMAGED: {e}"),
            None => "complete".into(),
        };
        f.push((
            "Capture".into(),
            format!(
                "{} ({} packets, {} bytes, {state})",
                file.path.display(),
                thousands(file.packets),
                thousands(file.bytes)
            ),
        ));
    }
    let window = match (c.first_ts, c.last_ts) {
        (Some(a), Some(b)) => format!("{} → {} UTC ({} min)", rfc3339(a), rfc3339(b), c.duration_secs() / 60),
        _ => "no timestamps".into(),
    };
    f.push(("Time window".into(), window));
    f.push(("Packets".into(), format!("{} ({} bytes)", thousands(c.packets), thousands(c.bytes))));
    let listed = |rows: Vec<Count>| rows.iter().map(|x| format!("{} {}", x.key, thousands(x.n))).collect::<Vec<_>>();
    let skipped = listed(skipped_counts(c));
    f.push(("Skipped packets".into(), if skipped.is_empty() { "none".into() } else { skipped.join(", ") }));
    let tunnels = listed(tunnel_counts(c));
    if !tunnels.is_empty() {
        f.push(("Decapsulated packets".into(), tunnels.join(", ")));
    }
    f.push((
        "Drops".into(),
        match c.drops {
            Some(d) => format!(
                "{} received, {} dropped by the ring, {} by the interface",
                thousands(d.received),
                thousands(d.dropped),
                thousands(d.if_dropped)
            ),
            None => "not known for capture files".into(),
        },
    ));
    f.push((
        "Out of scope".into(),
        format!(
            "{} connection(s), counted, not judged",
            thousands(r.assessment.out_of_scope.connections + r.capture_out_of_scope.connections)
        ),
    ));
    f.push((
        "Roles".into(),
        match (r.assessment.roles_source, data.inventory) {
            (RolesSource::Inventory, Some(p)) => format!("from the inventory {p}"),
            _ => "INFERRED from the traffic (no inventory given)".into(),
        },
    ));
    f.push(("Rules".into(), format!("{} ({})", data.rules.product, data.rules.origin)));
    f
}
