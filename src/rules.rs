//! The KSC 14.2 port-and-direction table, as data.
//!
//! The table lives in `rules/ksc-14.2.toml` (compiled into the binary as the
//! default; `--rules FILE` replaces it). Every rule cites the seed topics it
//! comes from, so that every verdict can say where it rests (DESIGN.md).
//!
//! Loading is the cold path: the file is parsed once, validated (unknown
//! keys, unknown role names, duplicate ids, dangling references are errors
//! with file:line:column) and compiled into a [`RuleSet`] whose lookups are
//! plain array indexing: a 2 × 65 536 port index gives the candidate rules
//! of a (transport, port) in one load, which is all the per-flow path needs.

use std::fmt;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use crate::error::{parse_toml, ConfigError};

/// The built-in table, `rules/ksc-14.2.toml`.
pub const BUILTIN: &str = include_str!("../rules/ksc-14.2.toml");
/// How the built-in table is named in messages.
pub const BUILTIN_NAME: &str = "<built-in rules/ksc-14.2.toml>";

/// A KSC role a host can hold, plus the pseudo-roles rules use for hosts
/// that are not in any inventory (DESIGN.md "Contracts": the inventory names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Role {
    AdministrationServer,
    SecondaryServer,
    Dbms,
    DistributionPoint,
    ConnectionGateway,
    ManagedDevice,
    MobileDevice,
    WebConsole,
    AdminConsole,
    Browser,
    IosMdmServer,
    ReverseProxy,
    /// An address outside the inventory (Kaspersky, Google, Apple servers).
    External,
    /// 255.255.255.255 or the last address of an inventory network.
    Broadcast,
    /// 224.0.0.0/4 or ff00::/8.
    Multicast,
    /// Matches every host.
    Any,
}

impl Role {
    /// Every role, in display order.
    pub const ALL: [Role; 16] = [
        Role::AdministrationServer,
        Role::SecondaryServer,
        Role::Dbms,
        Role::DistributionPoint,
        Role::ConnectionGateway,
        Role::ManagedDevice,
        Role::MobileDevice,
        Role::WebConsole,
        Role::AdminConsole,
        Role::Browser,
        Role::IosMdmServer,
        Role::ReverseProxy,
        Role::External,
        Role::Broadcast,
        Role::Multicast,
        Role::Any,
    ];

