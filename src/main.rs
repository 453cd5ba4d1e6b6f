//! The `kiln` command line: parses arguments and hands off to the library.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use kiln::build::report::{ConsoleProgress, human_size};
use kiln::diagnostic::display_path;
use kiln::server::ServeOptions;
use kiln::{Override, Settings};

// lightningcss allocates heavily; mimalloc makes the CSS stage ~25% faster
// than the system allocator (see BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "kiln",
    version,
    about = "Builds a website's assets and serves them in production"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Compile assets/ into the output directory (default: ROOT/dist).
    Build {
        /// The site root, holding build.toml, assets/ and templates/.
        #[arg(long, default_value = ".")]
        root: PathBuf,
        /// Write the output here instead of build.out_dir.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Override a build.toml key with a TOML value, e.g. --set build.minify=false.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<Override>,
        /// Add only the new build's hashed files beside the build being
        /// served, which stays current: the first step of a rolling deploy,
        /// run on every server before any of them builds for real.
        #[arg(long)]
        stage: bool,
        /// Write where the build's time went (each stage's and each unit's
        /// wall time, by thread, and the parallelism) as a self-contained
        /// HTML page: FILE, or .kiln/timings.html in the site root.
        #[arg(long, value_name = "FILE")]
        timings: Option<Option<PathBuf>>,
    },
    /// Check dynamic routes: compile them and their templates, apply pending
    /// migrations, and warn about queries that scan whole tables (exit 1).
    Check {
        /// The site root, holding build.toml, assets/ and templates/.
        #[arg(long, default_value = ".")]
        root: PathBuf,
        /// Override a build.toml key with a TOML value, e.g. --set database.url="postgres://…".
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<Override>,
    },
    /// Build (unless --no-build), then serve the output directory.
    Serve {
        /// The site root, holding build.toml, assets/ and templates/.
        #[arg(long, default_value = ".")]
        root: PathBuf,
        /// Listen here instead of server.addr.
        #[arg(long, value_name = "HOST:PORT")]
        addr: Option<String>,
        /// Worker threads instead of server.workers.
        #[arg(long)]
        workers: Option<usize>,
        /// Serve the existing output directory without building first.
        #[arg(long)]
        no_build: bool,
        /// Override a build.toml key with a TOML value, e.g. --set server.access_log="combined".
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<Override>,
    },
    /// Build into .kiln/watch, serve it for development, and rebuild on every
    /// change with live reload in the browser.
    Watch {
        /// The site root, holding build.toml, assets/ and templates/.
        #[arg(long, default_value = ".")]
        root: PathBuf,
        /// Listen here instead of server.addr.
        #[arg(long, value_name = "HOST:PORT")]
        addr: Option<String>,
        /// Override a build.toml key with a TOML value, e.g. --set build.minify=true.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<Override>,
    },
    /// Load-test a server with the site's own traffic (its pages, assets
    /// and routes) at a scheduled rate; exit 1 when an objective of
    /// [loadtest] is missed.
    Loadtest {
        /// The site root, holding build.toml, assets/ and templates/.
        #[arg(long, default_value = ".")]
        root: PathBuf,
        /// A running server (http://HOST:PORT); without it, the site is
        /// built (unless --no-build) and its own server started.
        #[arg(long, value_name = "URL")]
        target: Option<String>,
        /// normal, peak, spike, stress, soak, errors, recovery, or a
        /// scenario file (FILE.toml: stages and [loadtest] overrides).
        #[arg(long, default_value = "normal", value_parser = clap::value_parser!(kiln::loadtest::Scenario))]
        scenario: kiln::loadtest::Scenario,
        /// Write loadtest.json, summary.txt and report.html (charts) into
        /// this directory.
        #[arg(long, value_name = "DIR")]
        report: Option<PathBuf>,
        /// Allow a --target (or --metrics) that is not on this machine.
        #[arg(long)]
        allow_remote: bool,
        /// The --target's admin listener (HOST:PORT), read each second for
        /// CPU, memory, pool and cache; default: server.admin_addr when the
        /// target is on this machine.
        #[arg(long, value_name = "HOST:PORT")]
        metrics: Option<String>,
        /// Compare with an earlier run's loadtest.json; exit 1 when
        /// something got worse by more than loadtest.regression.
        #[arg(long, value_name = "OLD.json")]
        compare: Option<PathBuf>,
        /// Test the output directory as it is.
        #[arg(long)]
        no_build: bool,
        /// Override a build.toml key with a TOML value, e.g. --set loadtest.rate=2000.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<Override>,
    },
    /// Create a starter site that builds, serves and passes `kiln check`.
    Init {
        /// Where (created if missing; must be empty unless --force).
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Which starter: one page, a blog, or a shop on SQLite.
        #[arg(long, value_enum, default_value = "blank")]
        template: kiln::init::Starter,
        /// Write into a directory that is not empty (overwriting the
        /// starter's files, keeping every other).
        #[arg(long)]
        force: bool,
    },
    /// The route cache: statistics, purges and warming, through a running
    /// server's admin listener (server.admin_addr), else against the disk
    /// level and Redis directly.
    Cache {
        /// The site root, holding build.toml.
        #[arg(long, default_value = ".", global = true)]
        root: PathBuf,
        /// The running server's admin listener, instead of server.admin_addr.
        #[arg(long, value_name = "HOST:PORT", global = true)]
        admin: Option<std::net::SocketAddr>,
        #[command(subcommand)]
        action: CacheAction,
    },
    /// Background jobs ([[job]] in build.toml): enqueue, list, or run
    /// workers alone (kiln serve runs them too, with jobs.enabled).
    Jobs {
        /// The site root, holding build.toml.
        #[arg(long, default_value = ".", global = true)]
        root: PathBuf,
        /// Override a build.toml key with a TOML value, e.g. --set jobs.workers=8.
        #[arg(long = "set", value_name = "KEY=VALUE", global = true)]
        overrides: Vec<Override>,
        #[command(subcommand)]
        action: JobsAction,
    },
}

