//! The `wsrelay` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "wsrelay", version, about = "A shard-per-core WebSocket relay")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the data plane (and the admin port).
    Serve {
        /// TOML configuration file; every key is optional.
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("WSRELAY_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("WSRELAY_LOG_FORMAT").as_deref() == Ok("json") {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    init_logging();
    match cli.command {
        Command::Serve { config } => {
            let cfg = match wsrelay::config::Config::load(config.as_deref()) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("wsrelay: {e}");
                    return ExitCode::from(2);
                }
            };
            match wsrelay::admin::serve::run(cfg, config) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("wsrelay: {e}");
                    ExitCode::from(2)
                }
            }
        }
    }
}
