//! Judging conversations against the table: expected, insecure, unexpected
//! or out of scope; and listing the deployment's expectations that no flow
//! met (missing). DESIGN.md "Verdicts" is the specification; each branch
//! below names the sentence of it that it implements.
//!
//! Runs once per conversation at the end of an audit: the cost here is
//! irrelevant next to the packet path, so it favours clear reasons.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;

use crate::conversation::{ConvKey, ConvStats, FoldKey, Folded, OutOfScope, View};
use crate::flow::{Outcome, Ts};
use crate::inventory::{Host, Inventory};
use crate::rules::{Expectation, Role, RoleSet, Rule, RuleSet, Side, TlsRequirement, Transport};

/// The three verdicts of a conversation (DESIGN.md "Verdicts").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Unexpected,
    Insecure,
    Expected,
}

impl Verdict {
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Expected => "expected",
            Verdict::Insecure => "insecure",
            Verdict::Unexpected => "unexpected",
        }
    }
}

/// Whether a missing expectation is certain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The capture covered the expected interval: a real failure.
    Missing,
    /// Too short to tell, or explained (a shutdown notice).
    Unconfirmed,
}

/// Where host roles came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RolesSource {
    Inventory,
    Inferred,
}

/// A host as the report shows it.
#[derive(Clone, Debug)]
pub struct HostView {
    pub addr: IpAddr,
    pub name: Option<String>,
    /// Roles with implications and pseudo-roles.
    pub roles: RoleSet,
    /// Roles as declared (or inferred), without implications.
    pub declared: RoleSet,
    /// Covered by the inventory (or an inferred role).
    pub known: bool,
    /// The entry is a network (CIDR), not this host alone.
    pub in_network: bool,
}

impl HostView {
    /// "ksc01 (10.0.0.10)", "10.1.2.3 (in office-lan)", "10.0.0.10", or
    /// for a folded group "1,204 clients (folded)".
    pub fn label(&self) -> String {
        match &self.name {
            Some(n) if self.addr.is_unspecified() => n.clone(),
            Some(n) if self.in_network => format!("{} (in {n})", self.addr),
            Some(n) if *n != self.addr.to_string() => format!("{n} ({})", self.addr),
            _ => self.addr.to_string(),
        }
    }
    /// The role to show: the declared one that mattered, else the first.
    pub fn role_for(&self, wanted: RoleSet) -> String {
        self.declared
            .first_in(wanted)
            .or_else(|| self.roles.first_in(wanted))
            .or_else(|| self.declared.iter().next())
            .or_else(|| self.roles.iter().find(|r| *r != Role::Any))
            .map_or("unknown".into(), |r| r.name().into())
    }
}

/// A judged conversation.
#[derive(Clone, Debug)]
pub struct Judged {
    pub key: ConvKey,
    pub stats: ConvStats,
    pub client: HostView,
    pub server: HostView,
    /// Index of the matched rule.
    pub rule: Option<usize>,
    /// Name of the inventory `[[allow]]` entry that accepted it.
    pub allow: Option<String>,
    pub verdict: Verdict,
    pub reason: String,
    pub seed: Vec<u32>,
    /// A group of folded conversations (see
    /// [`crate::conversation::FoldKey`]): then the client (and, when
    /// folded across servers, the server) is the unspecified address.
    /// Boxed: most conversations are not groups, and a judged conversation
    /// is kept for every conversation at each judgement.
    pub folded: Option<Box<(FoldKey, Folded)>>,
}

/// An unmet expectation.
#[derive(Clone, Debug)]
pub struct MissingEntry {
    pub host: HostView,
    pub role: Role,
    pub expectation: String,
    pub reason: String,
    pub status: Status,
    pub seed: Vec<u32>,
}

/// The outcome of judging a capture.
#[derive(Clone, Debug)]
pub struct Assessment {
    pub flows: Vec<Judged>,
    pub missing: Vec<MissingEntry>,
    pub roles_source: RolesSource,
    /// The inventory inferred from the traffic, when none was given.
    pub inferred: Option<Inventory>,
    /// Conversations on shared ports with no KSC host: out of scope.
    pub out_of_scope: OutOfScope,
    /// Addresses seen inside inventory networks, and link-layer broadcast
    /// destinations: what the judgement rested on besides the
    /// conversations. Kept so that a report can merge results and judge
    /// again exactly as one audit of all the captures would.
    pub seen_in_networks: std::collections::BTreeSet<IpAddr>,
    pub l2_broadcast: std::collections::BTreeSet<IpAddr>,
}