#[derive(Subcommand)]
enum JobsAction {
    /// Add a job to the queue; prints its id.
    Enqueue {
        /// The [[job]]'s name.
        name: String,
        /// The payload, a JSON object (its keys bind the job's :names).
        #[arg(long, default_value = "{}")]
        payload: String,
    },
    /// The newest jobs, as JSON lines.
    List {
        /// Only jobs in this state: ready, running, succeeded, dead.
        #[arg(long)]
        state: Option<String>,
        /// Only jobs of this queue.
        #[arg(long)]
        queue: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Run workers alone, without serving, until SIGINT or SIGTERM.
    Work,
    /// Run a dead job again (its attempts from zero), or every dead job.
    Retry {
        id: Option<i64>,
        #[arg(long, conflicts_with = "id")]
        dead: bool,
    },
    /// Delete a job that has not started.
    Cancel { id: i64 },
    /// Delete a finished job, or every dead job.
    Purge {
        id: Option<i64>,
        #[arg(long, conflicts_with = "id")]
        dead: bool,
    },
}

#[derive(Subcommand)]
enum CacheAction {
    /// Entries and bytes per level, hits and misses (JSON).
    Stats,
    /// Drop entries from every level and, through Redis, every server.
    Purge {
        /// Every entry.
        #[arg(long, conflicts_with_all = ["tag", "route", "url"])]
        all: bool,
        /// The entries carrying a tag of [route.cache] (product:7).
        #[arg(long)]
        tag: Option<String>,
        /// Every entry of a route, by its declared path (/catalogue/{id:int}).
        #[arg(long)]
        route: Option<String>,
        /// Every entry of a URL (/catalogue/?page=2), for every visitor.
        #[arg(long)]
        url: Option<String>,
    },
    /// Render URLs into the running server's cache.
    Warm {
        /// URLs (/catalogue/?page=2).
        urls: Vec<String>,
        /// A file of URLs, one per line.
        #[arg(long, value_name = "FILE")]
        from: Option<PathBuf>,
        /// An access log (server.access_log, any format): its most
        /// requested URLs of cached routes.
        #[arg(long, value_name = "FILE")]
        from_log: Option<PathBuf>,
        /// How many of the log's URLs.
        #[arg(long, default_value_t = 100)]
        top: usize,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    log_to_stderr();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(err)) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
        Err(Failure::Failed(err)) => {
            if let Some(err) = err {
                eprintln!("error: {err:#}");
            }
            ExitCode::FAILURE
        }
    }
}

