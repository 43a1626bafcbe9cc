//! embed: a Rust program that runs strata with an addon of its own.
//!
//! The addon stamps every response with `x-served-by: embed` and keeps a count of the requests per
//! host, printed when the proxy stops. Everything else is strata as the `strata` binary runs it: the
//! same flags (`--mode`, `-p`, `-s`, ...), the same layers and built-in addons.
//!
//! ```sh
//! cargo run --example embed -- -p 8080
//! curl -x http://127.0.0.1:8080 http://example.org/   # the response carries x-served-by: embed
//! ```

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use clap::Parser;
use strata::addon::Addon;
use strata::cli::Cli;
use strata::config::Config;
use strata::flow::HttpFlow;

/// The addon: one method per event it cares about; the rest keep their no-op defaults.
#[derive(Default)]
struct Stamp {
    per_host: Mutex<BTreeMap<String, u64>>,
}

#[async_trait::async_trait]
impl Addon for Stamp {
    fn name(&self) -> &str {
        "stamp"
    }

    async fn request(&self, flow: &mut HttpFlow) {
        *self.per_host.lock().unwrap().entry(flow.request.host.clone()).or_default() += 1;
    }

    // `responseheaders` rather than `response`: headers can change before they are sent while the
    // body keeps streaming.
    async fn responseheaders(&self, flow: &mut HttpFlow) {
        if let Some(response) = &mut flow.response {
            response.headers.set("x-served-by", "embed");
        }
    }

    async fn done(&self) {
        for (host, count) in self.per_host.lock().unwrap().iter() {
            eprintln!("embed: {count:>6} requests to {host}");
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::from_cli(&cli, &[]) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let addons: Vec<Arc<dyn Addon>> = vec![Arc::new(Stamp::default())];
    match runtime.block_on(strata::server::run_with_addons(config, addons)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