/// Judges every conversation and lists what is missing.
/// `duration_secs` is the time the capture covers; a missing expectation
/// is certain only when its answered KSC traffic spans the expected interval.
/// `as_of`: judge "missing" on a rolling window ending then (a live
/// capture): an expectation is met only by traffic within its window before
/// that moment, so a device that stops connecting becomes missing and one
/// that comes back is met again; `None`: by traffic anywhere in the capture.
pub fn assess(
    rules: &RuleSet,
    inventory: Option<&Inventory>,
    obs: View<'_>,
    duration_secs: u64,
    as_of: Option<Ts>,
) -> Assessment {
    let (seen_in_networks, l2_broadcast) = obs.sets();
    let (seen_in_networks, l2_broadcast) = (&*seen_in_networks, &*l2_broadcast);
    let (inferred, roles_source) = match inventory {
        Some(_) => (None, RolesSource::Inventory),
        None => (Some(infer_roles(rules, obs, l2_broadcast)), RolesSource::Inferred),
    };
    let inv = inventory.or(inferred.as_ref()).expect("one of the two");
    let res = Resolver { rules, inv, declared: inventory.is_some(), l2_broadcast };

    let mut flows = Vec::with_capacity(obs.size_hint());
    let mut out_of_scope = OutOfScope::default();
    let conversations = obs.conversations().map(|(k, s)| (*k, res.view(k.client), res.view(k.server), s, None));
    let groups = obs.folded().map(|(f, g)| {
        let key = ConvKey {
            client: unspecified_like(f.server),
            server: f.server,
            transport: f.transport,
            server_port: f.server_port,
        };
        let server = if f.server.is_unspecified() { res.folded_servers(f.server) } else { res.view(f.server) };
        (key, res.folded_clients(f, g), server, Cow::Borrowed(&g.stats), Some(Box::new((*f, g.clone()))))
    });
    for (key, client, server, stats, folded) in conversations.chain(groups) {
        match judge(&res, &key, client, server, &stats) {
            Some(mut j) => {
                if let Some(g) = folded.as_ref().map(|b| &b.1) {
                    j.reason = format!(
                        "{} conversation(s) folded at the conversation limit (--max-conversations): {}",
                        crate::report::thousands(g.conversations),
                        j.reason
                    );
                    j.folded = folded;
                }
                flows.push(j)
            }
            None => {
                out_of_scope.connections += stats.connections;
                out_of_scope.packets += stats.packets_total();
                out_of_scope.bytes += stats.bytes_total();
            }
        }
    }
    flows.sort_by_key(|j| j.key);
    // The time the capture demonstrably covered: from the first to the last
    // answered KSC conversation (a forged timestamp on a lone packet cannot
    // stretch it into a verdict), and never more than the capture itself.
    let answered = flows.iter().filter(|j| j.stats.outcome(Outcome::Answered) > 0);
    let covered = answered
        .fold(None, |acc: Option<(i64, i64)>, j| {
            let (a, b) = (j.stats.first_ts, j.stats.last_ts);
            Some(acc.map_or((a, b), |(x, y)| (x.min(a), y.max(b))))
        })
        .map_or(0, |(a, b)| (b.saturating_sub(a) / 1_000_000).max(0) as u64)
        .min(duration_secs);
    let missing = missing(&res, &flows, seen_in_networks, covered, as_of);
    Assessment {
        flows,
        missing,
        roles_source,
        inferred,
        out_of_scope,
        seen_in_networks: seen_in_networks.clone(),
        l2_broadcast: l2_broadcast.clone(),
    }
}

/// 0.0.0.0 or :: : the address a folded side is shown with.
fn unspecified_like(a: IpAddr) -> IpAddr {
    match a {
        IpAddr::V4(_) => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
    }
}