/// How a command failed; the exit code tells scripts which.
enum Failure {
    /// `build.toml`, a `--set` or a flag is wrong: exit code 2.
    Usage(anyhow::Error),
    /// The command ran and failed: exit code 1. `None` when the command
    /// already said why (a build's diagnostics, `kiln check`'s warnings).
    Failed(Option<anyhow::Error>),
}

impl Failure {
    fn usage(err: impl Into<anyhow::Error>) -> Failure {
        Failure::Usage(err.into())
    }

    fn failed(err: impl Into<anyhow::Error>) -> Failure {
        Failure::Failed(Some(err.into()))
    }
}

fn run(command: Command) -> Result<(), Failure> {
    match command {
        Command::Init {
            dir,
            template,
            force,
        } => init(&dir, template, force),
        Command::Cache {
            root,
            admin,
            action,
        } => cache(&load_settings(&root, None, &[])?, admin, action),
        Command::Jobs {
            root,
            overrides,
            action,
        } => jobs(&load_settings(&root, None, &overrides)?, action),
        Command::Build {
            root,
            out,
            overrides,
            stage,
            timings,
        } => {
            let settings = load_settings(&root, out.as_deref(), &overrides)?;
            let run: BuildFn = if stage { kiln::stage } else { kiln::build };
            match timings {
                Some(file) => build_timed(&settings, run, file),
                None => build_with(&settings, run),
            }
        }
        Command::Check { root, overrides } => check(&load_settings(&root, None, &overrides)?),
        Command::Serve {
            root,
            addr,
            workers,
            no_build,
            overrides,
        } => {
            let settings = load_settings(&root, None, &overrides)?;
            let addr = parse_addr(addr)?;
            if !no_build {
                build(&settings)?;
            }
            serve(&settings, addr, workers)
        }
        Command::Watch {
            root,
            addr,
            overrides,
        } => watch(root, parse_addr(addr)?, overrides),
        Command::Loadtest {
            root,
            target,
            scenario,
            report,
            allow_remote,
            metrics,
            compare,
            no_build,
            overrides,
        } => {
            let settings = load_settings(&root, None, &overrides)?;
            if target.is_none() && !no_build {
                build(&settings)?;
            }
            let options = kiln::loadtest::LoadtestOptions {
                target,
                scenario,
                report,
                allow_remote,
                metrics,
                compare,
            };
            loadtest(&settings, &options)
        }
    }
}

fn loadtest(settings: &Settings, options: &kiln::loadtest::LoadtestOptions) -> Result<(), Failure> {
    use kiln::loadtest::LoadtestError;
    let verdict = kiln::loadtest::run(settings, options).map_err(|err| match err {
        LoadtestError::Target { .. }
        | LoadtestError::Metrics { .. }
        | LoadtestError::Compare { .. }
        | LoadtestError::Scenario(_)
        | LoadtestError::Routes(_)
        | LoadtestError::ClosedModel(_) => Failure::usage(err),
        other => Failure::failed(other),
    })?;
    print!("{}", verdict.text);
    if verdict.met && verdict.regressions.is_empty() {
        Ok(())
    } else {
        Err(Failure::Failed(None))
    }
}

/// Loads and validates the configuration.
fn load_settings(
    root: &Path,
    out: Option<&Path>,
    overrides: &[Override],
) -> Result<Settings, Failure> {
    let settings = Settings::load(root, overrides).and_then(|settings| match out {
        Some(out) => settings.with_out_dir(out),
        None => Ok(settings),
    });
    settings.map_err(Failure::usage)
}