    /// The roles an inventory may declare (the pseudo-roles are derived).
    pub const DECLARABLE: &'static [Role] = &[
        Role::AdministrationServer,
        Role::SecondaryServer,
        Role::Dbms,
        Role::DistributionPoint,
        Role::ConnectionGateway,
        Role::ManagedDevice,
        Role::MobileDevice,
        Role::WebConsole,
        Role::AdminConsole,
        Role::Browser,
        Role::IosMdmServer,
        Role::ReverseProxy,
    ];

    /// Roles that serve KSC: a flow that touches one of them on a shared
    /// port (443, 8080, 1433, …) is KSC traffic (DESIGN.md "out of scope").
    pub const INFRASTRUCTURE: RoleSet = RoleSet(
        1 << Role::AdministrationServer as u16
            | 1 << Role::SecondaryServer as u16
            | 1 << Role::Dbms as u16
            | 1 << Role::DistributionPoint as u16
            | 1 << Role::ConnectionGateway as u16
            | 1 << Role::WebConsole as u16
            | 1 << Role::IosMdmServer as u16
            | 1 << Role::ReverseProxy as u16,
    );

    pub fn name(self) -> &'static str {
        match self {
            Role::AdministrationServer => "administration-server",
            Role::SecondaryServer => "secondary-server",
            Role::Dbms => "dbms",
            Role::DistributionPoint => "distribution-point",
            Role::ConnectionGateway => "connection-gateway",
            Role::ManagedDevice => "managed-device",
            Role::MobileDevice => "mobile-device",
            Role::WebConsole => "web-console",
            Role::AdminConsole => "admin-console",
            Role::Browser => "browser",
            Role::IosMdmServer => "ios-mdm-server",
            Role::ReverseProxy => "reverse-proxy",
            Role::External => "external",
            Role::Broadcast => "broadcast",
            Role::Multicast => "multicast",
            Role::Any => "any",
        }
    }

    pub fn from_name(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.name() == s)
    }

    fn list(roles: &[Role]) -> String {
        roles.iter().map(|r| r.name()).collect::<Vec<_>>().join(", ")
    }

    /// Parses a declarable role name, with an error that lists the valid ones.
    pub fn parse_declarable(s: &str) -> Result<Role, String> {
        match Role::from_name(s) {
            Some(r) if Role::DECLARABLE.contains(&r) => Ok(r),
            Some(r) => Err(format!(
                "role `{}` is derived from the traffic and cannot be declared; valid roles: {}",
                r.name(),
                Role::list(Role::DECLARABLE)
            )),
            None => Err(format!("unknown role `{s}`; valid roles: {}", Role::list(Role::DECLARABLE))),
        }
    }

    fn parse_any(s: &str) -> Result<Role, String> {
        Role::from_name(s).ok_or_else(|| format!("unknown role `{s}`; valid roles: {}", Role::list(&Role::ALL)))
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of roles as a bitmask: role checks on the per-flow path are one AND.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RoleSet(pub u16);

impl RoleSet {
    pub const EMPTY: RoleSet = RoleSet(0);

    pub fn of(roles: &[Role]) -> RoleSet {
        RoleSet(roles.iter().fold(0, |m, r| m | 1 << *r as u16))
    }
    pub fn with(self, r: Role) -> RoleSet {
        RoleSet(self.0 | 1 << r as u16)
    }
    pub fn contains(self, r: Role) -> bool {
        self.0 & (1 << r as u16) != 0
    }
    pub fn intersects(self, o: RoleSet) -> bool {
        self.0 & o.0 != 0
    }
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
    pub fn union(self, o: RoleSet) -> RoleSet {
        RoleSet(self.0 | o.0)
    }
    pub fn iter(self) -> impl Iterator<Item = Role> {
        Role::ALL.into_iter().filter(move |r| self.contains(*r))
    }
    /// The first role of `self` that is also in `o`, in display order.
    pub fn first_in(self, o: RoleSet) -> Option<Role> {
        RoleSet(self.0 & o.0).iter().next()
    }
    /// Role names joined with ", " ("unknown" when empty).
    pub fn names(self) -> String {
        if self.is_empty() {
            return "unknown".into();
        }
        self.iter().map(|r| r.name()).collect::<Vec<_>>().join(", ")
    }
}

/// Layer-4 protocol of a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Tcp,
    Udp,
}

impl Transport {
    pub fn name(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
        }
    }
    pub fn from_ip_number(n: u8) -> Option<Transport> {
        match n {
            6 => Some(Transport::Tcp),
            17 => Some(Transport::Udp),
            _ => None,
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Transport::Tcp => "TCP",
            Transport::Udp => "UDP",
        })
    }
}

/// What a rule says about TLS on its port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsRequirement {
    /// The seed calls it a "porta TLS": plaintext there is insecure.
    Required,
    /// No TLS in the vendor table ("—").
    None,
    /// As the service is set up (DBMS), or not stated.
    Optional,
}

/// Which side of a satisfying flow the subject of an expectation is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Initiator,
    Responder,
    Either,
}

/// One row of the vendor table.
#[derive(Clone, Debug)]
pub struct Rule {
    pub id: String,
    pub initiator: RoleSet,
    pub responder: RoleSet,
    pub transport: Transport,
    pub ports: Vec<u16>,
    pub tls: TlsRequirement,
    /// Set when matching the rule is itself insecure (TCP 14000, TCP 8060).
    pub insecure: Option<String>,
    pub process: String,
    pub purpose: String,
    pub seed: Vec<u32>,
    pub flows: Vec<String>,
    pub refs: Vec<String>,
    pub note: Option<String>,
    /// Server names (TLS SNI) that single this rule out among rules of the
    /// same port and roles; `*.` prefixes match subdomains. Empty: any.
    pub sni: Vec<String>,
}

