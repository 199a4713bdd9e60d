//! The audit of recorded captures: the one place where sources, decoder,
//! flow table and conversations meet. Live capture (a later issue) drives
//! the same [`Engine`] from another source.
//!
//! ```text
//!  capture::read_file ─► Engine::on_frame ─► decode ─► FlowTable::update ─► Conversations
//!        (per file)        (HOT PATH)                    (per packet)         (per connection)
//!                                                    classify::assess ◄─ finish (once)
//! ```

use std::path::PathBuf;

use crate::capture::{self, End, Frame, Reader};
use crate::classify::{self, Assessment};
use crate::conversation::{Conversations, KscScope, OutOfScope};
use crate::decode::{decode, Decoded, Link, Skip, SkipCounts};
use crate::flow::{ConnRecord, FlowConfig, FlowStats, FlowTable, Ts};
use crate::inventory::Inventory;
use crate::rules::RuleSet;

/// What to audit and how.
#[derive(Clone, Debug, Default)]
pub struct AuditConfig {
    pub files: Vec<PathBuf>,
    pub reader: Reader,
    pub filter: Option<String>,
    pub flow: FlowConfig,
    /// Keep every connection for `--events`.
    pub keep_records: bool,
    /// Called with (bytes read so far, total bytes) every few thousand packets.
    pub progress: Option<fn(u64, u64)>,
}

/// Facts about one input file.
#[derive(Clone, Debug, Default)]
pub struct FileFacts {
    pub path: PathBuf,
    pub packets: u64,
    pub bytes: u64,
    /// LINKTYPE_ values seen.
    pub linktypes: Vec<i32>,
    /// Set when the file broke before its end: what went wrong, after how many packets.
    pub error: Option<String>,
}

/// Facts about the whole capture.
#[derive(Clone, Debug, Default)]
pub struct CaptureFacts {
    pub files: Vec<FileFacts>,
    pub packets: u64,
    pub bytes: u64,
    pub first_ts: Option<Ts>,
    pub last_ts: Option<Ts>,
    pub skipped: SkipCounts,
    pub flows: FlowStats,
}

impl CaptureFacts {
    pub fn duration_secs(&self) -> u64 {
        match (self.first_ts, self.last_ts) {
            (Some(a), Some(b)) if b > a => ((b - a) / 1_000_000) as u64,
            _ => 0,
        }
    }
    /// True when some file broke before its end.
    pub fn damaged(&self) -> bool {
        self.files.iter().any(|f| f.error.is_some())
    }
}

/// The result of an audit.
pub struct AuditResult {
    pub capture: CaptureFacts,
    pub assessment: Assessment,
    /// Every connection, when asked for.
    pub records: Option<Vec<ConnRecord>>,
    /// Connections on no KSC or shared port: counted while collecting.
    pub capture_out_of_scope: OutOfScope,
}

/// The per-packet engine: decoder state, flow table and collector.
pub struct Engine<'r> {
    scope: KscScope<'r>,
    pub flows: FlowTable,
    pub convs: Conversations<'r>,
    pub facts: CaptureFacts,
    cached_linktype: i32,
    cached_link: Option<Link>,
}

impl<'r> Engine<'r> {
    pub fn new(rules: &'r RuleSet, inventory: Option<&'r Inventory>, flow: FlowConfig, keep_records: bool) -> Self {
        Engine {
            scope: KscScope { rules, inventory },
            flows: FlowTable::new(flow),
            convs: Conversations::new(inventory, keep_records),
            facts: CaptureFacts::default(),
            cached_linktype: 1,
            cached_link: Some(Link::Ethernet),
        }
    }