/// `--addr HOST:PORT`, when given.
fn parse_addr(addr: Option<String>) -> Result<Option<std::net::SocketAddr>, Failure> {
    addr.map(|text| kiln::config::parse_addr("--addr", &text))
        .transpose()
        .map_err(Failure::usage)
}

fn init(dir: &Path, starter: kiln::init::Starter, force: bool) -> Result<(), Failure> {
    let written = kiln::init::init(dir, starter, force)
        .map_err(|problem| Failure::usage(anyhow::anyhow!("kiln init: {problem}")))?;
    let name = format!("{starter:?}").to_lowercase();
    println!(
        "created a {name} site in {} ({} files). Next:",
        display_path(dir),
        written.len()
    );
    if dir != Path::new(".") {
        println!("  cd {}", dir.display());
    }
    println!("  kiln watch     # develop, with live reload");
    println!("  kiln serve     # build into dist/ and serve it as in production");
    println!("  kiln check     # routes, templates and migrations, checked");
    Ok(())
}

fn jobs(settings: &Settings, action: JobsAction) -> Result<(), Failure> {
    use kiln::dynamic::jobs::store::Operation;
    use kiln::dynamic::jobs::{Enqueued, Jobs, JobsError, work};
    let jobs = Jobs::open_standalone(settings).map_err(Failure::usage)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Failure::failed)?;
    let refused = |err: JobsError| match err {
        JobsError::Database(_) => Failure::failed(err),
        _ => Failure::usage(err),
    };
    let outcome = runtime.block_on(async {
        match action {
            JobsAction::Enqueue { name, payload } => {
                let payload: serde_json::Value = serde_json::from_str(&payload)
                    .map_err(|err| Failure::usage(anyhow::anyhow!("--payload: {err}")))?;
                jobs.ensure().await.map_err(refused)?;
                match jobs.enqueue(&name, &payload).await.map_err(refused)? {
                    Enqueued::New(id) => println!("{id}"),
                    Enqueued::Duplicate => println!(
                        "duplicate: a job {name} with the same unique_key was enqueued within its unique_for_secs; kept that one"
                    ),
                }
            }
            JobsAction::List {
                state,
                queue,
                limit,
            } => {
                jobs.ensure().await.map_err(refused)?;
                let rows = jobs
                    .list(state.as_deref(), queue.as_deref(), limit)
                    .await
                    .map_err(refused)?;
                for row in rows {
                    println!("{row}");
                }
            }
            JobsAction::Work => work::until_stopped(settings, &jobs)
                .await
                .map_err(refused)?,
            JobsAction::Retry { id, dead } => {
                operate(&jobs, Operation::Retry, id, dead, "retried").await?
            }
            JobsAction::Cancel { id } => {
                operate(&jobs, Operation::Cancel, Some(id), false, "cancelled").await?
            }
            JobsAction::Purge { id, dead } => {
                operate(&jobs, Operation::Purge, id, dead, "purged").await?
            }
        }
        Ok(())
    });
    // A job given back at a stop may still be running its SQLite
    // statement on a blocking thread: leave it rather than wait for it
    // (its transaction never commits, and the job is ready again).
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    outcome
}

/// `kiln jobs retry|cancel|purge`: one job by id, or (`--dead`) every
/// dead one; a job in no state the operation applies to is an error.
async fn operate(
    jobs: &kiln::dynamic::jobs::Jobs,
    operation: kiln::dynamic::jobs::store::Operation,
    id: Option<i64>,
    dead: bool,
    done: &str,
) -> Result<(), Failure> {
    if id.is_none() && !dead {
        return Err(Failure::usage(anyhow::anyhow!(
            "name a job's id, or --dead for every dead job"
        )));
    }
    jobs.ensure().await.map_err(Failure::failed)?;
    let changed = jobs.operate(operation, id).await.map_err(Failure::failed)?;
    match id {
        Some(id) if changed == 0 => Err(Failure::failed(anyhow::anyhow!(
            "job {id}: none {done}: it is unknown or not in a state this applies to (see kiln jobs list)"
        ))),
        _ => {
            println!("{changed} job(s) {done}");
            Ok(())
        }
    }
}