impl Rule {
    /// Whether the rule listens on `port` over `t`.
    pub fn serves(&self, t: Transport, port: u16) -> bool {
        self.transport == t && self.ports.contains(&port)
    }

    /// Whether `sni` is one of the rule's server names.
    pub fn sni_matches(&self, sni: &str) -> bool {
        let sni = sni.trim_end_matches('.').to_ascii_lowercase();
        self.sni.iter().any(|p| match p.strip_prefix("*.") {
            Some(suffix) => {
                sni.ends_with(suffix)
                    && sni.len() > suffix.len()
                    && sni.as_bytes()[sni.len() - suffix.len() - 1] == b'.'
            }
            None => sni == p.to_ascii_lowercase(),
        })
    }

    /// "seed 158545, #4" — where the rule comes from, for reports.
    pub fn source(&self) -> String {
        let mut parts: Vec<String> = self.seed.iter().map(|t| t.to_string()).collect();
        parts.extend(self.flows.iter().cloned());
        parts.extend(self.refs.iter().filter(|r| !self.seed.iter().any(|t| t.to_string() == **r)).cloned());
        parts.join(", ")
    }
}

/// A deployment expectation: what a host of some role must show in a
/// capture long enough (DESIGN.md "missing").
#[derive(Clone, Debug)]
pub struct Expectation {
    pub id: String,
    pub subject: Role,
    pub side: Side,
    /// Indices into [`RuleSet::rules`].
    pub rules: Vec<usize>,
    pub explained_by: Vec<usize>,
    /// A subject that also holds one of these roles is exempt: the flow
    /// stays inside one host (seed flow #7).
    pub unless_also: RoleSet,
    /// Capture time after which absence is certain: interval × missed intervals.
    pub window_secs: u64,
    pub text: String,
    pub seed: Vec<u32>,
}

/// A set of ports per transport, as a bitmap (8 KiB): one load per test.
#[derive(Clone)]
pub struct PortSet {
    bits: Box<[u64; 2048]>,
}

impl PortSet {
    pub fn new() -> PortSet {
        PortSet { bits: Box::new([0; 2048]) }
    }
    fn idx(t: Transport, port: u16) -> usize {
        (t as usize) << 16 | port as usize
    }
    pub fn insert(&mut self, t: Transport, port: u16) {
        let i = Self::idx(t, port);
        self.bits[i >> 6] |= 1 << (i & 63);
    }
    #[inline]
    pub fn contains(&self, t: Transport, port: u16) -> bool {
        let i = Self::idx(t, port);
        self.bits[i >> 6] & (1 << (i & 63)) != 0
    }
    /// The ports of `t`, ascending.
    pub fn ports(&self, t: Transport) -> impl Iterator<Item = u16> + '_ {
        (0..=u16::MAX).filter(move |&p| self.contains(t, p))
    }
}

impl Default for PortSet {
    fn default() -> Self {
        PortSet::new()
    }
}

impl fmt::Debug for PortSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PortSet")
    }
}

/// The compiled table.
#[derive(Clone, Debug)]
pub struct RuleSet {
    pub product: String,
    pub origin: String,
    pub rules: Vec<Rule>,
    pub expectations: Vec<Expectation>,
    pub sync_interval_minutes: u64,
    pub missed_intervals: u64,
    /// Every (transport, port) some rule listens on.
    pub ksc_ports: PortSet,
    /// Ports other software uses too (443, 8080, 1433, 3306, 5432).
    pub shared_ports: PortSet,
    shared_port_list: Vec<u16>,
    /// Role implications, indexed by role: the closure of `[roles]`.
    implies: [RoleSet; 16],
    /// Rule indices per (transport, port), in file order.
    by_port: hashbrown::HashMap<(Transport, u16), Vec<usize>>,
}

impl RuleSet {
    /// The built-in KSC 14.2 table.
    pub fn builtin() -> RuleSet {
        RuleSet::parse(Path::new(BUILTIN_NAME), BUILTIN).expect("the built-in rules are valid (tested)")
    }

