//! Connections folded into conversations: one entry per (client, server,
//! transport, server port), the unit DESIGN.md's report is keyed by.
//!
//! This runs once per finished connection, not per packet. It keeps the
//! conversations that may be KSC traffic (a KSC or shared port, or — with
//! an inventory — two inventory hosts) and only counts the rest. On the
//! shared ports (443, 8080, the DBMS ports) that is every conversation until
//! the roles are known at the end, so without an inventory a span port's
//! HTTPS is held here too (one entry per client, server and port).

use std::collections::BTreeSet;
use std::net::IpAddr;

use crate::flow::{ConnRecord, ConnSink, Direction, Outcome, Scope, Sni, TlsSeen, Ts};
use crate::inventory::Inventory;
use crate::rules::{Role, RuleSet, Transport};
use crate::tls::TlsVersion;

/// The key of a conversation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConvKey {
    pub client: IpAddr,
    pub server: IpAddr,
    pub transport: Transport,
    pub server_port: u16,
}

/// What the connections of one conversation add up to.
#[derive(Clone, Debug, Default)]
pub struct ConvStats {
    pub connections: u64,
    /// [client→server, server→client].
    pub packets: [u64; 2],
    pub bytes: [u64; 2],
    pub first_ts: Ts,
    pub last_ts: Ts,
    /// Per [`Outcome`], in `Outcome::ALL` order.
    pub outcomes: [u64; 4],
    /// Per [`Direction`], in `Direction::ALL` order.
    pub directions: [u64; 5],
    /// Connections whose first client payload was a readable ClientHello.
    pub tls_hellos: u64,
    /// … TLS records we could not read (mid-stream, cut, gap).
    pub tls_unparsed: u64,
    /// … not TLS.
    pub plaintext: u64,
    /// Lowest and highest TLS version offered over the connections.
    pub tls_min: Option<TlsVersion>,
    pub tls_max: Option<TlsVersion>,
    /// First SNI seen.
    pub sni: Option<Sni>,
}

impl ConvStats {
    pub fn outcome(&self, o: Outcome) -> u64 {
        self.outcomes[o as usize]
    }
    pub fn packets_total(&self) -> u64 {
        self.packets[0] + self.packets[1]
    }
    pub fn bytes_total(&self) -> u64 {
        self.bytes[0] + self.bytes[1]
    }

    fn add(&mut self, r: &ConnRecord) {
        if self.connections == 0 {
            self.first_ts = r.first_ts;
            self.last_ts = r.last_ts;
        }
        self.connections += 1;
        for i in 0..2 {
            self.packets[i] += r.packets[i];
            self.bytes[i] += r.bytes[i];
        }
        self.first_ts = self.first_ts.min(r.first_ts);
        self.last_ts = self.last_ts.max(r.last_ts);
        self.outcomes[r.outcome as usize] += 1;
        self.directions[r.direction as usize] += 1;
        match &r.tls {
            TlsSeen::Hello { version, sni } => {
                self.tls_hellos += 1;
                self.tls_min = Some(self.tls_min.map_or(*version, |m| m.min(*version)));
                self.tls_max = Some(self.tls_max.map_or(*version, |m| m.max(*version)));
                if self.sni.is_none() {
                    self.sni = sni.clone();
                }
            }
            TlsSeen::TlsUnparsed => self.tls_unparsed += 1,
            TlsSeen::Plaintext => self.plaintext += 1,
            TlsSeen::NoPayload | TlsSeen::Unknown | TlsSeen::NotInspected => {}
        }
    }

    /// Merges another conversation's totals (same key, other source).
    pub fn merge(&mut self, o: &ConvStats) {
        if o.connections == 0 {
            return;
        }
        if self.connections == 0 {
            *self = o.clone();
            return;
        }
        self.connections += o.connections;
        for i in 0..2 {
            self.packets[i] += o.packets[i];
            self.bytes[i] += o.bytes[i];
        }
        self.first_ts = self.first_ts.min(o.first_ts);
        self.last_ts = self.last_ts.max(o.last_ts);
        for i in 0..4 {
            self.outcomes[i] += o.outcomes[i];
        }
        for i in 0..5 {
            self.directions[i] += o.directions[i];
        }
        self.tls_hellos += o.tls_hellos;
        self.tls_unparsed += o.tls_unparsed;
        self.plaintext += o.plaintext;
        self.tls_min = match (self.tls_min, o.tls_min) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.tls_max = match (self.tls_max, o.tls_max) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        if self.sni.is_none() {
            self.sni = o.sni.clone();
        }
    }
}

/// Traffic that is not KSC's business: counted, never judged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OutOfScope {
    pub connections: u64,
    pub packets: u64,
    pub bytes: u64,
}

/// The KSC scope of a connection, from the table's ports and the inventory
/// (a [`Scope`] for the flow table; decided once per connection).
#[derive(Clone, Copy)]
pub struct KscScope<'r> {
    pub rules: &'r RuleSet,
    pub inventory: Option<&'r Inventory>,
}