struct Resolver<'a> {
    rules: &'a RuleSet,
    inv: &'a Inventory,
    /// The inventory was given by the user (not inferred).
    declared: bool,
    /// Addresses seen as link-layer broadcast destinations.
    l2_broadcast: &'a std::collections::BTreeSet<IpAddr>,
}

impl Resolver<'_> {
    /// The clients of a folded group: with an inventory, the roles they
    /// were declared with (none: hosts it lacks); without, the roles their
    /// opening this port gives ([`roles_opening`]).
    fn folded_clients(&self, f: &FoldKey, g: &Folded) -> HostView {
        let declared = if self.declared { f.client_roles } else { roles_opening(f.transport, f.server_port, f.server) };
        let any = RoleSet::EMPTY.with(Role::Any);
        let known = !declared.is_empty();
        HostView {
            addr: unspecified_like(f.server),
            name: Some(match g.clients.estimate() {
                1 => "~1 client (folded)".to_string(),
                n => format!("~{} clients (folded)", crate::report::thousands(n)),
            }),
            roles: if known { self.rules.expand(declared).union(any) } else { any.with(Role::External) },
            declared,
            known,
            in_network: false,
        }
    }

    /// The servers of a group folded across servers.
    fn folded_servers(&self, addr: IpAddr) -> HostView {
        HostView {
            addr,
            name: Some("many servers (folded)".into()),
            roles: RoleSet::EMPTY.with(Role::Any).with(Role::External),
            declared: RoleSet::EMPTY,
            known: false,
            in_network: false,
        }
    }

    fn view(&self, addr: IpAddr) -> HostView {
        let any = RoleSet::EMPTY.with(Role::Any);
        let is_mcast = addr.is_multicast();
        let lookup = self.inv.lookup(addr);
        let bcast = matches!(addr, IpAddr::V4(v4) if v4.is_broadcast())
            || lookup.is_some_and(|l| l.is_broadcast)
            || self.l2_broadcast.contains(&addr);
        if is_mcast || bcast {
            let r = if is_mcast { Role::Multicast } else { Role::Broadcast };
            return HostView {
                addr,
                name: None,
                roles: any.with(r),
                declared: RoleSet::EMPTY.with(r),
                known: true,
                in_network: false,
            };
        }
        match lookup {
            Some(l) => HostView {
                addr,
                name: Some(l.host.name.clone()),
                roles: self.rules.expand(l.host.roles).union(any),
                declared: l.host.roles,
                known: true,
                in_network: l.host.net.prefix_len() != l.host.net.max_prefix_len(),
            },
            None => HostView {
                addr,
                name: None,
                roles: any.with(Role::External),
                declared: RoleSet::EMPTY,
                known: false,
                in_network: false,
            },
        }
    }
}

fn fits(rule: &Rule, client: &HostView, server: &HostView) -> bool {
    rule.initiator.intersects(client.roles) && rule.responder.intersects(server.roles)
}

fn ports_text(t: Transport, p: u16) -> String {
    format!("{t} {p}")
}

