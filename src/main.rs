//! The `kscflow` command: a thin shell over the library. It parses the
//! command line, loads rules and inventory, runs the audit, writes the
//! report, and maps the outcome to the exit status of DESIGN.md:
//! 0 nothing flagged, 1 findings, 2 the run could not be done.

use std::fs::File;
use std::io::{self, BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::OnceLock;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

use kscflow::audit::{audit, AuditConfig};
use kscflow::capture::live::LiveOptions;
use kscflow::capture::Reader;
use kscflow::flow::FlowConfig;
use kscflow::inventory::Inventory;
use kscflow::live::{self, LiveConfig};
use kscflow::rules::RuleSet;
use kscflow::{classify, merge, privileges, render, report, Error};

#[derive(Parser)]
#[command(name = "kscflow", version, about = "Passive traffic classifier for Kaspersky Security Center 14.2 networks", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Audit recorded captures (pcap/pcapng) against the KSC port table.
    Audit {
        /// Capture files, read in order as one capture.
        #[arg(required = true, value_name = "CAPTURE")]
        captures: Vec<PathBuf>,
        #[command(flatten)]
        common: Common,
        /// Inventory of KSC hosts (TOML); without it roles are inferred from the traffic.
        #[arg(long, short = 'i', value_name = "FILE")]
        inventory: Option<PathBuf>,
        /// Output format.
        #[arg(long, short = 'f', value_enum, default_value_t = Format::Text)]
        format: Format,
        /// Write the report here instead of standard output.
        #[arg(long, short = 'o', value_name = "FILE")]
        output: Option<PathBuf>,
        /// Also write one JSON line per connection to FILE.
        #[arg(long, value_name = "FILE")]
        events: Option<PathBuf>,
        /// Never draw the progress bar.
        #[arg(long)]
        no_progress: bool,
    },
    /// Capture from a network interface (a span or mirror port) and report as it goes.
    ///
    /// Findings go to standard output as JSON lines, once each; the JSON
    /// report (-o) is rewritten every --report-every; a summary line goes to
    /// standard error. SIGINT/SIGTERM stop and write the final report.
    Live {
        /// Interface to capture on ("any": all of them, on Linux).
        #[arg(long, short = 'i', value_name = "IFACE")]
        interface: String,
        /// Inventory of KSC hosts (TOML); without it roles are inferred from the traffic.
        #[arg(long, value_name = "FILE")]
        inventory: Option<PathBuf>,
        /// Rules file replacing the built-in KSC 14.2 table.
        #[arg(long, value_name = "FILE")]
        rules: Option<PathBuf>,
        /// The JSON report (audit's format), rewritten atomically every --report-every.
        #[arg(long, short = 'o', value_name = "FILE")]
        output: Option<PathBuf>,
        /// Seconds between reports.
        #[arg(long, value_name = "SECONDS", default_value_t = 300)]
        report_every: u64,
        /// Append one JSON line per finished connection to FILE (reopened on SIGHUP).
        #[arg(long, value_name = "FILE")]
        events: Option<PathBuf>,
        /// BPF filter (tcpdump syntax) narrowing the automatic one.
        #[arg(long, value_name = "EXPR")]
        filter: Option<String>,
        /// Do not compile a filter from the rules and inventory: see all traffic.
        #[arg(long)]
        no_auto_filter: bool,
        /// Bytes kept of each frame.
        #[arg(long, value_name = "BYTES", default_value_t = kscflow::capture::live::DEFAULT_SNAPLEN)]
        snaplen: i32,
        /// Kernel capture buffer, in MiB.
        #[arg(long, value_name = "MIB", default_value_t = kscflow::capture::live::DEFAULT_BUFFER_BYTES >> 20)]
        buffer_mib: i32,
        /// Do not put the interface in promiscuous mode.
        #[arg(long)]
        no_promisc: bool,
        /// Stop after this many seconds.
        #[arg(long, value_name = "SECONDS")]
        duration: Option<u64>,
        /// Stop after this many packets.
        #[arg(long, value_name = "N")]
        count: Option<u64>,
        /// User to become once the interface is open (default when started as root: nobody).
        #[arg(long, value_name = "USER")]
        user: Option<String>,
        /// Most connections tracked at once; the longest idle are closed early beyond it.
        #[arg(long, value_name = "N", default_value_t = LIVE_MAX_FLOWS)]
        max_flows: usize,
        /// Most conversations kept one by one; beyond it, scans and unknown hosts are folded into groups per server and port.
        #[arg(long, value_name = "N", default_value_t = LIVE_MAX_CONVERSATIONS)]
        max_conversations: usize,
    },
    /// Print the inventory inferred from captures, as TOML to correct and reuse.
    Discover {
        #[arg(required = true, value_name = "CAPTURE")]
        captures: Vec<PathBuf>,
        #[command(flatten)]
        common: Common,
    },
    /// Print the rule table, or check a rules file.
    Rules {
        /// Validate FILE and exit: 0 valid, 2 invalid (with file:line:column).
        #[arg(long, value_name = "FILE")]
        check: Option<PathBuf>,
        /// Print this rules file instead of the built-in table.
        #[arg(long, value_name = "FILE")]
        rules: Option<PathBuf>,
    },
    /// Merge the JSON results of earlier `audit` or `live` runs into one report.
    ///
    /// Conversations are summed across the results and judged again over
    /// their combined time window, as one audit of all the captures would.
    /// The rules and inventory are those the results were judged with,
    /// unless --rules or --inventory is given.
    Report {
        /// JSON results (`audit --format json`, `live -o`).
        #[arg(required = true, value_name = "RESULT")]
        results: Vec<PathBuf>,
        /// Inventory to judge with, instead of the one the results name.
        #[arg(long, short = 'i', value_name = "FILE")]
        inventory: Option<PathBuf>,
        /// Rules file to judge with, instead of the one the results name.
        #[arg(long, value_name = "FILE")]
        rules: Option<PathBuf>,
        /// Output format.
        #[arg(long, short = 'f', value_enum, default_value_t = Format::Text)]
        format: Format,
        /// Write the report here instead of standard output.
        #[arg(long, short = 'o', value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Check an inventory file: 0 valid, 2 invalid (with file:line:column).
    CheckInventory {
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}

/// A small sensor's flow table: 2^18 connections, at most 64 MiB of slots
/// (128 bytes each, the table at most half full).
const LIVE_MAX_FLOWS: usize = 1 << 18;

/// A small sensor's conversations: 2^18, at most ~115 MB (~440 bytes each,
/// see `DEFAULT_MAX_CONVERSATIONS`).
const LIVE_MAX_CONVERSATIONS: usize = 1 << 18;

#[derive(clap::Args)]
struct Common {
    /// Rules file replacing the built-in KSC 14.2 table.
    #[arg(long, value_name = "FILE")]
    rules: Option<PathBuf>,
    /// BPF filter (tcpdump syntax) applied while reading; uses libpcap.
    #[arg(long, value_name = "EXPR")]
    filter: Option<String>,
    /// Capture reader: auto (fast, or libpcap with --filter), libpcap, fast.
    #[arg(long, value_enum, default_value_t = ReaderArg::Auto)]
    reader: ReaderArg,
    /// Most connections tracked at once; the longest idle are closed early beyond it.
    #[arg(long, value_name = "N", default_value_t = FlowConfig::default().max_flows)]
    max_flows: usize,
    /// Most conversations kept one by one; beyond it, scans and unknown hosts are folded into groups per server and port.
    #[arg(long, value_name = "N", default_value_t = kscflow::conversation::DEFAULT_MAX_CONVERSATIONS)]
    max_conversations: usize,
    /// Threads for the flow work (connections are split by address); default: the cores, at most 4.
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    /// A summary for the terminal, worst first.
    Text,
    /// The JSON document of DESIGN.md (what `report` merges).
    Json,
    /// Markdown for tickets and wikis.
    Md,
    /// One row per conversation, for spreadsheets.
    Csv,
    /// One self-contained page with the topology picture, for auditors.
    Html,
    /// The topology picture for Graphviz.
    Dot,
}

#[derive(Clone, Copy, ValueEnum)]
enum ReaderArg {
    Auto,
    Libpcap,
    Fast,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) if e.is_broken_pipe() => ExitCode::from(0),
        Err(e) => {
            eprintln!("kscflow: error: {e}");
            ExitCode::from(2)
        }
    }
}

