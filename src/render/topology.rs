//! The topology picture, like the vendor's traffic diagrams in the seed:
//! hosts in bands by role, an arrow from the initiator to the responder of
//! each conversation, labelled with transport and port, coloured by
//! verdict; the missing expectations as dashed arrows.
//!
//! No layout crate: the crates.io graph-layout crates either pull in a
//! renderer of their own or lay out general graphs, where this picture has
//! a fixed structure (the vendor's: consoles above the servers, devices
//! below), so a layered layout by role written here is both simpler and
//! closer to the seed's figures. It stays readable on a big site because
//! hosts are folded: when a band holds more than [`MAX_NODES_PER_LANE`]
//! hosts, the servers and the hosts with the most findings keep their own
//! box and the rest become one box per inventory network (or role), with a
//! count; arrows between the same boxes on the same port with the same
//! verdict become one arrow with a count. Every arrow says how many
//! conversations (`data-conversations`) or missing expectations
//! (`data-missing`) it stands for.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::{sides, HostKey};
use crate::classify::{HostView, Verdict};
use crate::report::ReportData;
use crate::rules::{Role, RoleSet, Side, Transport};

/// Beyond this many boxes in a band, hosts are folded.
pub const MAX_NODES_PER_LANE: usize = 10;

/// The bands, top to bottom.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Lane {
    External,
    Consoles,
    Servers,
    Gateways,
    Devices,
}

impl Lane {
    pub const ALL: [Lane; 5] = [Lane::External, Lane::Consoles, Lane::Servers, Lane::Gateways, Lane::Devices];
    pub fn title(self) -> &'static str {
        match self {
            Lane::External => "Internet, unknown",
            Lane::Consoles => "Consoles",
            Lane::Servers => "Servers, DBMS",
            Lane::Gateways => "Gateways, DPs",
            Lane::Devices => "Devices",
        }
    }
}

/// The band of a host: its most central role decides.
fn lane_of(h: &HostView) -> Lane {
    use Role::*;
    let r = if h.declared.is_empty() { h.roles } else { h.declared };
    let any = |roles: &[Role]| r.intersects(RoleSet::of(roles));
    if !h.known || any(&[External]) {
        Lane::External
    } else if any(&[AdministrationServer, SecondaryServer, Dbms]) {
        Lane::Servers
    } else if any(&[ConnectionGateway, ReverseProxy, IosMdmServer, DistributionPoint]) {
        Lane::Gateways
    } else if any(&[WebConsole, AdminConsole, Browser]) {
        Lane::Consoles
    } else {
        Lane::Devices
    }
}

/// A box of the picture: one host, or several folded.
#[derive(Clone, Debug)]
pub struct Node {
    pub lane: Lane,
    pub title: String,
    pub subtitle: String,
    /// Hosts it stands for (1 for a host's own box).
    pub hosts: usize,
    pub roles: RoleSet,
    /// The worst verdict of the conversations it is on; None when all are
    /// expected.
    pub worst: Option<Verdict>,
    pub missing: bool,
}

/// An arrow: conversations (or missing expectations) from one box to
/// another on one transport and port, with one verdict.
#[derive(Clone, Debug)]
pub struct Edge {
    pub from: usize,
    pub to: usize,
    pub label: String,
    /// `None` for a missing expectation.
    pub verdict: Option<Verdict>,
    /// Conversations, or missing expectations, it stands for.
    pub count: usize,
}

/// The picture as a graph.
#[derive(Clone, Debug, Default)]
pub struct Graph {
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
}

fn verdict_class(v: Option<Verdict>) -> &'static str {
    match v {
        Some(Verdict::Expected) => "expected",
        Some(Verdict::Insecure) => "insecure",
        Some(Verdict::Unexpected) => "unexpected",
        None => "missing",
    }
}

fn colour(v: Option<Verdict>) -> &'static str {
    match v {
        Some(Verdict::Expected) => "#2e7d32",
        Some(Verdict::Insecure) => "#d35400",
        Some(Verdict::Unexpected) => "#c62828",
        None => "#6a1b9a",
    }
}

struct HostInfo<'a> {
    view: &'a HostView,
    findings: usize,
    worst: Option<Verdict>,
    missing: bool,
}

