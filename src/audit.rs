//! The audit of recorded captures: the one place where sources, decoder,
//! flow table and conversations meet. Live capture (a later issue) drives
//! the same [`Engine`] from another source.
//!
//! ```text
//!  capture::read_file ─► account, route by address ─┬─► Engine (shard 0, this thread)
//!        (per file)            (per frame)           └─► Engine (shard i, worker i), in batches
//!  Engine::process_batch ─► decode ─► FlowTable::update ─► Conversations
//!        (HOT PATH)                      (per packet)        (per connection)
//!  merge the engines ─► classify::assess (once)
//! ```
//!
//! A connection's packets all reach one shard (a symmetric hash of its two
//! addresses), so each shard sees whole connections and the merged result
//! is the same for any number of threads.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::mpsc;

use crate::capture::live::Drops;
use crate::capture::{self, End, Frame, Reader};
use crate::classify::{self, Assessment};
use crate::conversation::{ConvCounters, Conversations, KscScope, OutOfScope, View};
use crate::decode::{decode, quick_addresses, Decoded, Link, Skip, SkipCounts, TunnelCounts};
use crate::flow::{ConnRecord, FlowConfig, FlowStats, FlowTable, Ts};
use crate::inventory::Inventory;
use crate::rules::RuleSet;

/// What to audit and how.
#[derive(Clone, Debug)]
pub struct AuditConfig {
    pub files: Vec<PathBuf>,
    pub reader: Reader,
    pub filter: Option<String>,
    pub flow: FlowConfig,
    /// Conversations kept one by one (all threads together); beyond, the
    /// least worth keeping are folded into groups
    /// ([`crate::conversation::Conversations`]).
    pub max_conversations: usize,
    /// Keep every connection for `--events`.
    pub keep_records: bool,
    /// Called with (bytes read so far, total bytes) every few thousand packets.
    pub progress: Option<fn(u64, u64)>,
    /// Threads sharing the flow work (connections split by address); 0 or
    /// 1 runs everything on the calling thread.
    pub threads: usize,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            files: Vec::new(),
            reader: Reader::default(),
            filter: None,
            flow: FlowConfig::default(),
            max_conversations: crate::conversation::DEFAULT_MAX_CONVERSATIONS,
            keep_records: false,
            progress: None,
            threads: 0,
        }
    }
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
    /// Packets that came through a tunnel, per kind (ERSPAN, VXLAN …).
    pub tunnels: TunnelCounts,
    pub flows: FlowStats,
    /// What the conversation limit left out.
    pub conversations: ConvCounters,
    /// libpcap's counters, for a live capture.
    pub drops: Option<Drops>,
    /// The host that captured (live capture only: a file's capturing host
    /// is unknown).
    pub sensor: Option<String>,
}

impl CaptureFacts {
    pub fn duration_secs(&self) -> u64 {
        match (self.first_ts, self.last_ts) {
            (Some(a), Some(b)) if b > a => ((b as i128 - a as i128) / 1_000_000) as u64,
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
    pub fn new(
        rules: &'r RuleSet,
        inventory: Option<&'r Inventory>,
        flow: FlowConfig,
        max_conversations: usize,
        keep_records: bool,
    ) -> Self {
        Engine {
            scope: KscScope { rules, inventory },
            flows: FlowTable::new(flow),
            convs: Conversations::new(rules, inventory, keep_records, max_conversations),
            facts: CaptureFacts::default(),
            cached_linktype: 1,
            cached_link: Some(Link::Ethernet),
        }
    }

    /// HOT PATH: one frame.
    #[inline]
    pub fn on_frame(&mut self, f: Frame<'_>) {
        if let Some(d) = self.account_and_decode(&f) {
            self.on_decoded(f.ts, f.wire_len, d);
        }
    }

    /// Counts the frame in the capture facts and decodes it; `None` when it
    /// was skipped (counted).
    #[inline]
    fn account_and_decode<'a>(&mut self, f: &Frame<'a>) -> Option<Decoded<'a>> {
        let link = self.account(f)?;
        match decode(link, f.data) {
            Decoded::Skip(s) => {
                self.facts.skipped.bump(s);
                None
            }
            d => Some(d),
        }
    }

