//! `kscflow report` and the report formats, run through the real binary on
//! the fixtures: merging results equals auditing the captures together;
//! the Markdown, CSV, HTML and DOT outputs say what the JSON says.

use std::path::{Path, PathBuf};

use serde_json::Value;

mod common;
use common::{fixture, kscflow, run, stderr};

/// Runs kscflow with `args` and `-o OUT`, expecting exit 0 or 1 (findings).
fn run_to(args: &[&str], out: &Path) {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["-o", out.to_str().unwrap()]);
    let o = run(&all);
    assert!(matches!(o.status.code(), Some(0 | 1)), "kscflow {all:?}: {}", stderr(&o));
}

fn json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Flows by key, for comparing two results whatever their order.
fn flows_by_key(v: &Value) -> std::collections::BTreeMap<String, Value> {
    v["flows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (format!("{} {} {} {}", f["client"], f["server"], f["transport"], f["server_port"]), f.clone()))
        .collect()
}

/// Audits `a` and `b` apart and together (with `extra` arguments), merges
/// the two results with `report`, and checks the merge equals the joint
/// audit: every flow field, the missing list, the summary. Returns the
/// merged result.
fn assert_merge_equals_joint_audit(dir: &Path, a: &Path, b: &Path, extra: &[&str]) -> Value {
    let (ra, rb, joint, merged) = (dir.join("a.json"), dir.join("b.json"), dir.join("j.json"), dir.join("m.json"));
    let audit = |captures: &[&Path], out: &Path| {
        let mut args = vec!["audit", "--format", "json"];
        args.extend(extra);
        args.extend(captures.iter().map(|p| p.to_str().unwrap()));
        run_to(&args, out);
    };
    audit(&[a], &ra);
    audit(&[b], &rb);
    audit(&[a, b], &joint);
    run_to(&["report", "--format", "json", ra.to_str().unwrap(), rb.to_str().unwrap()], &merged);
    let (j, m) = (json(&joint), json(&merged));
    let (jf, mf) = (flows_by_key(&j), flows_by_key(&m));
    assert!(!jf.is_empty());
    assert_eq!(jf.keys().collect::<Vec<_>>(), mf.keys().collect::<Vec<_>>(), "the same conversations");
    for (k, f) in &jf {
        assert_eq!(f, &mf[k], "flow {k}");
    }
    assert_eq!(j["missing"], m["missing"]);
    assert_eq!(j["summary"], m["summary"]);
    assert_eq!(j["capture"]["first_timestamp"], m["capture"]["first_timestamp"]);
    assert_eq!(j["capture"]["last_timestamp"], m["capture"]["last_timestamp"]);
    assert_eq!(j["capture"]["packets"], m["capture"]["packets"]);
    // Every source is listed, with its capture.
    let sources = m["sources"].as_array().unwrap();
    assert_eq!(sources.len(), 2);
    assert_eq!(sources[0]["captures"][0], a.to_str().unwrap());
    assert_eq!(sources[1]["captures"][0], b.to_str().unwrap());
    m
}

/// An inventory of both missing-agent fixtures (ws-24 is the short one's).
fn missing_agent_inventory(dir: &Path) -> PathBuf {
    let mut inv = std::fs::read_to_string(fixture("missing-agent.inventory.toml")).unwrap();
    inv.push_str("\n[[host]]\nname = \"ws-24\"\naddr = \"10.0.1.24\"\nrole = \"managed-device\"\n");
    let p = dir.join("inventory.toml");
    std::fs::write(&p, inv).unwrap();
    p
}

#[test]
fn merging_two_results_equals_auditing_both_captures_with_an_inventory() {
    let dir = tempfile::tempdir().unwrap();
    let inv = missing_agent_inventory(dir.path());
    let (long, short) = (fixture("missing-agent.pcap"), fixture("missing-agent-short.pcap"));
    let m = assert_merge_equals_joint_audit(dir.path(), &long, &short, &["-i", inv.to_str().unwrap()]);
    // The short capture alone cannot tell ws-24 is missing (5 min < 45);
    // over the combined window of the merge it can.
    let b = json(&dir.path().join("b.json"));
    let status = |v: &Value, host: &str| {
        v["missing"].as_array().unwrap().iter().find(|e| e["host"] == host).map(|e| e["status"].clone())
    };
    assert_eq!(status(&b, "10.0.1.24"), Some("unconfirmed".into()));
    assert_eq!(status(&m, "10.0.1.24"), Some("missing".into()));
}

#[test]
fn merging_two_results_equals_auditing_both_captures_with_inferred_roles() {
    let dir = tempfile::tempdir().unwrap();
    let m =
        assert_merge_equals_joint_audit(dir.path(), &fixture("noinventory.pcap"), &fixture("scheme-183039.pcap"), &[]);
    assert_eq!(m["roles_source"], "inferred");
}

#[test]
fn merging_findings_of_two_schemes_keeps_their_verdicts() {
    let dir = tempfile::tempdir().unwrap();
    let m =
        assert_merge_equals_joint_audit(dir.path(), &fixture("legacy-14000.pcap"), &fixture("obsolete-tls.pcap"), &[]);
    assert!(m["summary"]["insecure"].as_u64().unwrap() >= 2, "{}", m["summary"]);
}

#[test]
fn a_merged_result_merges_again_and_keeps_its_sources() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (a, b, ab, abc) = (d.join("a.json"), d.join("b.json"), d.join("ab.json"), d.join("abc.json"));
    run_to(&["audit", "--format", "json", fixture("scheme-183039.pcap").to_str().unwrap()], &a);
    run_to(&["audit", "--format", "json", fixture("scheme-183040.pcap").to_str().unwrap()], &b);
    run_to(&["report", "--format", "json", a.to_str().unwrap(), b.to_str().unwrap()], &ab);
    run_to(&["report", "--format", "json", ab.to_str().unwrap(), a.to_str().unwrap()], &abc);
    let v = json(&abc);
    let results: Vec<&str> = v["sources"].as_array().unwrap().iter().map(|s| s["result"].as_str().unwrap()).collect();
    assert_eq!(results, [a.to_str().unwrap(), b.to_str().unwrap(), a.to_str().unwrap()]);
    // a.json is in twice: each of its conversations counts twice more.
    let (first, merged, again) = (flows_by_key(&json(&a)), flows_by_key(&json(&ab)), flows_by_key(&v));
    for (k, f) in &first {
        let n = |m: &std::collections::BTreeMap<String, Value>| m[k]["connections"].as_u64().unwrap();
        assert_eq!(n(&again), n(&merged) + f["connections"].as_u64().unwrap(), "{k}");
    }
}

