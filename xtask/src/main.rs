//! Project automation for memha, run as `cargo xtask <command>`.
//!
//! - `cargo xtask test [ARGS...]`: makes sure memcached is installed, then
//!   runs `cargo test --workspace [ARGS...]`.
//! - `cargo xtask ci`: formatting check, no module import cycle in any
//!   crate, clippy, the tests, and the docs, all with warnings as errors;
//!   prints the time each step took.
//! - `cargo xtask modules`: that module check alone.
//! - `cargo xtask bench [ARGS...]`: makes sure memcached is installed, then
//!   runs the side-by-side client comparison (`benches/benches/compare.rs`)
//!   against real memcached servers and prints a table with the ratios:
//!   the single-node clients on one node, and memha replicated over three
//!   (sets to all, gets from two) against them. ARGS go to the comparison:
//!   `--duration SECS`, `--runs N`, `--gets N`, `--peers LIST` (default
//!   `memha,memha-replicated,async-memcached,memcache`; the diagnostics
//!   `memha-connection`, `memha-bare`, `memha-layered` show what the bare
//!   connection, the node stack and a user layer on it cost).
//! - `cargo xtask bench --faults [ARGS...]`: makes sure memcached is
//!   installed, then runs the faults benchmark (`benches/benches/faults.rs`):
//!   a 64-task mixed workload on 3 real memcached nodes, each behind a fault
//!   proxy, while node 0 is killed, paused, blackholed and restarted empty
//!   in turn; prints per configuration (the library defaults, and ack All
//!   with a 1 s timeout) a table of ops, p50, p99, p99.9, max and errors by
//!   kind for each fault, phase (before, during, after) and operation.
//!   ARGS: `--fault kill|pause|blackhole|restart-empty|all`,
//!   `--phase-secs N`, `--config default|all|both`.
//! - `cargo xtask demo`: makes sure memcached is installed, then runs the
//!   session-store demo (`crates/memha-client/examples/session_demo.rs`):
//!   3 local nodes, one killed and one restarted empty under load, ending
//!   with a one-line summary of what was written, read back and lost.
//! - `cargo xtask chaos [--seconds N] [--seed S] [ARGS...]`: makes sure
//!   memcached is installed, then runs the chaos and consistency suite
//!   (`tests/chaos`, a release build): a 64-task session workload on 3 to
//!   5 real memcached nodes under a seeded fault schedule, checked by a
//!   history checker; prints a summary ending in `violations: N` and fails
//!   when N > 0. ARGS: `--nodes 3..5`, `--tasks N`, `--show N`,
//!   `--clients M` (M clients in one process, each reaching every node
//!   through its own fault proxy, so faults may cut off some clients only;
//!   default 1), `--single-fault` (at most one faulty node at a time).

mod memcached;
mod modules;

use std::env;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  test [ARGS...]   install memcached if missing, then `cargo test --workspace [ARGS...]`
  ci               fmt check, module cycles, clippy, tests and docs, warnings as errors
  modules          check that no crate has a cycle of module imports
  bench [ARGS...]  memha side by side with async-memcached and memcache against one
                   real memcached, and memha replicated over three against them
                   (ARGS: --duration SECS --runs N --gets N --peers LIST)
  bench --faults [ARGS...]
                   latency and errors of a mixed workload on 3 memcached nodes before,
                   during and after each fault on one node (ARGS: --fault kill|pause|
                   blackhole|restart-empty|all --phase-secs N --config default|all|both)
  demo             a session store on 3 local memcached nodes surviving a killed node
                   and a node restarted empty
  chaos [--seconds N] [--seed S] [ARGS...]
                   the chaos suite: a session workload on real memcached nodes under
                   seeded faults, checked by a history checker (ARGS: --nodes 3..5
                   --tasks N --show N --clients M --single-fault)";

