//! The report as one self-contained HTML file for auditors: inline CSS,
//! the topology as inline SVG, no script and no reference to anything
//! outside the file (so it opens offline, passes a strict Content Security
//! Policy, and prints to PDF as it shows on screen).

use std::io::{self, Write};

use super::topology::{self, xml};
use super::{rule_label, seed_list, thousands, tls_summary, Model};
use crate::classify::{Status, Verdict};
use crate::report::ReportData;

const CSS: &str = r#"
:root { --ok: #2e7d32; --warn: #d35400; --bad: #c62828; --miss: #6a1b9a; --ink: #1c2833; --muted: #5d6d7e; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; color: var(--ink); margin: 0 auto; padding: 24px 32px; max-width: 1280px; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 18px; margin: 28px 0 8px; border-bottom: 2px solid #e5e8ec; padding-bottom: 4px; }
p.sub { color: var(--muted); margin: 0 0 16px; }
.status { display: inline-block; font-weight: 700; padding: 4px 12px; border-radius: 4px; color: #fff; }
.status.FAIL { background: var(--bad); } .status.PASS { background: var(--ok); }
.cards { display: flex; flex-wrap: wrap; gap: 10px; margin: 14px 0; }
.card { border: 1px solid #d5dbe1; border-radius: 6px; padding: 8px 14px; min-width: 110px; }
.card b { display: block; font-size: 22px; }
.card.unexpected b { color: var(--bad); } .card.insecure b { color: var(--warn); }
.card.missing b { color: var(--miss); } .card.expected b { color: var(--ok); }
table { border-collapse: collapse; width: 100%; margin: 6px 0 10px; font-size: 13px; }
th, td { border: 1px solid #d5dbe1; padding: 4px 7px; text-align: left; vertical-align: top; }
th { background: #eef1f4; }
tr:nth-child(even) td { background: #fafbfc; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.v { font-weight: 700; white-space: nowrap; }
.v.unexpected { color: var(--bad); } .v.insecure { color: var(--warn); } .v.expected { color: var(--ok); }
.v.missing { color: var(--miss); } .v.unconfirmed { color: var(--muted); }
.caveat { background: #f4ecf7; border-left: 4px solid var(--miss); padding: 6px 10px; }
.figure { overflow-x: auto; border: 1px solid #d5dbe1; border-radius: 6px; }
.legend span { margin-right: 16px; white-space: nowrap; }
.legend i { display: inline-block; width: 26px; height: 0; border-top: 3px solid; vertical-align: middle; margin-right: 5px; }
svg.topology { display: block; }
svg .lane-title { font: 600 12px system-ui, sans-serif; fill: #5d6d7e; }
svg .node-title { font: 600 12px system-ui, sans-serif; text-anchor: middle; fill: #1c2833; }
svg .node-sub { font: 10px system-ui, sans-serif; text-anchor: middle; fill: #5d6d7e; }
svg .edge-label { font: 600 10px system-ui, sans-serif; text-anchor: middle; paint-order: stroke; stroke: #fff; stroke-width: 3px; }
code { font-size: 12px; }
@media print {
  body { padding: 0; max-width: none; font-size: 11px; }
  h2 { break-after: avoid; }
  tr, .figure, .card { break-inside: avoid; }
  .figure { overflow: visible; border: none; }
  svg.topology { width: 100%; height: auto; }
  .status, th, .caveat, tr:nth-child(even) td { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
}
"#;

/// Escapes a reason and shows its `rule-id` quotes as code.
fn prose(s: &str) -> String {
    let mut out = String::new();
    for (i, part) in xml(s).split('`').enumerate() {
        if i % 2 == 1 {
            out.push_str("<code>");
            out.push_str(part);
            out.push_str("</code>");
        } else {
            out.push_str(part);
        }
    }
    out
}

/// Expected conversations listed at most in the page (beyond: the CSV).
pub const MAX_EXPECTED_ROWS: usize = 2000;

fn verdict_cell(v: Verdict) -> String {
    format!(r#"<td class="v {}">{}</td>"#, v.name(), v.name())
}

/// Writes the HTML report.
pub fn write(out: &mut dyn Write, data: &ReportData<'_>) -> io::Result<()> {
    let m = Model::new(data);
    let c = m.counts;
    let mut h = String::with_capacity(64 * 1024);
    h.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    // Nothing may load: no script, no style, image or font from elsewhere.
    h.push_str("<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">");
    h.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">");
    h.push_str("<title>KSC traffic compliance report</title><style>");
    h.push_str(CSS);
    h.push_str("</style></head><body>\n");
    h.push_str("<h1>KSC traffic compliance report</h1>");
    let window = m.facts.iter().find(|(k, _)| k == "Time window").map_or("", |(_, v)| v.as_str());
    h.push_str(&format!(
        r#"<p class="sub">{} · {} · kscflow {}</p>"#,
        xml(&data.rules.product),
        xml(window),
        env!("CARGO_PKG_VERSION")
    ));
    h.push_str(&format!(r#"<p><span class="status {0}">{0}</span> {1}</p>"#, m.status.0, xml(&m.status.1)));
    h.push_str(r#"<div class="cards">"#);
    for (class, n, what) in [
        ("unexpected", c.unexpected, "unexpected"),
        ("insecure", c.insecure, "insecure"),
        ("missing", c.missing, "missing"),
        ("unconfirmed", c.unconfirmed, "not seen yet"),
        ("expected", c.expected, "expected"),
    ] {
        h.push_str(&format!(r#"<div class="card {class}"><b>{n}</b>{what}</div>"#));
    }
    h.push_str(&format!(
        r#"<div class="card"><b>{}</b>conversations</div><div class="card"><b>{}</b>out-of-scope connections</div></div>"#,
        c.conversations,
        thousands(c.out_of_scope_connections)
    ));

    // The picture.
    h.push_str("\n<h2>Topology</h2>");
    h.push_str(r#"<p class="legend">"#);
    for (v, what) in [("var(--ok)", "expected"), ("var(--warn)", "insecure"), ("var(--bad)", "unexpected")] {
        h.push_str(&format!(r#"<span><i style="border-color:{v}"></i>{what}</span>"#));
    }
    h.push_str(r#"<span><i style="border-color:var(--miss);border-top-style:dashed"></i>missing expectation</span>"#);
    h.push_str("<span>Arrows go from the host that opened the connection to the one that answered. Stacked boxes are several hosts folded into one.</span></p>");
    h.push_str(r#"<div class="figure">"#);
    h.push_str(&topology::svg(&topology::graph(data)));
    h.push_str("</div>\n");

    if let Some(best) = m.scheme.best() {
        h.push_str("<h2>Deployment scheme</h2>");
        h.push_str(&format!(
            "<p>The traffic matches best the seed's scheme <b>{}</b> ({}), similarity {:.0} %.</p><ul>",
            best.topic,
            xml(best.title),
            best.score * 100.0
        ));
        if !best.not_seen.is_empty() {
            h.push_str(&format!("<li>In the scheme, not seen: {}</li>", xml(&best.not_seen.join(", "))));
        }
        if !best.not_in_scheme.is_empty() {
            h.push_str(&format!("<li>Seen, not in the scheme: {}</li>", xml(&best.not_in_scheme.join(", "))));
        }
        if c.unexpected > 0 {
            h.push_str(&format!("<li>In no scheme: {} unexpected conversation(s), under Findings</li>", c.unexpected));
        }
        let others: Vec<String> =
            m.scheme.ranked[1..].iter().map(|s| format!("{} {:.0} %", s.topic, s.score * 100.0)).collect();
        h.push_str(&format!("<li>The other schemes: {}</li></ul>", others.join(", ")));
    }

    h.push_str("\n<h2>Findings, worst first</h2>");
    if m.findings.is_empty() {
        h.push_str("<p>No unexpected or insecure conversation.</p>");
    } else {
        h.push_str("<table class=\"findings\"><thead><tr><th>verdict</th><th>client</th><th>server</th><th>port</th><th>rule</th><th>reason</th><th>seed</th></tr></thead><tbody>");
        for j in &m.findings {
            h.push_str(&format!(
                "<tr>{}<td>{}</td><td>{}</td><td>{} {}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                verdict_cell(j.verdict),
                xml(&j.client.label()),
                xml(&j.server.label()),
                j.key.transport,
                j.key.server_port,
                xml(&rule_label(data, j)),
                prose(&j.reason),
                seed_list(&j.seed)
            ));
        }
        h.push_str("</tbody></table>");
    }

    h.push_str("\n<h2>Missing expectations</h2>");
    h.push_str(&format!(r#"<p class="caveat">{}</p>"#, prose(&m.window_caveat)));
    if m.missing.is_empty() {
        h.push_str("<p>Every expectation was met.</p>");
    } else {
        h.push_str("<table class=\"missing\"><thead><tr><th>status</th><th>host</th><th>role</th><th>expectation</th><th>reason</th><th>seed</th></tr></thead><tbody>");
        for e in &m.missing {
            let (class, text) = match e.status {
                Status::Missing => ("missing", "missing"),
                Status::Unconfirmed => ("unconfirmed", "unconfirmed"),
            };
            h.push_str(&format!(
                r#"<tr><td class="v {class}">{text}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
                xml(&e.host.label()),
                e.role.name(),
                xml(&e.expectation),
                prose(&e.reason),
                seed_list(&e.seed)
            ));
        }
        h.push_str("</tbody></table>");
    }

    h.push_str("\n<h2>Per rule</h2><table class=\"rules\"><thead><tr><th>rule</th><th>worst verdict</th><th>conversations</th><th>connections</th><th>hosts</th><th>TLS seen</th><th>refused</th><th>unanswered</th><th>seed</th></tr></thead><tbody>");
    for r in &m.rules {
        h.push_str(&format!(
            r#"<tr><td>{}</td>{}<td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td>{}</td><td class="num">{}</td><td class="num">{}</td><td>{}</td></tr>"#,
            xml(&r.id),
            verdict_cell(r.worst),
            r.conversations,
            thousands(r.connections),
            r.hosts,
            xml(&r.tls),
            r.refused,
            r.unanswered,
            seed_list(&r.seed)
        ));
    }
    h.push_str("</tbody></table>");

    h.push_str("\n<h2>Per host</h2><table class=\"hosts\"><thead><tr><th>host</th><th>roles</th><th>conversations out</th><th>conversations in</th><th>findings</th></tr></thead><tbody>");
    for r in &m.hosts {
        h.push_str(&format!(
            r#"<tr><td>{}</td><td>{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td></tr>"#,
            xml(&r.label),
            xml(&r.roles),
            thousands(r.conversations_out as u64),
            thousands(r.conversations_in as u64),
            r.findings
        ));
    }
    h.push_str("</tbody></table>");

    h.push_str("\n<h2>Capture</h2><table class=\"facts\"><tbody>");
    for (k, v) in &m.facts {
        h.push_str(&format!("<tr><th>{}</th><td>{}</td></tr>", xml(k), xml(v)));
    }
    h.push_str("</tbody></table>");

    // Every flagged conversation; the expected ones up to a page count a
    // reader (or a printer) can take: the per-rule table sums them all and
    // the CSV lists them all.
    let flows = &data.result.assessment.flows;
    let expected = flows.iter().filter(|j| j.verdict == Verdict::Expected).count();
    let cut = expected.saturating_sub(MAX_EXPECTED_ROWS);
    let title = if cut > 0 { "Conversations" } else { "All conversations" };
    h.push_str(&format!("\n<h2>{title}</h2>"));
    if cut > 0 {
        h.push_str(&format!(
            "<p>Every flagged conversation and the first {} of {} expected ones; <code>--format csv</code> lists all {}.</p>",
            thousands(MAX_EXPECTED_ROWS as u64),
            thousands(expected as u64),
            thousands(flows.len() as u64)
        ));
    }
    h.push_str("<table class=\"conversations\"><thead><tr><th>verdict</th><th>client</th><th>server</th><th>port</th><th>connections</th><th>TLS</th><th>rule</th></tr></thead><tbody>");
    let mut shown_expected = 0;
    for j in flows {
        if j.verdict == Verdict::Expected {
            shown_expected += 1;
            if shown_expected > MAX_EXPECTED_ROWS {
                continue;
            }
        }
        h.push_str(&format!(
            r#"<tr>{}<td>{}</td><td>{}</td><td>{} {}</td><td class="num">{}</td><td>{}</td><td>{}</td></tr>"#,
            verdict_cell(j.verdict),
            xml(&j.client.label()),
            xml(&j.server.label()),
            j.key.transport,
            j.key.server_port,
            thousands(j.stats.connections),
            xml(&tls_summary(j)),
            xml(&rule_label(data, j))
        ));
    }
    h.push_str("</tbody></table>\n</body></html>\n");
    out.write_all(h.as_bytes())
}