/// Builds the graph of a report.
pub fn graph(data: &ReportData<'_>) -> Graph {
    let a = &data.result.assessment;
    let mut hosts: BTreeMap<HostKey, HostInfo<'_>> = BTreeMap::new();
    for j in &a.flows {
        for (k, h) in sides(j) {
            let e = hosts.entry(k).or_insert(HostInfo { view: h, findings: 0, worst: None, missing: false });
            if j.verdict != Verdict::Expected {
                e.findings += 1;
                e.worst = Some(e.worst.map_or(j.verdict, |w| w.min(j.verdict)));
            }
        }
    }
    for m in &a.missing {
        let e = hosts.entry(HostKey::host(m.host.addr)).or_insert(HostInfo {
            view: &m.host,
            findings: 0,
            worst: None,
            missing: false,
        });
        e.findings += 1;
        e.missing = true;
    }

    // Which hosts keep a box of their own, lane by lane.
    let mut own: BTreeMap<HostKey, bool> = BTreeMap::new();
    for lane in Lane::ALL {
        let mut in_lane: Vec<(&HostKey, &HostInfo<'_>)> =
            hosts.iter().filter(|(_, h)| lane_of(h.view) == lane).collect();
        if in_lane.len() <= MAX_NODES_PER_LANE {
            own.extend(in_lane.iter().map(|(a, _)| (**a, true)));
            continue;
        }
        // Servers first, then the most findings; a few boxes stay for groups.
        let central =
            RoleSet::of(&[Role::AdministrationServer, Role::SecondaryServer, Role::Dbms, Role::ConnectionGateway]);
        // A folded group is many hosts already: it keeps its box like a server.
        let first = |a: &HostKey, h: &HostInfo<'_>| h.view.roles.intersects(central) || a.addr().is_none();
        in_lane.sort_by_key(|(a, h)| (!first(a, h), std::cmp::Reverse(h.findings), **a));
        let keep = MAX_NODES_PER_LANE / 2;
        for (i, (a, h)) in in_lane.iter().enumerate() {
            own.insert(**a, i < keep && (h.findings > 0 || first(a, h)));
        }
    }

    let mut g = Graph::default();
    let mut node_of: BTreeMap<HostKey, usize> = BTreeMap::new();
    let mut groups: BTreeMap<(Lane, String, bool), usize> = BTreeMap::new();
    for (addr, h) in &hosts {
        let lane = lane_of(h.view);
        let roles = super::roles_text(h.view);
        let id = if own[addr] {
            let a = h.view.addr;
            let title = h.view.name.clone().filter(|_| !h.view.in_network).unwrap_or_else(|| a.to_string());
            let subtitle = match (addr.addr(), h.view.known) {
                (None, true) => format!("{roles} · folded at the conversation limit"),
                (None, false) => "not in the inventory · folded at the conversation limit".into(),
                (Some(_), true) => format!("{roles} · {a}"),
                (Some(_), false) => format!("not in the inventory · {a}"),
            };
            g.nodes.push(Node {
                lane,
                title,
                subtitle,
                hosts: 1,
                roles: h.view.roles,
                worst: h.worst,
                missing: h.missing,
            });
            g.nodes.len() - 1
        } else {
            let group = if h.view.in_network { h.view.name.clone().unwrap_or_default() } else { roles.clone() };
            let flagged = h.findings > 0;
            let id = *groups.entry((lane, group.clone(), flagged)).or_insert_with(|| {
                g.nodes.push(Node {
                    lane,
                    title: group.clone(),
                    subtitle: String::new(),
                    hosts: 0,
                    roles: RoleSet::EMPTY,
                    worst: None,
                    missing: false,
                });
                g.nodes.len() - 1
            });
            let n = &mut g.nodes[id];
            n.hosts += 1;
            n.roles = n.roles.union(h.view.roles);
            n.missing |= h.missing;
            if let Some(v) = h.worst {
                n.worst = Some(n.worst.map_or(v, |w| w.min(v)));
            }
            n.subtitle = format!(
                "{} {}{}",
                super::thousands(n.hosts as u64),
                if n.hosts == 1 { "host" } else { "hosts" },
                if flagged { " with findings" } else { "" }
            );
            id
        };
        node_of.insert(*addr, id);
    }

    // Conversations, folded by box pair, port and verdict.
    let mut edges: BTreeMap<(usize, usize, Transport, u16, Verdict), usize> = BTreeMap::new();
    for j in &a.flows {
        let [(c, _), (s, _)] = sides(j);
        *edges.entry((node_of[&c], node_of[&s], j.key.transport, j.key.server_port, j.verdict)).or_default() += 1;
    }
    for ((from, to, t, port, v), count) in edges {
        g.edges.push(Edge { from, to, label: format!("{t} {port}"), verdict: Some(v), count });
    }

    // Missing expectations: to (or from) a box that plays the other side.
    let mut missing: BTreeMap<(usize, usize, String), usize> = BTreeMap::new();
    for m in &a.missing {
        let Some(e) = data.rules.expectations.iter().find(|e| e.id == m.expectation) else { continue };
        let rules: Vec<_> = e.rules.iter().map(|&i| &data.rules.rules[i]).collect();
        let other = rules.iter().fold(RoleSet::EMPTY, |acc, r| match e.side {
            Side::Initiator | Side::Either => acc.union(r.responder),
            Side::Responder => acc.union(r.initiator),
        });
        let me = node_of[&HostKey::host(m.host.addr)];
        let counterpart = (0..g.nodes.len())
            .filter(|&i| i != me && g.nodes[i].roles.intersects(other))
            .min_by_key(|&i| (g.nodes[i].lane != Lane::Servers, i))
            .unwrap_or_else(|| {
                let role = other.iter().find(|r| *r != Role::Any).map_or("counterpart", |r| r.name());
                g.nodes.push(Node {
                    lane: Lane::Servers,
                    title: format!("({role})"),
                    subtitle: "not seen".into(),
                    hosts: 0,
                    roles: other,
                    worst: None,
                    missing: true,
                });
                g.nodes.len() - 1
            });
        let ports: Vec<String> = rules
            .iter()
            .map(|r| format!("{} {}", r.transport, r.ports.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("/")))
            .collect();
        let label = format!("{} missing", ports.first().cloned().unwrap_or_default());
        let key = match e.side {
            Side::Responder => (counterpart, me, label),
            _ => (me, counterpart, label),
        };
        *missing.entry(key).or_default() += 1;
    }
    for ((from, to, label), count) in missing {
        g.edges.push(Edge { from, to, label, verdict: None, count });
    }
    g
}

/// Box size and spacing of the picture, in SVG user units (px).
const BOX_W: f64 = 176.0;
const BOX_H: f64 = 46.0;
const GAP_X: f64 = 34.0;
const LANE_H: f64 = 150.0;
const LEFT: f64 = 130.0;
const TOP: f64 = 40.0;

/// Where everything goes.
pub struct Layout {
    /// Box centres, by node index.
    pub pos: Vec<(f64, f64)>,
    pub width: f64,
    pub height: f64,
    /// The bands shown and their centre lines.
    pub lanes: Vec<(Lane, f64)>,
}

/// Box centres, by a layered layout: one row per lane, boxes spread evenly
/// and centred; empty lanes take no room.
pub fn layout(g: &Graph) -> Layout {
    let lanes: Vec<Lane> = Lane::ALL.into_iter().filter(|l| g.nodes.iter().any(|n| n.lane == *l)).collect();
    let widest = lanes.iter().map(|l| g.nodes.iter().filter(|n| n.lane == *l).count()).max().unwrap_or(1);
    let width = LEFT + widest as f64 * (BOX_W + GAP_X) + 60.0;
    let height = TOP + lanes.len() as f64 * LANE_H + 20.0;
    let mut pos = vec![(0.0, 0.0); g.nodes.len()];
    let mut lane_y = Vec::new();
    for (row, lane) in lanes.iter().enumerate() {
        let y = TOP + row as f64 * LANE_H + LANE_H / 2.0;
        lane_y.push((*lane, y));
        let mut ids: Vec<usize> = (0..g.nodes.len()).filter(|&i| g.nodes[i].lane == *lane).collect();
        ids.sort_by(|&a, &b| g.nodes[a].title.cmp(&g.nodes[b].title));
        place(&mut pos, &ids, y, width);
    }
    // Fewer crossings: each band in turn, boxes ordered by the mean
    // position of the boxes they are connected to (the barycentre
    // heuristic of layered drawing), the servers' band first.
    let mut order: Vec<Lane> = lanes.clone();
    order.sort_by_key(|l| (*l != Lane::Servers, *l));
    for _ in 0..2 {
        for lane in &order {
            let mut ids: Vec<usize> = (0..g.nodes.len()).filter(|&i| g.nodes[i].lane == *lane).collect();
            let centre = |i: usize| {
                let xs: Vec<f64> = g
                    .edges
                    .iter()
                    .filter_map(|e| match (e.from == i, e.to == i) {
                        (true, false) => Some(pos[e.to].0),
                        (false, true) => Some(pos[e.from].0),
                        _ => None,
                    })
                    .collect();
                if xs.is_empty() {
                    pos[i].0
                } else {
                    xs.iter().sum::<f64>() / xs.len() as f64
                }
            };
            let keys: Vec<(usize, f64)> = ids.iter().map(|&i| (i, centre(i))).collect();
            ids.sort_by(|a, b| {
                let ka = keys.iter().find(|k| k.0 == *a).map_or(0.0, |k| k.1);
                let kb = keys.iter().find(|k| k.0 == *b).map_or(0.0, |k| k.1);
                ka.total_cmp(&kb).then(a.cmp(b))
            });
            let y = pos[ids[0]].1;
            place(&mut pos, &ids, y, width);
        }
    }
    Layout { pos, width, height, lanes: lane_y }
}

/// Puts `ids` side by side on the band at `y`, centred.
fn place(pos: &mut [(f64, f64)], ids: &[usize], y: f64, width: f64) {
    let span = ids.len() as f64 * (BOX_W + GAP_X) - GAP_X;
    let x0 = LEFT + (width - LEFT - 60.0 - span) / 2.0 + BOX_W / 2.0;
    for (k, &i) in ids.iter().enumerate() {
        pos[i] = (x0 + k as f64 * (BOX_W + GAP_X), y);
    }
}

/// Escapes text for XML (SVG, HTML).
pub fn xml(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max - 1).collect();
        t.push('…');
        t
    }
}

