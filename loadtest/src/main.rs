//! `wsrelay-loadtest`: the load generator. Its modes (latency, throughput,
//! idle, connect) arrive with the load-testing issue; until then it says so.

fn main() {
    eprintln!("wsrelay-loadtest: not built yet (see the load-testing issue); nothing was run");
    std::process::exit(2);
}