    /// Reads and validates a rules file.
    pub fn load(path: &Path) -> Result<RuleSet, crate::Error> {
        let text =
            std::fs::read_to_string(path).map_err(|source| crate::Error::Read { path: path.to_path_buf(), source })?;
        Ok(RuleSet::parse(path, &text)?)
    }

    /// Rules that may apply to a flow on `(transport, server port)`.
    #[inline]
    pub fn candidates(&self, t: Transport, port: u16) -> &[usize] {
        self.by_port.get(&(t, port)).map_or(&[], |v| v.as_slice())
    }

    /// `roles` with every implied role added (a DP is a managed device too).
    pub fn expand(&self, roles: RoleSet) -> RoleSet {
        roles.iter().fold(roles, |acc, r| acc.union(self.implies[r as usize]))
    }

    pub fn shared_port_list(&self) -> &[u16] {
        &self.shared_port_list
    }

    pub fn rule(&self, id: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.id == id)
    }

    /// Parses and validates the text of a rules file.
    pub fn parse(path: &Path, text: &str) -> Result<RuleSet, ConfigError> {
        let raw: RawFile = parse_toml(path, text)?;
        let err = |span: std::ops::Range<usize>, msg: String| ConfigError::at(path, text, Some(span), msg);
        if *raw.schema.get_ref() != 1 {
            let msg = format!("schema = {} is not supported (this kscflow reads schema 1)", raw.schema.get_ref());
            return Err(err(raw.schema.span(), msg));
        }
        let sync = raw.sync.unwrap_or_default();
        for (field, v) in [("interval_minutes", &sync.interval_minutes), ("missed_intervals", &sync.missed_intervals)] {
            if *v.get_ref() == 0 {
                return Err(err(v.span(), format!("[sync] {field} must be at least 1")));
            }
        }
        let sync = RawSyncValues {
            interval_minutes: *sync.interval_minutes.get_ref(),
            missed_intervals: *sync.missed_intervals.get_ref(),
        };

        let mut implies = [RoleSet::EMPTY; 16];
        for (name, list) in &raw.roles {
            let role = Role::parse_any(name.get_ref()).map_err(|m| err(name.span(), format!("[roles]: {m}")))?;
            for r in list.get_ref() {
                let imp =
                    Role::parse_any(r.get_ref()).map_err(|m| err(r.span(), format!("[roles.{}]: {m}", role.name())))?;
                implies[role as usize] = implies[role as usize].with(imp);
            }
        }
        // Transitive closure (16 roles: a few passes suffice).
        for _ in 0..16 {
            for i in 0..16 {
                let mut acc = implies[i];
                for r in implies[i].iter() {
                    acc = acc.union(implies[r as usize]);
                }
                implies[i] = acc;
            }
        }

        let mut rules = Vec::with_capacity(raw.rule.len());
        // Rule id → index. Found by hand (fuzz/README.md): searching the
        // rules so far for a duplicate id, and again for every rule an
        // expectation names, made a huge rules file quadratic to load.
        let mut by_id: hashbrown::HashMap<String, usize> = hashbrown::HashMap::with_capacity(raw.rule.len());
        let mut by_port: hashbrown::HashMap<(Transport, u16), Vec<usize>> = hashbrown::HashMap::new();
        let mut ksc_ports = PortSet::new();
        for (i, r) in raw.rule.into_iter().enumerate() {
            let id = r.id.get_ref().trim().to_string();
            if id.is_empty() {
                return Err(err(r.id.span(), "rule id must not be empty".into()));
            }
            if by_id.contains_key(&id) {
                return Err(err(r.id.span(), format!("duplicate rule id `{id}`")));
            }
            let roles = |list: &[Spanned<String>], field: &str| -> Result<RoleSet, ConfigError> {
                if list.is_empty() {
                    return Err(err(r.id.span(), format!("rule `{id}`: `{field}` needs at least one role")));
                }
                let mut set = RoleSet::EMPTY;
                for s in list {
                    let role = Role::parse_any(s.get_ref())
                        .map_err(|m| err(s.span(), format!("rule `{id}`, field `{field}`: {m}")))?;
                    set = set.with(role);
                }
                Ok(set)
            };
            let initiator = roles(&r.initiator, "initiator")?;
            let responder = roles(&r.responder, "responder")?;
            let ports: Vec<u16> = r.ports.iter().map(|p| *p.get_ref()).collect();
            for p in &r.ports {
                if *p.get_ref() == 0 {
                    return Err(err(p.span(), format!("rule `{id}`: port 0 is not a port")));
                }
            }
            for &p in &ports {
                ksc_ports.insert(r.transport, p);
                let v = by_port.entry((r.transport, p)).or_default();
                if !v.contains(&i) {
                    v.push(i);
                }
            }
            by_id.insert(id.clone(), rules.len());
            rules.push(Rule {
                id,
                initiator,
                responder,
                transport: r.transport,
                ports,
                tls: r.tls,
                insecure: r.insecure.filter(|s| !s.trim().is_empty()),
                process: r.process,
                purpose: r.purpose,
                seed: r.seed,
                flows: r.flows,
                refs: r.refs,
                note: r.note.filter(|s| !s.trim().is_empty()),
                sni: r.sni,
            });
        }

        let find = |s: &Spanned<String>, field: &str, eid: &str| -> Result<usize, ConfigError> {
            by_id.get(s.get_ref()).copied().ok_or_else(|| {
                let ids: Vec<&str> = rules.iter().map(|r| r.id.as_str()).collect();
                err(
                    s.span(),
                    format!(
                        "expectation `{eid}`, field `{field}`: no rule `{}`; rules are: {}",
                        s.get_ref(),
                        ids.join(", ")
                    ),
                )
            })
        };
        let mut expectations = Vec::new();
        let mut expectation_ids = hashbrown::HashSet::new();
        for e in raw.expect {
            let id = e.id.get_ref().clone();
            if !expectation_ids.insert(id.clone()) {
                return Err(err(e.id.span(), format!("duplicate expectation id `{id}`")));
            }
            let subject = Role::parse_declarable(e.subject.get_ref())
                .map_err(|m| err(e.subject.span(), format!("expectation `{id}`, field `subject`: {m}")))?;
            if e.rules.is_empty() {
                return Err(err(e.id.span(), format!("expectation `{id}` needs at least one rule in `rules`")));
            }
            let rule_idx = e.rules.iter().map(|s| find(s, "rules", &id)).collect::<Result<Vec<_>, _>>()?;
            let explained_by =
                e.explained_by.iter().map(|s| find(s, "explained_by", &id)).collect::<Result<Vec<_>, _>>()?;
            let mut unless_also = RoleSet::EMPTY;
            for s in &e.unless_also {
                let r = Role::parse_declarable(s.get_ref())
                    .map_err(|m| err(s.span(), format!("expectation `{id}`, field `unless_also`: {m}")))?;
                unless_also = unless_also.with(r);
            }
            let interval = e.interval_minutes.unwrap_or(sync.interval_minutes).max(1);
            expectations.push(Expectation {
                id,
                subject,
                side: e.side,
                rules: rule_idx,
                explained_by,
                unless_also,
                window_secs: interval * sync.missed_intervals * 60,
                text: e.text,
                seed: e.seed,
            });
        }

        let mut shared_ports = PortSet::new();
        for p in &raw.shared_ports {
            shared_ports.insert(Transport::Tcp, *p);
            shared_ports.insert(Transport::Udp, *p);
        }

        Ok(RuleSet {
            product: raw.product,
            origin: path.display().to_string(),
            rules,
            expectations,
            sync_interval_minutes: sync.interval_minutes,
            missed_intervals: sync.missed_intervals,
            ksc_ports,
            shared_ports,
            shared_port_list: raw.shared_ports,
            implies,
            by_port,
        })
    }
}