fn judge(res: &Resolver<'_>, key: &ConvKey, client: HostView, server: HostView, s: &ConvStats) -> Option<Judged> {
    let rules = res.rules;
    let (t, port) = (key.transport, key.server_port);
    let infra = client.roles.intersects(Role::INFRASTRUCTURE) || server.roles.intersects(Role::INFRASTRUCTURE);

    // Scope (DESIGN.md): a KSC port; a shared port only with a KSC host on a
    // side; with an inventory, any flow between two of its hosts where the
    // server serves KSC.
    let ksc_port = rules.ksc_ports.contains(t, port);
    let shared = rules.shared_ports.contains(t, port);
    let in_scope = (ksc_port && !shared)
        || (shared && infra)
        || (res.declared && client.known && server.known && server.roles.intersects(Role::INFRASTRUCTURE));
    if !in_scope {
        return None;
    }
    let candidates: Vec<usize> = rules.candidates(t, port).to_vec();
    let mut j = Judged {
        key: *key,
        stats: s.clone(),
        client,
        server,
        rule: None,
        allow: None,
        verdict: Verdict::Unexpected,
        reason: String::new(),
        seed: Vec::new(),
        folded: None,
    };
    let (cl, sl) = (j.client.label(), j.server.label());

    if res.declared {
        if let Some(a) = res.inv.allowed(key.client, key.server, t, port) {
            j.verdict = Verdict::Expected;
            j.allow = Some(a.name.clone());
            j.reason = format!("allowed by the inventory ({}): {}", a.name, a.reason);
            return Some(j);
        }
    }

    // A rule that names server names fits only a hello naming one of them
    // (fcm and cloud share AS → external:443).
    let sni_ok = |r: &Rule| r.sni.is_empty() || s.sni.as_deref().is_some_and(|n| r.sni_matches(n));
    let fitting: Vec<usize> = candidates
        .iter()
        .copied()
        .filter(|&i| fits(&rules.rules[i], &j.client, &j.server) && sni_ok(&rules.rules[i]))
        .collect();
    // Prefer a rule singled out by the server name, then one the declared
    // roles fit without implications (a gateway connecting to its server is
    // `gw-server`, not merely `agent`), then file order.
    let declared_fit = |i: usize| {
        rules.rules[i].initiator.intersects(j.client.declared) && rules.rules[i].responder.intersects(j.server.declared)
    };
    let chosen = fitting
        .iter()
        .copied()
        .find(|&i| !rules.rules[i].sni.is_empty())
        .or_else(|| fitting.iter().copied().find(|&i| declared_fit(i)))
        .or_else(|| fitting.first().copied());

    let Some(ri) = chosen else {
        j.seed = candidates.iter().flat_map(|&i| rules.rules[i].seed.iter().copied()).collect();
        j.seed.sort_unstable();
        j.seed.dedup();
        j.reason = unexpected_reason(res, &j, &candidates);
        return Some(j);
    };
    let rule = &rules.rules[ri];
    j.rule = Some(ri);
    j.seed = rule.seed.clone();
    let what = format!(
        "{} ({}) → {} ({}) on {}",
        cl,
        j.client.role_for(rule.initiator),
        sl,
        j.server.role_for(rule.responder),
        ports_text(t, port)
    );

    // Insecure (DESIGN.md): the rule itself is insecure; or TLS required and
    // the first payload is not TLS; or TLS below 1.2.
    let mut problems = Vec::new();
    if let Some(why) = &rule.insecure {
        problems.push(why.clone());
    }
    if rule.tls == TlsRequirement::Required && s.plaintext > 0 {
        problems.push(format!(
            "{} of {} connection(s) sent plaintext as the first payload where the rule requires TLS",
            s.plaintext, s.connections
        ));
    }
    if let Some(v) = s.tls_min.filter(|v| v.is_obsolete()) {
        problems.push(format!("the client offered at most {v}; TLS below 1.2 is obsolete (RFC 8996)"));
    }
    if problems.is_empty() {
        j.verdict = Verdict::Expected;
        let mut r = format!("{what} matches rule `{}`: {}", rule.id, rule.purpose.trim_end_matches('.'));
        let unanswered = s.outcome(Outcome::Unanswered);
        let refused = s.outcome(Outcome::Refused);
        if unanswered + refused > 0 {
            let _ = write!(r, "; but {unanswered} attempt(s) unanswered and {refused} refused of {}", s.connections);
        }
        j.reason = r;
    } else {
        j.verdict = Verdict::Insecure;
        j.reason = format!("{what}, rule `{}`: {}", rule.id, problems.join("; "));
    }
    Some(j)
}

