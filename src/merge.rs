//! `kscflow report`: several JSON results of `audit` or `live` (several
//! captures, several sensors) merged into one, judged again.
//!
//! Nothing is classified here. The JSON of each flow carries every counter
//! of its [`ConvStats`] (per direction, per outcome, per way the initiator
//! was decided, TLS versions and server name), and the result carries the
//! addresses seen in the inventory's networks and the link-layer broadcast
//! destinations; so the conversation map of all the inputs is rebuilt,
//! summed key by key ([`Merger::add`], one file at a time), and handed to
//! [`classify::assess`] over the combined time window ([`Merger::finish`]):
//! the same judgement an audit of all the captures in one run makes,
//! `missing` included.
//!
//! One limit: a result lists only the conversations it judged in scope.
//! With an inventory that is all that matters (scope depends on the
//! inventory, which is the same for every input); without one, a
//! conversation on a shared port (443, 8080, the DBMS ports) that only the
//! union's inferred roles would bring into scope is not in any input. And a
//! connection that one capture's end cut in two counts twice here, once in
//! a joint audit (which reads the files as one capture).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::audit::{AuditResult, CaptureFacts, FileFacts};
use crate::capture::live::Drops;
use crate::classify;
use crate::conversation::{ConvKey, ConvStats, DistinctCount, FoldKey, Folded, Observed, OutOfScope, View};
use crate::decode::{Skip, Tunnel};
use crate::flow::{Direction, Outcome, Ts};
use crate::inventory::Inventory;
use crate::report::{linktype_number, parse_rfc3339, JsonConvTable, JsonGroup, Source};
use crate::rules::{Role, RoleSet, RuleSet, Transport};
use crate::tls::TlsVersion;

/// Why results could not be merged: each says which file and what to do.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error("{path}: cannot read: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}:{line}:{column}: not a kscflow JSON result ({message}); give files written by `kscflow audit --format json` or `kscflow live -o`")]
    NotAResult { path: PathBuf, line: usize, column: usize, message: String },
    #[error("{path}: {list}[{index}]: {message}")]
    Flow { path: PathBuf, list: &'static str, index: usize, message: String },
    #[error(
        "the results were judged with the {what} {path}, which cannot be used here ({source}); pass --{flag} FILE"
    )]
    Recorded { what: &'static str, flag: &'static str, path: String, source: Box<crate::Error> },
    #[error("{first} was judged with {a}, {second} with {b}: pass --{flag} to judge all of them with one")]
    Disagree { flag: &'static str, first: PathBuf, a: String, second: PathBuf, b: String },
}

/// One result file, read.
pub struct ResultFile {
    pub path: PathBuf,
    doc: Doc,
}

#[derive(Deserialize)]
struct Doc {
    rules: DocRules,
    inventory: Option<String>,
    capture: DocCapture,
    summary: DocSummary,
    flows: Vec<DocFlow>,
    #[serde(default)]
    folded: Vec<DocFlow>,
    #[serde(default)]
    observed: DocObserved,
    #[serde(default)]
    sources: Vec<Source>,
}

#[derive(Deserialize)]
struct DocRules {
    origin: String,
}

#[derive(Deserialize)]
struct DocCapture {
    files: Vec<DocFile>,
    #[serde(default)]
    sensor: Option<String>,
    packets: u64,
    bytes: u64,
    first_timestamp: Option<String>,
    last_timestamp: Option<String>,
    #[serde(default)]
    skipped: BTreeMap<String, u64>,
    #[serde(default)]
    tunnels: BTreeMap<String, u64>,
    drops: Option<crate::report::JsonDrops>,
    #[serde(default)]
    flow_table: crate::report::JsonFlowTable,
    #[serde(default)]
    conversation_table: JsonConvTable,
}

#[derive(Deserialize)]
struct DocFile {
    path: String,
    packets: u64,
    bytes: u64,
    #[serde(default)]
    link_types: Vec<String>,
    error: Option<String>,
}

