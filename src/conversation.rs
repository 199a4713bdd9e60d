//! Connections folded into conversations: one entry per (client, server,
//! transport, server port), the unit DESIGN.md's report is keyed by.
//!
//! This runs once per finished connection, not per packet. It keeps the
//! conversations that may be KSC traffic (a KSC or shared port, or — with
//! an inventory — two inventory hosts) and only counts the rest. On the
//! shared ports (443, 8080, the DBMS ports) that is every conversation until
//! the roles are known at the end, so without an inventory a span port's
//! HTTPS is held here too (one entry per client, server and port).
//!
//! Memory is bounded whatever arrives (issue 3: a day of a span port is an
//! hour's; issue 5: a flood of spoofed sources): at most `limit`
//! conversations one by one, then the least worth keeping are folded into
//! groups per server and port, counted, with an estimate of their distinct
//! clients ([`Conversations`], [`Folded`]).

use std::borrow::Cow;
use std::collections::{BTreeSet, VecDeque};
use std::net::IpAddr;

use crate::flow::{ConnRecord, ConnSink, Direction, Outcome, Scope, Sni, TlsSeen, Ts};
use crate::inventory::Inventory;
use crate::rules::{Role, RoleSet, RuleSet, Transport};
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

/// Conversations the map could not keep one by one, folded into a group
/// per server and port (or per port alone once the groups are many): like
/// Zeek's scan summaries, a flood of sources is one line, not a million.
/// `client_roles` are the declared roles the folded clients had (empty:
/// hosts the inventory lacks, or no inventory), so a group is judged as its
/// members would have been.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FoldKey {
    /// Unspecified (0.0.0.0 or ::) when the servers were folded too.
    pub server: IpAddr,
    pub transport: Transport,
    pub server_port: u16,
    pub client_roles: RoleSet,
}

/// A group of folded conversations.
#[derive(Clone, Debug, Default)]
pub struct Folded {
    /// Conversations folded in (a client folded, seen again and folded
    /// again counts twice: see `clients`).
    pub conversations: u64,
    /// The distinct clients, estimated.
    pub clients: DistinctCount,
    pub stats: ConvStats,
}

impl Folded {
    /// Adds another group's members.
    pub fn merge(&mut self, o: &Folded) {
        self.conversations += o.conversations;
        self.clients.merge(&o.clients);
        self.stats.merge(&o.stats);
    }
}

/// A count of distinct addresses in 256 bytes, whatever their number:
/// HyperLogLog (Flajolet et al., 2007) with 2^8 registers, a standard
/// error of 1.04/√256 ≈ 6.5 %, linear counting below 640. Two counts merge
/// exactly (register-wise maximum), so threads and `kscflow report` add
/// them up without counting a client twice.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DistinctCount {
    /// Empty until the first address.
    registers: Vec<u8>,
}

impl DistinctCount {
    const REGISTERS: usize = 256;

    pub fn insert(&mut self, a: IpAddr) {
        let h = match a {
            IpAddr::V4(v) => mix(u32::from(v) as u64),
            IpAddr::V6(v) => {
                let x = u128::from(v);
                mix((x >> 64) as u64 ^ mix(x as u64))
            }
        };
        if self.registers.is_empty() {
            self.registers = vec![0; Self::REGISTERS];
        }
        // The top 8 bits pick the register; the rank of the first one bit
        // of the other 56 is what it keeps (at most 57).
        let rank = ((h << 8) | 0x80).leading_zeros() as u8 + 1;
        let r = &mut self.registers[(h >> 56) as usize];
        *r = (*r).max(rank);
    }

    pub fn merge(&mut self, o: &DistinctCount) {
        if self.registers.is_empty() {
            self.registers = o.registers.clone();
        } else if !o.registers.is_empty() {
            for (a, b) in self.registers.iter_mut().zip(&o.registers) {
                *a = (*a).max(*b);
            }
        }
    }