fn unexpected_reason(res: &Resolver<'_>, j: &Judged, candidates: &[usize]) -> String {
    let rules = res.rules;
    let (t, port) = (j.key.transport, j.key.server_port);
    let (cl, sl) = (j.client.label(), j.server.label());
    let croles = j.client.role_for(RoleSet(!0));
    let sroles = j.server.role_for(RoleSet(!0));
    let pt = ports_text(t, port);
    if let Some(&ri) = candidates.iter().find(|&&i| fits(&rules.rules[i], &j.server, &j.client)) {
        let r = &rules.rules[ri];
        return format!(
            "wrong direction: {cl} ({croles}) opened {pt} to {sl} ({sroles}); rule `{}` has {} → {}",
            r.id,
            r.initiator.names(),
            r.responder.names()
        );
    }
    let not_in = if res.declared { "is not in the inventory" } else { "has no KSC role seen in the traffic" };
    if !j.client.known && !candidates.is_empty() {
        return format!("{cl} {not_in} but opened {pt} to {sl} ({sroles})");
    }
    if !j.server.known && !candidates.is_empty() {
        return format!("{cl} ({croles}) opened {pt} to {sl}, which {not_in}");
    }
    if candidates.is_empty() {
        return format!("{cl} ({croles}) → {sl} ({sroles}) on {pt}: no KSC rule covers this port");
    }
    let allowed: Vec<String> = candidates
        .iter()
        .map(|&i| &rules.rules[i])
        .map(|r| format!("`{}` {} → {}", r.id, r.initiator.names(), r.responder.names()))
        .collect();
    format!(
        "wrong roles: {cl} ({croles}) → {sl} ({sroles}) on {pt} fits no rule; this port is for {}",
        allowed.join("; ")
    )
}

/// The hosts an expectation is about: inventory entries holding the role,
/// and for networks, each address of them seen in the capture.
fn subjects<'a>(res: &'a Resolver<'_>, e: &Expectation, seen: &'a std::collections::BTreeSet<IpAddr>) -> Vec<HostView> {
    let mut out = Vec::new();
    for h in &res.inv.hosts {
        if !res.rules.expand(h.roles).contains(e.subject) {
            continue;
        }
        if h.net.prefix_len() == h.net.max_prefix_len() {
            out.push(res.view(h.net.addr()));
        } else {
            for a in seen.iter().filter(|a| h.net.contains(*a)) {
                // Only addresses whose own entry is this network.
                if res.inv.lookup(*a).is_some_and(|l| std::ptr::eq(l.host, h)) {
                    out.push(res.view(*a));
                }
            }
        }
    }
    out
}

