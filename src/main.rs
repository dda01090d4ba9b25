//! The `lookout` command: parses arguments, sets up logging, calls the library, and maps
//! errors to exit codes (0 success, 1 runtime failure: Kafka, files, a bug; 2 invalid
//! usage, configuration, SQL or input paths).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use rdkafka::config::ClientConfig;
use tokio_util::sync::CancellationToken;

use lookout::config::{Catalog, PipelineConfig};
use lookout::decode::Stream;
use lookout::pipeline::{self, describe_incident, Processor};
use lookout::sink::{self, Sink, Topic};
use lookout::source::file::FileSource;
use lookout::source::kafka::KafkaSource;

/// mimalloc instead of the system allocator: decoding allocates a few small strings per
/// record on two threads, where glibc's malloc spent a third of the pipeline's time
/// (`lookout bench`, README "Performance").
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "lookout",
    version,
    about = "Stream-processing AIOps: logs, metrics and events from Kafka in, explained incidents out"
)]
struct Cli {
    /// Log filter (RUST_LOG syntax), e.g. `info` or `lookout=debug`.
    #[arg(long, global = true, env = "LOOKOUT_LOG", default_value = "warn")]
    log: String,
    /// Logs as JSON lines.
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the pipeline. Without --brokers: the embedded default (in-process broker and a
    /// built-in scenario), printing incidents as they are published.
    Run(RunArgs),
    /// Run a pipeline over recorded files as fast as possible and write what it would publish.
    Replay(ReplayArgs),
    /// Print the pipeline.toml reference (every key, its type, default and meaning),
    /// generated from the configuration's own definitions.
    ConfigReference,
    /// Check pipeline directories (pipeline.toml, SQL, catalog) without running.
    Validate {
        /// Pipeline directories (default: every directory under pipelines/).
        dirs: Vec<PathBuf>,
    },
    /// Show the plan of one pipeline SQL file.
    Explain {
        /// A `.sql` file inside a pipeline directory.
        file: PathBuf,
    },
    /// Mine the templates of one log file: a structured CSV (Loghub's shape) and a summary;
    /// or, with --loghub, score the miner on the Loghub benchmark.
    Templates(TemplatesArgs),
    /// Measure end-to-end throughput on the built-in scenario's traffic against the rate
    /// a plain Kafka consumer reads the same topics at (the ceiling), or with --rate the
    /// latency and memory at a steady input rate, and print a table.
    Bench(BenchArgs),
    /// The broker and producer of `bench --rate`, run by it as a process of its own.
    #[command(hide = true)]
    BenchFeed(BenchFeedArgs),
    /// Score one series: reads `timestamp,value` CSV rows and writes
    /// `timestamp,value,anomaly_score` (0..1), the shape NAB's scorer reads.
    Detect(DetectArgs),
    /// Score the default detector on the Numenta Anomaly Benchmark: the standard,
    /// reward-low-FP and reward-low-FN scores with thresholds optimised over the data given.
    Nab(NabArgs),
    /// Measure the trend reports' forecaster on series with a known future (NAB, and the
    /// memory leaks of the scenarios) against the seasonal-naive forecast, as MASE, and
    /// print a table.
    ForecastQuality(ForecastQualityArgs),
    /// Render trend reports for people: the latest period as a terminal table, and with
    /// --html one self-contained page with charts (levels, forecast bands, thresholds,
    /// incident counts) that needs no network to view.
    Report(ReportArgs),
    /// Fit a pipeline's models from recorded input into MODELS/<pipeline name>/: the log
    /// template state, the log-pattern model (k-means on template counts per minute), the
    /// series detectors warmed on the input, and the service-signals model (k-means on a
    /// service's signals per minute).
    Train(TrainArgs),
}

#[derive(clap::Args)]
struct TrainArgs {
    /// Pipeline directory.
    #[arg(long, default_value = "pipelines/default")]
    pipeline: PathBuf,
    /// Files or directories (logs.jsonl, metrics.jsonl, events.jsonl), as for replay.
    #[arg(long, required = true, num_args = 1..)]
    input: Vec<PathBuf>,
    /// Train on event times from this one (RFC 3339 or epoch).
    #[arg(long)]
    since: Option<String>,
    /// Train on event times before this one (RFC 3339 or epoch).
    #[arg(long)]
    until: Option<String>,
    /// Models directory.
    #[arg(long, env = "LOOKOUT_MODELS", default_value = "models")]
    models: PathBuf,
    /// Window of the log-pattern model, seconds.
    #[arg(long, default_value_t = 60)]
    window_s: u64,
    /// Clusters of the log-pattern and service-signals models, at most.
    #[arg(long, default_value_t = 4)]
    clusters: usize,
    /// No progress on standard error.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(clap::Args)]
struct BenchArgs {
    /// Records to produce and process (whole scenario minutes, so a few more).
    #[arg(long, default_value_t = 500_000)]
    events: u64,
    /// Instead of flat out: produce this many records a second while Lookout reads them,
    /// and measure latency from production to outputs acknowledged, and memory per minute.
    #[arg(long, conflicts_with = "events")]
    rate: Option<u64>,
    /// With --rate: seconds to produce for.
    #[arg(long, default_value_t = 60, requires = "rate")]
    duration: u64,
    /// Kafka bootstrap servers (e.g. a tansu broker); without it, the embedded broker.
    #[arg(long, env = "LOOKOUT_BROKERS")]
    brokers: Option<String>,
    /// Pipeline directory.
    #[arg(long, default_value = "pipelines/default")]
    pipeline: PathBuf,
    /// Scenario seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Routine log lines each of the scenario's 14 hosts writes a simulated minute
    /// (`lookout run`'s demo writes 3). It sets how much event time the traffic spans,
    /// and so how often windows, detectors and trend periods close per event: a second
    /// of 100,000 events spans 28 simulated hours at 3, 12 minutes at 600.
    #[arg(long, default_value_t = pipeline::bench::LOG_LINES, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    log_lines: u32,
    /// Flat out: the streams to produce and read, e.g. `logs` for log events alone
    /// (the scenario's records of the others are left out).
    #[arg(long, value_delimiter = ',', value_parser = stream_name, default_value = "logs,metrics,events", conflicts_with = "rate")]
    streams: Vec<lookout::decode::Stream>,
    /// Flat out: times the ceiling and Lookout each read the records, one after the
    /// other; the round of the median ratio is reported, with every round's rates. On
    /// a shared machine one round's ratio moves by a sixth from run to run.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100), conflicts_with = "rate")]
    rounds: u32,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
    /// No progress on standard error.
    #[arg(long, short)]
    quiet: bool,
}

fn stream_name(s: &str) -> Result<lookout::decode::Stream, String> {
    lookout::decode::Stream::ALL
        .into_iter()
        .find(|t| t.name() == s)
        .ok_or_else(|| format!("`{s}` is not a stream (logs, metrics, events)"))
}

#[derive(clap::Args)]
struct BenchFeedArgs {
    #[arg(long)]
    run: String,
    #[arg(long)]
    partitions: i32,
    #[arg(long)]
    rate: u64,
    #[arg(long)]
    duration: u64,
    #[arg(long)]
    seed: u64,
    #[arg(long)]
    log_lines: u32,
    #[arg(long)]
    brokers: Option<String>,
}

#[derive(clap::Args)]
struct DetectArgs {
    /// A CSV file with a header row and `timestamp,value` rows.
    #[arg(long)]
    input: PathBuf,
    /// Where the scored CSV goes (default: standard output).
    #[arg(long)]
    output: Option<PathBuf>,
    /// A detector model to start from (written by --save-model): its parameters and the
    /// state it learnt, so scoring starts warm.
    #[arg(long)]
    model: Option<PathBuf>,
    /// After scoring, save the detector (parameters, learnt state, manifest) here.
    #[arg(long)]
    save_model: Option<PathBuf>,
    /// Points scored 0 at the start while the detector learns (default: NAB's probationary
    /// period, 15% of the rows up to 750, or none when starting from a model).
    #[arg(long)]
    warmup: Option<usize>,
    /// Set a detector parameter, e.g. `--set decay=0.99` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

#[derive(clap::Args)]
struct NabArgs {
    /// NAB's directory: data/<category>/*.csv and labels/combined_windows.json.
    #[arg(long, default_value = "../shared/data/nab")]
    data: PathBuf,
    /// Also write NAB's results layout here (lookout/<category>/lookout_<file>.csv) for
    /// NAB's own scorer.
    #[arg(long)]
    results: Option<PathBuf>,
    /// Print each file's part of the standard score.
    #[arg(long)]
    files: bool,
    /// Set a detector parameter, e.g. `--set decay=0.99` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

#[derive(clap::Args)]
struct ReportArgs {
    /// A JSON-lines file of trend reports (what `replay` writes as *.trend-reports.jsonl).
    #[arg(long, required_unless_present = "topic", conflicts_with = "topic")]
    input: Option<PathBuf>,
    /// Read the reports from this Kafka topic instead (from its beginning to its end).
    #[arg(long, requires = "brokers")]
    topic: Option<String>,
    /// Kafka bootstrap servers, for --topic.
    #[arg(long)]
    brokers: Option<String>,
    /// A librdkafka setting for --topic, e.g. `security.protocol=SSL` (repeatable;
    /// `key=@FILE` reads the value from a file; LOOKOUT_KAFKA_<KEY> variables too).
    #[arg(long = "kafka", value_name = "KEY=VALUE")]
    kafka: Vec<String>,
    /// The period length to show (default: the shortest there is).
    #[arg(long)]
    period: Option<String>,
    /// Also write the HTML page here.
    #[arg(long)]
    html: Option<PathBuf>,
}

#[derive(clap::Args)]
struct ForecastQualityArgs {
    /// NAB's directory (data/<category>/*.csv, labels/combined_windows.json).
    #[arg(long, default_value = "../shared/data/nab")]
    nab: PathBuf,
    /// A directory of scenarios (each with truth.json and metrics.jsonl).
    #[arg(long, default_value = "../shared/data/scenarios")]
    scenarios: PathBuf,
    /// Print the rows as JSON lines instead of the table.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
struct TemplatesArgs {
    /// The log file.
    #[arg(long, required_unless_present = "loghub")]
    input: Option<PathBuf>,
    /// Line format, e.g. '<Date> <Time> <Level> <Component>: <Content>' (default: the
    /// whole line is the message).
    #[arg(long)]
    format: Option<String>,
    /// A regular expression whose matches are parameters (repeatable).
    #[arg(long = "mask", value_name = "REGEX")]
    masks: Vec<String>,
    /// Where the structured CSV goes: LineId, the format's fields, EventId, EventTemplate,
    /// ParameterList.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Template state to start from, if it exists, and to save to.
    #[arg(long)]
    state: Option<PathBuf>,
    /// Mine the file this many times, reporting new templates per pass (a replay check).
    #[arg(long, default_value_t = 1)]
    repeat: usize,
    /// How many templates the summary lists.
    #[arg(long, default_value_t = 20)]
    top: usize,
    /// Distinct words at one position before it becomes a parameter.
    #[arg(long, default_value_t = 4)]
    word_threshold: usize,
    /// Score against the Loghub benchmark in DIR (its settings.json) instead: a table of
    /// grouping and parsing accuracy per system, with the benchmark's settings and with
    /// the default configuration.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["input", "output", "state"])]
    loghub: Option<PathBuf>,
}

#[derive(clap::Args)]
struct RunArgs {
    /// Kafka bootstrap servers; without it, the embedded broker and scenario run.
    #[arg(long, env = "LOOKOUT_BROKERS")]
    brokers: Option<String>,
    /// Pipeline directory.
    #[arg(long, env = "LOOKOUT_PIPELINE", default_value = "pipelines/default")]
    pipeline: PathBuf,
    /// Service catalog (overrides the pipeline's).
    #[arg(long)]
    catalog: Option<PathBuf>,
    /// Consumer group id.
    #[arg(long, env = "LOOKOUT_GROUP", default_value = "lookout")]
    group: String,
    /// Extra librdkafka settings, `key=value` (repeatable), e.g. security.protocol=SASL_SSL;
    /// `key=@FILE` reads the value from a file (a secret). LOOKOUT_KAFKA_<KEY> environment
    /// variables (LOOKOUT_KAFKA_SASL_PASSWORD for sasl.password) set them too.
    #[arg(long = "kafka", value_name = "KEY=VALUE")]
    kafka: Vec<String>,
    /// Stop after this many seconds.
    #[arg(long)]
    duration: Option<f64>,
    /// Embedded mode: simulated minutes of scenario per real second.
    #[arg(long, default_value_t = 2.0)]
    speed: f64,
    /// Embedded mode: scenario seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Do not print incidents.
    #[arg(long, short)]
    quiet: bool,
    /// Address for /metrics (Prometheus), /health and /ready; `off` for none. Loopback by
    /// default; a port already in use is reported and the pipeline runs without it.
    #[arg(long, env = "LOOKOUT_HTTP", default_value = "127.0.0.1:9464")]
    http: String,
    /// A file whose first line is a bearer token that /metrics and the web view then ask
    /// for (`Authorization: Bearer ...`); /health and /ready stay open for probes.
    #[arg(long, env = "LOOKOUT_HTTP_TOKEN_FILE")]
    http_token_file: Option<PathBuf>,
    /// Models and state directory: the log template state is kept in
    /// MODELS/<pipeline name>/templates.json.
    #[arg(long, env = "LOOKOUT_MODELS", default_value = "models")]
    models: PathBuf,
    /// Where this instance checkpoints its state with its input offsets
    /// (`checkpoint.cbor`); default MODELS/<pipeline name>. One per instance.
    #[arg(long, env = "LOOKOUT_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// Seconds between checkpoints; offsets are committed only with one. 0: no
    /// checkpoints (offsets committed after every batch, state starts empty).
    #[arg(long, env = "LOOKOUT_CHECKPOINT_INTERVAL", default_value_t = 5.0)]
    checkpoint_interval: f64,
    /// Exactly-once: outputs, the state checkpoint (to --state-topic) and the input
    /// offsets are committed in one Kafka transaction every --checkpoint-interval;
    /// consumers of the outputs read with isolation.level=read_committed.
    #[arg(long, env = "LOOKOUT_EXACTLY_ONCE")]
    exactly_once: bool,
    /// With --exactly-once: this instance's transactional id, stable across its restarts
    /// and distinct from every other instance's (a restart with it fences the old one).
    /// Default: <group>-<pipeline name>.
    #[arg(long, env = "LOOKOUT_TRANSACTIONAL_ID")]
    transactional_id: Option<String>,
    /// The compacted topic that holds checkpoints with --exactly-once (each instance's)
    /// and --partitioned-state (each input partition's).
    #[arg(long, env = "LOOKOUT_STATE_TOPIC", default_value = "lookout-state")]
    state_topic: String,
    /// Keep state per input partition and checkpoint it to --state-topic, so that a
    /// partition's state moves with it to whichever instance of the group owns it next
    /// (scaling out and in). Input topics must be co-partitioned by a correlation key.
    #[arg(long, env = "LOOKOUT_PARTITIONED_STATE")]
    partitioned_state: bool,
}

#[derive(clap::Args)]
struct ReplayArgs {
    /// Files, directories (logs.jsonl, metrics.jsonl, events.jsonl) or `-` for stdin.
    #[arg(long, required = true, num_args = 1..)]
    input: Vec<PathBuf>,
    /// Pipeline directory.
    #[arg(long, default_value = "pipelines/default")]
    pipeline: PathBuf,
    /// Service catalog; default: `catalog.json` beside the input, else the pipeline's.
    #[arg(long)]
    catalog: Option<PathBuf>,
    /// Where incidents go (JSON lines); `-` for stdout.
    #[arg(long, required_unless_present = "diff")]
    output: Option<PathBuf>,
    /// No progress and no summary on standard error.
    #[arg(long, short)]
    quiet: bool,
    /// Print the summary as one JSON object on standard output (for scripts).
    #[arg(long)]
    json: bool,
    /// Also replay this other version of the pipeline and print what would change
    /// downstream: incidents created, suppressed, merged, split, re-ranked, and alerts
    /// that fire differently. `--pipeline` is the new version, this the old.
    #[arg(long)]
    diff: Option<PathBuf>,
    /// Where dead letters go (default: OUTPUT with `.dead-letters.jsonl`).
    #[arg(long)]
    dead_letters: Option<PathBuf>,
    /// The stream of plain files and stdin (default: guessed from the file name).
    #[arg(long, value_enum)]
    stream: Option<StreamArg>,
    /// Start from, and save, the log template state in MODELS/<pipeline name>/templates.json
    /// (default: a fresh miner, nothing saved).
    #[arg(long)]
    models: Option<PathBuf>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum StreamArg {
    Logs,
    Metrics,
    Events,
}

impl From<StreamArg> for Stream {
    fn from(s: StreamArg) -> Stream {
        match s {
            StreamArg::Logs => Stream::Logs,
            StreamArg::Metrics => Stream::Metrics,
            StreamArg::Events => Stream::Events,
        }
    }
}

/// A failure and its exit code.
struct Failure(u8, String);

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(e: E) -> Failure {
        Failure(1, e.to_string())
    }
}

fn usage(e: impl std::fmt::Display) -> Failure {
    Failure(2, e.to_string())
}

fn main() -> ExitCode {
    limit_malloc_arenas();
    delay_mimalloc_purge();
    let cli = Cli::parse();
    let filter =
        tracing_subscriber::EnvFilter::try_new(&cli.log).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if cli.log_json {
        fmt.json().init();
    } else {
        fmt.init();
    }
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(dispatch(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(code, msg)) => {
            eprintln!("error: {msg}");
            ExitCode::from(code)
        }
    }
}

async fn dispatch(cmd: Command) -> Result<(), Failure> {
    match cmd {
        Command::Run(a) => run(a).await,
        Command::Replay(a) => replay(a).await,
        Command::ConfigReference => {
            print!("{}", lookout::config::reference::markdown());
            Ok(())
        }
        Command::Validate { dirs } => validate(dirs).await,
        Command::Explain { file } => explain(&file).await,
        Command::Templates(a) => templates(a),
        Command::Train(a) => train(a),
        Command::Detect(a) => detect(a),
        Command::Bench(a) => bench(a).await,
        Command::BenchFeed(a) => pipeline::bench_rate::feed(&pipeline::bench_rate::FeedOptions {
            run: a.run,
            partitions: a.partitions,
            rate: a.rate,
            duration: Duration::from_secs(a.duration),
            seed: a.seed,
            log_lines: a.log_lines,
            brokers: a.brokers,
        })
        .map_err(|e| Failure(1, e)),
        Command::Nab(a) => nab(a),
        Command::ForecastQuality(a) => forecast_quality(a),
        Command::Report(a) => report(a),
    }
}

/// glibc gives threads that allocate arenas of their own (up to 8 per core) and seldom
/// returns their free memory; with decode's per-batch threads and librdkafka's, a
/// Lookout that had fallen behind held 997 MB where two arenas held 354 MB (`lookout
/// bench --rate 100000 --duration 30`, without and with `MALLOC_ARENA_MAX=2`, measured
/// before Lookout's own allocations moved to mimalloc; librdkafka's still use glibc).
/// Two arenas, unless the environment says otherwise; before any thread starts.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets an allocator parameter; called while this is the
        // process's only thread.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}

/// mimalloc's option `purge_delay` (`mi_option_e` in the mimalloc.h of libmimalloc-sys
/// 0.1.49, which Cargo.toml pins), which the crate does not name.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// mimalloc returns memory that has been free for a second to the OS (its default
/// `purge_delay`); the memory of a batch's rows and Arrow builders, freed and allocated
/// again every few tens of milliseconds, went back and was faulted in again all the
/// same (huge pages, zeroed 2 MB at a time). Page faults were 5.8-13.7% of the CPU
/// samples of `lookout bench`'s Lookout phase, 3.6-7.5% with ten seconds (four runs
/// each, docs/performance-log.md). mimalloc purges by arena: once the delay has run
/// from the first memory freed, everything free at that moment goes, however recently
/// freed, and is faulted in again. At ten seconds that landed in the middle of the
/// bench's measured phases (9.4% of one profile's samples zeroing pages); a minute
/// took 10% off the CPU time per event in five paired runs (a bench of under a minute
/// now purges nothing while it runs), and costs one such refault a minute in a long
/// run. A minute, unless `MIMALLOC_PURGE_DELAY` says otherwise; before any thread
/// starts.
fn delay_mimalloc_purge() {
    // SAFETY: sets an option's default (an environment variable still wins); not thread
    // safe, and called while this is the process's only thread.
    unsafe {
        libmimalloc_sys::mi_option_set_default(MI_OPTION_PURGE_DELAY, 60_000);
    }
}

async fn bench(a: BenchArgs) -> Result<(), Failure> {
    let mut cfg = load_config(&a.pipeline, None)?;
    cfg.catalog = Catalog::parse(
        &lookout::source::scenario::catalog_json().to_string(),
        "built-in scenario",
    )
    .map_err(usage)?;
    if let Some(rate) = a.rate {
        let opts = pipeline::bench_rate::RateOptions {
            rate: rate.max(1),
            duration: Duration::from_secs(a.duration.max(1)),
            brokers: a.brokers,
            seed: a.seed,
            log_lines: a.log_lines,
            quiet: a.quiet,
        };
        let report = pipeline::bench_rate::bench_at_rate(&cfg, &opts)
            .await
            .map_err(|e| Failure(1, e))?;
        if a.json {
            println!("{}", serde_json::to_string(&report)?);
        } else {
            print!("{}", report.table());
        }
        return Ok(());
    }
    let opts = pipeline::bench::BenchOptions {
        events: a.events.max(1),
        brokers: a.brokers,
        seed: a.seed,
        log_lines: a.log_lines,
        quiet: a.quiet,
        streams: a.streams,
        rounds: a.rounds,
    };
    let report = pipeline::bench::bench(&cfg, &opts).await.map_err(|e| Failure(1, e))?;
    if a.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", report.table());
    }
    Ok(())
}

fn detector_params(set: &[String]) -> Result<lookout::model::surprise::SurpriseParams, Failure> {
    let mut p = lookout::model::surprise::SurpriseParams::default();
    for kv in set {
        p.set(kv).map_err(|e| usage(format!("--set {e}")))?;
    }
    Ok(p)
}

fn detect(a: DetectArgs) -> Result<(), Failure> {
    use lookout::model::nab::{probation, read_csv};
    use lookout::model::surprise::{SeriesModel, Surprise};
    let (ts, vs) = read_csv(&a.input).map_err(usage)?;
    let (mut params, mut state) = match &a.model {
        Some(path) => {
            let m = SeriesModel::load(path).map_err(usage)?;
            (m.manifest.parameters, m.state)
        }
        None => (lookout::model::surprise::SurpriseParams::default(), Surprise::default()),
    };
    for kv in &a.set {
        if kv.starts_with("warmup=") {
            return Err(usage("--set warmup: use --warmup"));
        }
        params.set(kv).map_err(|e| usage(format!("--set {e}")))?;
    }
    params.warmup = a
        .warmup
        .unwrap_or(if a.model.is_some() { 0 } else { probation(ts.len()) });
    let mut out = String::from("timestamp,value,anomaly_score\n");
    let mut flagged = 0;
    for (t, v) in ts.iter().zip(&vs) {
        let s = state.observe(*t, *v, &params);
        flagged += (s.score >= 0.5) as usize;
        let when = chrono::DateTime::from_timestamp_millis(*t).unwrap_or_default();
        out.push_str(&format!("{},{v},{}\n", when.format("%Y-%m-%d %H:%M:%S"), s.score));
    }
    match &a.output {
        Some(path) => std::fs::write(path, out).map_err(|e| Failure(1, format!("{}: {e}", path.display())))?,
        None => print!("{out}"),
    }
    if let Some(path) = &a.save_model {
        params.warmup = 0;
        let m = SeriesModel::new(params, state, &a.input.display().to_string(), &ts, flagged);
        m.save(path)
            .map_err(|e| Failure(1, format!("{}: {e}", path.display())))?;
        eprintln!("saved the detector after {} points to {}", ts.len(), path.display());
    }
    Ok(())
}

fn report(a: ReportArgs) -> Result<(), Failure> {
    use lookout::report::render;
    let lines: Vec<(String, Vec<u8>)> = match (&a.input, &a.topic) {
        (Some(path), _) => std::fs::read(path)
            .map_err(|e| usage(format!("{}: {e}", path.display())))?
            .split(|b| *b == b'\n')
            .enumerate()
            .filter(|(_, l)| !l.iter().all(u8::is_ascii_whitespace))
            .map(|(i, l)| (format!("{}:{}", path.display(), i + 1), l.to_vec()))
            .collect(),
        (None, Some(topic)) => {
            let mut client = ClientConfig::new();
            client.set("bootstrap.servers", a.brokers.clone().unwrap_or_default());
            kafka_settings(&mut client, &a.kafka)?;
            lookout::source::kafka::read_topic(&client, topic, std::time::Duration::from_secs(30))?
                .into_iter()
                .enumerate()
                .map(|(i, m)| (format!("{topic} message {}", i + 1), m))
                .collect()
        }
        (None, None) => return Err(usage("give --input or --topic")),
    };
    let mut reports = Vec::with_capacity(lines.len());
    for (at, l) in &lines {
        let v: serde_json::Value =
            serde_json::from_slice(l).map_err(|e| Failure(2, format!("{at}: not a JSON report: {e}")))?;
        reports.push(v);
    }
    let picked = render::Reports::pick(&reports, a.period.as_deref()).map_err(|e| Failure(2, e))?;
    print!("{}", render::table(&picked));
    if let Some(path) = &a.html {
        std::fs::write(path, render::html(&picked)).map_err(|e| format!("{}: {e}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

fn forecast_quality(a: ForecastQualityArgs) -> Result<(), Failure> {
    use lookout::report::quality;
    let corpus = lookout::model::nab::Corpus::load(&a.nab).map_err(usage)?;
    let mut rows = quality::nab(&corpus);
    rows.extend(quality::leaks(&a.scenarios).map_err(usage)?);
    if a.json {
        for r in &rows {
            println!("{}", serde_json::to_string(r)?);
        }
    } else {
        print!("{}", quality::table(&rows));
    }
    Ok(())
}

fn nab(a: NabArgs) -> Result<(), Failure> {
    use lookout::model::nab::{probation, Corpus, PROFILES};
    use lookout::model::surprise::score_series;
    let params = detector_params(&a.set)?;
    let corpus = Corpus::load(&a.data).map_err(usage)?;
    let started = std::time::Instant::now();
    let mut points = 0;
    let scores: Vec<Vec<f64>> = corpus
        .series
        .iter()
        .map(|s| {
            let p = lookout::model::surprise::SurpriseParams {
                warmup: probation(s.values.len()),
                ..params
            };
            points += s.values.len();
            score_series(&s.timestamps, &s.values, &p)
                .iter()
                .map(|x| x.score)
                .collect()
        })
        .collect();
    let took = started.elapsed();
    let results = corpus.score(&scores);
    if a.files {
        let standard = &results[0];
        for f in corpus.per_file(&scores, standard.threshold, &PROFILES[0]) {
            println!(
                "{:<58} {:>7.3}  {}/{} windows  {:>3} FP",
                f.name, f.raw, f.detected, f.windows, f.false_positives
            );
        }
    }
    println!(
        "NAB, {} files, {} windows, {points} points scored in {:.0} ms",
        corpus.series.len(),
        results[0].windows,
        took.as_secs_f64() * 1e3
    );
    println!(
        "{:<20} {:>7} {:>10} {:>9} {:>5}",
        "profile", "score", "threshold", "detected", "FP"
    );
    for r in &results {
        println!(
            "{:<20} {:>7.1} {:>10.4} {:>5}/{:<3} {:>5}",
            r.profile, r.normalised, r.threshold, r.detected, r.windows, r.false_positives
        );
    }
    if let Some(dir) = &a.results {
        for (s, sc) in corpus.series.iter().zip(&scores) {
            let (category, file) = s.name.split_once('/').unwrap_or(("", &s.name));
            let path = dir.join("lookout").join(category).join(format!("lookout_{file}"));
            let mut out = String::from("timestamp,value,anomaly_score,label\n");
            for ((t, v), score) in s.timestamps.iter().zip(&s.values).zip(sc) {
                let label = s.windows.iter().any(|(a, b)| a <= t && t <= b) as u8;
                let when = chrono::DateTime::from_timestamp_millis(*t).unwrap_or_default();
                out.push_str(&format!("{},{v},{score},{label}\n", when.format("%Y-%m-%d %H:%M:%S")));
            }
            std::fs::create_dir_all(path.parent().unwrap_or(dir))
                .and_then(|_| std::fs::write(&path, out))
                .map_err(|e| Failure(1, format!("{}: {e}", path.display())))?;
        }
        println!("wrote NAB results under {}", dir.join("lookout").display());
    }
    Ok(())
}

fn train(a: TrainArgs) -> Result<(), Failure> {
    use lookout::logs::patterns::PatternParams;
    use lookout::pipeline::train::{self, TrainInput};
    let cfg = load_config(&a.pipeline, None)?;
    let time = |t: &Option<String>, flag: &str| -> Result<Option<i64>, Failure> {
        t.as_deref()
            .map(|s| lookout::decode::time::parse_str(s).ok_or_else(|| usage(format!("{flag} {s:?} is not a time"))))
            .transpose()
    };
    let input = TrainInput {
        paths: &a.input,
        since: time(&a.since, "--since")?,
        until: time(&a.until, "--until")?,
    };
    if a.window_s == 0 || a.clusters == 0 {
        return Err(usage("--window-s and --clusters must be at least 1"));
    }
    let params = PatternParams {
        window_s: a.window_s,
        k: a.clusters,
        ..PatternParams::default()
    };
    let dir = a.models.join(&cfg.spec.name);
    let vectors = lookout::model::services::VectorParams {
        k: a.clusters,
        ..Default::default()
    };
    let mut progress = lookout::observe::progress::Progress::new(a.quiet);
    let mut read = (0, 0, 0);
    let line = |(records, logs, templates): (u64, u64, usize)| {
        format!("training: read {records} records ({logs} log lines), {templates} templates")
    };
    let trained = train::train(&cfg, &input, &dir, params, vectors, |records, logs, templates| {
        read = (records, logs, templates);
        progress.update(|| line(read));
    })
    .map_err(usage)?;
    progress.finish_with(line(read));
    let m = &trained.model.manifest;
    println!(
        "trained on {} records, log lines from {} to {}: {} templates, {} services, {} windows, {:.2}% of training windows over threshold",
        trained.records,
        m.data_from,
        m.data_to,
        trained.templates,
        m.evaluation.services,
        m.evaluation.windows,
        m.evaluation.train_exceed_rate * 100.0
    );
    for (service, s) in &trained.model.services {
        println!(
            "  {service:<24} {} windows, {} clusters, threshold {:.2}",
            s.windows,
            s.centroids.len(),
            s.threshold
        );
    }
    let e = &trained.series.manifest.evaluation;
    println!(
        "series detectors ({}): {} series, {} metric points, {} anomaly episodes in training",
        trained.series.manifest.detector.name(),
        e.series,
        e.points,
        e.episodes
    );
    match &trained.signals {
        Ok((model, path)) => {
            let e = &model.manifest.evaluation;
            println!(
                "service signals: {} services, {} windows, {:.2}% of training windows over threshold",
                e.services,
                e.windows,
                e.train_exceed_rate * 100.0
            );
            for (service, s) in &model.services {
                println!(
                    "  {service:<24} {} signals, {} windows, {} clusters, threshold {:.2}",
                    s.dims.len(),
                    s.windows,
                    s.centroids.len(),
                    s.threshold
                );
            }
            println!("wrote {}", path.display());
        }
        Err(why) => println!("no service-signals model: {why}"),
    }
    println!(
        "wrote {}, {} and {}",
        trained.templates_path.display(),
        trained.model_path.display(),
        trained.series_path.display()
    );
    Ok(())
}

fn templates(a: TemplatesArgs) -> Result<(), Failure> {
    use lookout::logs::{file, loghub, Miner, MinerConfig};
    if let Some(dir) = &a.loghub {
        let mut rows = Vec::new();
        for system in loghub::systems(dir).map_err(usage)? {
            let benchmark = loghub::score(&system, true)?;
            let default = loghub::score(&system, false)?;
            rows.push((system.name.clone(), benchmark, default));
        }
        if rows.is_empty() {
            return Err(usage(format!("{}: no Loghub systems found", dir.display())));
        }
        print!("{}", loghub::table(&rows));
        return Ok(());
    }
    let input = a.input.as_deref().ok_or_else(|| usage("--input is required"))?;
    let config = MinerConfig {
        masks: a
            .masks
            .iter()
            .map(|m| regex::Regex::new(m).map_err(|e| usage(format!("--mask {m:?}: {e}"))))
            .collect::<Result<_, _>>()?,
        word_threshold: a.word_threshold.max(2),
        ..MinerConfig::default()
    };
    let options = file::FileOptions {
        format: a
            .format
            .as_deref()
            .map(lookout::decode::line::LineFormat::parse)
            .transpose()
            .map_err(|e| usage(format!("--format: {e}")))?,
        ..file::FileOptions::default()
    };
    let mut miner = match &a.state {
        Some(p) if p.exists() => Miner::load(config, p).map_err(usage)?,
        _ => Miner::new(config),
    };
    let mut mined = file::mine(input, &options, &mut miner).map_err(|e| usage(format!("{}: {e}", input.display())))?;
    let after_first = miner.len();
    for pass in 2..=a.repeat {
        let before = miner.len();
        mined = file::mine(input, &options, &mut miner)?;
        if miner.len() != before || pass == a.repeat {
            println!(
                "pass {pass}: {} templates ({:+})",
                miner.len(),
                miner.len() as i64 - before as i64
            );
        }
    }
    if a.repeat > 1 {
        println!(
            "{} passes: {} templates after the first, {} after the last",
            a.repeat,
            after_first,
            miner.len()
        );
    }
    if let Some(out) = &a.output {
        file::write_csv(input, &options, &miner, &mined, out).map_err(|e| format!("{}: {e}", out.display()))?;
    }
    if let Some(p) = &a.state {
        miner.save(p).map_err(|e| format!("{}: {e}", p.display()))?;
    }
    print!("{}", file::summary(&miner, &mined.counts, a.top));
    Ok(())
}

/// Fires on Ctrl-C, SIGTERM, or after `duration`.
fn shutdown_token(duration: Option<f64>) -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        #[cfg(unix)]
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        let timer = async {
            match duration {
                Some(d) => tokio::time::sleep(Duration::from_secs_f64(d)).await,
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => eprintln!("stopping: draining in-flight outputs"),
            _ = term => eprintln!("stopping (SIGTERM): draining in-flight outputs"),
            _ = timer => {}
        }
        t.cancel();
    });
    token
}

/// librdkafka settings: from `LOOKOUT_KAFKA_<KEY>` environment variables (the key in
/// capitals with `_` for `.`, so `LOOKOUT_KAFKA_SASL_PASSWORD` sets `sasl.password`),
/// then from `--kafka KEY=VALUE`, which win. A value `@FILE` is read from that file (its
/// first line; a mounted secret), `@@...` is a value that starts with `@`. Values are
/// never printed.
fn kafka_settings(client: &mut ClientConfig, flags: &[String]) -> Result<(), Failure> {
    let mut settings: Vec<(String, String, String)> = std::env::vars()
        .filter_map(|(name, v)| {
            let key = name.strip_prefix("LOOKOUT_KAFKA_")?.to_lowercase().replace('_', ".");
            Some((key, v, name))
        })
        .collect();
    settings.sort();
    for kv in flags {
        let (k, v) = kv.split_once('=').ok_or_else(|| {
            usage(format!(
                "--kafka {}: expected KEY=VALUE",
                kv.split('=').next().unwrap_or("")
            ))
        })?;
        settings.push((
            k.trim().to_string(),
            v.trim().to_string(),
            format!("--kafka {}", k.trim()),
        ));
    }
    for (key, value, from) in settings {
        let value = if let Some(literal) = value.strip_prefix("@@") {
            format!("@{literal}")
        } else if let Some(file) = value.strip_prefix('@') {
            let text = std::fs::read_to_string(file).map_err(|e| usage(format!("{from}: {file}: {e}")))?;
            let first = text.lines().next().unwrap_or("").trim().to_string();
            if first.is_empty() {
                return Err(usage(format!("{from}: {file} is empty")));
            }
            first
        } else {
            value
        };
        client.set(key, value);
    }
    Ok(())
}

fn load_config(dir: &Path, catalog: Option<&Path>) -> Result<PipelineConfig, Failure> {
    PipelineConfig::load(dir, catalog).map_err(usage)
}

async fn run(a: RunArgs) -> Result<(), Failure> {
    let mut cfg = load_config(&a.pipeline, a.catalog.as_deref())?;
    let embedded = a.brokers.is_none();
    if embedded && a.catalog.is_none() {
        cfg.catalog = Catalog::parse(
            &lookout::source::scenario::catalog_json().to_string(),
            "built-in scenario",
        )
        .map_err(usage)?;
    }
    let mut processor = Processor::build(&cfg).await.map_err(usage)?;
    processor.use_models(&a.models.join(&cfg.spec.name)).map_err(usage)?;
    let every = Duration::try_from_secs_f64(a.checkpoint_interval)
        .map_err(|e| usage(format!("--checkpoint-interval {}: {e}", a.checkpoint_interval)))?;
    if a.exactly_once && every.is_zero() {
        return Err(usage(
            "--exactly-once commits a transaction every --checkpoint-interval: it cannot be 0",
        ));
    }
    if a.partitioned_state && every.is_zero() {
        return Err(usage(
            "--partitioned-state hands partitions over with their checkpoints: --checkpoint-interval cannot be 0",
        ));
    }
    if a.partitioned_state && a.exactly_once {
        return Err(usage(
            "--partitioned-state does not work with --exactly-once yet; choose one",
        ));
    }
    let mut health_out = None;
    if a.http != "off" {
        let token = match &a.http_token_file {
            Some(f) => Some(lookout::observe::http::Token::from_file(f).map_err(usage)?),
            None => None,
        };
        let health = std::sync::Arc::new(lookout::observe::Health::default());
        match std::net::TcpListener::bind(&a.http) {
            Ok(listener) => {
                let addr = listener.local_addr()?;
                if token.is_some() {
                    println!("  http: a bearer token is required (except /health and /ready)");
                }
                lookout::observe::http::spawn(listener, health.clone(), token)?;
                health_out = Some(health);
                println!("  metrics: http://{addr}/metrics (also /health, /ready)");
                println!("  web view: http://{addr}/");
            }
            Err(e) => eprintln!("warning: --http {}: {e}; running without /metrics", a.http),
        }
    }
    let cancel = shutdown_token(a.duration);
    let broker = if embedded {
        let state_topic = [a.state_topic.as_str()];
        Some(pipeline::embedded::start_broker(
            &cfg,
            if a.exactly_once || a.partitioned_state {
                &state_topic
            } else {
                &[]
            },
        )?)
    } else {
        None
    };
    let bootstrap = match &broker {
        Some(b) => b.bootstrap_servers().to_string(),
        None => a.brokers.clone().unwrap_or_default(),
    };
    let mut client = ClientConfig::new();
    client.set("bootstrap.servers", &bootstrap);
    kafka_settings(&mut client, &a.kafka)?;
    let producer_task = if embedded {
        println!("Lookout embedded default: Kafka-protocol broker on {bootstrap}");
        println!(
            "  topics: {} {} {} in; {} {} {} {} out (read them with any Kafka client)",
            cfg.spec.sources.logs.topic,
            cfg.spec.sources.metrics.topic,
            cfg.spec.sources.events.topic,
            cfg.spec.sinks.incidents,
            cfg.spec.sinks.anomalies,
            cfg.spec.sinks.trend_reports,
            cfg.spec.sinks.dead_letters
        );
        println!("  scenario: 7 services, a bad deploy and a cache saturation every simulated hour, at {} simulated min/s; Ctrl-C stops", a.speed);
        let start = chrono::Utc::now().timestamp_millis();
        Some(tokio::spawn(pipeline::embedded::produce_scenario(
            bootstrap.clone(),
            cfg.clone(),
            a.seed,
            start,
            a.speed * 60.0,
            cancel.clone(),
        )))
    } else {
        None
    };
    let topics = cfg.topics();
    if a.partitioned_state {
        let mut consumer = client.clone();
        match consumer.get("partition.assignment.strategy") {
            None => {
                consumer.set("partition.assignment.strategy", "range");
            }
            Some("range") => {}
            Some(other) => {
                return Err(usage(format!(
                    "--partitioned-state needs partition.assignment.strategy=range (partition p of every input topic to one instance), not {other}"
                )))
            }
        }
        let names: Vec<&str> = topics.iter().map(|(_, t)| *t).collect();
        let partitions =
            pipeline::tasks::check_topics(&client, &names, &a.state_topic, Duration::from_secs(30)).map_err(usage)?;
        let mut source = KafkaSource::new(&consumer, &a.group, &topics, cfg.spec.batch, cfg.spec.limits)?;
        let mut sink = sink::kafka::KafkaSink::new(&client, cfg.spec.sinks.clone(), cancel.clone())?;
        let mut tasks = pipeline::tasks::Tasks::new(pipeline::tasks::TaskConfig {
            models: a.models.join(&cfg.spec.name),
            scope: source.scope(Duration::from_secs(10)),
            pipeline: cfg,
            client,
            state_topic: a.state_topic.clone(),
            group: a.group.clone(),
            every,
            health: health_out,
        });
        println!(
            "  partitioned state: a task per input partition ({partitions}), checkpoints to {}",
            a.state_topic
        );
        let mut print = printer(a.quiet);
        let stats = pipeline::tasks::run(&mut tasks, &mut source, &mut sink, &cancel, &mut print).await?;
        eprintln!(
            "tasks: {} started, {} restored from the state topic",
            tasks.started, tasks.restored
        );
        return finish(stats, producer_task, source, sink, broker).await;
    }
    if let Some(h) = health_out {
        processor.report_to(h);
    }
    let mut source = KafkaSource::new(&client, &a.group, &topics, cfg.spec.batch, cfg.spec.limits)?;
    let sink = if a.exactly_once {
        let id = a
            .transactional_id
            .clone()
            .unwrap_or_else(|| format!("{}-{}", a.group, cfg.spec.name));
        // fences an older instance with this id before its checkpoint is read
        let sink =
            sink::kafka::KafkaSink::transactional(&client, cfg.spec.sinks.clone(), cancel.clone(), &id, &a.state_topic)
                .await?;
        let origin = format!("state topic {} ({id})", a.state_topic);
        let found = pipeline::state_topic::read(&client, &a.state_topic, &id, Duration::from_secs(60))
            .map_err(usage)?
            .map(|b| pipeline::checkpoint::Checkpoint::from_bytes(&b, &origin))
            .transpose()
            .map_err(usage)?;
        let scope = source.scope(Duration::from_secs(10));
        source.resume_from(
            processor
                .checkpoint_to_topic(found, &origin, every, &scope)
                .map_err(usage)?,
        );
        println!(
            "  exactly-once: transactional id {id}, checkpoints to {}",
            a.state_topic
        );
        sink
    } else {
        // The embedded broker starts empty each time: no offsets for a checkpoint to follow.
        if !embedded && !every.is_zero() {
            let dir = a.state_dir.clone().unwrap_or_else(|| a.models.join(&cfg.spec.name));
            let scope = source.scope(Duration::from_secs(10));
            source.resume_from(processor.checkpoint_to(&dir, every, &scope).map_err(usage)?);
        }
        sink::kafka::KafkaSink::new(&client, cfg.spec.sinks.clone(), cancel.clone())?
    };
    let mut sink = Sink::Kafka(sink);
    let mut print = printer(a.quiet);
    let stats = pipeline::run_kafka(&mut processor, &mut source, &mut sink, &cancel, &mut print).await?;
    finish(stats, producer_task, source, sink, broker).await
}

/// Prints each incident update and report as a line (unless `quiet`).
fn printer(quiet: bool) -> impl FnMut(&sink::Message) + Send {
    move |m: &sink::Message| {
        if !quiet {
            if let Some(line) = describe_incident(m).or_else(|| lookout::report::render::describe(m)) {
                println!("{line}");
            }
        }
    }
}

/// After `lookout run`: waits for the embedded producer, says what was done, and closes
/// the clients before the embedded broker, so that they do not wait on a dead one.
async fn finish<S>(
    stats: pipeline::Stats,
    producer_task: Option<tokio::task::JoinHandle<Result<u64, lookout::source::SourceError>>>,
    source: KafkaSource,
    sink: S,
    broker: Option<lookout::source::embedded::EmbeddedBroker>,
) -> Result<(), Failure> {
    if let Some(t) = producer_task {
        let _ = t.await;
    }
    eprintln!(
        "stopped: {} records in ({} logs, {} metrics, {} events), {} dead letters, {} incident updates",
        stats.records_in, stats.logs, stats.metrics, stats.events, stats.dead_letters, stats.incident_updates
    );
    drop(source);
    drop(sink);
    drop(broker);
    Ok(())
}

async fn replay(a: ReplayArgs) -> Result<(), Failure> {
    if a.json && a.output.as_deref() == Some(Path::new("-")) {
        return Err(usage("--json prints on standard output, which --output - already uses"));
    }
    let Some(old) = &a.diff else {
        return replay_one(&a, &a.pipeline, &mut |_| {}).await;
    };
    let mut before = pipeline::diff::RunOutput::default();
    let mut now = pipeline::diff::RunOutput::default();
    replay_one(&a, old, &mut |m| before.add(m)).await?;
    replay_one(&a, &a.pipeline, &mut |m| now.add(m)).await?;
    println!(
        "{} (before) → {} (now), same input:",
        old.display(),
        a.pipeline.display()
    );
    print!("{}", pipeline::diff::diff(&before, &now));
    Ok(())
}

/// Replays one pipeline over the input; in `--diff` mode only the new pipeline's
/// output goes to files (when `--output` is given).
async fn replay_one(a: &ReplayArgs, dir: &Path, on_publish: pipeline::OnPublish<'_>) -> Result<(), Failure> {
    let catalog = a.catalog.clone().or_else(|| {
        a.input
            .iter()
            .find(|p| p.is_dir())
            .map(|d| d.join("catalog.json"))
            .filter(|c| c.exists())
    });
    let cfg = load_config(dir, catalog.as_deref())?;
    let mut processor = Processor::build(&cfg).await.map_err(usage)?;
    if let Some(models) = &a.models {
        processor.use_models(&models.join(&cfg.spec.name)).map_err(usage)?;
    }
    let mut source =
        FileSource::open(&a.input, a.stream.map(Stream::from), cfg.spec.batch.max_records).map_err(usage)?;
    let mut paths = BTreeMap::new();
    let output = a.output.clone().filter(|_| dir == a.pipeline);
    let (dead, anomalies, trends) = match &output {
        Some(out) => (
            a.dead_letters.clone().unwrap_or_else(|| sibling(out, "dead-letters")),
            sibling(out, "anomalies"),
            sibling(out, "trend-reports"),
        ),
        None => {
            let none = PathBuf::from("(not written)");
            (none.clone(), none.clone(), none)
        }
    };
    if let Some(out) = &output {
        paths.insert(Topic::Incidents, out.clone());
        if out != Path::new("-") {
            paths.insert(Topic::DeadLetters, dead.clone());
            paths.insert(Topic::Anomalies, anomalies.clone());
            paths.insert(Topic::TrendReports, trends.clone());
        }
    }
    let mut sink = Sink::Files(sink::file::FileSink::new(&paths)?);
    let started = std::time::Instant::now();
    let mut progress = lookout::observe::progress::Progress::new(a.quiet);
    let stats = pipeline::replay_with_progress(&mut processor, &mut source, &mut sink, on_publish, &mut |s| {
        progress.update(|| {
            format!(
                "{}: {} records, {:.0}/s, {} incident updates, {} anomalies, {} dead letters",
                dir.display(),
                s.records_in,
                s.records_in as f64 / started.elapsed().as_secs_f64().max(1e-3),
                s.incident_updates,
                s.anomalies,
                s.dead_letters
            )
        })
    })
    .await?;
    progress.finish();
    let (templates, evicted) = {
        let miner = processor.miner();
        (miner.len(), miner.stats.evicted)
    };
    if a.json && a.diff.is_none() {
        println!(
            "{}",
            serde_json::json!({
                "pipeline": dir.display().to_string(),
                "records": stats.records_in,
                "logs": stats.logs,
                "metrics": stats.metrics,
                "events": stats.events,
                "templates": templates,
                "incident_updates": stats.incident_updates,
                "anomalies": stats.anomalies,
                "dead_letters": stats.dead_letters,
                "trend_reports": stats.trend_reports,
                "trend_late_values": stats.trend_late_values,
                "late_records": stats.late_records,
                "dropped_series": stats.dropped_series,
                "seconds": (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
            })
        );
    }
    if a.quiet {
        return Ok(());
    }
    eprintln!(
        "{}: replayed {} records ({} logs: {} templates, {} evicted; {} metrics, {} events) in {:.1} s: {} incident updates, {} anomalies ({}), {} trend reports ({}), {} dead letters ({})",
        dir.display(),
        stats.records_in,
        stats.logs,
        templates,
        evicted,
        stats.metrics,
        stats.events,
        started.elapsed().as_secs_f64(),
        stats.incident_updates,
        stats.anomalies,
        anomalies.display(),
        stats.trend_reports,
        trends.display(),
        stats.dead_letters,
        dead.display()
    );
    if stats.dropped_series > 0 {
        eprintln!(
            "{} series not watched: [detection] max_series were watched already",
            stats.dropped_series
        );
    }
    if stats.trend_late_values + stats.trend_dropped_values > 0 {
        eprintln!(
            "trend reports left out {} values for periods already reported and {} of series past [trends] max_series",
            stats.trend_late_values, stats.trend_dropped_values
        );
    }
    if stats.late_records > 0 {
        eprintln!(
            "{} rows of windowed SQL arrived after their window closed ({} windows corrected)",
            stats.late_records, stats.window_corrections
        );
    }
    Ok(())
}

fn sibling(p: &Path, what: &str) -> PathBuf {
    let stem = p.file_stem().and_then(|s| s.to_str()).unwrap_or("out");
    p.with_file_name(format!("{stem}.{what}.jsonl"))
}

async fn validate(dirs: Vec<PathBuf>) -> Result<(), Failure> {
    let dirs = if dirs.is_empty() {
        let mut d: Vec<PathBuf> = std::fs::read_dir("pipelines")
            .map_err(|e| usage(format!("pipelines/: {e}")))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.join("pipeline.toml").exists())
            .collect();
        d.sort();
        d
    } else {
        dirs
    };
    let mut failed = 0;
    for dir in &dirs {
        let result = match PipelineConfig::load(dir, None) {
            Ok(cfg) => Processor::build(&cfg)
                .await
                .map(|p| {
                    (
                        p.sql().view_names().len(),
                        p.sql().signal_names().len(),
                        p.sql().rule_names().len(),
                    )
                })
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match result {
            Ok((views, signals, rules)) => println!(
                "ok    {}: {views} views, {signals} signals, {rules} alert rules",
                dir.display()
            ),
            Err(e) => {
                failed += 1;
                println!("FAIL  {}\n{e}", dir.display());
            }
        }
    }
    if failed > 0 {
        return Err(usage(format!("{failed} of {} pipelines are invalid", dirs.len())));
    }
    Ok(())
}

async fn explain(file: &Path) -> Result<(), Failure> {
    let dir = file
        .parent()
        .ok_or_else(|| usage("the file must be inside a pipeline directory"))?;
    let name = file
        .file_stem()
        .and_then(|s| s.to_str())
        .ok_or_else(|| usage("not a .sql file"))?;
    let cfg = load_config(dir, None)?;
    let p = Processor::build(&cfg).await.map_err(usage)?;
    let parsed = lookout::sql::SqlFile::read(file).map_err(usage)?;
    println!(
        "{} — {:?}{}",
        file.display(),
        parsed.header.kind,
        if parsed.header.description.is_empty() {
            String::new()
        } else {
            format!(": {}", parsed.header.description)
        }
    );
    match p.sql().window_settings(name) {
        Some(w) => println!("{w}"),
        None => println!("windows: none (stateless: runs on each batch)"),
    }
    match p.sql().explain(name).await {
        Some(plan) => println!("{plan}"),
        None => return Err(usage(format!("{name} is not a view or rule of {}", dir.display()))),
    }
    Ok(())
}
