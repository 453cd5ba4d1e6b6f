//! The `kiln` command line: parses arguments and hands off to the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

// lightningcss allocates heavily; mimalloc makes the CSS stage ~25% faster
// than the system allocator (see BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use kiln::build::report::ConsoleProgress;
use kiln::{Override, Settings};

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
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Build {
            root,
            out,
            overrides,
        } => run_build(&root, out.as_deref(), &overrides),
    }
}

fn run_build(
    root: &std::path::Path,
    out: Option<&std::path::Path>,
    overrides: &[Override],
) -> ExitCode {
    let settings = match load_settings(root, out, overrides) {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(2);
        }
    };
    let progress = ConsoleProgress::new();
    let result = kiln::build(&settings, &progress);
    progress.finish();
    match result {
        Ok(report) => {
            let label = kiln::diagnostic::display_path(&settings.out_dir);
            print!("{}", report.summary(&label));
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("{err}");
            eprintln!(
                "build failed; {} was left as it was",
                kiln::diagnostic::display_path(&settings.out_dir)
            );
            ExitCode::FAILURE
        }
    }
}

fn load_settings(
    root: &std::path::Path,
    out: Option<&std::path::Path>,
    overrides: &[Override],
) -> Result<Settings, kiln::config::ConfigError> {
    let settings = Settings::load(root, overrides)?;
    match out {
        Some(out) => settings.with_out_dir(out),
        None => Ok(settings),
    }
}