#[test]
fn report_refuses_what_is_not_a_result_and_results_judged_differently() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let junk = d.join("junk.json");
    std::fs::write(&junk, b"{\"hello\": 1}").unwrap();
    let o = run(&["report", junk.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("not a kscflow JSON result"), "{}", stderr(&o));

    let (a, b) = (d.join("a.json"), d.join("b.json"));
    let inv = fixture("legacy-14000.inventory.toml");
    run_to(
        &["audit", "--format", "json", "-i", inv.to_str().unwrap(), fixture("legacy-14000.pcap").to_str().unwrap()],
        &a,
    );
    run_to(&["audit", "--format", "json", fixture("obsolete-tls.pcap").to_str().unwrap()], &b);
    let o = run(&["report", a.to_str().unwrap(), b.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("pass --inventory"), "{}", stderr(&o));
    assert!(!stderr(&o).contains("panicked"));
    // Given once for all, the merge runs.
    let o = run(&["report", "-i", inv.to_str().unwrap(), a.to_str().unwrap(), b.to_str().unwrap()]);
    assert!(matches!(o.status.code(), Some(0 | 1)), "{}", stderr(&o));

    // A result that names its inventory by a relative path, read from
    // elsewhere: the message says which file and what to pass.
    let rel = d.join("rel.json");
    let o = kscflow()
        .current_dir(fixture(""))
        .args(["audit", "-i", "legacy-14000.inventory.toml", "legacy-14000.pcap", "--format", "json"])
        .args(["-o", rel.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(matches!(o.status.code(), Some(0 | 1)), "{}", stderr(&o));
    let o = kscflow().current_dir(d).args(["report", rel.to_str().unwrap()]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(
        e.contains("judged with the inventory legacy-14000.inventory.toml") && e.contains("pass --inventory"),
        "{e}"
    );
    let o =
        kscflow().current_dir(d).args(["report", "-i", inv.to_str().unwrap(), rel.to_str().unwrap()]).output().unwrap();
    assert!(matches!(o.status.code(), Some(0 | 1)), "{}", stderr(&o));
}

/// Audits `name` (with its inventory when there is one) as JSON and in
/// `format`, returning both.
fn audit_both(dir: &Path, name: &str, format: &str) -> (Value, String) {
    let inv = fixture(&format!("{name}.inventory.toml"));
    let cap = fixture(&format!("{name}.pcap"));
    let mut args = vec!["audit", cap.to_str().unwrap()];
    if inv.exists() {
        args.extend(["-i", inv.to_str().unwrap()]);
    }
    let (j, o) = (dir.join(format!("{name}.json")), dir.join(format!("{name}.{format}")));
    run_to(&[&args[..], &["--format", "json"]].concat(), &j);
    run_to(&[&args[..], &["--format", format]].concat(), &o);
    (json(&j), std::fs::read_to_string(&o).unwrap())
}

/// The tables of a Markdown document as (heading before it, rows without
/// the header row), parsed by pulldown-cmark.
fn markdown_tables(md: &str) -> Vec<(String, Vec<Vec<String>>)> {
    use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};
    let mut tables = Vec::new();
    let (mut heading, mut in_heading) = (String::new(), false);
    let (mut rows, mut row, mut cell): (Vec<Vec<String>>, Vec<String>, String) = (vec![], vec![], String::new());
    let (mut in_table, mut in_head) = (false, false);
    for ev in Parser::new_ext(md, Options::ENABLE_TABLES) {
        match ev {
            Event::Start(Tag::Heading { .. }) => (in_heading, heading) = (true, String::new()),
            Event::End(TagEnd::Heading(_)) => in_heading = false,
            Event::Start(Tag::Table(_)) => (in_table, rows) = (true, vec![]),
            Event::End(TagEnd::Table) => {
                in_table = false;
                tables.push((heading.clone(), std::mem::take(&mut rows)));
            }
            Event::Start(Tag::TableHead) => in_head = true,
            Event::End(TagEnd::TableHead) => in_head = false,
            Event::Start(Tag::TableRow) => row = vec![],
            Event::End(TagEnd::TableRow) if !in_head => rows.push(std::mem::take(&mut row)),
            Event::Start(Tag::TableCell) => cell = String::new(),
            Event::End(TagEnd::TableCell) => row.push(std::mem::take(&mut cell)),
            Event::Text(t) | Event::Code(t) if in_heading => heading.push_str(&t),
            Event::Text(t) | Event::Code(t) if in_table => cell.push_str(&t),
            _ => {}
        }
    }
    tables
}

fn table<'a>(tables: &'a [(String, Vec<Vec<String>>)], heading: &str) -> &'a [Vec<String>] {
    &tables.iter().find(|(h, _)| h == heading).unwrap_or_else(|| panic!("no table under {heading:?}")).1
}

#[test]
fn markdown_tables_parse_and_hold_every_conversation_and_finding() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["scheme-183039", "wrong-roles", "legacy-14000", "missing-agent", "noinventory", "unknown-host"] {
        let (v, md) = audit_both(dir.path(), name, "md");
        let tables = markdown_tables(&md);
        let s = &v["summary"];
        let n = |k: &str| s[k].as_u64().unwrap() as usize;
        let all = table(&tables, "All conversations");
        assert_eq!(all.len(), n("conversations"), "{name}");
        // Each conversation's verdict, as in the JSON.
        let mut md_verdicts: Vec<&str> = all.iter().map(|r| r[0].as_str()).collect();
        let mut json_verdicts: Vec<&str> =
            v["flows"].as_array().unwrap().iter().map(|f| f["verdict"].as_str().unwrap()).collect();
        md_verdicts.sort_unstable();
        json_verdicts.sort_unstable();
        assert_eq!(md_verdicts, json_verdicts, "{name}");
        let flagged = n("unexpected") + n("insecure");
        if flagged > 0 {
            let findings = table(&tables, "Findings, worst first");
            assert_eq!(findings.len(), flagged, "{name}");
            // Worst first: every unexpected before every insecure.
            let order: Vec<&str> = findings.iter().map(|r| r[0].as_str()).collect();
            assert!(order.windows(2).all(|w| !(w[0] == "INSECURE" && w[1] == "UNEXPECTED")), "{name}: {order:?}");
            // Every finding names a reason; the rules table counts them all.
            assert!(findings.iter().all(|r| r[5].len() > 10));
        }
        let missing = n("missing") + n("unconfirmed");
        if missing > 0 {
            assert_eq!(table(&tables, "Missing expectations").len(), missing, "{name}");
            assert!(md.contains("only when the answered KSC traffic spans"), "{name}: the window caveat");
        }
        // The Mermaid picture: an arrow per conversation, a dotted one per
        // missing expectation (small sites fold nothing).
        let picture = md.split("```mermaid\n").nth(1).unwrap().split("```").next().unwrap();
        assert_eq!(picture.lines().filter(|l| l.contains(" -->|")).count(), n("conversations"), "{name}");
        assert_eq!(picture.lines().filter(|l| l.contains(" -.->|")).count(), missing, "{name}");
        let per_rule: usize = table(&tables, "Per rule").iter().map(|r| r[2].parse::<usize>().unwrap()).sum();
        assert_eq!(per_rule, n("conversations"), "{name}");
        assert!(!table(&tables, "Per host").is_empty());
        assert!(table(&tables, "Capture").iter().any(|r| r[0] == "Time window"));
    }
}