fn load_rules(path: Option<&Path>) -> Result<RuleSet, Error> {
    match path {
        Some(p) => RuleSet::load(p),
        None => Ok(RuleSet::builtin()),
    }
}

fn audit_config(captures: Vec<PathBuf>, c: &Common) -> AuditConfig {
    AuditConfig {
        files: captures,
        reader: match c.reader {
            ReaderArg::Auto => Reader::Auto,
            ReaderArg::Libpcap => Reader::Libpcap,
            ReaderArg::Fast => Reader::Fast,
        },
        filter: c.filter.clone(),
        flow: FlowConfig { max_flows: c.max_flows.max(1), ..FlowConfig::default() },
        max_conversations: c.max_conversations.max(1),
        threads: c.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get().min(4))),
        ..AuditConfig::default()
    }
}

static BAR: OnceLock<indicatif::ProgressBar> = OnceLock::new();

fn progress(done: u64, total: u64) {
    let bar = BAR.get_or_init(|| {
        let b = indicatif::ProgressBar::new(total);
        if let Ok(style) =
            indicatif::ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
        {
            b.set_style(style);
        }
        b
    });
    bar.set_position(done.min(total));
}

fn write_err(what: &str) -> impl FnOnce(io::Error) -> Error + '_ {
    move |source| Error::Write { what: what.to_string(), source }
}