    pub fn estimate(&self) -> u64 {
        if self.registers.is_empty() {
            return 0;
        }
        let m = Self::REGISTERS as f64;
        let alpha = 0.7213 / (1.0 + 1.079 / m);
        let sum: f64 = self.registers.iter().map(|&r| (-(r as f64)).exp2()).sum();
        let zeros = self.registers.iter().filter(|&&r| r == 0).count();
        let raw = alpha * m * m / sum;
        let e = if raw <= 2.5 * m && zeros > 0 { m * (m / zeros as f64).ln() } else { raw };
        e.round().max(1.0) as u64
    }

    /// The registers as hex, for the JSON (`kscflow report` merges them).
    pub fn to_hex(&self) -> String {
        self.registers.iter().map(|r| format!("{r:02x}")).collect()
    }

    pub fn from_hex(s: &str) -> Option<DistinctCount> {
        if s.is_empty() {
            return Some(DistinctCount::default());
        }
        if s.len() != 2 * Self::REGISTERS || !s.is_ascii() {
            return None;
        }
        let registers = (0..Self::REGISTERS)
            .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok().filter(|&r| r <= 57))
            .collect::<Option<Vec<u8>>>()?;
        Some(DistinctCount { registers })
    }
}

/// SplitMix64's finaliser: a fixed hash, so that counts made by two runs
/// merge.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Conversations by key: a hash index of small entries (key → slot) over a
/// dense slab of totals.
///
/// Why not `HashMap<ConvKey, ConvStats>`: at the conversation limit every
/// new conversation folds an old one away, and hashbrown marks a removed
/// slot of a full group as deleted; those marks make the table double once
/// more than half of it is in use, so a map kept at N conversations ends
/// with 4N slots. Measured (benches/live_memory.sh, heaptrack): 868 bytes
/// per kept conversation with the 217-byte entries. Here the 4N slots are
/// 44 bytes (key and slot number) and the totals sit once each in the slab,
/// whose freed slots are reused: about 360 bytes a conversation.
#[derive(Clone, Debug, Default)]
pub struct ConvMap {
    index: hashbrown::HashMap<ConvKey, u32>,
    slab: Vec<ConvStats>,
    free: Vec<u32>,
}

impl ConvMap {
    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    pub fn contains_key(&self, k: &ConvKey) -> bool {
        self.index.contains_key(k)
    }

    pub fn get(&self, k: &ConvKey) -> Option<&ConvStats> {
        self.index.get(k).map(|&i| &self.slab[i as usize])
    }

    pub fn get_mut(&mut self, k: &ConvKey) -> Option<&mut ConvStats> {
        self.index.get(k).map(|&i| &mut self.slab[i as usize])
    }

    /// The totals of `k`, empty ones inserted if it is new.
    pub fn entry(&mut self, k: ConvKey) -> &mut ConvStats {
        let i = match self.index.get(&k) {
            Some(&i) => i,
            None => {
                let i = match self.free.pop() {
                    Some(i) => i,
                    None => {
                        self.slab.push(ConvStats::default());
                        u32::try_from(self.slab.len() - 1).expect("fewer than 2^32 conversations")
                    }
                };
                self.index.insert(k, i);
                i
            }
        };
        &mut self.slab[i as usize]
    }

    pub fn remove(&mut self, k: &ConvKey) -> Option<ConvStats> {
        let i = self.index.remove(k)?;
        self.free.push(i);
        Some(std::mem::take(&mut self.slab[i as usize]))
    }

    pub fn iter(&self) -> impl Iterator<Item = (&ConvKey, &ConvStats)> {
        self.index.iter().map(|(k, &i)| (k, &self.slab[i as usize]))
    }

    pub fn keys(&self) -> impl Iterator<Item = &ConvKey> {
        self.index.keys()
    }
}

impl std::ops::Index<&ConvKey> for ConvMap {
    type Output = ConvStats;
    fn index(&self, k: &ConvKey) -> &ConvStats {
        self.get(k).expect("a conversation of the map")
    }
}

impl FromIterator<(ConvKey, ConvStats)> for ConvMap {
    fn from_iter<I: IntoIterator<Item = (ConvKey, ConvStats)>>(it: I) -> Self {
        let mut m = ConvMap::default();
        for (k, s) in it {
            m.entry(k).merge(&s);
        }
        m
    }
}