    /// HOT PATH: one frame.
    #[inline]
    pub fn on_frame(&mut self, f: Frame<'_>) {
        let facts = &mut self.facts;
        facts.packets += 1;
        facts.bytes += f.wire_len as u64;
        if f.ts != 0 {
            facts.first_ts = Some(facts.first_ts.map_or(f.ts, |t| t.min(f.ts)));
            facts.last_ts = Some(facts.last_ts.map_or(f.ts, |t| t.max(f.ts)));
        }
        if f.linktype != self.cached_linktype {
            self.cached_linktype = f.linktype;
            self.cached_link = Link::from_linktype(f.linktype);
        }
        let Some(link) = self.cached_link else {
            facts.skipped.bump(Skip::UnsupportedLink);
            return;
        };
        match decode(link, f.data) {
            Decoded::Packet(p) => self.flows.update(f.ts, f.wire_len, &p, &self.scope, &mut self.convs),
            Decoded::LaterFragment(id) => {
                if !self.flows.update_fragment(f.ts, f.wire_len, &id) {
                    facts.skipped.bump(Skip::OrphanFragment);
                }
            }
            Decoded::Skip(s) => facts.skipped.bump(s),
        }
    }

    /// Ends the capture: finishes every open connection.
    pub fn finish(&mut self) {
        self.flows.drain(&mut self.convs);
        self.facts.flows = self.flows.stats;
    }
}

/// Audits the files of `cfg` against `rules` (and `inventory`).
///
/// A file that cannot be opened at all is an error (exit 2). A file that
/// breaks part-way keeps what was read, and the break is in its
/// [`FileFacts::error`].
pub fn audit(rules: &RuleSet, inventory: Option<&Inventory>, cfg: &AuditConfig) -> Result<AuditResult, crate::Error> {
    let mut engine = Engine::new(rules, inventory, cfg.flow, cfg.keep_records);
    let total: u64 = cfg.files.iter().filter_map(|p| std::fs::metadata(p).ok()).map(|m| m.len()).sum();
    let mut done_bytes = 0u64;
    for path in &cfg.files {
        let mut ff = FileFacts { path: path.clone(), ..Default::default() };
        let before = (engine.facts.packets, engine.facts.bytes);
        let mut approx = 0u64;
        let mut last_lt = i32::MIN;
        let progress = cfg.progress;
        let end = capture::read_file(path, cfg.reader, cfg.filter.as_deref(), &mut |f: Frame<'_>| {
            if f.linktype != last_lt {
                last_lt = f.linktype;
                if !ff.linktypes.contains(&f.linktype) {
                    ff.linktypes.push(f.linktype);
                }
            }
            approx += 16 + f.data.len() as u64;
            engine.on_frame(f);
            if let Some(p) = progress {
                if engine.facts.packets.is_multiple_of(8192) {
                    p(done_bytes + approx, total);
                }
            }
        })?;
        ff.packets = engine.facts.packets - before.0;
        ff.bytes = engine.facts.bytes - before.1;
        if let End::Broken { packets, message } = end {
            ff.error = Some(format!("stopped after packet {packets}: {message}"));
        }
        done_bytes += std::fs::metadata(path).map(|m| m.len()).unwrap_or(approx);
        engine.facts.files.push(ff);
    }
    // Nothing could be audited at all: that is a run that could not be done
    // (exit 2), not a clean bill of health.
    let facts = &engine.facts;
    if facts.packets == 0 {
        if let Some(f) = facts.files.iter().find(|f| f.error.is_some()) {
            return Err(crate::Error::Capture {
                path: f.path.clone(),
                message: format!("no packet could be read: {}", f.error.as_deref().unwrap_or_default()),
            });
        }
    } else if facts.skipped.get(Skip::UnsupportedLink) == facts.packets {
        let f = &facts.files[0];
        let lts: Vec<String> = f.linktypes.iter().map(|l| l.to_string()).collect();
        return Err(crate::Error::Capture {
            path: f.path.clone(),
            message: format!(
                "link type {} is not decoded; kscflow reads Ethernet (1), Linux SLL (113) and SLL2 (276), raw IP (101, 228, 229) and BSD null/loopback (0, 108)",
                lts.join(", ")
            ),
        });
    }
    engine.finish();
    let assessment = classify::assess(
        rules,
        inventory,
        &engine.convs.map,
        &engine.convs.seen_in_networks,
        engine.facts.duration_secs(),
    );
    Ok(AuditResult {
        capture: engine.facts,
        assessment,
        records: engine.convs.records.take(),
        capture_out_of_scope: engine.convs.out_of_scope,
    })
}