    /// Counts the frame in the capture facts; its link decoder, or `None`
    /// when the link type is not decoded (counted).
    #[inline]
    fn account(&mut self, f: &Frame<'_>) -> Option<Link> {
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
        if self.cached_link.is_none() {
            facts.skipped.bump(Skip::UnsupportedLink);
        }
        self.cached_link
    }

    /// The flow work for a decoded packet.
    #[inline]
    fn on_decoded(&mut self, ts: Ts, wire_len: u32, d: Decoded<'_>) {
        match d {
            Decoded::Packet(p) => {
                self.facts.tunnels.count(p.tunnels);
                self.flows.update(ts, wire_len, &p, &self.scope, &mut self.convs)
            }
            Decoded::LaterFragment(id) => {
                if !self.flows.update_fragment(ts, wire_len, &id) {
                    self.facts.skipped.bump(Skip::OrphanFragment);
                }
            }
            Decoded::Skip(s) => self.facts.skipped.bump(s),
        }
    }

    /// The flow work for a batch of frames already counted in the facts:
    /// decoded a few ahead, their connections looked up ahead
    /// ([`FlowTable::prefetch`]), then updated in order.
    fn process_batch(&mut self, b: &Batch) {
        self.process_frames(b.frames.iter().map(|&(ts, wire_len, linktype, start, len)| Frame {
            ts,
            wire_len,
            linktype,
            data: &b.data[start as usize..(start + len) as usize],
        }));
    }