/// `kscflow rules`: the table, readably.
impl fmt::Display for RuleSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} — {} rules, {} expectations ({})",
            self.product,
            self.rules.len(),
            self.expectations.len(),
            self.origin
        )?;
        writeln!(
            f,
            "Agents sync every {} min; missing after {} missed intervals. Shared ports (KSC only with a KSC host on a side): {}",
            self.sync_interval_minutes,
            self.missed_intervals,
            self.shared_port_list.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(", ")
        )?;
        writeln!(f)?;
        writeln!(f, "{:<18} {:<14} {:<9} {:<50} SOURCE", "RULE", "PORT", "TLS", "INITIATOR → RESPONDER")?;
        for r in &self.rules {
            let ports = if r.ports.is_empty() {
                format!("{} -", r.transport)
            } else {
                format!("{} {}", r.transport, r.ports.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(","))
            };
            let tls = match (r.insecure.is_some(), r.tls) {
                (true, _) => "INSECURE",
                (_, TlsRequirement::Required) => "required",
                (_, TlsRequirement::None) => "none",
                (_, TlsRequirement::Optional) => "optional",
            };
            let dir = format!("{} → {}", r.initiator.names(), r.responder.names());
            writeln!(f, "{:<18} {:<14} {:<9} {:<50} {}", r.id, ports, tls, dir, r.source())?;
            writeln!(f, "{:<18} {}", "", r.purpose)?;
            if let Some(why) = &r.insecure {
                writeln!(f, "{:<18} insecure: {}", "", why)?;
            }
            if let Some(n) = &r.note {
                writeln!(f, "{:<18} note: {}", "", n)?;
            }
        }
        writeln!(f)?;
        writeln!(f, "EXPECTATIONS")?;
        for e in &self.expectations {
            let rules: Vec<&str> = e.rules.iter().map(|&i| self.rules[i].id.as_str()).collect();
            writeln!(
                f,
                "{:<18} each {} must {} (rules {}; missing after {} min; seed {})",
                e.id,
                e.subject,
                e.text,
                rules.join(", "),
                e.window_secs / 60,
                e.seed.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(", ")
            )?;
        }
        Ok(())
    }
}