fn missing(
    res: &Resolver<'_>,
    flows: &[Judged],
    seen: &std::collections::BTreeSet<IpAddr>,
    duration_secs: u64,
    as_of: Option<Ts>,
) -> Vec<MissingEntry> {
    let rules = res.rules;
    let mut out = Vec::new();
    // Each host's conversations, as client and as server: the loops below
    // then look at a host's own flows instead of all flows per host.
    let mut by_client: hashbrown::HashMap<IpAddr, Vec<usize>> = hashbrown::HashMap::new();
    let mut by_server: hashbrown::HashMap<IpAddr, Vec<usize>> = hashbrown::HashMap::new();
    for (i, j) in flows.iter().enumerate() {
        by_client.entry(j.key.client).or_default().push(i);
        by_server.entry(j.key.server).or_default().push(i);
    }
    let none: Vec<usize> = Vec::new();
    for e in &rules.expectations {
        let erules: Vec<&Rule> = e.rules.iter().map(|&i| &rules.rules[i]).collect();
        let counterpart = erules.iter().fold(RoleSet::EMPTY, |acc, r| match e.side {
            Side::Initiator => acc.union(r.responder),
            Side::Responder => acc.union(r.initiator),
            Side::Either => acc.union(r.responder).union(r.initiator),
        });
        let counter_hosts: Vec<&Host> =
            res.inv.hosts.iter().filter(|o| res.rules.expand(o.roles).intersects(counterpart)).collect();
        for h in subjects(res, e, seen) {
            if h.roles.intersects(e.unless_also) {
                continue;
            }
            // Someone else must be able to play the other side.
            let other_exists =
                counter_hosts.iter().any(|o| !o.net.contains(&h.addr)) || counterpart.contains(Role::External);
            if !other_exists {
                continue;
            }
            let as_client = by_client.get(&h.addr).unwrap_or(&none);
            let as_server = by_server.get(&h.addr).unwrap_or(&none);
            let mine: Vec<&Judged> = match e.side {
                Side::Initiator => as_client.iter().map(|&i| &flows[i]).collect(),
                Side::Responder => as_server.iter().map(|&i| &flows[i]).collect(),
                Side::Either => as_client
                    .iter()
                    .map(|&i| &flows[i])
                    .chain(as_server.iter().map(|&i| &flows[i]).filter(|j| j.key.client != h.addr))
                    .collect(),
            };
            // On a rolling window only what was seen within it counts.
            let since = as_of.map(|now| now.saturating_sub((e.window_secs as Ts).saturating_mul(1_000_000)));
            let recent = |j: &Judged| since.is_none_or(|t| j.stats.last_ts >= t);
            let matching: Vec<&Judged> = mine
                .into_iter()
                .filter(|j| {
                    recent(j)
                        && erules
                            .iter()
                            .any(|r| r.serves(j.key.transport, j.key.server_port) && fits(r, &j.client, &j.server))
                })
                .collect();
            if matching.iter().any(|j| j.stats.outcome(Outcome::Answered) > 0) {
                continue;
            }
            let unanswered: u64 = matching.iter().map(|j| j.stats.outcome(Outcome::Unanswered)).sum();
            let refused: u64 = matching.iter().map(|j| j.stats.outcome(Outcome::Refused)).sum();
            let explained = as_client.iter().map(|&i| &flows[i]).any(|j| {
                recent(j) && e.explained_by.iter().any(|&i| rules.rules[i].serves(j.key.transport, j.key.server_port))
            });
            let mins = duration_secs / 60;
            let mut reason = match as_of {
                None => format!("{} never managed to {}", h.label(), e.text),
                Some(_) => {
                    format!("{} has not managed to {} in the last {} min", h.label(), e.text, e.window_secs / 60)
                }
            };
            if unanswered + refused > 0 {
                let parts: Vec<String> = [(unanswered, "unanswered"), (refused, "refused")]
                    .iter()
                    .filter(|(n, _)| *n > 0)
                    .map(|(n, what)| format!("{n} attempt(s) {what}"))
                    .collect();
                let _ = write!(reason, " ({}: check the firewall)", parts.join(", "));
            }
            let status = if explained {
                let _ = write!(reason, "; it sent a shutdown notice (UDP 13000), which explains its silence");
                Status::Unconfirmed
            } else if duration_secs >= e.window_secs {
                let _ = write!(
                    reason,
                    " in {mins} min of observed KSC traffic (expected within {} min)",
                    e.window_secs / 60
                );
                Status::Missing
            } else {
                let _ = write!(
                    reason,
                    "; not seen yet, window too short: the KSC traffic in the capture spans {mins} min, {} min are needed to be sure",
                    e.window_secs / 60
                );
                Status::Unconfirmed
            };
            out.push(MissingEntry {
                host: h,
                role: e.subject,
                expectation: e.id.clone(),
                reason,
                status,
                seed: e.seed.clone(),
            });
        }
    }
    out
}