fn cache(
    settings: &Settings,
    admin: Option<std::net::SocketAddr>,
    action: CacheAction,
) -> Result<(), Failure> {
    use kiln::dynamic::purge::Purge;
    use kiln::server::cache_control;
    let outcome = match action {
        CacheAction::Stats => cache_control::stats(settings, admin),
        CacheAction::Purge {
            all,
            tag,
            route,
            url,
        } => {
            let wanted = match (all, tag, route, url) {
                (true, None, None, None) => Purge::All,
                (false, Some(tag), None, None) => Purge::Tag(tag),
                (false, None, Some(route), None) => Purge::Route(route),
                (false, None, None, Some(url)) => Purge::Url(url),
                _ => {
                    return Err(Failure::usage(anyhow::anyhow!(
                        "kiln cache purge: name exactly one of --all, --tag, --route, --url"
                    )));
                }
            };
            cache_control::purge(settings, admin, &wanted)
        }
        CacheAction::Warm {
            mut urls,
            from,
            from_log,
            top,
        } => {
            if let Some(file) = from_log {
                let log = std::fs::read_to_string(&file)
                    .map_err(|err| Failure::usage(anyhow::anyhow!("{}: {err}", file.display())))?;
                urls.extend(cache_control::most_requested(settings, &log, top).map_err(
                    |problem| Failure::failed(anyhow::anyhow!("kiln cache: {problem}")),
                )?);
            }
            if let Some(file) = from {
                let text = std::fs::read_to_string(&file)
                    .map_err(|err| Failure::usage(anyhow::anyhow!("{}: {err}", file.display())))?;
                urls.extend(
                    text.lines()
                        .map(str::trim)
                        .filter(|line| !line.is_empty() && !line.starts_with('#'))
                        .map(str::to_string),
                );
            }
            if urls.is_empty() {
                return Err(Failure::usage(anyhow::anyhow!(
                    "kiln cache warm: no URL to warm (name URLs, --from FILE, or --from-log FILE with requests of cached routes)"
                )));
            }
            cache_control::warm_urls(settings, admin, &urls)
        }
    };
    match outcome {
        Ok(answer) => {
            print!("{answer}");
            Ok(())
        }
        Err(problem) => Err(Failure::failed(anyhow::anyhow!("kiln cache: {problem}"))),
    }
}

fn build(settings: &Settings) -> Result<(), Failure> {
    build_with(settings, kiln::build)
}

type BuildFn = fn(&Settings, &dyn kiln::Progress) -> Result<kiln::BuildReport, kiln::BuildError>;

fn build_with(settings: &Settings, run: BuildFn) -> Result<(), Failure> {
    let progress = ConsoleProgress::new();
    let result = run(settings, &progress);
    progress.finish();
    report_build(settings, result)
}

/// `kiln build --timings`: the build, then its timings page (also for a
/// failed build: where it spent its time before failing).
fn build_timed(settings: &Settings, run: BuildFn, file: Option<PathBuf>) -> Result<(), Failure> {
    let progress = ConsoleProgress::new();
    let timings = kiln::build::timings::Timings::new(&progress);
    let started = std::time::Instant::now();
    let result = run(settings, &timings);
    let total = started.elapsed();
    progress.finish();
    let file = file.unwrap_or_else(|| settings.root.join(".kiln").join("timings.html"));
    let written = file
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| std::fs::write(&file, timings.to_html(total)));
    match written {
        Ok(()) => eprintln!("timings: {}", display_path(&file)),
        Err(err) => eprintln!("timings: could not write {}: {err}", display_path(&file)),
    }
    report_build(settings, result)
}