#[derive(Deserialize)]
struct DocSummary {
    out_of_scope_connections: u64,
    out_of_scope_packets: u64,
    out_of_scope_bytes: u64,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct DocObserved {
    network_members: Vec<IpAddr>,
    broadcast: Vec<IpAddr>,
}

#[derive(Deserialize)]
struct DocFlow {
    /// Absent in a folded group.
    client: Option<IpAddr>,
    /// Absent in a group folded across servers.
    server: Option<IpAddr>,
    server_port: u16,
    transport: Transport,
    connections: u64,
    packets_to_server: u64,
    packets_to_client: u64,
    bytes_to_server: u64,
    bytes_to_client: u64,
    first_seen: String,
    last_seen: String,
    tls: Option<DocTls>,
    plaintext_connections: u64,
    outcomes: BTreeMap<String, u64>,
    direction: BTreeMap<String, u64>,
    group: Option<JsonGroup>,
}

#[derive(Deserialize)]
struct DocTls {
    version: Option<String>,
    min_version: Option<String>,
    version_number: Option<u16>,
    min_version_number: Option<u16>,
    sni: Option<String>,
    hellos: u64,
    unparsed: u64,
}

/// Reads one result file.
pub fn read(path: &Path) -> Result<ResultFile, MergeError> {
    let bytes = std::fs::read(path).map_err(|source| MergeError::Read { path: path.to_path_buf(), source })?;
    let doc: Doc = serde_json::from_slice(&bytes).map_err(|e| MergeError::NotAResult {
        path: path.to_path_buf(),
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    })?;
    Ok(ResultFile { path: path.to_path_buf(), doc })
}

/// A TLS version from its number, else its name (results written before
/// the numbers were).
fn version(number: Option<u16>, name: Option<&str>) -> Option<TlsVersion> {
    number.map(TlsVersion).or_else(|| {
        let name = name?;
        [TlsVersion::SSL2, TlsVersion::SSL3, TlsVersion::TLS10, TlsVersion::TLS11, TlsVersion::TLS12, TlsVersion::TLS13]
            .into_iter()
            .find(|v| v.name() == name)
    })
}

/// A flow of the JSON back into its key and counters.
fn conversation(f: &DocFlow) -> Result<(ConvKey, ConvStats), String> {
    let (Some(client), Some(server)) = (f.client, f.server) else {
        return Err("a flow without client or server address".into());
    };
    Ok((ConvKey { client, server, transport: f.transport, server_port: f.server_port }, stats(f)?))
}

/// A folded group of the JSON back into its key and members.
fn group(f: &DocFlow) -> Result<(FoldKey, Folded), String> {
    let g = f.group.as_ref().ok_or("a folded group without `group`")?;
    let mut client_roles = RoleSet::EMPTY;
    for name in &g.client_roles {
        client_roles = client_roles.with(Role::from_name(name).ok_or_else(|| format!("unknown role {name:?}"))?);
    }
    let server = f.server.unwrap_or(match f.client {
        Some(IpAddr::V6(_)) => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
        _ => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
    });
    let key = FoldKey { server, transport: f.transport, server_port: f.server_port, client_roles };
    let clients = DistinctCount::from_hex(&g.client_sketch).ok_or("`client_sketch` is not 256 hex registers")?;
    Ok((key, Folded { conversations: g.conversations, clients, stats: stats(f)? }))
}

/// A flow's counters.
fn stats(f: &DocFlow) -> Result<ConvStats, String> {
    let ts = |t: &str| parse_rfc3339(t).ok_or_else(|| format!("{t:?} is not a time kscflow writes"));
    let mut outcomes = [0u64; 4];
    for (k, n) in &f.outcomes {
        let o = Outcome::ALL.iter().position(|o| o.key() == k).ok_or_else(|| format!("unknown outcome {k:?}"))?;
        outcomes[o] = *n;
    }
    let mut directions = [0u64; 5];
    for (k, n) in &f.direction {
        let d = Direction::ALL.iter().position(|d| d.key() == k).ok_or_else(|| format!("unknown direction {k:?}"))?;
        directions[d] = *n;
    }
    let tls = f.tls.as_ref();
    Ok(ConvStats {
        connections: f.connections,
        packets: [f.packets_to_server, f.packets_to_client],
        bytes: [f.bytes_to_server, f.bytes_to_client],
        first_ts: ts(&f.first_seen)?,
        last_ts: ts(&f.last_seen)?,
        outcomes,
        directions,
        tls_hellos: tls.map_or(0, |t| t.hellos),
        tls_unparsed: tls.map_or(0, |t| t.unparsed),
        plaintext: f.plaintext_connections,
        tls_min: tls.and_then(|t| version(t.min_version_number, t.min_version.as_deref())),
        tls_max: tls.and_then(|t| version(t.version_number, t.version.as_deref())),
        sni: tls.and_then(|t| t.sni.as_deref()).map(Into::into),
    })
}

/// Results merged and judged again, with the sources they came from.
pub struct Merged {
    pub result: AuditResult,
    pub sources: Vec<Source>,
}

/// Folds result files in one at a time (each file's flows are dropped once
/// summed, so memory is the conversation map plus the largest file), then
/// judges the union.
#[derive(Default)]
pub struct Merger {
    observed: Observed,
    capture: CaptureFacts,
    out_of_scope: OutOfScope,
    sources: Vec<Source>,
    /// The first file's path, rules origin and inventory: the others must
    /// agree unless the command line overrides them.
    first: Option<(PathBuf, String, Option<String>)>,
    check_rules: bool,
    check_inventory: bool,
}

impl Merger {
    /// `check_rules`/`check_inventory` false when `--rules`/`--inventory`
    /// make the results' own irrelevant.
    pub fn new(check_rules: bool, check_inventory: bool) -> Merger {
        Merger { check_rules, check_inventory, ..Merger::default() }
    }

    /// The rules file the results were judged with (`<built-in …>` for the
    /// compiled-in table).
    pub fn rules_origin(&self) -> Option<&str> {
        self.first.as_ref().map(|f| f.1.as_str())
    }

    /// The inventory the results were judged with, if any.
    pub fn inventory(&self) -> Option<&str> {
        self.first.as_ref().and_then(|f| f.2.as_deref())
    }