/// Writes the report in `format` to `output` (standard output without one).
fn write_report(format: Format, output: Option<&Path>, data: &report::ReportData<'_>) -> Result<(), Error> {
    let mut out: Box<dyn Write> = match output {
        Some(p) => Box::new(BufWriter::new(File::create(p).map_err(write_err(&p.display().to_string()))?)),
        None => Box::new(BufWriter::new(io::stdout().lock())),
    };
    let what = output.map_or("standard output".to_string(), |p| p.display().to_string());
    match format {
        Format::Text => report::write_text_report(&mut out, data),
        Format::Json => report::write_json_report(&mut out, data),
        Format::Md => render::markdown::write(&mut out, data),
        Format::Csv => render::csv::write(&mut out, data),
        Format::Html => render::html::write(&mut out, data),
        Format::Dot => render::topology::write_dot(&mut out, data),
    }
    .and_then(|_| out.flush())
    .map_err(|source| Error::Write { what, source })
}

/// The rules a merge judges with: `--rules`, else those the results name.
fn rules_for_report(given: Option<&Path>, recorded: Option<&str>) -> Result<RuleSet, Error> {
    match (given, recorded) {
        (Some(p), _) => RuleSet::load(p),
        (None, Some(o)) if o != kscflow::rules::BUILTIN_NAME => RuleSet::load(Path::new(o)).map_err(|e| {
            merge::MergeError::Recorded { what: "rules", flag: "rules", path: o.into(), source: Box::new(e) }.into()
        }),
        _ => Ok(RuleSet::builtin()),
    }
}

/// The inventory a merge judges with: `--inventory`, else the one the
/// results name (none when their roles were inferred).
fn inventory_for_report(given: Option<PathBuf>, recorded: Option<&str>) -> Result<Option<(Inventory, String)>, Error> {
    match (given, recorded) {
        (Some(p), _) => Ok(Some((Inventory::load(&p)?, p.display().to_string()))),
        (None, Some(r)) => match Inventory::load(Path::new(r)) {
            Ok(inv) => Ok(Some((inv, r.to_string()))),
            Err(e) => Err(merge::MergeError::Recorded {
                what: "inventory",
                flag: "inventory",
                path: r.into(),
                source: Box::new(e),
            }
            .into()),
        },
        (None, None) => Ok(None),
    }
}