/// Infers roles from the traffic when no inventory is given (DESIGN.md:
/// "the host that accepts TCP 13000 from many agents and 13291/13299 is an
/// AS; one that accepts 13000 and 13295 and multicasts on 15001 is a DP").
/// Evidence is what a host accepts (answered) and what it opens.
pub fn infer_roles(rules: &RuleSet, obs: View<'_>, l2_broadcast: &std::collections::BTreeSet<IpAddr>) -> Inventory {
    use Role::*;
    #[derive(Default)]
    struct Ev {
        accepts: Vec<(Transport, u16, IpAddr)>,
        opens: Vec<(Transport, u16, IpAddr)>,
    }
    // Evidence from the KSC ports no other software uses; the shared ports
    // (443, 8080, the DBMS ports) only confirm roles in pass 2, once the
    // servers are known (a span port carries far more HTTPS than KSC).
    let mut ev: hashbrown::HashMap<IpAddr, Ev> = hashbrown::HashMap::new();
    for (k, s) in obs.conversations() {
        if !rules.ksc_ports.contains(k.transport, k.server_port)
            || rules.shared_ports.contains(k.transport, k.server_port)
        {
            continue;
        }
        let answered = s.outcome(Outcome::Answered) > 0 || k.transport == Transport::Udp;
        if answered && !k.server.is_multicast() && !matches!(k.server, IpAddr::V4(v) if v.is_broadcast()) {
            ev.entry(k.server).or_default().accepts.push((k.transport, k.server_port, k.client));
        }
        ev.entry(k.client).or_default().opens.push((k.transport, k.server_port, k.server));
    }
    // Folded groups still show what their server accepts (their clients
    // are not known one by one).
    for (f, g) in obs.folded() {
        let ksc = rules.ksc_ports.contains(f.transport, f.server_port)
            && !rules.shared_ports.contains(f.transport, f.server_port);
        let answered = g.stats.outcome(Outcome::Answered) > 0 || f.transport == Transport::Udp;
        if ksc && answered && !f.server.is_unspecified() && !f.server.is_multicast() {
            ev.entry(f.server).or_default().accepts.push((f.transport, f.server_port, unspecified_like(f.server)));
        }
    }
    let tcp = Transport::Tcp;
    let udp = Transport::Udp;
    let has = |list: &[(Transport, u16, IpAddr)], t: Transport, ports: &[u16]| {
        list.iter().any(|(tt, p, _)| *tt == t && ports.contains(p))
    };
    let mut roles: BTreeMap<IpAddr, RoleSet> = BTreeMap::new();
    // Pass 1: servers by the ports they accept.
    for (a, e) in &ev {
        let mut r = RoleSet::EMPTY;
        if has(&e.accepts, tcp, &[13291, 13299, 14000, 17000, 13292, 13293, 17100, 8060, 8061, 13111, 17111])
            || has(&e.accepts, udp, &[13000, 15111])
        {
            r = r.with(AdministrationServer);
        }
        if has(&e.accepts, tcp, &[13295]) {
            r = r.with(DistributionPoint);
        }
        for &(t, p, d) in &e.opens {
            r = r.union(roles_opening(t, p, d));
        }
        roles.insert(*a, r);
    }
    // Pass 2: who accepts 13000 without AS markers, and the DBMS.
    let is_as =
        |roles: &BTreeMap<IpAddr, RoleSet>, a: &IpAddr| roles.get(a).is_some_and(|r| r.contains(AdministrationServer));
    let snapshot = roles.clone();
    for (a, e) in &ev {
        let mut r = roles[a];
        let accepts_13000 = has(&e.accepts, tcp, &[13000]);
        if accepts_13000 && !r.contains(AdministrationServer) && !r.contains(DistributionPoint) {
            let from_as = e.accepts.iter().any(|(t, p, c)| *t == tcp && *p == 13000 && is_as(&snapshot, c));
            if from_as {
                r = r.with(ConnectionGateway);
            } else if r.contains(ManagedDevice) {
                r = r.with(DistributionPoint);
            } else {
                r = r.with(AdministrationServer);
            }
        }
        // The AS wakes managed devices on UDP 15000 (158545, #2); agents also
        // broadcast there, so only a wake-up from a server counts.
        if e.accepts.iter().any(|(t, p, c)| *t == udp && *p == 15000 && is_as(&snapshot, c)) {
            r = r.with(ManagedDevice);
        }
        if r.contains(AdministrationServer)
            && e.opens.iter().any(|(t, p, d)| *t == tcp && *p == 13000 && is_as(&snapshot, d))
        {
            r = r.with(SecondaryServer);
        }
        // A secondary, a DP or a gateway is not also "just" a managed device
        // in the inferred view (the implication adds it back where it holds).
        if r.intersects(RoleSet::of(&[DistributionPoint, ConnectionGateway])) {
            r = RoleSet(r.0 & !RoleSet::of(&[ManagedDevice]).0);
        }
        roles.insert(*a, r);
    }
    // The DBMS accepts the AS's database port (158522, #1); a browser opens
    // 8080 on a Web Console server (158534, #9a).
    for (k, _) in obs.conversations() {
        if k.transport != tcp {
            continue;
        }
        if [1433, 3306, 5432].contains(&k.server_port) && is_as(&snapshot, &k.client) {
            let r = roles.entry(k.server).or_default();
            *r = r.with(Dbms);
        } else if k.server_port == 8080 && snapshot.get(&k.server).is_some_and(|r| r.contains(WebConsole)) {
            let r = roles.entry(k.client).or_default();
            *r = r.with(Browser);
        }
    }
    // A link-layer broadcast destination is no host.
    roles.retain(|a, _| !l2_broadcast.contains(a));
    let hosts = roles
        .into_iter()
        .filter(|(_, r)| !r.is_empty())
        .map(|(a, r)| Host { name: a.to_string(), net: ipnet::IpNet::from(a), roles: r })
        .collect();
    Inventory::from_hosts("<inferred from the traffic>", hosts)
}

