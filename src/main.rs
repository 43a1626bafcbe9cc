//! The `strata` binary: parse the command line (with config.yaml and `--set` folded in by `options`),
//! check it into a `Config`, set up logging, run the proxy, and turn the outcome into an exit code (2 for
//! any startup problem, as for a bad flag).

use std::ffi::OsString;
use std::io::Write;
use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use strata::addons::har;
use strata::cli::Cli;
use strata::config::Config;
use strata::options::{self, Start};
use tracing_subscriber::EnvFilter;

// mimalloc: glibc's allocator showed up in profiles as lock contention between the runtime's worker
// threads (per-request head and header allocations); mimalloc's thread-local heaps avoid it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|arg| arg == har::WRITER_PROCESS_ARG) {
        return ExitCode::from(har::run_writer_process(&args[2..]));
    }
    // The user's own words first: --help, --version and clap's errors end here, with clap's exit codes.
    let given = Cli::command().get_matches_from(&args);
    let expanded = match options::expand(&args, &given) {
        Ok(Start::Run(expanded)) => expanded,
        Ok(Start::Describe(text)) => {
            // A closed stdout (`strata --options | head`) is not an error worth reporting.
            let _ = std::io::stdout().write_all(text.as_bytes());
            return ExitCode::SUCCESS;
        }
        Err(e) => return fail(&e),
    };
    let cli = Cli::parse_from(expanded.argv);
    // Scripts declare their own options: what no built-in option claimed goes to them.
    let config = match Config::from_cli(&cli, &expanded.unclaimed) {
        Ok(config) => config,
        Err(e) => return fail(&e),
    };
    init_logging(config.verbose);
    // --save-har writes through a process of this binary's own, which a kill of this one cannot tear.
    if let Ok(exe) = std::env::current_exe() {
        har::use_writer_process(exe);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => return fail(&e),
    };
    match runtime.block_on(strata::server::run(config)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => fail(&e),
    }
}

fn fail(e: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::from(2)
}

/// Logs go to stderr (stdout is for flow lines): warn by default, -v debug, -vv trace; RUST_LOG wins.
fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "strata=debug,warn",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(ansi)
        .init();
}