    /// [`Engine::process_batch`] over any run of frames.
    fn process_frames<'a>(&mut self, mut frames: impl Iterator<Item = Frame<'a>>) {
        loop {
            let mut chunk: [Option<Frame<'a>>; LOOKAHEAD] = [None; LOOKAHEAD];
            for slot in chunk.iter_mut() {
                *slot = frames.next();
                if slot.is_none() {
                    break;
                }
            }
            if chunk[0].is_none() {
                return;
            }
            let mut decoded: [Option<Decoded<'a>>; LOOKAHEAD] = [None; LOOKAHEAD];
            for (slot, f) in decoded.iter_mut().zip(chunk.iter().flatten()) {
                let Some(link) = Link::from_linktype(f.linktype) else { continue };
                *slot = Some(decode(link, f.data));
            }
            // Back to back, so the lookups' memory loads overlap.
            for d in decoded.iter().flatten() {
                if let Decoded::Packet(p) = d {
                    self.flows.prefetch(p);
                }
            }
            for (d, f) in decoded.into_iter().zip(chunk.iter().flatten()) {
                if let Some(d) = d {
                    self.on_decoded(f.ts, f.wire_len, d);
                }
            }
        }
    }

    /// Folds a worker's results into this engine (both finished).
    fn absorb(&mut self, o: Engine<'_>) {
        self.convs.absorb(o.convs);
        self.facts.conversations = self.convs.counters;
        self.facts.skipped.add(&o.facts.skipped);
        self.facts.tunnels.add(&o.facts.tunnels);
        let (f, g) = (&mut self.facts.flows, o.facts.flows);
        f.timed_out += g.timed_out;
        f.evicted += g.evicted;
        f.peak_flows += g.peak_flows;
        f.fragments_matched += g.fragments_matched;
        f.fragments_dropped += g.fragments_dropped;
        f.hellos_not_reassembled += g.hellos_not_reassembled;
    }

    /// Moves the flow table's clock to `ts` when no packet came (`live`).
    pub fn tick(&mut self, ts: Ts) {
        self.flows.advance(ts, &mut self.convs);
    }

    /// The judgement of everything so far, the connections still open
    /// counted as if they ended now, "missing" on the rolling window ending
    /// at `now`; the engine goes on (`live`).
    pub fn snapshot(&self, now: Ts) -> AuditResult {
        // The open connections alone (at most the flow table's size), judged
        // together with what was collected: nothing of the map is copied.
        let mut open = Conversations::new(self.scope.rules, self.scope.inventory, false, usize::MAX);
        self.flows.each_live(&mut open);
        let mut capture = self.facts.clone();
        capture.flows = self.flows.stats;
        capture.conversations = self.convs.counters;
        let view = View { collected: &self.convs.observed, open: Some(&open.observed) };
        let (a, b) = (self.convs.out_of_scope, open.out_of_scope);
        AuditResult {
            assessment: classify::assess(
                self.scope.rules,
                self.scope.inventory,
                view,
                capture.duration_secs(),
                Some(now),
            ),
            capture,
            records: None,
            capture_out_of_scope: OutOfScope {
                connections: a.connections + b.connections,
                packets: a.packets + b.packets,
                bytes: a.bytes + b.bytes,
            },
        }
    }

    /// The final judgement, after [`Engine::finish`]; "missing" as of
    /// `as_of` when given (`live`), else over the whole capture.
    pub fn into_result(mut self, as_of: Option<Ts>) -> AuditResult {
        AuditResult {
            assessment: judge(&self.scope, &self.convs, &self.facts, as_of),
            records: self.convs.records.take(),
            capture_out_of_scope: self.convs.out_of_scope,
            capture: self.facts,
        }
    }

    /// Ends the capture: finishes every open connection.
    pub fn finish(&mut self) {
        self.flows.drain(&mut self.convs);
        self.facts.flows = self.flows.stats;
        self.facts.conversations = self.convs.counters;
    }
}

/// Audits the files of `cfg` against `rules` (and `inventory`).
///
/// A file that cannot be opened at all is an error (exit 2). A file that
/// breaks part-way keeps what was read, and the break is in its
/// [`FileFacts::error`].
pub fn audit(rules: &RuleSet, inventory: Option<&Inventory>, cfg: &AuditConfig) -> Result<AuditResult, crate::Error> {
    let threads = cfg.threads.max(1);
    // --max-flows bounds all the tables together: an equal part each. Not
    // in proportion to the shards' shares of the connections: a table
    // grows by doubling, so equal powers of two waste no slots at the cap
    // (measured on a 1M-tuple flood with 2 threads: 610 MB peak RSS with
    // 5/13 and 8/13 parts, against 256 MB of slots for equal halves).
    let flow = FlowConfig { max_flows: (cfg.flow.max_flows / threads).max(1), ..cfg.flow };
    // --max-conversations likewise (a conversation lives in one shard).
    let max_convs = (cfg.max_conversations / threads).max(1);
    let mut engine = Engine::new(rules, inventory, flow, max_convs, cfg.keep_records);
    let (read, finished) = std::thread::scope(|scope| {
        let mut workers = Vec::new();
        // Worker i owns the connections whose addresses hash to shard i;
        // the reading thread owns shard 0 and hands the others their
        // frames in batches (copied: ~100 bytes a frame, no allocation).
        let mut lanes = Vec::new();
        for _ in 1..threads {
            let (to_worker, from_main) = mpsc::sync_channel::<Batch>(BATCHES_IN_FLIGHT);
            let (to_main, spare) = mpsc::channel::<Batch>();
            let cfg_flow = flow;
            let keep = cfg.keep_records;
            workers.push(scope.spawn(move || {
                let mut e = Engine::new(rules, inventory, cfg_flow, max_convs, keep);
                for batch in from_main {
                    // Skips found here are counted in this worker's facts.
                    e.process_batch(&batch);
                    // The main thread may be gone (an error); then drop the batch.
                    let _ = to_main.send(batch);
                }
                e.finish();
                e
            }));
            lanes.push(Lane { to_worker, spare, batch: Batch::default() });
        }
        let r = read_files(&mut engine, cfg, &mut lanes, threads);
        for lane in &mut lanes {
            let full = std::mem::take(&mut lane.batch);
            let _ = lane.to_worker.send(full);
        }
        drop(lanes);
        let finished: Vec<Engine<'_>> =
            workers.into_iter().map(|w| w.join().expect("a worker thread panicked")).collect();
        (r, finished)
    });
    read?;
    engine.finish();
    for w in finished {
        engine.absorb(w);
    }
    if let Some(r) = &mut engine.convs.records {
        r.sort_by(|a, b| {
            (a.first_ts, a.client, a.client_port, a.server, a.server_port).cmp(&(
                b.first_ts,
                b.client,
                b.client_port,
                b.server,
                b.server_port,
            ))
        });
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
    Ok(engine.into_result(None))
}

/// Judges what `convs` collected; "missing" as of `as_of` when given (see
/// [`classify::assess`]).
fn judge(scope: &KscScope<'_>, convs: &Conversations<'_>, capture: &CaptureFacts, as_of: Option<Ts>) -> Assessment {
    classify::assess(scope.rules, scope.inventory, View::of(&convs.observed), capture.duration_secs(), as_of)
}

/// Frames for one worker: their bytes in one buffer, reused.
#[derive(Default)]
struct Batch {
    data: Vec<u8>,
    /// (timestamp, wire length, link type, start, length in `data`).
    frames: Vec<(Ts, u32, i32, u32, u32)>,
}

/// Frames per batch handed to a worker.
const BATCH_FRAMES: usize = 2048;
/// Bytes per batch at most (big offloaded frames fill a batch sooner).
const BATCH_BYTES: usize = 4 << 20;
/// Batches queued per worker before the reader waits (bounded memory).
const BATCHES_IN_FLIGHT: usize = 8;

/// The reading thread's end of one worker.
struct Lane {
    to_worker: mpsc::SyncSender<Batch>,
    spare: mpsc::Receiver<Batch>,
    batch: Batch,
}

impl Batch {
    #[inline]
    fn push(&mut self, f: &Frame<'_>) {
        let start = self.data.len() as u32;
        self.data.extend_from_slice(f.data);
        self.frames.push((f.ts, f.wire_len, f.linktype, start, f.data.len() as u32));
    }

    fn clear(&mut self) {
        self.data.clear();
        self.frames.clear();
    }
}

/// Frames decoded and looked up ahead of their update (see
/// [`Engine::process_batch`]).
const LOOKAHEAD: usize = 16;
/// Frames the reading thread gathers for its own shard before processing.
const OWN_BATCH: usize = 256;

impl Lane {
    #[inline]
    fn push(&mut self, f: &Frame<'_>) {
        self.batch.push(f);
        if self.batch.frames.len() == BATCH_FRAMES || self.batch.data.len() >= BATCH_BYTES {
            let mut next = self.spare.try_recv().unwrap_or_default();
            next.clear();
            let full = std::mem::replace(&mut self.batch, next);
            let _ = self.to_worker.send(full);
        }
    }
}

/// The shard of a decoded packet (see [`shard_of`]).
#[inline]
fn shard(d: &Decoded<'_>, n: usize) -> usize {
    match d {
        Decoded::Packet(p) => shard_of(p.src, p.dst, n),
        Decoded::LaterFragment(id) => shard_of(id.src, id.dst, n),
        Decoded::Skip(_) => 0,
    }
}

/// A symmetric hash of the two addresses of a connection, modulo `n` (not
/// the ports: later IP fragments have none and must meet their first).
#[inline]
fn shard_of(a: IpAddr, b: IpAddr, n: usize) -> usize {
    let h = |x: IpAddr| -> u64 {
        let v = match x {
            IpAddr::V4(v4) => u32::from(v4) as u64,
            IpAddr::V6(v6) => {
                let w = u128::from(v6);
                (w as u64) ^ (w >> 64) as u64
            }
        };
        v.wrapping_mul(0x9e37_79b9_7f4a_7c15)
    };
    let x = h(a) ^ h(b);
    let w = (x ^ (x >> 29)) % (READER_WEIGHT + WORKER_WEIGHT * (n as u64 - 1));
    if w < READER_WEIGHT {
        0
    } else {
        1 + ((w - READER_WEIGHT) / WORKER_WEIGHT) as usize
    }
}

/// Shares of the connections: the reading thread (shard 0) also reads,
/// parses and routes every frame, so it takes fewer connections than a
/// worker. Measured on 2 cores, 10 M packets: the reading thread was busy
/// all the time and the worker 60 % with equal shares.
const READER_WEIGHT: u64 = 5;
const WORKER_WEIGHT: u64 = 8;

/// Reads every file of `cfg` into the engine (shard 0) and the lanes.
fn read_files(
    engine: &mut Engine<'_>,
    cfg: &AuditConfig,
    lanes: &mut [Lane],
    threads: usize,
) -> Result<(), crate::Error> {
    let total: u64 = cfg.files.iter().filter_map(|p| std::fs::metadata(p).ok()).map(|m| m.len()).sum();
    let mut done_bytes = 0u64;
    // The reading thread's own shard, processed a batch at a time: in the
    // reader's buffer when it hands over batches, else copied into `own`.
    let mut own = Batch::default();
    let mut own_idx: Vec<usize> = Vec::new();
    for path in &cfg.files {
        let mut ff = FileFacts { path: path.clone(), ..Default::default() };
        let before = (engine.facts.packets, engine.facts.bytes);
        let mut approx = 0u64;
        let mut last_lt = i32::MIN;
        let progress = cfg.progress;
        let end =
            capture::read_file_batches(path, cfg.reader, cfg.filter.as_deref(), &mut |frames: &[Frame<'_>]| {
                own_idx.clear();
                for (n, f) in frames.iter().enumerate() {
                    if f.linktype != last_lt {
                        last_lt = f.linktype;
                        if !ff.linktypes.contains(&f.linktype) {
                            ff.linktypes.push(f.linktype);
                        }
                    }
                    approx += 16 + f.data.len() as u64;
                    if let Some(link) = engine.account(f) {
                        // Route on the addresses alone where that is certain, so
                        // the reading thread decodes only its own shard.
                        let i = match (threads, quick_addresses(link, f.data)) {
                            (1, _) => 0,
                            (_, Some((a, b))) => shard_of(a, b, threads),
                            (_, None) => shard(&decode(link, f.data), threads),
                        };
                        if i == 0 {
                            own_idx.push(n);
                        } else {
                            lanes[i - 1].push(f);
                        }
                    }
                    if let Some(p) = progress {
                        if engine.facts.packets.is_multiple_of(8192) {
                            p(done_bytes + approx, total);
                        }
                    }
                }
                if frames.len() >= LOOKAHEAD {
                    // In order: what was copied from a smaller batch goes first.
                    engine.process_batch(&own);
                    own.clear();
                    engine.process_frames(own_idx.iter().map(|&n| frames[n]));
                } else {
                    for &n in &own_idx {
                        own.push(&frames[n]);
                        if own.frames.len() == OWN_BATCH {
                            engine.process_batch(&own);
                            own.clear();
                        }
                    }
                }
            })?;
        engine.process_batch(&own);
        own.clear();
        ff.packets = engine.facts.packets - before.0;
        ff.bytes = engine.facts.bytes - before.1;
        if let End::Broken { packets, message } = end {
            ff.error = Some(format!("stopped after packet {packets}: {message}"));
        }
        done_bytes += std::fs::metadata(path).map(|m| m.len()).unwrap_or(approx);
        engine.facts.files.push(ff);
    }
    Ok(())
}