// ---- the file schema (serde), kept private: the compiled types are the API ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    schema: Spanned<u32>,
    #[serde(default)]
    product: String,
    #[serde(default)]
    #[allow(dead_code)]
    source: String,
    sync: Option<RawSync>,
    #[serde(default)]
    shared_ports: Vec<u16>,
    #[serde(default)]
    roles: std::collections::BTreeMap<Spanned<String>, Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    rule: Vec<RawRule>,
    #[serde(default)]
    expect: Vec<RawExpect>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSync {
    interval_minutes: Spanned<u64>,
    missed_intervals: Spanned<u64>,
}

impl Default for RawSync {
    fn default() -> Self {
        RawSync { interval_minutes: Spanned::new(0..0, 15), missed_intervals: Spanned::new(0..0, 3) }
    }
}

/// [`RawSync`] once checked.
struct RawSyncValues {
    interval_minutes: u64,
    missed_intervals: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    id: Spanned<String>,
    initiator: Vec<Spanned<String>>,
    responder: Vec<Spanned<String>>,
    transport: Transport,
    ports: Vec<Spanned<u16>>,
    tls: TlsRequirement,
    insecure: Option<String>,
    #[serde(default)]
    process: String,
    purpose: String,
    seed: Vec<u32>,
    #[serde(default)]
    flows: Vec<String>,
    #[serde(default)]
    refs: Vec<String>,
    note: Option<String>,
    #[serde(default)]
    sni: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExpect {
    id: Spanned<String>,
    subject: Spanned<String>,
    side: Side,
    rules: Vec<Spanned<String>>,
    interval_minutes: Option<u64>,
    #[serde(default)]
    explained_by: Vec<Spanned<String>>,
    #[serde(default)]
    unless_also: Vec<Spanned<String>>,
    text: String,
    #[serde(default)]
    seed: Vec<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINI: &str = r#"
schema = 1
product = "test"
shared_ports = [443]
[sync]
interval_minutes = 15
missed_intervals = 3
[roles]
distribution-point = ["managed-device"]
[[rule]]
id = "agent"
initiator = ["managed-device"]
responder = ["administration-server"]
transport = "tcp"
ports = [13000]
tls = "required"
purpose = "sync"
seed = [158545]
[[expect]]
id = "agent-sync"
subject = "managed-device"
side = "initiator"
rules = ["agent"]
text = "reach the AS"
"#;

    fn parse(t: &str) -> Result<RuleSet, ConfigError> {
        RuleSet::parse(Path::new("r.toml"), t)
    }

    #[test]
    fn builtin_rules_are_valid_and_cite_sources() {
        let rs = RuleSet::parse(Path::new(BUILTIN_NAME), BUILTIN).unwrap();
        assert!(rs.rules.len() >= 25, "{}", rs.rules.len());
        for r in &rs.rules {
            assert!(!r.seed.is_empty() || !r.refs.is_empty(), "rule {} cites nothing", r.id);
        }
        let agent = rs.rule("agent").unwrap();
        assert_eq!(agent.ports, vec![13000]);
        assert_eq!(agent.tls, TlsRequirement::Required);
        assert!(rs.rule("agent-legacy").unwrap().insecure.is_some());
        assert!(rs.ksc_ports.contains(Transport::Tcp, 14000));
        assert!(!rs.ksc_ports.contains(Transport::Tcp, 14001));
        assert!(rs.shared_ports.contains(Transport::Tcp, 1433));
        assert!(rs.expectations.iter().any(|e| e.id == "agent-sync" && e.window_secs == 45 * 60));
        // A DP is a managed device too (DESIGN.md).
        assert!(rs.expand(RoleSet::of(&[Role::DistributionPoint])).contains(Role::ManagedDevice));
    }

    #[test]
    fn sni_patterns() {
        let rs = RuleSet::builtin();
        let fcm = rs.rule("fcm").unwrap();
        assert!(fcm.sni_matches("FCM.googleapis.com."));
        assert!(!fcm.sni_matches("ksn.kaspersky-labs.com"));
        let mut r = fcm.clone();
        r.sni = vec!["*.example.com".into()];
        assert!(r.sni_matches("a.example.com"));
        assert!(!r.sni_matches("example.com"));
        assert!(!r.sni_matches("badexample.com"));
    }

    #[test]
    fn mini_file_compiles() {
        let rs = parse(MINI).unwrap();
        assert_eq!(rs.candidates(Transport::Tcp, 13000), &[0]);
        assert!(rs.candidates(Transport::Udp, 13000).is_empty());
        assert_eq!(rs.expectations[0].window_secs, 2700);
    }

    #[test]
    fn unknown_role_is_located_and_lists_valid_ones() {
        let bad = MINI.replace(r#"responder = ["administration-server"]"#, r#"responder = ["adminstration-server"]"#);
        let e = parse(&bad).unwrap_err();
        assert_eq!(e.line, 13);
        assert!(e.message.contains("unknown role `adminstration-server`"), "{e}");
        assert!(e.message.contains("administration-server, secondary-server"), "{e}");
    }

    #[test]
    fn unknown_key_is_an_error() {
        let bad = MINI.replace("purpose = \"sync\"", "purpose = \"sync\"\nprot = 1");
        let e = parse(&bad).unwrap_err();
        assert!(e.message.contains("unknown field `prot`"), "{e}");
        assert_eq!(e.line, 18);
    }

    #[test]
    fn duplicate_ids_and_dangling_references_are_errors() {
        let dup = format!("{MINI}\n[[rule]]\nid = \"agent\"\ninitiator = [\"any\"]\nresponder = [\"any\"]\ntransport = \"udp\"\nports = [1]\ntls = \"none\"\npurpose = \"x\"\nseed = []\n");
        assert!(parse(&dup).unwrap_err().message.contains("duplicate rule id `agent`"));
        let dangling = MINI.replace(r#"rules = ["agent"]"#, r#"rules = ["agnet"]"#);
        let e = parse(&dangling).unwrap_err();
        assert!(e.message.contains("no rule `agnet`; rules are: agent"), "{e}");
    }

    #[test]
    fn syntax_error_is_located() {
        let e = parse("schema = 1\n[[rule]\n").unwrap_err();
        assert_eq!(e.line, 2, "{e}");
    }
}