    /// Folds one result in; an error when it was judged with other rules or
    /// another inventory than the first (the user then passes `--rules` or
    /// `--inventory`), or a flow cannot be read back.
    pub fn add(&mut self, file: ResultFile) -> Result<(), MergeError> {
        let d = file.doc;
        let path = file.path;
        match &self.first {
            None => self.first = Some((path.clone(), d.rules.origin.clone(), d.inventory.clone())),
            Some((first, origin, inv)) => {
                if self.check_rules && *origin != d.rules.origin {
                    return Err(MergeError::Disagree {
                        flag: "rules",
                        first: first.clone(),
                        a: format!("the rules {origin}"),
                        second: path,
                        b: format!("the rules {}", d.rules.origin),
                    });
                }
                if self.check_inventory && *inv != d.inventory {
                    let name = |i: &Option<String>| {
                        i.as_ref().map_or("no inventory (roles inferred)".to_string(), |p| format!("the inventory {p}"))
                    };
                    return Err(MergeError::Disagree {
                        flag: "inventory",
                        first: first.clone(),
                        a: name(inv),
                        second: path,
                        b: name(&d.inventory),
                    });
                }
            }
        }
        for (index, f) in d.flows.iter().enumerate() {
            let (k, s) = conversation(f).map_err(|message| MergeError::Flow {
                path: path.clone(),
                list: "flows",
                index,
                message,
            })?;
            self.observed.map.entry(k).merge(&s);
        }
        for (index, f) in d.folded.iter().enumerate() {
            let (k, g) =
                group(f).map_err(|message| MergeError::Flow { path: path.clone(), list: "folded", index, message })?;
            self.observed.folded.entry(k).or_default().merge(&g);
        }
        self.observed.seen_in_networks.extend(d.observed.network_members.iter().copied());
        self.observed.broadcast.extend(d.observed.broadcast.iter().copied());
        let c = &d.capture;
        let capture = &mut self.capture;
        let (first, last): (Option<Ts>, Option<Ts>) =
            (c.first_timestamp.as_deref().and_then(parse_rfc3339), c.last_timestamp.as_deref().and_then(parse_rfc3339));
        capture.first_ts = first.into_iter().chain(capture.first_ts).min();
        capture.last_ts = last.into_iter().chain(capture.last_ts).max();
        capture.packets += c.packets;
        capture.bytes += c.bytes;
        capture.files.extend(c.files.iter().map(|f| FileFacts {
            path: PathBuf::from(&f.path),
            packets: f.packets,
            bytes: f.bytes,
            linktypes: f.link_types.iter().filter_map(|l| linktype_number(l)).collect(),
            error: f.error.clone(),
        }));
        for s in Skip::ALL {
            capture.skipped.0[s as usize] += c.skipped.get(s.key()).copied().unwrap_or(0);
        }
        for t in Tunnel::ALL {
            capture.tunnels.0[t as usize] += c.tunnels.get(t.key()).copied().unwrap_or(0);
        }
        if let Some(dr) = &c.drops {
            let t = capture.drops.get_or_insert_with(Drops::default);
            t.received += dr.received;
            t.dropped += dr.dropped;
            t.if_dropped += dr.interface_dropped;
        }
        let ft = &c.flow_table;
        let fl = &mut capture.flows;
        fl.peak_flows = fl.peak_flows.max(ft.peak_flows);
        fl.timed_out += ft.timed_out;
        fl.evicted += ft.evicted;
        fl.fragments_matched += ft.fragments_matched;
        fl.fragments_dropped += ft.fragments_not_tracked;
        fl.hellos_not_reassembled += ft.hellos_not_reassembled;
        let ct = &c.conversation_table;
        let cc = &mut capture.conversations;
        cc.peak = cc.peak.max(ct.peak_conversations);
        cc.folded += ct.folded_conversations;
        cc.members_not_tracked += ct.members_not_tracked;
        // The inputs' out-of-scope counts already hold what their judgement
        // left out; what this one leaves out is added by the report writers.
        self.out_of_scope.connections += d.summary.out_of_scope_connections;
        self.out_of_scope.packets += d.summary.out_of_scope_packets;
        self.out_of_scope.bytes += d.summary.out_of_scope_bytes;
        if d.sources.is_empty() {
            self.sources.push(Source {
                result: path.display().to_string(),
                captures: c.files.iter().map(|f| f.path.clone()).collect(),
                sensor: c.sensor.clone(),
                packets: c.packets,
                first_timestamp: c.first_timestamp.clone(),
                last_timestamp: c.last_timestamp.clone(),
            });
        } else {
            // A merged result merged again: its own sources, not itself.
            self.sources.extend(d.sources);
        }
        Ok(())
    }

    /// Judges the union with `rules` and `inventory` over the combined
    /// time window.
    pub fn finish(self, rules: &RuleSet, inventory: Option<&Inventory>) -> Merged {
        let assessment =
            classify::assess(rules, inventory, View::of(&self.observed), self.capture.duration_secs(), None);
        Merged {
            result: AuditResult {
                capture: self.capture,
                assessment,
                records: None,
                capture_out_of_scope: self.out_of_scope,
            },
            sources: self.sources,
        }
    }
}