#[test]
fn csv_parses_back_to_the_json_conversations() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["scheme-183039", "wrong-roles", "obsolete-tls", "noinventory"] {
        let (v, text) = audit_both(dir.path(), name, "csv");
        let mut r = csv::Reader::from_reader(text.as_bytes());
        let head = r.headers().unwrap().clone();
        let col = |k: &str| head.iter().position(|h| h == k).unwrap_or_else(|| panic!("no column {k}"));
        let rows: Vec<csv::StringRecord> = r.records().map(|x| x.unwrap()).collect();
        let flows = v["flows"].as_array().unwrap();
        assert_eq!(rows.len(), flows.len(), "{name}");
        for (row, f) in rows.iter().zip(flows) {
            for k in ["client", "server", "transport", "verdict", "reason"] {
                assert_eq!(row[col(k)], *f[k].as_str().unwrap(), "{name} {k}");
            }
            assert_eq!(row[col("server_port")], f["server_port"].to_string());
            assert_eq!(row[col("connections")], f["connections"].to_string());
            assert_eq!(row[col("rule")], *f["rule"].as_str().unwrap_or(""));
        }
    }
}

#[test]
fn report_writes_markdown_and_csv_of_a_merge() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (a, b) = (d.join("a.json"), d.join("b.json"));
    run_to(&["audit", "--format", "json", fixture("legacy-14000.pcap").to_str().unwrap()], &a);
    run_to(&["audit", "--format", "json", fixture("wrong-roles.pcap").to_str().unwrap()], &b);
    let (merged, md, csv_out) = (d.join("m.json"), d.join("m.md"), d.join("m.csv"));
    let inputs = [a.to_str().unwrap(), b.to_str().unwrap()];
    run_to(&[&["report", "--format", "json"][..], &inputs].concat(), &merged);
    run_to(&[&["report", "--format", "md"][..], &inputs].concat(), &md);
    run_to(&[&["report", "--format", "csv"][..], &inputs].concat(), &csv_out);
    let n = json(&merged)["summary"]["conversations"].as_u64().unwrap() as usize;
    let md = std::fs::read_to_string(&md).unwrap();
    assert_eq!(table(&markdown_tables(&md), "All conversations").len(), n);
    // Both merged results are named among the capture facts.
    let facts = table(&markdown_tables(&md), "Capture").to_vec();
    assert_eq!(facts.iter().filter(|r| r[0] == "Result merged").count(), 2);
    let text = std::fs::read_to_string(&csv_out).unwrap();
    assert_eq!(csv::Reader::from_reader(text.as_bytes()).records().count(), n);
    // The terminal summary names the merge and its results.
    let o = run(&[&["report"][..], &inputs].concat());
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.starts_with("kscflow report: 2 result(s) merged, 2 capture(s)"), "{out}");
    assert!(out.contains(&format!("{}: {}", inputs[0], fixture("legacy-14000.pcap").display())), "{out}");
}