/// Everything the judgement rests on: the conversations, the folded
/// groups, the members of inventory networks and the link-layer broadcast
/// destinations seen.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    pub map: ConvMap,
    pub folded: hashbrown::HashMap<FoldKey, Folded>,
    /// Addresses seen inside inventory networks (CIDR entries): the managed
    /// devices that exist, whether or not they talk KSC.
    pub seen_in_networks: BTreeSet<IpAddr>,
    /// Servers that were link-layer broadcast destinations (10.0.1.255 …).
    pub broadcast: BTreeSet<IpAddr>,
}

impl Observed {
    /// Adds what another collector observed.
    pub fn absorb(&mut self, o: Observed) {
        for (k, v) in o.map.iter() {
            self.map.entry(*k).merge(v);
        }
        for (k, g) in o.folded {
            self.folded.entry(k).or_default().merge(&g);
        }
        self.seen_in_networks.extend(o.seen_in_networks);
        self.broadcast.extend(o.broadcast);
    }
}

/// What a judgement reads: what was collected and, for a live snapshot,
/// the connections still open — added on the fly, so that judging every
/// few seconds copies nothing of a map that may hold 10^5 conversations.
#[derive(Clone, Copy)]
pub struct View<'a> {
    pub collected: &'a Observed,
    /// Open connections' conversations (collected without a limit: they
    /// are at most the flow table's size, and never folded).
    pub open: Option<&'a Observed>,
}

impl<'a> View<'a> {
    pub fn of(collected: &'a Observed) -> View<'a> {
        View { collected, open: None }
    }

    /// Every conversation once, with the open connections' totals added.
    pub fn conversations(self) -> impl Iterator<Item = (&'a ConvKey, Cow<'a, ConvStats>)> {
        let (base, open) = (&self.collected.map, self.open.map(|o| &o.map));
        let collected = base.iter().map(move |(k, s)| match open.and_then(|o| o.get(k)) {
            Some(more) => {
                let mut sum = s.clone();
                sum.merge(more);
                (k, Cow::Owned(sum))
            }
            None => (k, Cow::Borrowed(s)),
        });
        let only_open = open.into_iter().flat_map(|o| o.iter()).filter(move |(k, _)| !base.contains_key(k));
        collected.chain(only_open.map(|(k, s)| (k, Cow::Borrowed(s))))
    }

    pub fn folded(self) -> impl Iterator<Item = (&'a FoldKey, &'a Folded)> {
        self.collected.folded.iter()
    }

    /// An upper bound of the number of conversations and groups.
    pub fn size_hint(self) -> usize {
        let o = &self.collected;
        o.map.len() + o.folded.len() + self.open.map_or(0, |o| o.map.len())
    }

    /// The inventory-network members and broadcast destinations seen.
    pub fn sets(self) -> (Cow<'a, BTreeSet<IpAddr>>, Cow<'a, BTreeSet<IpAddr>>) {
        let c = self.collected;
        match self.open {
            None => (Cow::Borrowed(&c.seen_in_networks), Cow::Borrowed(&c.broadcast)),
            Some(o) => (
                Cow::Owned(c.seen_in_networks.union(&o.seen_in_networks).copied().collect()),
                Cow::Owned(c.broadcast.union(&o.broadcast).copied().collect()),
            ),
        }
    }
}

/// What the collector's limits left out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConvCounters {
    /// High-water mark of conversations kept one by one.
    pub peak: u64,
    /// Conversations folded into groups because the map was full.
    pub folded: u64,
    /// Inventory-network members and broadcast destinations not remembered
    /// because their sets were full.
    pub members_not_tracked: u64,
}

impl ConvCounters {
    pub fn add(&mut self, o: &ConvCounters) {
        self.peak += o.peak;
        self.folded += o.folded;
        self.members_not_tracked += o.members_not_tracked;
    }
}

