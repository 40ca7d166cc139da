//! `memha-chaos --seconds N --seed S [--nodes 3..5] [--tasks N] [--show N]
//! [--clients M] [--single-fault]`: one chaos run, its summary on standard
//! output, ending in `violations: N`. Exits 1 when a promise was broken, 2 on bad arguments
//! or a set-up failure.

use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use memha_chaos::ChaosConfig;

const USAGE: &str = "usage: memha-chaos [--seconds N] [--seed S] [--nodes 3..5] [--tasks N] [--show N] [--clients M] [--single-fault]";

fn main() -> ExitCode {
    let config = match parse(std::env::args().skip(1)) {
        Ok(config) => config,
        Err(message) => {
            eprintln!("{message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let mut replay = format!(
        "--seed {} --seconds {}",
        config.seed,
        config.duration.as_secs()
    );
    if config.clients > 1 {
        replay.push_str(&format!(" --clients {}", config.clients));
    }
    if config.single_fault {
        replay.push_str(" --single-fault");
    }
    println!(
        "memha chaos: seed {} for {}s ({} nodes{}); replay with {replay}",
        config.seed,
        config.duration.as_secs(),
        config.nodes,
        if config.clients > 1 {
            format!(", {} clients", config.clients)
        } else {
            String::new()
        },
    );
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("memha-chaos: no runtime: {error}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(memha_chaos::run(config)) {
        Ok(report) => {
            print!("{report}");
            if report.violations() == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(error) => {
            eprintln!("memha-chaos: {error}");
            ExitCode::from(2)
        }
    }
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<ChaosConfig, String> {
    let mut seconds = 60u64;
    let mut seed = None;
    let mut nodes = None;
    let mut tasks = None;
    let mut show = None;
    let mut clients = None;
    let mut single_fault = false;
    while let Some(arg) = args.next() {
        let mut value = |name: &str| -> Result<u64, String> {
            let value = args.next().ok_or_else(|| format!("{name} needs a value"))?;
            value
                .parse()
                .map_err(|_| format!("{name}: not a number: {value}"))
        };
        match arg.as_str() {
            "--seconds" => seconds = value("--seconds")?,
            "--seed" => seed = Some(value("--seed")?),
            "--nodes" => nodes = Some(value("--nodes")?),
            "--tasks" => tasks = Some(value("--tasks")?),
            "--show" => show = Some(value("--show")?),
            "--clients" => clients = Some(value("--clients")?),
            "--single-fault" => single_fault = true,
            "-h" | "--help" => return Err("memha's chaos and consistency suite".to_owned()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if seconds < 3 {
        return Err("--seconds must be at least 3".to_owned());
    }
    let seed = seed.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_secs())
    });
    let mut config = ChaosConfig::new(seed, Duration::from_secs(seconds));
    if let Some(nodes) = nodes {
        if !(3..=5).contains(&nodes) {
            return Err("--nodes must be 3, 4 or 5".to_owned());
        }
        config = config.nodes(nodes as usize);
    }
    if let Some(tasks) = tasks {
        config.tasks = (tasks as usize).max(1);
    }
    if let Some(show) = show {
        config.show_violations = show as usize;
    }
    if let Some(clients) = clients {
        if !(1..=16).contains(&clients) {
            return Err("--clients must be 1 to 16".to_owned());
        }
        config = config.clients(clients as usize);
    }
    config = config.single_fault(single_fault);
    Ok(config)
}