#[test]
fn each_seed_scheme_fixture_matches_its_own_scheme_best() {
    let dir = tempfile::tempdir().unwrap();
    for topic in ["183039", "183040", "183051", "183056", "183058"] {
        let (_, md) = audit_both(dir.path(), &format!("scheme-{topic}"), "md");
        assert!(md.contains(&format!("matches best the seed's scheme **{topic}**")), "{topic}:\n{md}");
    }
}

/// The inline SVG of an HTML report.
fn svg_of(html: &str) -> &str {
    let start = html.find("<svg").expect("an inline SVG");
    &html[start..html.find("</svg>").unwrap() + 6]
}

/// Sums `attr="N"` over the SVG, and counts its occurrences.
fn attr_sum(svg: &str, attr: &str) -> (usize, usize) {
    let pat = format!("{attr}=\"");
    let mut parts = svg.split(&pat).skip(1);
    let mut sum = 0;
    let mut n = 0;
    for p in parts.by_ref() {
        sum += p[..p.find('"').unwrap()].parse::<usize>().unwrap();
        n += 1;
    }
    (sum, n)
}

/// Nothing in the page can load anything: no script, no external
/// reference (the SVG namespace is a name, never fetched).
fn assert_self_contained(html: &str) {
    let lower = html.to_lowercase();
    for bad in ["<script", "<link", "<img", "<iframe", "@import", "url(http", "src=", "href=\"http"] {
        assert!(!lower.contains(bad), "found {bad:?}");
    }
    let without_ns = lower.replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
    assert!(!without_ns.contains("http://") && !without_ns.contains("https://"), "an absolute URL in the page");
}