/// How much a conversation is worth keeping one by one when the map is
/// full, lowest first: 0 — a client the inventory lacks that exchanged no
/// data (scans, SYN floods, spoofed sources); 1 — an address of an
/// inventory network that exchanged none (an agent's lone shutdown notice
/// or unanswered attempt, or a source spoofed inside the network: they
/// look alike); 2 — a client the inventory lacks that exchanged data on a
/// shared port (a span port's HTTPS, without an inventory); 3 — … on a
/// KSC port (a rogue host; without an inventory, the agents); 4 — a host
/// the inventory names, or an address of its networks that exchanged
/// data: never folded to make room.
type Tier = u8;
const KEPT: Tier = 4;

/// Did the client exchange data, not just a handshake? TCP: a first
/// payload was seen, or more than SYN, ACK and RST went each way; UDP: the
/// server answered.
fn engaged(t: Transport, s: &ConvStats) -> bool {
    match t {
        Transport::Tcp => s.tls_hellos + s.tls_unparsed + s.plaintext > 0 || (s.packets[1] > 0 && s.packets[0] >= 3),
        Transport::Udp => s.packets[1] > 0,
    }
}

/// Collects finished connections (a [`ConnSink`]) into at most `limit`
/// conversations; beyond it, the least worth keeping (see [`Tier`]),
/// oldest first, are folded into groups ([`FoldKey`]), counted. Memory is
/// then bounded whatever the traffic: a day of a span port is an hour's.
pub struct Conversations<'r> {
    rules: &'r RuleSet,
    inventory: Option<&'r Inventory>,
    limit: usize,
    pub observed: Observed,
    pub out_of_scope: OutOfScope,
    pub counters: ConvCounters,
    /// Keys of the tiers below [`KEPT`], oldest first; an entry whose conversation is
    /// gone or has moved up a tier is skipped when popped.
    queues: [VecDeque<ConvKey>; KEPT as usize],
    /// Every finished connection, kept only when `--events` asks for them.
    pub records: Option<Vec<ConnRecord>>,
}

/// The default `--max-conversations` of `audit`: ~360 bytes a conversation
/// ([`ConvMap`]), up to 80 more in the fold queues; ~450 MB at worst at
/// this limit (a million distinct conversations that may be KSC traffic).
pub const DEFAULT_MAX_CONVERSATIONS: usize = 1 << 20;

impl<'r> Conversations<'r> {
    pub fn new(rules: &'r RuleSet, inventory: Option<&'r Inventory>, keep_records: bool, limit: usize) -> Self {
        Conversations {
            rules,
            inventory,
            limit: limit.max(1),
            observed: Observed::default(),
            out_of_scope: OutOfScope::default(),
            counters: ConvCounters::default(),
            queues: Default::default(),
            records: keep_records.then(Vec::new),
        }
    }

    /// Takes in another collector's results (a worker thread's).
    pub fn absorb(&mut self, o: Conversations<'_>) {
        self.observed.absorb(o.observed);
        let (a, b) = (&mut self.out_of_scope, o.out_of_scope);
        a.connections += b.connections;
        a.packets += b.packets;
        a.bytes += b.bytes;
        self.counters.add(&o.counters);
        if let (Some(mine), Some(theirs)) = (&mut self.records, o.records) {
            mine.extend(theirs);
        }
    }

    fn note_member(&mut self, a: IpAddr, broadcast: bool) {
        let full = self.limit;
        let set = if broadcast { &mut self.observed.broadcast } else { &mut self.observed.seen_in_networks };
        if set.len() < full || set.contains(&a) {
            set.insert(a);
        } else {
            self.counters.members_not_tracked += 1;
        }
    }

    fn note_network_member(&mut self, a: IpAddr) {
        if let Some(inv) = self.inventory {
            if let Some(l) = inv.lookup(a) {
                let net = l.host.net;
                if net.prefix_len() != net.max_prefix_len() && !l.is_broadcast && a != net.network() {
                    self.note_member(a, false);
                }
            }
        }
    }

    fn tier(&self, k: &ConvKey, s: &ConvStats) -> Tier {
        let engaged = engaged(k.transport, s);
        match self.inventory.and_then(|i| i.lookup(k.client)) {
            Some(l) if !l.is_broadcast => {
                if engaged || l.host.net.prefix_len() == l.host.net.max_prefix_len() {
                    KEPT
                } else {
                    1
                }
            }
            _ if !engaged => 0,
            _ if self.rules.shared_ports.contains(k.transport, k.server_port) => 2,
            _ => 3,
        }
    }