fn report_build(
    settings: &Settings,
    result: Result<kiln::BuildReport, kiln::BuildError>,
) -> Result<(), Failure> {
    match result {
        Ok(report) => {
            for warning in &report.warnings {
                eprint!("{}", warning.as_warning());
            }
            print!("{}", report.summary(&display_path(&settings.out_dir)));
            Ok(())
        }
        Err(err) => {
            // A build error is a rendered diagnostic (code frames), printed as is.
            eprintln!("{err}");
            eprintln!(
                "build failed; {} was left as it was",
                display_path(&settings.out_dir)
            );
            Err(Failure::Failed(None))
        }
    }
}

fn watch(
    root: PathBuf,
    addr: Option<std::net::SocketAddr>,
    overrides: Vec<Override>,
) -> Result<(), Failure> {
    let options = kiln::watch::WatchOptions {
        root,
        addr,
        overrides,
    };
    match kiln::watch::run(options) {
        Ok(()) => Ok(()),
        Err(err @ kiln::watch::WatchError::Config(_)) => Err(Failure::usage(err)),
        Err(err) => Err(Failure::failed(err)),
    }
}

fn check(settings: &Settings) -> Result<(), Failure> {
    let report = kiln::server::check(settings)
        .with_context(|| format!("checking the site at {}", display_path(&settings.root)))
        .map_err(|err| Failure::Failed(Some(err)))?;
    for warning in &report.warnings {
        eprintln!("warning: {warning}");
    }
    if !report.applied.is_empty() {
        eprintln!(
            "applied {} migration(s): {}",
            report.applied.len(),
            report.applied.join(", ")
        );
    }
    println!(
        "checked {} route(s): {} warning(s)",
        report.routes,
        report.warnings.len()
    );
    if report.warnings.is_empty() {
        Ok(())
    } else {
        Err(Failure::Failed(None))
    }
}

fn serve(
    settings: &Settings,
    addr: Option<std::net::SocketAddr>,
    workers: Option<usize>,
) -> Result<(), Failure> {
    let options = ServeOptions {
        addr,
        workers,
        handle_signals: true,
        ..ServeOptions::default()
    };
    let server = kiln::server::start(settings, options)
        .with_context(|| format!("serving {}", display_path(&settings.out_dir)))
        .map_err(|err| Failure::Failed(Some(err)))?;
    let stats = server.table_stats();
    eprintln!(
        "kiln: serving {} at {} ({} files, {} in memory); Ctrl-C stops",
        display_path(&settings.out_dir),
        server.base_url(),
        stats.resources,
        human_size(stats.memory_bytes)
    );
    server.wait().map_err(Failure::failed)
}

/// The library logs through `tracing`; the binary prints its events on
/// standard error as it always has: `warning: …` for warnings, `kiln: …`
/// for the rest (no timestamps: a service manager adds its own). Only
/// kiln's own events: actix-server's (workers starting, signals) are not
/// part of kiln's output.
fn log_to_stderr() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let ours = tracing_subscriber::filter::filter_fn(|metadata| {
        metadata.target().starts_with("kiln") && *metadata.level() <= tracing::Level::INFO
    });
    // A closed standard error must not bring the server down (the layer
    // would report the failed write on standard error, and that panics).
    let lines = tracing_subscriber::fmt::layer()
        .event_format(LogLine)
        .with_writer(std::io::stderr)
        .log_internal_errors(false);
    tracing_subscriber::registry()
        .with(tracing_subscriber::Layer::with_filter(lines, ours))
        .init();
}

struct LogLine;

impl<S, N> tracing_subscriber::fmt::FormatEvent<S, N> for LogLine
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        context: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let prefix = if *event.metadata().level() == tracing::Level::WARN {
            "warning"
        } else {
            "kiln"
        };
        write!(writer, "{prefix}: ")?;
        tracing_subscriber::fmt::FormatFields::format_fields(context, writer.by_ref(), event)?;
        writeln!(writer)
    }
}