/// The picture as inline SVG: no script, no external reference (the
/// arrowheads are markers defined inside it).
pub fn svg(g: &Graph) -> String {
    let Layout { pos, width, height, lanes } = layout(g);
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="topology" viewBox="0 0 {width:.0} {height:.0}" width="{width:.0}" height="{height:.0}" style="max-width:100%;height:auto" role="img" aria-label="Topology: hosts by role, arrows from initiator to responder">"#
    );
    s.push_str("<defs>");
    for v in [Some(Verdict::Expected), Some(Verdict::Insecure), Some(Verdict::Unexpected), None] {
        let _ = write!(
            s,
            r#"<marker id="head-{}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="{}"/></marker>"#,
            verdict_class(v),
            colour(v)
        );
    }
    s.push_str("</defs>");
    for (i, (lane, y)) in lanes.iter().enumerate() {
        let top = y - LANE_H / 2.0;
        let fill = if i % 2 == 0 { "#f5f7fa" } else { "#ffffff" };
        let _ = write!(
            s,
            r#"<rect class="lane" x="0" y="{top:.1}" width="{width:.0}" height="{LANE_H}" fill="{fill}"/><text class="lane-title" x="10" y="{:.1}">{}</text>"#,
            y + 4.0,
            xml(lane.title())
        );
    }
    // Arrows first, boxes over them.
    let mut pair_count: BTreeMap<(usize, usize), usize> = BTreeMap::new();
    for e in &g.edges {
        *pair_count.entry((e.from.min(e.to), e.from.max(e.to))).or_default() += 1;
    }
    let mut pair_seen: BTreeMap<(usize, usize), usize> = BTreeMap::new();
    // Arrows per box: a label sits nearer the end with fewer arrows, away
    // from the hub (the server) where they would pile up.
    let mut degree = vec![0usize; g.nodes.len()];
    for e in &g.edges {
        degree[e.from] += 1;
        degree[e.to] += 1;
    }
    let mut labels_at = vec![0usize; g.nodes.len()];
    for e in &g.edges {
        let pair = (e.from.min(e.to), e.from.max(e.to));
        let k = *pair_seen.entry(pair).and_modify(|k| *k += 1).or_insert(0);
        let n = pair_count[&pair];
        let (a, b) = (pos[e.from], pos[e.to]);
        let class = verdict_class(e.verdict);
        let (d, lx, ly) = if e.from == e.to {
            // A loop on the box's right side (devices of one folded group).
            let (x, y) = (a.0 + BOX_W / 2.0, a.1);
            let r = 40.0 + 14.0 * k as f64;
            (
                format!(
                    "M{x:.1},{:.1} C{:.1},{:.1} {:.1},{:.1} {x:.1},{:.1}",
                    y - 8.0,
                    x + r,
                    y - r,
                    x + r,
                    y + r,
                    y + 8.0
                ),
                x + r * 0.8,
                y,
            )
        } else {
            let (ax, ay, bx, by);
            if (a.1 - b.1).abs() < 1.0 {
                // Same band: leave from the top, arc above.
                (ax, ay, bx, by) = (a.0, a.1 - BOX_H / 2.0, b.0, b.1 - BOX_H / 2.0);
            } else if a.1 < b.1 {
                (ax, ay, bx, by) = (a.0, a.1 + BOX_H / 2.0, b.0, b.1 - BOX_H / 2.0);
            } else {
                (ax, ay, bx, by) = (a.0, a.1 - BOX_H / 2.0, b.0, b.1 + BOX_H / 2.0);
            }
            // Leave and arrive along the box's edge towards the other end,
            // so that many arrows into one server do not meet at a point.
            let slide = |from: f64, to: f64| ((to - from) * 0.2).clamp(-BOX_W / 2.0 + 12.0, BOX_W / 2.0 - 12.0);
            let (ax, bx) = (ax + slide(a.0, b.0), bx + slide(b.0, a.0));
            let (mx, my) = ((ax + bx) / 2.0, (ay + by) / 2.0);
            let (dx, dy) = (bx - ax, by - ay);
            let len = (dx * dx + dy * dy).sqrt().max(1.0);
            // Parallel arrows between the same boxes fan out; one of a
            // pair each way bends to its own side.
            let spread = k as f64 - (n as f64 - 1.0) / 2.0;
            let mut bend = spread * 34.0;
            if (a.1 - b.1).abs() < 1.0 {
                bend -= 40.0 + len * 0.15;
            }
            let (cx, cy) = (mx - dy / len * bend, my + dx / len * bend);
            // Several arrows leaving one box stagger their labels.
            let (anchor, near) = match degree[e.from].cmp(&degree[e.to]) {
                std::cmp::Ordering::Less => (e.from, true),
                std::cmp::Ordering::Equal => (e.from, false),
                std::cmp::Ordering::Greater => (e.to, true),
            };
            let nth = labels_at[anchor];
            labels_at[anchor] += 1;
            let step = 0.14 * (nth % 3) as f64;
            let t = match (near, anchor == e.from) {
                (false, _) => 0.5,
                (true, true) => 0.28 + step,
                (true, false) => 0.72 - step,
            };
            let (wa, wc, wb) = ((1.0 - t) * (1.0 - t), 2.0 * (1.0 - t) * t, t * t);
            let (lx, ly) = (wa * ax + wc * cx + wb * bx, wa * ay + wc * cy + wb * by);
            (format!("M{ax:.1},{ay:.1} Q{cx:.1},{cy:.1} {bx:.1},{by:.1}"), lx, ly)
        };
        let (attr, count_attr) = match e.verdict {
            None => (r#" stroke-dasharray="7 5""#, format!(r#"data-missing="{}""#, e.count)),
            Some(_) => ("", format!(r#"data-conversations="{}""#, e.count)),
        };
        let what = match e.verdict {
            Some(v) => format!("{} conversation(s), {}", e.count, v.name()),
            None => format!("{} missing expectation(s)", e.count),
        };
        let label =
            if e.count > 1 { format!("{} ×{}", e.label, super::thousands(e.count as u64)) } else { e.label.clone() };
        let _ = write!(
            s,
            r#"<g class="edge {class}" {count_attr}><title>{} → {}: {} ({})</title><path class="arrow {class}" d="{d}" fill="none" stroke="{}" stroke-width="{}"{attr} marker-end="url(#head-{class})"/><text class="edge-label" x="{lx:.1}" y="{:.1}" fill="{}">{}</text></g>"#,
            xml(&g.nodes[e.from].title),
            xml(&g.nodes[e.to].title),
            xml(&e.label),
            xml(&what),
            colour(e.verdict),
            if e.verdict == Some(Verdict::Expected) { "1.6" } else { "2.4" },
            ly + 4.0,
            colour(e.verdict),
            xml(&label)
        );
    }
    for (i, nd) in g.nodes.iter().enumerate() {
        let (x, y) = pos[i];
        let stroke = match (nd.worst, nd.missing) {
            (Some(v), _) => colour(Some(v)),
            (None, true) => colour(None),
            _ => "#455a64",
        };
        let folded = if nd.hosts > 1 { " folded" } else { "" };
        let _ = write!(
            s,
            r#"<g class="node{folded}"><title>{}: {}</title><rect x="{:.1}" y="{:.1}" width="{BOX_W}" height="{BOX_H}" rx="6" fill="white" stroke="{stroke}" stroke-width="{}"/>"#,
            xml(&nd.title),
            xml(&nd.subtitle),
            x - BOX_W / 2.0,
            y - BOX_H / 2.0,
            if nd.worst.is_some() || nd.missing { 2.5 } else { 1.2 }
        );
        if nd.hosts > 1 {
            // A stack: folded hosts.
            let _ = write!(
                s,
                r#"<rect x="{:.1}" y="{:.1}" width="{BOX_W}" height="{BOX_H}" rx="6" fill="none" stroke="{stroke}" stroke-width="0.8"/>"#,
                x - BOX_W / 2.0 + 4.0,
                y - BOX_H / 2.0 - 4.0
            );
        }
        let _ = write!(
            s,
            r#"<text class="node-title" x="{x:.1}" y="{:.1}">{}</text><text class="node-sub" x="{x:.1}" y="{:.1}">{}</text></g>"#,
            y - 3.0,
            xml(&shorten(&nd.title, 24)),
            y + 13.0,
            xml(&shorten(&nd.subtitle, 32))
        );
    }
    s.push_str("</svg>");
    s
}

/// The picture for Graphviz (`dot -Tsvg`): a cluster per band.
pub fn dot(g: &Graph) -> String {
    let q = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
    let mut s = String::from(
        "digraph kscflow {\n  rankdir=TB;\n  node [shape=box, style=rounded, fontname=\"Helvetica\"];\n  edge [fontname=\"Helvetica\", fontsize=10];\n",
    );
    for (li, lane) in Lane::ALL.iter().enumerate() {
        let ids: Vec<usize> = (0..g.nodes.len()).filter(|&i| g.nodes[i].lane == *lane).collect();
        if ids.is_empty() {
            continue;
        }
        let _ = writeln!(
            s,
            "  subgraph cluster_{li} {{\n    label=\"{}\";\n    style=filled; color=\"#f5f7fa\";",
            q(lane.title())
        );
        for i in ids {
            let n = &g.nodes[i];
            let color = match (n.worst, n.missing) {
                (Some(v), _) => colour(Some(v)),
                (None, true) => colour(None),
                _ => "#455a64",
            };
            let _ = writeln!(
                s,
                "    n{i} [label=\"{}\\n{}\", color=\"{color}\"{}];",
                q(&n.title),
                q(&n.subtitle),
                if n.hosts > 1 { ", peripheries=2" } else { "" }
            );
        }
        s.push_str("  }\n");
    }
    for e in &g.edges {
        let label = if e.count > 1 { format!("{} ×{}", e.label, e.count) } else { e.label.clone() };
        let _ = writeln!(
            s,
            "  n{} -> n{} [label=\"{}\", color=\"{c}\", fontcolor=\"{c}\"{}];",
            e.from,
            e.to,
            q(&label),
            if e.verdict.is_none() { ", style=dashed" } else { "" },
            c = colour(e.verdict)
        );
    }
    s.push_str("}\n");
    s
}

/// Writes the topology alone for Graphviz (`--format dot`).
pub fn write_dot(out: &mut dyn std::io::Write, data: &ReportData<'_>) -> std::io::Result<()> {
    out.write_all(dot(&graph(data)).as_bytes())
}

/// The picture as a Mermaid flowchart, which GitHub, GitLab and many wikis
/// draw from a fenced `mermaid` block in Markdown: a subgraph per band,
/// solid arrows for conversations, dotted for missing expectations,
/// coloured by verdict.
pub fn mermaid(g: &Graph) -> String {
    // Mermaid labels are quoted; its own entity syntax escapes quotes.
    let q = |s: &str| s.replace('"', "#quot;");
    let mut s = String::from("flowchart TB\n");
    for (li, lane) in Lane::ALL.iter().enumerate() {
        let ids: Vec<usize> = (0..g.nodes.len()).filter(|&i| g.nodes[i].lane == *lane).collect();
        if ids.is_empty() {
            continue;
        }
        let _ = writeln!(s, "  subgraph lane{li}[\"{}\"]", q(lane.title()));
        for i in ids {
            let n = &g.nodes[i];
            let _ = writeln!(s, "    n{i}[\"{}<br/>{}\"]", q(&n.title), q(&n.subtitle));
        }
        s.push_str("  end\n");
    }
    for e in &g.edges {
        let label = if e.count > 1 { format!("{} ×{}", e.label, e.count) } else { e.label.clone() };
        let arrow = if e.verdict.is_none() { "-.->" } else { "-->" };
        let _ = writeln!(s, "  n{} {arrow}|\"{}\"| n{}", e.from, q(&label), e.to);
    }
    for (k, e) in g.edges.iter().enumerate() {
        let _ = writeln!(s, "  linkStyle {k} stroke:{},stroke-width:2px", colour(e.verdict));
    }
    s
}