    /// The group a conversation folds into.
    fn fold_key(&self, k: &ConvKey) -> FoldKey {
        let client_roles = match self.inventory.and_then(|i| i.lookup(k.client)) {
            Some(l) if !l.is_broadcast => l.host.roles,
            _ => RoleSet::EMPTY,
        };
        let mut f = FoldKey { server: k.server, transport: k.transport, server_port: k.server_port, client_roles };
        // The groups are bounded too: past a sixteenth of the limit, new
        // servers share one group per port.
        if self.observed.folded.len() >= (self.limit / 16).max(64) && !self.observed.folded.contains_key(&f) {
            f.server = match k.server {
                IpAddr::V4(_) => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
                IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
            };
        }
        f
    }

    fn fold(&mut self, k: &ConvKey, s: &ConvStats) {
        let f = self.fold_key(k);
        let g = self.observed.folded.entry(f).or_default();
        g.conversations += 1;
        g.clients.insert(k.client);
        g.stats.merge(s);
        self.counters.folded += 1;
    }

    /// Folds the oldest conversation of the lowest tier up to `max`; false
    /// when there is none.
    fn fold_one(&mut self, max: Tier) -> bool {
        for t in 0..=max.min(KEPT - 1) {
            while let Some(k) = self.queues[t as usize].pop_front() {
                let Some(s) = self.observed.map.get(&k) else { continue };
                if self.tier(&k, s) != t {
                    continue;
                }
                let s = self.observed.map.remove(&k).expect("just found");
                self.fold(&k, &s);
                return true;
            }
        }
        false
    }