fn main() -> ExitCode {
    let mut args = env::args_os().skip(1);
    let command = args.next();
    let rest: Vec<OsString> = args.collect();
    let result = match command.as_ref().and_then(|c| c.to_str()) {
        Some("test") => test(&rest),
        Some("ci") if rest.is_empty() => ci(),
        Some("modules") if rest.is_empty() => no_module_cycles(),
        Some("bench") => bench(&rest),
        Some("demo") if rest.is_empty() => demo(),
        Some("chaos") => chaos(&rest),
        Some("help" | "-h" | "--help") => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

/// `cargo xtask test`: memcached, then the workspace tests.
fn test(extra: &[OsString]) -> Result<(), String> {
    ensure_memcached()?;
    run_tests(extra)
}

/// `cargo xtask bench`: memcached, then the client comparison, or with
/// `--faults` first, the faults benchmark.
fn bench(extra: &[OsString]) -> Result<(), String> {
    ensure_memcached()?;
    let (bench, extra) = match extra.split_first() {
        Some((first, rest)) if first == "--faults" => ("faults", rest),
        _ => ("compare", extra),
    };
    cargo_passing(&["bench", "-p", "memha-benches", "--bench", bench], extra)
}

/// `cargo xtask demo`: memcached, then the session-store example. A debug
/// build: its first compile is faster than a release one, and the demo runs
/// for a fixed time either way.
fn demo() -> Result<(), String> {
    ensure_memcached()?;
    cargo(
        &["run", "-p", "memha-client", "--example", "session_demo"],
        &[],
    )
}

/// `cargo xtask chaos`: memcached, then one run of the chaos suite.
fn chaos(extra: &[OsString]) -> Result<(), String> {
    ensure_memcached()?;
    cargo_passing(&["run", "--release", "-p", "memha-chaos"], extra)
}

/// Runs cargo with `args`, passing `extra` on to the program it runs.
fn cargo_passing(args: &[&str], extra: &[OsString]) -> Result<(), String> {
    let args: Vec<OsString> = args
        .iter()
        .map(OsString::from)
        .chain([OsString::from("--")])
        .chain(extra.iter().cloned())
        .collect();
    cargo(&args, &[])
}

/// `cargo xtask ci`: every check, timed.
fn ci() -> Result<(), String> {
    let started = Instant::now();
    step("fmt", || cargo(&["fmt", "--all", "--", "--check"], &[]))?;
    step("default-deps", no_aws_by_default)?;
    step("modules", no_module_cycles)?;
    step("clippy", || {
        cargo(
            &[
                "clippy",
                "--workspace",
                "--all-targets",
                "--all-features",
                "--",
                "-D",
                "warnings",
            ],
            &[],
        )
    })?;
    step("memcached", ensure_memcached)?;
    step("test", || run_tests(&[]))?;
    step("doc", || {
        cargo(
            &["doc", "--workspace", "--no-deps", "--all-features"],
            &[("RUSTDOCFLAGS", "-D warnings")],
        )
    })?;
    println!("ci passed in {}", seconds(started.elapsed()));
    Ok(())
}

/// No crate has a cycle of module imports (see `modules.rs`).
fn no_module_cycles() -> Result<(), String> {
    let srcs = modules::crate_sources(&workspace_root())?;
    let cycles = modules::cycles(&srcs)?;
    if cycles.is_empty() {
        println!("no module import cycle in {} crates", srcs.len());
        return Ok(());
    }
    Err(format!("module import cycles:\n  {}", cycles.join("\n  ")))
}

/// The default build pulls in neither the AWS SDK (memha-discovery's
/// `elasticache` feature) nor a crypto stack (memha-client's `tls`): no
/// crate named `aws-*` in the normal dependencies of the default features.
fn no_aws_by_default() -> Result<(), String> {
    let args = [
        "tree",
        "-p",
        "memha-discovery",
        "-p",
        "memha-client",
        "-e",
        "normal",
        "--prefix",
        "none",
    ];
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(&cargo)
        .args(args)
        .current_dir(workspace_root())
        .output()
        .map_err(|err| format!("could not run `cargo {}`: {err}", args.join(" ")))?;
    if !output.status.success() {
        return Err(format!(
            "`cargo {}` failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let tree = String::from_utf8_lossy(&output.stdout);
    let mut aws: Vec<&str> = tree
        .lines()
        .filter(|line| line.starts_with("aws-"))
        .collect();
    aws.sort_unstable();
    aws.dedup();
    if aws.is_empty() {
        println!("no aws-* crate in the default build");
        Ok(())
    } else {
        Err(format!(
            "the default build depends on {}: keep the AWS SDK behind the `elasticache` \
             feature and TLS behind `tls`",
            aws.join(", ")
        ))
    }
}

/// Runs one named step, printing its name and how long it took.
fn step(name: &str, run: impl FnOnce() -> Result<(), String>) -> Result<(), String> {
    println!("==> {name}");
    let started = Instant::now();
    let result = run();
    let took = seconds(started.elapsed());
    match &result {
        Ok(()) => println!("<== {name} ok in {took}"),
        Err(_) => println!("<== {name} FAILED after {took}"),
    }
    result
}

fn ensure_memcached() -> Result<(), String> {
    let binary = memcached::ensure_installed()?;
    println!("using {}", binary.display());
    Ok(())
}

fn run_tests(extra: &[OsString]) -> Result<(), String> {
    let mut args: Vec<OsString> =
        vec!["test".into(), "--workspace".into(), "--all-features".into()];
    args.extend(extra.iter().cloned());
    cargo(&args, &[])
}

/// Runs `cargo ARGS` at the workspace root with extra environment variables.
fn cargo<S: AsRef<std::ffi::OsStr>>(args: &[S], envs: &[(&str, &str)]) -> Result<(), String> {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(&cargo);
    command
        .args(args)
        .current_dir(workspace_root())
        .envs(envs.iter().copied());
    let shown = display(&command);
    let status = command
        .status()
        .map_err(|err| format!("could not run `{shown}`: {err}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{shown}` failed ({status})"))
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace root")
        .to_path_buf()
}

/// The command line, for messages.
fn display(command: &Command) -> String {
    let mut shown: Vec<String> = command
        .get_envs()
        .filter_map(|(key, value)| {
            Some(format!(
                "{}={:?}",
                key.to_string_lossy(),
                value?.to_string_lossy()
            ))
        })
        .collect();
    shown.push("cargo".to_owned());
    shown.extend(
        command
            .get_args()
            .map(|arg| arg.to_string_lossy().into_owned()),
    );
    shown.join(" ")
}

fn seconds(elapsed: Duration) -> String {
    format!("{:.1}s", elapsed.as_secs_f64())
}
