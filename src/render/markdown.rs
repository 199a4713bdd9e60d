//! The report as Markdown (GitHub-flavoured tables) for tickets and wikis.

use std::io::{self, Write};

use super::{rule_label, seed_list, thousands, tls_summary, Model};
use crate::classify::Status;
use crate::report::ReportData;

/// Escapes a table cell: pipes and line breaks would end it.
pub fn cell(s: &str) -> String {
    s.replace('\\', "\\\\").replace('|', "\\|").replace(['\n', '\r'], " ")
}

fn row(out: &mut dyn Write, cells: &[String]) -> io::Result<()> {
    let escaped: Vec<String> = cells.iter().map(|c| cell(c)).collect();
    writeln!(out, "| {} |", escaped.join(" | "))
}

fn header(out: &mut dyn Write, names: &[&str]) -> io::Result<()> {
    writeln!(out, "| {} |", names.join(" | "))?;
    writeln!(out, "|{}", "---|".repeat(names.len()))
}

/// Writes the Markdown report.
pub fn write(out: &mut dyn Write, data: &ReportData<'_>) -> io::Result<()> {
    let m = Model::new(data);
    let c = m.counts;
    writeln!(out, "# KSC traffic compliance report\n")?;
    writeln!(out, "**Status: {}** — {}\n", m.status.0, m.status.1)?;
    header(
        out,
        &[
            "unexpected",
            "insecure",
            "missing",
            "unconfirmed",
            "expected",
            "conversations",
            "out of scope (connections)",
        ],
    )?;
    row(
        out,
        &[c.unexpected, c.insecure, c.missing, c.unconfirmed, c.expected, c.conversations]
            .map(|n| n.to_string())
            .into_iter()
            .chain([thousands(c.out_of_scope_connections)])
            .collect::<Vec<_>>(),
    )?;

    // The picture, for the wikis that draw Mermaid (and `--format dot` or
    // html for the others).
    writeln!(out, "\n## Topology\n")?;
    writeln!(out, "Arrows go from the host that opened the connection to the one that answered; dotted: missing.\n")?;
    writeln!(out, "```mermaid\n{}```", super::topology::mermaid(&super::topology::graph(data)))?;

    if let Some(best) = m.scheme.best() {
        writeln!(out, "\n## Deployment scheme\n")?;
        writeln!(
            out,
            "The traffic matches best the seed's scheme **{}** ({}), similarity {:.0} %.",
            best.topic,
            best.title,
            best.score * 100.0
        )?;
        if !best.not_seen.is_empty() {
            writeln!(out, "\n- In the scheme, not seen: {}", best.not_seen.join(", "))?;
        }
        if !best.not_in_scheme.is_empty() {
            writeln!(out, "- Seen, not in the scheme: {}", best.not_in_scheme.join(", "))?;
        }
        if c.unexpected > 0 {
            writeln!(out, "- In no scheme: {} unexpected conversation(s), under Findings", c.unexpected)?;
        }
        let others: Vec<String> =
            m.scheme.ranked[1..].iter().map(|s| format!("{} {:.0} %", s.topic, s.score * 100.0)).collect();
        writeln!(out, "- The other schemes: {}", others.join(", "))?;
    }

    writeln!(out, "\n## Findings, worst first\n")?;
    if m.findings.is_empty() {
        writeln!(out, "No unexpected or insecure conversation.")?;
    } else {
        header(out, &["verdict", "client", "server", "port", "rule", "reason", "seed"])?;
        for j in &m.findings {
            row(
                out,
                &[
                    j.verdict.name().to_uppercase(),
                    j.client.label(),
                    j.server.label(),
                    format!("{} {}", j.key.transport, j.key.server_port),
                    rule_label(data, j),
                    j.reason.clone(),
                    seed_list(&j.seed),
                ],
            )?;
        }
    }

    writeln!(out, "\n## Missing expectations\n")?;
    writeln!(out, "{}\n", m.window_caveat)?;
    if m.missing.is_empty() {
        writeln!(out, "Every expectation was met.")?;
    } else {
        header(out, &["status", "host", "role", "expectation", "reason", "seed"])?;
        for e in &m.missing {
            row(
                out,
                &[
                    match e.status {
                        Status::Missing => "MISSING".into(),
                        Status::Unconfirmed => "unconfirmed".into(),
                    },
                    e.host.label(),
                    e.role.name().into(),
                    e.expectation.clone(),
                    e.reason.clone(),
                    seed_list(&e.seed),
                ],
            )?;
        }
    }

    writeln!(out, "\n## Per rule\n")?;
    header(
        out,
        &[
            "rule",
            "worst verdict",
            "conversations",
            "connections",
            "hosts",
            "TLS seen",
            "refused",
            "unanswered",
            "seed",
        ],
    )?;
    for r in &m.rules {
        row(
            out,
            &[
                r.id.clone(),
                r.worst.name().into(),
                r.conversations.to_string(),
                thousands(r.connections),
                r.hosts.to_string(),
                r.tls.clone(),
                r.refused.to_string(),
                r.unanswered.to_string(),
                seed_list(&r.seed),
            ],
        )?;
    }

    writeln!(out, "\n## Per host\n")?;
    header(out, &["host", "roles", "conversations out", "conversations in", "findings"])?;
    for h in &m.hosts {
        row(
            out,
            &[
                h.label.clone(),
                h.roles.clone(),
                h.conversations_out.to_string(),
                h.conversations_in.to_string(),
                h.findings.to_string(),
            ],
        )?;
    }

    writeln!(out, "\n## Capture\n")?;
    header(out, &["fact", "value"])?;
    for (k, v) in &m.facts {
        row(out, &[k.clone(), v.clone()])?;
    }

    writeln!(out, "\n## All conversations\n")?;
    header(out, &["verdict", "client", "server", "port", "connections", "TLS", "rule"])?;
    for j in &data.result.assessment.flows {
        row(
            out,
            &[
                j.verdict.name().into(),
                j.client.label(),
                j.server.label(),
                format!("{} {}", j.key.transport, j.key.server_port),
                thousands(j.stats.connections),
                tls_summary(j),
                rule_label(data, j),
            ],
        )?;
    }
    Ok(())
}