impl Scope for KscScope<'_> {
    #[inline]
    fn ksc_port(&self, t: Transport, port: u16) -> bool {
        self.rules.ksc_ports.contains(t, port)
    }

    /// Ports decide most; an inventory adds flows between two of its hosts
    /// where the server serves KSC (classify decides the rest; this only
    /// keeps LAN chatter between workstations out). On a shared port (443,
    /// the DBMS ports) a flow is KSC's only with KSC infrastructure on a
    /// side (DESIGN.md): with an inventory that is known now, so a span
    /// port's web browsing is counted, not kept; without one, the roles are
    /// inferred at the end and every such flow is kept until then.
    fn may_be_ksc(&self, client: IpAddr, server: IpAddr, t: Transport, port: u16) -> bool {
        let infra = |a: IpAddr| match self.inventory {
            Some(inv) => inv
                .lookup(a)
                .is_some_and(|l| !l.is_broadcast && self.rules.expand(l.host.roles).intersects(Role::INFRASTRUCTURE)),
            None => false,
        };
        if self.rules.shared_ports.contains(t, port) {
            return self.inventory.is_none() || infra(client) || infra(server);
        }
        if self.rules.ksc_ports.contains(t, port) {
            return true;
        }
        self.inventory.is_some_and(|inv| inv.lookup(client).is_some()) && infra(server)
    }
}

/// Collects finished connections (a [`ConnSink`]).
pub struct Conversations<'r> {
    inventory: Option<&'r Inventory>,
    pub map: hashbrown::HashMap<ConvKey, ConvStats>,
    pub out_of_scope: OutOfScope,
    /// Addresses seen inside inventory networks (CIDR entries): the managed
    /// devices that exist, whether or not they talk KSC.
    pub seen_in_networks: BTreeSet<IpAddr>,
    /// Servers that were link-layer broadcast destinations (10.0.1.255 …).
    pub broadcast: BTreeSet<IpAddr>,
    /// Every finished connection, kept only when `--events` asks for them.
    pub records: Option<Vec<ConnRecord>>,
}

impl<'r> Conversations<'r> {
    pub fn new(inventory: Option<&'r Inventory>, keep_records: bool) -> Self {
        Conversations {
            inventory,
            map: hashbrown::HashMap::new(),
            out_of_scope: OutOfScope::default(),
            seen_in_networks: BTreeSet::new(),
            broadcast: BTreeSet::new(),
            records: keep_records.then(Vec::new),
        }
    }

    fn note_network_member(&mut self, a: IpAddr) {
        if let Some(inv) = self.inventory {
            if let Some(l) = inv.lookup(a) {
                let net = l.host.net;
                if net.prefix_len() != net.max_prefix_len() && !l.is_broadcast && a != net.network() {
                    self.seen_in_networks.insert(a);
                }
            }
        }
    }
}

impl ConnSink for Conversations<'_> {
    fn closed(&mut self, r: ConnRecord) {
        // A client counts as a device of its network when it was answered or
        // tried KSC: a scan with spoofed sources inside the network must not
        // invent devices that then go "missing".
        if r.packets[1] > 0 || r.may_be_ksc {
            self.note_network_member(r.client);
        }
        if r.packets[1] > 0 {
            self.note_network_member(r.server);
        }
        if r.to_broadcast {
            self.broadcast.insert(r.server);
        }
        if r.may_be_ksc {
            let key =
                ConvKey { client: r.client, server: r.server, transport: r.transport, server_port: r.server_port };
            self.map.entry(key).or_default().add(&r);
        } else {
            self.out_of_scope.connections += 1;
            self.out_of_scope.packets += r.packets[0] + r.packets[1];
            self.out_of_scope.bytes += r.bytes[0] + r.bytes[1];
        }
        if let Some(v) = &mut self.records {
            v.push(r);
        }
    }
}

/// Direction counts as (key, count) pairs, non-zero only.
pub fn direction_counts(s: &ConvStats) -> Vec<(&'static str, u64)> {
    Direction::ALL
        .iter()
        .filter(|d| s.directions[**d as usize] > 0)
        .map(|d| (d.key(), s.directions[*d as usize]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_ports_are_kept_only_with_infrastructure_when_an_inventory_says_so() {
        let rules = RuleSet::builtin();
        let inv = Inventory::parse(
            std::path::Path::new("t.toml"),
            "[[host]]\nname = \"ksc\"\naddr = \"10.0.0.10\"\nrole = \"administration-server\"\n\n\
             [[host]]\nname = \"lan\"\naddr = \"10.0.1.0/24\"\nrole = \"managed-device\"\n",
        )
        .unwrap();
        let a = |s: &str| -> IpAddr { s.parse().unwrap() };
        let with = KscScope { rules: &rules, inventory: Some(&inv) };
        let without = KscScope { rules: &rules, inventory: None };
        let (dev, ksc, web) = (a("10.0.1.7"), a("10.0.0.10"), a("203.0.113.9"));
        // A device browsing the web on 443: out of scope once roles are known.
        assert!(!with.may_be_ksc(dev, web, Transport::Tcp, 443));
        assert!(without.may_be_ksc(dev, web, Transport::Tcp, 443));
        // The AS on either side of 443 (KSN, the Web Console): kept.
        assert!(with.may_be_ksc(ksc, web, Transport::Tcp, 443));
        assert!(with.may_be_ksc(dev, ksc, Transport::Tcp, 443));
        // A KSC port always; another port between a device and the AS too.
        assert!(with.may_be_ksc(web, dev, Transport::Tcp, 13000));
        assert!(with.may_be_ksc(dev, ksc, Transport::Tcp, 8443));
        assert!(!with.may_be_ksc(dev, a("10.0.1.8"), Transport::Tcp, 445));
    }
}
