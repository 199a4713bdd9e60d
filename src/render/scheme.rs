//! Which of the seed's five deployment schemes the traffic looks like, and
//! what differs from it.
//!
//! Each scheme topic numbers the flows its diagram shows; the rules cite
//! those numbers (`flows = ["#4a"]`), so a scheme here is the set of rule
//! ids whose flows its topic lists. The traffic's set is the rules that
//! matched at least one answered conversation; the best scheme is the one
//! with the highest Jaccard similarity (shared / either) over the rules
//! some scheme shows. Rules no scheme diagram shows (distribution points,
//! KSN proxy, packages on 8060/8061 beyond #16) neither help nor hurt.

use std::collections::BTreeSet;

use crate::classify::Verdict;
use crate::flow::Outcome;
use crate::report::ReportData;

/// Flows every scheme diagram shows: #1 db, #2 wake-ups and agent
/// broadcasts, #3 shutdown, #4 agents, #5 activation, #6 console, #8 cloud,
/// #9 Web Console → AS.
const COMMON: [&str; 9] =
    ["db", "wake", "agent-bcast", "shutdown", "agent", "activation", "console", "cloud", "openapi"];

/// Flows #9a, #10, #12, #14–#17 of the three schemes with devices on the
/// Internet (183051, 183056, 183058).
const INTERNET: [&str; 7] = ["webconsole", "fcm", "apns", "mobile", "mobile-activation", "packages", "ios-mdm"];

/// A deployment scheme of the seed.
pub struct Scheme {
    pub topic: u32,
    pub title: &'static str,
    /// Rule ids beyond the flows every scheme shows.
    pub extra: &'static [&'static str],
    pub internet: bool,
}

/// The five schemes (DESIGN.md; seed topics 183039 … 183058).
pub const SCHEMES: [Scheme; 5] = [
    Scheme {
        topic: 183039,
        title: "Administration Server and managed devices in one LAN",
        extra: &[],
        internet: false,
    },
    Scheme {
        topic: 183040,
        title: "primary Administration Server in the LAN, secondaries in a DMZ and on the Internet",
        extra: &["hierarchy", "hierarchy-dmz", "webconsole"],
        internet: false,
    },
    Scheme {
        topic: 183051,
        title: "Administration Server in the LAN, devices on the Internet through a reverse proxy",
        extra: &["agent-proxy", "proxy-forward"],
        internet: true,
    },
    Scheme {
        topic: 183056,
        title: "Administration Server in the LAN, devices on the Internet through a connection gateway in a DMZ",
        extra: &["gw-signal", "agent-gw"],
        internet: true,
    },
    Scheme {
        topic: 183058,
        title: "Administration Server in a DMZ, devices on the Internet",
        extra: &[],
        internet: true,
    },
];

impl Scheme {
    pub fn rules(&self) -> BTreeSet<&'static str> {
        let mut s: BTreeSet<&str> = COMMON.into_iter().chain(self.extra.iter().copied()).collect();
        if self.internet {
            s.extend(INTERNET);
        }
        s
    }
}

/// One scheme's score against the traffic.
#[derive(Clone, Debug)]
pub struct SchemeScore {
    pub topic: u32,
    pub title: &'static str,
    /// Jaccard similarity, 0..=1.
    pub score: f64,
    /// In the scheme's diagram but not seen: rule ids with the scheme's
    /// flow numbers ("openapi (#9)").
    pub not_seen: Vec<String>,
    /// Seen, but not in the scheme's diagram.
    pub not_in_scheme: Vec<String>,
}

/// The schemes ranked, best first.
#[derive(Clone, Debug, Default)]
pub struct SchemeMatch {
    pub ranked: Vec<SchemeScore>,
    /// The rule ids seen (after folding variants onto the scheme's flow).
    pub seen: BTreeSet<String>,
}

impl SchemeMatch {
    pub fn best(&self) -> Option<&SchemeScore> {
        self.ranked.first()
    }
}

/// A rule's id as the schemes name its flow: the PostgreSQL database port
/// is #1 as well, packages over 8060/8061 are #16.
fn scheme_flow(id: &str) -> &str {
    match id {
        "db-postgres" => "db",
        "packages-http" | "packages-https" => "packages",
        other => other,
    }
}

/// "openapi (#9)": a rule id with the flow numbers the schemes give it.
fn with_flows(data: &ReportData<'_>, id: &str) -> String {
    match data.rules.rules.iter().find(|r| r.id == id).filter(|r| !r.flows.is_empty()) {
        Some(r) => format!("{id} ({})", r.flows.join(", ")),
        None => id.to_string(),
    }
}

/// Scores every scheme against the rules the traffic met.
pub fn best_match(data: &ReportData<'_>) -> SchemeMatch {
    let universe: BTreeSet<&str> = SCHEMES.iter().flat_map(|s| s.rules()).collect();
    let seen: BTreeSet<String> = data
        .result
        .assessment
        .flows
        .iter()
        .filter(|j| {
            j.verdict != Verdict::Unexpected
                && j.stats.outcome(Outcome::Answered) + j.stats.outcome(Outcome::OneWay) > 0
        })
        .filter_map(|j| j.rule.map(|i| scheme_flow(&data.rules.rules[i].id).to_string()))
        .filter(|id| universe.contains(id.as_str()))
        .collect();
    let mut ranked: Vec<SchemeScore> = SCHEMES
        .iter()
        .map(|s| {
            let rules = s.rules();
            let shared = rules.iter().filter(|r| seen.contains(**r)).count();
            let either = rules.len() + seen.iter().filter(|r| !rules.contains(r.as_str())).count();
            SchemeScore {
                topic: s.topic,
                title: s.title,
                score: if either == 0 { 0.0 } else { shared as f64 / either as f64 },
                not_seen: rules.iter().filter(|r| !seen.contains(**r)).map(|r| with_flows(data, r)).collect(),
                not_in_scheme: seen
                    .iter()
                    .filter(|r| !rules.contains(r.as_str()))
                    .map(|r| with_flows(data, r))
                    .collect(),
            }
        })
        .collect();
    ranked.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.topic.cmp(&b.topic)));
    SchemeMatch { ranked, seen }
}
