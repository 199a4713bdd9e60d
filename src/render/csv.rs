//! The conversations as CSV for spreadsheets: one row per conversation,
//! the fields of the JSON contract's flow records (the same
//! `flow_json` builds both), nested ones flattened (`tls_version`,
//! `outcome_refused`, `direction_syn`), lists joined with `;`. A folded
//! group has no client address and its size in `folded_conversations`.

use std::io::{self, Write};

use crate::flow::{Direction, Outcome};
use crate::report::{flow_json, ReportData};

/// Writes the CSV (RFC 4180 quoting, by the `csv` crate).
pub fn write(out: &mut dyn Write, data: &ReportData<'_>) -> io::Result<()> {
    let mut w = ::csv::Writer::from_writer(out);
    let mut head: Vec<String> = [
        "client",
        "client_name",
        "server",
        "server_name",
        "server_port",
        "transport",
        "connections",
        "packets",
        "bytes",
        "packets_to_server",
        "packets_to_client",
        "bytes_to_server",
        "bytes_to_client",
        "first_seen",
        "last_seen",
        "client_role",
        "server_role",
        "client_roles",
        "server_roles",
        "tls_version",
        "tls_min_version",
        "tls_sni",
        "tls_hellos",
        "tls_unparsed",
        "plaintext_connections",
    ]
    .map(String::from)
    .to_vec();
    head.extend(Outcome::ALL.iter().map(|o| format!("outcome_{}", o.key())));
    head.extend(Direction::ALL.iter().map(|d| format!("direction_{}", d.key())));
    head.extend(["rule", "allow", "verdict", "reason", "seed", "folded_conversations"].map(String::from));
    w.write_record(&head)?;
    let opt = |s: &Option<String>| s.clone().unwrap_or_default();
    for j in &data.result.assessment.flows {
        let f = flow_json(data.rules, j);
        let tls = f.tls.as_ref();
        let mut rec: Vec<String> = vec![
            opt(&f.client),
            opt(&f.client_name),
            opt(&f.server),
            opt(&f.server_name),
            f.server_port.to_string(),
            f.transport.to_string(),
            f.connections.to_string(),
            f.packets.to_string(),
            f.bytes.to_string(),
            f.packets_to_server.to_string(),
            f.packets_to_client.to_string(),
            f.bytes_to_server.to_string(),
            f.bytes_to_client.to_string(),
            f.first_seen.clone(),
            f.last_seen.clone(),
            f.client_role.clone(),
            f.server_role.clone(),
            f.client_roles.join(";"),
            f.server_roles.join(";"),
            tls.and_then(|t| t.version.clone()).unwrap_or_default(),
            tls.and_then(|t| t.min_version.clone()).unwrap_or_default(),
            tls.and_then(|t| t.sni.clone()).unwrap_or_default(),
            tls.map_or(0, |t| t.hellos).to_string(),
            tls.map_or(0, |t| t.unparsed).to_string(),
            f.plaintext_connections.to_string(),
        ];
        rec.extend(Outcome::ALL.iter().map(|o| f.outcomes.get(o.key()).copied().unwrap_or(0).to_string()));
        rec.extend(Direction::ALL.iter().map(|d| f.direction.get(d.key()).copied().unwrap_or(0).to_string()));
        rec.extend([
            opt(&f.rule),
            opt(&f.allow),
            f.verdict.name().to_string(),
            f.reason.clone(),
            f.seed.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(";"),
            f.group.as_ref().map(|g| g.conversations.to_string()).unwrap_or_default(),
        ]);
        w.write_record(&rec)?;
    }
    w.flush()
}