/// The roles a host earns by opening `port` to `dest` (DESIGN.md's
/// inference): a Web Console opens 13299 on the AS, an admin console
/// 13291, a mobile device 13292/13293/17100, a managed device 13000,
/// 14000, 17000 or 13295, and a DP multicasts on UDP 15001.
fn roles_opening(t: Transport, port: u16, dest: IpAddr) -> RoleSet {
    use Role::*;
    let role = match (t, port) {
        (Transport::Tcp, 13299) => WebConsole,
        (Transport::Tcp, 13291) => AdminConsole,
        (Transport::Tcp, 13292 | 13293 | 17100) => MobileDevice,
        (Transport::Tcp, 13000 | 14000 | 17000 | 13295) | (Transport::Udp, 13000) => ManagedDevice,
        (Transport::Udp, 15001) if dest.is_multicast() => DistributionPoint,
        _ => return RoleSet::EMPTY,
    };
    RoleSet::EMPTY.with(role)
}

/// `kscflow discover`: the inferred inventory as TOML to correct and reuse.
pub fn inventory_toml(inv: &Inventory) -> String {
    let mut s = String::from(
        "# Inventory inferred by kscflow from the traffic. Check every role, add\n# host names, then pass it back with --inventory.\n",
    );
    for h in &inv.hosts {
        let roles: Vec<String> = h.roles.iter().map(|r| format!("\"{}\"", r.name())).collect();
        let _ = write!(
            s,
            "\n[[host]]\nname = \"{}\"\naddr = \"{}\"\nroles = [{}]\n",
            h.name,
            h.net.addr(),
            roles.join(", ")
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conversation::Observed;
    use crate::rules::Transport;

    /// Two devices reach the AS on TCP 13000 over 100 minutes; one stops
    /// after 10. Judged over the whole capture neither is missing; judged as
    /// of the end on a rolling window (live), the one that stopped is, and
    /// the reason says "in the last 45 min".
    #[test]
    fn rolling_window_makes_a_device_that_stopped_missing() {
        let rules = RuleSet::builtin();
        let inv = Inventory::parse(
            std::path::Path::new("t.toml"),
            "[[host]]\nname = \"ksc\"\naddr = \"10.0.0.10\"\nrole = \"administration-server\"\n\n\
             [[host]]\nname = \"a\"\naddr = \"10.0.1.5\"\nrole = \"managed-device\"\n\n\
             [[host]]\nname = \"b\"\naddr = \"10.0.1.6\"\nrole = \"managed-device\"\n",
        )
        .unwrap();
        const MIN: Ts = 60_000_000;
        let t0: Ts = 1_768_467_600_000_000;
        let conv = |client: &str, last_min: Ts| {
            let key = ConvKey {
                client: client.parse().unwrap(),
                server: "10.0.0.10".parse().unwrap(),
                transport: Transport::Tcp,
                server_port: 13000,
            };
            let mut s = ConvStats { connections: 1, first_ts: t0, last_ts: t0 + last_min * MIN, ..Default::default() };
            s.outcomes[Outcome::Answered as usize] = 1;
            s.packets = [5, 5];
            (key, s)
        };
        let map = [conv("10.0.1.5", 10), conv("10.0.1.6", 100)].into_iter().collect();
        let obs = Observed { map, ..Default::default() };
        let judge = |as_of| assess(&rules, Some(&inv), View::of(&obs), 100 * 60, as_of);
        assert!(judge(None).missing.is_empty());
        let live = judge(Some(t0 + 100 * MIN));
        let missing: Vec<_> = live.missing.iter().map(|m| (m.host.addr.to_string(), m.status)).collect();
        assert_eq!(missing, vec![("10.0.1.5".to_string(), Status::Missing)]);
        assert!(live.missing[0].reason.contains("in the last 45 min"), "{}", live.missing[0].reason);
        // Back within the window: met again.
        assert!(judge(Some(t0 + 50 * MIN)).missing.is_empty());
    }
}