#[test]
fn html_is_self_contained_with_one_arrow_per_conversation_and_a_dashed_one_per_missing() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["scheme-183039", "scheme-183056", "wrong-roles", "missing-agent", "noinventory", "unanswered-syn"] {
        let (v, html) = audit_both(dir.path(), name, "html");
        assert_self_contained(&html);
        let svg = svg_of(&html);
        let conversations = v["summary"]["conversations"].as_u64().unwrap() as usize;
        let missing = v["missing"].as_array().unwrap().len();
        // Small sites: no folding, so one arrow per conversation.
        let (sum, arrows) = attr_sum(svg, "data-conversations");
        assert_eq!((sum, arrows), (conversations, conversations), "{name}");
        let (msum, dashed) = attr_sum(svg, "data-missing");
        assert_eq!(msum, missing, "{name}");
        assert_eq!(svg.matches("stroke-dasharray").count(), dashed, "{name}: only missing arrows are dashed");
        assert_eq!(dashed, missing, "{name}: one dashed arrow per missing expectation");
        for section in
            ["Findings, worst first", "Missing expectations", "Per rule", "Per host", "Capture", "Deployment scheme"]
        {
            assert!(html.contains(&format!("<h2>{section}</h2>")), "{name}: {section}");
        }
        // Every finding is in the findings table.
        let flagged = v["flows"].as_array().unwrap().iter().filter(|f| f["verdict"] != "expected").count();
        let findings = html
            .split("<table class=\"findings\">")
            .nth(1)
            .map_or(0, |t| t[..t.find("</table>").unwrap()].matches("<tr>").count() - 1);
        assert_eq!(findings, flagged, "{name}");
    }
}

#[test]
fn dot_has_an_edge_per_conversation_and_dashed_missing_ones() {
    let dir = tempfile::tempdir().unwrap();
    let (v, dot) = audit_both(dir.path(), "missing-agent", "dot");
    assert!(dot.starts_with("digraph kscflow {"));
    assert!(dot.trim_end().ends_with('}'));
    let edges = dot.lines().filter(|l| l.contains(" -> ")).count();
    let missing = v["missing"].as_array().unwrap().len();
    assert_eq!(edges, v["summary"]["conversations"].as_u64().unwrap() as usize + missing);
    assert_eq!(dot.lines().filter(|l| l.contains("style=dashed")).count(), missing);
}

