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
enum UserCommand {
    /// Add a user; the password is read from stdin (one line).
    Add {
        /// Login email.
        #[arg(long)]
        email: String,
        /// `admin` (read and write) or `viewer` (read only).
        #[arg(long, default_value = "admin", value_parser = ["admin", "viewer"])]
        role: String,
        /// Store URL; default: `DATABASE_URL`, else `sqlite://wsrelay.db`.
        #[arg(long)]
        database: Option<String>,
    },
}

/// `--database`, else `DATABASE_URL`, else the embedded default.
fn database_url(flag: Option<String>) -> String {
    flag.or_else(|| std::env::var("DATABASE_URL").ok().filter(|u| !u.is_empty()))
        .unwrap_or_else(|| "sqlite://wsrelay.db".into())
}

#[derive(Subcommand)]
enum Command {
    /// Run the data plane (and the admin port).
    Serve {
        /// TOML configuration file; every key is optional.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Binary upgrade: take the listeners of the wsrelay serving on
        /// `server.control_socket`, which then stops accepting, drains and
        /// exits 0.
        #[arg(long)]
        takeover: bool,
    },
    /// Apply the store's migrations and exit.
    Migrate {
        /// `sqlite://FILE` or `postgres://USER:PASS@HOST/DB`; default:
        /// `DATABASE_URL`, else `sqlite://wsrelay.db`.
        #[arg(long)]
        database: Option<String>,
    },
    /// Manage admin users.
    #[command(subcommand)]
    User(UserCommand),
    /// Validate what `serve` would load and print the effective
    /// configuration (secrets redacted); exit 0, or 2 naming the key.
    CheckConfig {
        /// TOML configuration file; every key is optional.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Report sysctls and limits that are under-tuned for N connections.
    CheckHost {
        /// Relayed sessions the host should carry.
        #[arg(long, default_value_t = 100_000)]
        connections: u64,
        /// Shards (for locked memory); default: one per CPU this process may use.
        #[arg(long)]
        shards: Option<u64>,
        /// Read from this directory instead of /proc (for tests).
        #[arg(long, default_value = "/proc", hide = true)]
        proc_root: PathBuf,
    },
}

/// Logs go to stderr through a writer thread: a shard never blocks on a
/// slow terminal, journald or pipe (a line that finds the queue of 64k
/// lines full is dropped and counted by tracing-appender). JSON lines carry
/// the event's fields at the top level, beside `timestamp`, `level`,
/// `target` and `message`, for log shippers. The guard flushes at exit.
fn init_logging() -> tracing_appender::non_blocking::WorkerGuard {
    use tracing_subscriber::EnvFilter;
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(65_536)
        .thread_name("log-writer")
        .finish(std::io::stderr());
    let filter = EnvFilter::try_from_env("WSRELAY_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    if std::env::var("WSRELAY_LOG_FORMAT").as_deref() == Ok("json") {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .init();
    } else {
        builder.init();
    }
    guard
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
    let _log = init_logging();
    match cli.command {
        Command::CheckConfig { config } => {
            match wsrelay::cli::check_config::check(config.as_deref()) {
                Ok(report) => {
                    print!("{report}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("wsrelay check-config: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::CheckHost {
            connections,
            shards,
            proc_root,
        } => {
            let shards = shards.unwrap_or(wsrelay::sys::allowed_cpus().len() as u64);
            if wsrelay::cli::check_host::run(&proc_root, connections, shards) {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Command::Migrate { database } => {
            let url = database_url(database);
            let shown = wsrelay::store::redact_url(&url);
            match wsrelay::store::Store::connect(&url).and_then(|s| s.migrate()) {
                Ok(n) => {
                    println!(
                        "wsrelay migrate: {shown}: applied {n} migration(s); schema up to date"
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("wsrelay migrate: {shown}: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::User(UserCommand::Add {
            email,
            role,
            database,
        }) => {
            let url = database_url(database);
            let shown = wsrelay::store::redact_url(&url);
            let mut password = String::new();
            if let Err(e) = std::io::stdin().read_line(&mut password) {
                eprintln!("wsrelay user add: cannot read the password from stdin: {e}");
                return ExitCode::from(2);
            }
            let password = password.trim_end_matches(['\r', '\n']);
            let role = wsrelay::store::Role::parse(&role).expect("clap checked the role");
            let added = wsrelay::store::Store::connect(&url)
                .and_then(|s| s.migrate().map(|_| s))
                .map_err(wsrelay::admin::auth::UserError::Store)
                .and_then(|s| {
                    wsrelay::admin::auth::add_user(
                        &s,
                        &email,
                        password,
                        role,
                        &mut wsrelay::admin::auth::hash_memory(),
                    )
                });
            match added {
                Ok(u) => {
                    println!(
                        "wsrelay user add: added {} ({}) to {shown}",
                        u.email,
                        role.as_str()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("wsrelay user add: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Serve { config, takeover } => {
            let cfg = match wsrelay::config::Config::load(config.as_deref()) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("wsrelay: {e}");
                    return ExitCode::from(2);
                }
            };
            match wsrelay::admin::start::serve::run(cfg, config, takeover) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("wsrelay: {e}");
                    ExitCode::from(2)
                }
            }
        }
    }
}