    /// Adds a finished connection to its conversation.
    fn add(&mut self, key: ConvKey, r: &ConnRecord) {
        if let Some(s) = self.observed.map.get_mut(&key) {
            let was = engaged(key.transport, s);
            s.add(r);
            if !was && engaged(key.transport, s) {
                let s = &self.observed.map[&key];
                let t = self.tier(&key, s);
                if t < KEPT {
                    self.queues[t as usize].push_back(key);
                }
            }
            return;
        }
        let mut s = ConvStats::default();
        s.add(r);
        let t = self.tier(&key, &s);
        if self.observed.map.len() >= self.limit && !self.fold_one(t) {
            self.fold(&key, &s);
            return;
        }
        *self.observed.map.entry(key) = s;
        self.counters.peak = self.counters.peak.max(self.observed.map.len() as u64);
        if t < KEPT {
            self.queues[t as usize].push_back(key);
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
            self.note_member(r.server, true);
        }
        if r.may_be_ksc {
            let key =
                ConvKey { client: r.client, server: r.server, transport: r.transport, server_port: r.server_port };
            self.add(key, &r);
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
    use crate::flow::{Direction, Outcome, TlsSeen};

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

    fn rec(client: IpAddr, server: IpAddr, port: u16, packets: [u64; 2], tls: TlsSeen) -> ConnRecord {
        ConnRecord {
            client,
            server,
            client_port: 40000,
            server_port: port,
            transport: Transport::Tcp,
            first_ts: 1,
            last_ts: 2,
            packets,
            bytes: [packets[0] * 60, packets[1] * 60],
            outcome: if packets[1] > 0 { Outcome::Answered } else { Outcome::Unanswered },
            direction: Direction::Syn,
            tls,
            vlan: 0,
            to_broadcast: false,
            may_be_ksc: true,
        }
    }

    /// An AS and a managed-device network.
    fn site() -> Inventory {
        Inventory::parse(
            std::path::Path::new("t.toml"),
            "[[host]]\nname = \"ksc\"\naddr = \"10.0.0.10\"\nrole = \"administration-server\"\n\n\
             [[host]]\nname = \"lan\"\naddr = \"10.1.0.0/16\"\nrole = \"managed-device\"\n",
        )
        .unwrap()
    }

    fn hello() -> TlsSeen {
        TlsSeen::Hello { version: TlsVersion::TLS13, sni: None }
    }

    /// A SYN flood of 10,000 spoofed sources on the AS's 13000, mixed with
    /// the site's real traffic, into a map of 100: the map never grows past
    /// 100; every inventory host's conversation and every unknown host that
    /// exchanged data stays one by one; the flood is one group whose client
    /// count is within the estimator's error.
    #[test]
    fn a_flood_is_folded_and_the_real_conversations_stay() {
        let rules = RuleSet::builtin();
        let inv = site();
        let ksc: IpAddr = "10.0.0.10".parse().unwrap();
        let mut c = Conversations::new(&rules, Some(&inv), false, 100);
        let spoofed = |i: u32| IpAddr::V4(std::net::Ipv4Addr::from(0xC633_0000 + i)); // 198.51.x.x
        let agent = |i: u32| IpAddr::V4(std::net::Ipv4Addr::from(0x0A01_0000 + i)); // 10.1.x.x
        let rogue: IpAddr = "192.0.2.66".parse().unwrap();
        for i in 0..10_000u32 {
            c.closed(rec(spoofed(i), ksc, 13000, [1, 0], TlsSeen::NoPayload));
            if i % 200 == 0 {
                // 50 agents that synchronise (TLS), one rogue host that talks.
                c.closed(rec(agent(i / 200), ksc, 13000, [6, 5], hello()));
                c.closed(rec(rogue, ksc, 13000, [6, 5], hello()));
            }
            assert!(c.observed.map.len() <= 100);
        }
        let kept = |a: IpAddr| {
            c.observed.map.contains_key(&ConvKey {
                client: a,
                server: ksc,
                transport: Transport::Tcp,
                server_port: 13000,
            })
        };
        assert!((0..50).all(|i| kept(agent(i))), "an agent's conversation was folded");
        assert!(kept(rogue));
        assert_eq!(
            c.observed.map[&ConvKey { client: rogue, server: ksc, transport: Transport::Tcp, server_port: 13000 }]
                .connections,
            50
        );
        assert_eq!(c.observed.folded.len(), 1);
        let g = c.observed.folded.values().next().unwrap();
        let individual = c.observed.map.len() as u64 - 51;
        assert_eq!(g.conversations + individual, 10_000);
        assert_eq!(c.counters.folded, g.conversations);
        assert_eq!(c.counters.peak, 100);
        let est = g.clients.estimate() as f64;
        assert!((est - g.conversations as f64).abs() < 0.2 * g.conversations as f64, "estimate {est}");
    }

    /// A full map of hosts the inventory names folds the newcomer itself,
    /// keeping what it was declared as (so the group is judged as it was).
    #[test]
    fn a_map_full_of_inventory_hosts_folds_the_newcomer_with_its_roles() {
        let rules = RuleSet::builtin();
        let inv = site();
        let ksc: IpAddr = "10.0.0.10".parse().unwrap();
        let mut c = Conversations::new(&rules, Some(&inv), false, 10);
        for i in 0..20u32 {
            let a = IpAddr::V4(std::net::Ipv4Addr::from(0x0A01_0000 + i));
            c.closed(rec(a, ksc, 13000, [6, 5], hello()));
        }
        assert_eq!(c.observed.map.len(), 10);
        let (k, g) = c.observed.folded.iter().next().unwrap();
        assert_eq!(k.client_roles, RoleSet::EMPTY.with(Role::ManagedDevice));
        assert_eq!((k.server, g.conversations, g.clients.estimate()), (ksc, 10, 10));
    }

    /// Past a sixteenth of the limit (at least 64) in groups, new servers
    /// share one group per port: the groups are bounded too.
    #[test]
    fn groups_are_bounded_by_folding_servers_too() {
        let rules = RuleSet::builtin();
        let mut c = Conversations::new(&rules, None, false, 1);
        for i in 0..1_000u32 {
            let server = IpAddr::V4(std::net::Ipv4Addr::from(0x0A00_0000 + i));
            c.closed(rec("192.0.2.1".parse().unwrap(), server, 13000, [1, 0], TlsSeen::NoPayload));
        }
        assert_eq!(c.observed.folded.len(), 65);
        let many = c.observed.folded.keys().find(|k| k.server.is_unspecified()).expect("a group across servers");
        assert_eq!(c.observed.folded[many].conversations, 1_000 - 1 - 64);
    }

    #[test]
    fn distinct_counts_are_close_and_merge_exactly() {
        let addrs =
            |r: std::ops::Range<u32>| r.map(|i| IpAddr::V4(std::net::Ipv4Addr::from(i.wrapping_mul(2_654_435_761))));
        for n in [1u32, 10, 100, 1_000, 10_000, 200_000] {
            let mut d = DistinctCount::default();
            for a in addrs(0..n).chain(addrs(0..n)) {
                d.insert(a);
            }
            let e = d.estimate() as f64;
            // About 3 standard errors: 6.5 % each for HyperLogLog, ~5 % for
            // linear counting at 100 addresses in 256 registers.
            let tol = if n <= 100 { 0.15 * n as f64 + 1.0 } else { 0.2 * n as f64 };
            assert!((e - n as f64).abs() <= tol, "{n} counted as {e}");
        }
        let (mut a, mut b, mut both) = (DistinctCount::default(), DistinctCount::default(), DistinctCount::default());
        for x in addrs(0..6_000) {
            a.insert(x);
            both.insert(x);
        }
        for x in addrs(4_000..9_000) {
            b.insert(x);
            both.insert(x);
        }
        a.merge(&b);
        assert_eq!(a, both);
        assert_eq!(DistinctCount::from_hex(&a.to_hex()), Some(a));
        assert_eq!(DistinctCount::default().estimate(), 0);
        assert_eq!(DistinctCount::from_hex(""), Some(DistinctCount::default()));
        assert_eq!(DistinctCount::from_hex("zz"), None);
        assert_eq!(DistinctCount::from_hex(&"ff".repeat(256)), None);
    }

    /// A live snapshot's view: a conversation both collected and open is
    /// summed once; one only open is there too; nothing is copied.
    #[test]
    fn a_view_adds_the_open_connections_to_what_was_collected() {
        let rules = RuleSet::builtin();
        let (a, b, ksc): (IpAddr, IpAddr, IpAddr) =
            ("10.1.0.1".parse().unwrap(), "10.1.0.2".parse().unwrap(), "10.0.0.10".parse().unwrap());
        let mut done = Conversations::new(&rules, None, false, 100);
        done.closed(rec(a, ksc, 13000, [6, 5], hello()));
        let mut open = Conversations::new(&rules, None, false, usize::MAX);
        open.closed(rec(a, ksc, 13000, [2, 1], TlsSeen::NoPayload));
        open.closed(rec(b, ksc, 13000, [1, 0], TlsSeen::NoPayload));
        let view = View { collected: &done.observed, open: Some(&open.observed) };
        let got: std::collections::BTreeMap<IpAddr, (u64, u64)> =
            view.conversations().map(|(k, s)| (k.client, (s.connections, s.packets_total()))).collect();
        assert_eq!(got, [(a, (2, 14)), (b, (1, 1))].into());
        assert_eq!(view.conversations().count(), 2);
        assert!(matches!(view.conversations().find(|(k, _)| k.client == b), Some((_, Cow::Borrowed(_)))));
        assert_eq!(View::of(&done.observed).conversations().count(), 1);
    }

    #[test]
    fn network_members_are_bounded_and_counted() {
        let inv = Inventory::parse(
            std::path::Path::new("t.toml"),
            "[[host]]\nname = \"lan\"\naddr = \"10.1.0.0/16\"\nrole = \"managed-device\"\n",
        )
        .unwrap();
        let rules = RuleSet::builtin();
        let mut c = Conversations::new(&rules, Some(&inv), false, 8);
        for i in 1..=20u32 {
            let a = IpAddr::V4(std::net::Ipv4Addr::from(0x0A01_0000 + i));
            c.closed(rec(a, "10.0.0.10".parse().unwrap(), 13000, [1, 0], TlsSeen::NoPayload));
        }
        assert_eq!(c.observed.seen_in_networks.len(), 8);
        assert_eq!(c.counters.members_not_tracked, 12);
    }
}