/// A JSON result as `audit` writes it, for a big site made up here: 2,000
/// managed devices syncing with one AS, 50 of them also opening TCP 13000
/// to a neighbour (unexpected: agent to agent).
fn big_site_result(inventory: &Path) -> Value {
    let flow = |client: String, server: &str, port: u16| {
        serde_json::json!({
            "client": client, "server": server, "server_port": port, "transport": "tcp",
            "connections": 3, "packets": 30, "bytes": 3000,
            "packets_to_server": 15, "packets_to_client": 15, "bytes_to_server": 1500, "bytes_to_client": 1500,
            "first_seen": "2026-01-15T09:00:00.000000Z", "last_seen": "2026-01-15T09:50:00.000000Z",
            "tls": {"version": "TLS 1.3", "min_version": "TLS 1.3", "sni": null, "hellos": 3, "unparsed": 0,
                    "version_number": 772, "min_version_number": 772},
            "plaintext_connections": 0,
            "outcomes": {"answered": 3, "refused": 0, "unanswered": 0, "one_way": 0},
            "direction": {"syn": 3},
        })
    };
    let dev = |i: usize| format!("10.1.{}.{}", i / 200, i % 200 + 10);
    let mut flows: Vec<Value> = (0..2000).map(|i| flow(dev(i), "10.0.0.10", 13000)).collect();
    flows.extend((0..50).map(|i| flow(dev(i), &dev(i + 1000), 13000)));
    // And each device's activation request (TCP 17000).
    flows.extend((0..2000).map(|i| flow(dev(i), "10.0.0.10", 17000)));
    serde_json::json!({
        "rules": {"origin": "<built-in rules/ksc-14.2.toml>"},
        "inventory": inventory.to_str().unwrap(),
        "roles_source": "inventory",
        "capture": {"files": [{"path": "big.pcap", "packets": 61500, "bytes": 6150000, "link_types": ["EN10MB"], "error": null}],
                    "packets": 61500, "bytes": 6150000,
                    "first_timestamp": "2026-01-15T09:00:00.000000Z", "last_timestamp": "2026-01-15T09:50:00.000000Z"},
        "summary": {"out_of_scope_connections": 0, "out_of_scope_packets": 0, "out_of_scope_bytes": 0},
        "flows": flows,
    })
}

#[test]
fn a_site_of_2000_devices_and_50_findings_folds_into_a_readable_picture() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (input, inv) = (d.join("big.json"), d.join("site.toml"));
    std::fs::write(
        &inv,
        "[[host]]\nname = \"ksc01\"\naddr = \"10.0.0.10\"\nrole = \"administration-server\"\n\n\
         [[host]]\nname = \"offices\"\naddr = \"10.1.0.0/16\"\nrole = \"managed-device\"\n",
    )
    .unwrap();
    std::fs::write(&input, serde_json::to_vec(&big_site_result(&inv)).unwrap()).unwrap();
    let (merged, html) = (d.join("m.json"), d.join("m.html"));
    run_to(&["report", "--format", "json", input.to_str().unwrap()], &merged);
    run_to(&["report", "--format", "html", input.to_str().unwrap()], &html);
    let v = json(&merged);
    assert_eq!(v["summary"]["conversations"], 4050);
    assert_eq!(v["summary"]["unexpected"], 50, "{}", v["summary"]);
    let html = std::fs::read_to_string(&html).unwrap();
    assert_self_contained(&html);
    let svg = svg_of(&html);
    // Every conversation is accounted for by some arrow …
    let (sum, arrows) = attr_sum(svg, "data-conversations");
    assert_eq!(sum, 4050);
    // … but the picture has few boxes and arrows, and fits a wide screen.
    let boxes = svg.matches("<g class=\"node").count();
    assert!(boxes <= 20, "{boxes} boxes");
    assert!(arrows <= 30, "{arrows} arrows");
    let width: f64 = svg.split("width=\"").nth(1).unwrap().split('"').next().unwrap().parse().unwrap();
    assert!(width <= 2600.0, "{width} px wide");
    // The per-host table folds the devices without findings into one row.
    assert!(html.contains("hosts without findings"), "folded host row");
    // The page lists every finding but not all 4,000 expected conversations.
    let listed = html.split("<table class=\"conversations\">").nth(1).unwrap();
    let listed = &listed[..listed.find("</table>").unwrap()];
    assert_eq!(listed.matches("<td class=\"v unexpected\">").count(), 50);
    assert_eq!(listed.matches("<td class=\"v expected\">").count(), 2000);
    assert!(html.contains("first 2,000 of 4,000 expected ones"), "says what it left out");
    assert!(html.matches("<tr>").count() < 2050 + 200, "no row per device in the host table");
}