fn run(cli: Cli) -> Result<u8, Error> {
    match cli.command {
        Command::Rules { check: Some(path), .. } => {
            let rs = RuleSet::load(&path)?;
            println!("{}: valid: {} rules, {} expectations", path.display(), rs.rules.len(), rs.expectations.len());
            Ok(0)
        }
        Command::Rules { check: None, rules } => {
            let rs = load_rules(rules.as_deref())?;
            let mut out = BufWriter::new(io::stdout().lock());
            write!(out, "{rs}").and_then(|_| out.flush()).map_err(write_err("standard output"))?;
            Ok(0)
        }
        Command::CheckInventory { file } => {
            let inv = Inventory::load(&file)?;
            println!("{}: valid: {} hosts, {} allow entries", file.display(), inv.hosts.len(), inv.allows.len());
            Ok(0)
        }
        Command::Discover { captures, common } => {
            let rules = load_rules(common.rules.as_deref())?;
            let cfg = audit_config(captures, &common);
            let result = audit(&rules, None, &cfg)?;
            let inv = result.assessment.inferred.as_ref().expect("no inventory given, so roles were inferred");
            let mut out = BufWriter::new(io::stdout().lock());
            out.write_all(classify::inventory_toml(inv).as_bytes())
                .and_then(|_| out.flush())
                .map_err(write_err("standard output"))?;
            Ok(0)
        }
        Command::Live {
            interface,
            inventory,
            rules,
            output,
            report_every,
            events,
            filter,
            no_auto_filter,
            snaplen,
            buffer_mib,
            no_promisc,
            duration,
            count,
            user,
            max_flows,
            max_conversations,
        } => {
            let rules = load_rules(rules.as_deref())?;
            let inv = inventory.as_deref().map(Inventory::load).transpose()?;
            let cfg = LiveConfig {
                source: LiveOptions {
                    interface,
                    snaplen: snaplen.max(256),
                    buffer_bytes: buffer_mib.clamp(1, 2047) << 20,
                    promisc: !no_promisc,
                },
                auto_filter: !no_auto_filter,
                filter,
                flow: FlowConfig { max_flows: max_flows.max(1), ..FlowConfig::default() },
                max_conversations: max_conversations.max(1),
                report: output,
                report_every: Duration::from_secs(report_every.max(1)),
                events,
                duration: duration.map(Duration::from_secs),
                count,
                user: user.or_else(|| privileges::is_root().then(|| privileges::DEFAULT_USER.to_string())),
            };
            let inv_name = inventory.as_ref().map(|p| p.display().to_string());
            let result =
                live::run(&rules, inv.as_ref(), inv_name.as_deref(), &cfg, &mut io::stdout(), &mut io::stderr())?;
            Ok(report::exit_status(&result))
        }
        Command::Report { results, inventory, rules, format, output } => {
            let mut merger = merge::Merger::new(rules.is_none(), inventory.is_none());
            for path in &results {
                merger.add(merge::read(path)?)?;
            }
            let rules = rules_for_report(rules.as_deref(), merger.rules_origin())?;
            let inv = inventory_for_report(inventory, merger.inventory())?;
            let merged = merger.finish(&rules, inv.as_ref().map(|(i, _)| i));
            let inv_name = inv.as_ref().map(|(_, name)| name.clone());
            let data = report::ReportData {
                rules: &rules,
                inventory: inv_name.as_deref(),
                result: &merged.result,
                sources: &merged.sources,
            };
            write_report(format, output.as_deref(), &data)?;
            Ok(report::exit_status(&merged.result))
        }
        Command::Audit { captures, common, inventory, format, output, events, no_progress } => {
            let rules = load_rules(common.rules.as_deref())?;
            let inv = inventory.as_deref().map(Inventory::load).transpose()?;
            let mut cfg = audit_config(captures, &common);
            cfg.keep_records = events.is_some();
            if !no_progress && io::stderr().is_terminal() {
                cfg.progress = Some(progress);
            }
            let result = audit(&rules, inv.as_ref(), &cfg)?;
            if let Some(bar) = BAR.get() {
                bar.finish_and_clear();
            }
            let inv_name = inventory.as_ref().map(|p| p.display().to_string());
            let data =
                report::ReportData { rules: &rules, inventory: inv_name.as_deref(), result: &result, sources: &[] };
            write_report(format, output.as_deref(), &data)?;
            if let (Some(path), Some(records)) = (&events, &result.records) {
                let mut ev = BufWriter::new(File::create(path).map_err(write_err(&path.display().to_string()))?);
                report::write_events(&mut ev, &rules, &result, records)
                    .and_then(|_| ev.flush())
                    .map_err(|source| Error::Write { what: path.display().to_string(), source })?;
            }
            for f in result.capture.files.iter().filter(|f| f.error.is_some()) {
                eprintln!("kscflow: warning: {}: {}", f.path.display(), f.error.as_deref().unwrap_or_default());
            }
            Ok(report::exit_status(&result))
        }
    }
}
