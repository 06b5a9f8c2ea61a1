//! `rampart-sim`: runs the attack scenarios against Rampart and the two blunt baselines
//! and prints the figures (a console line per run, then a Markdown table; `--json FILE`
//! writes them all).
//!
//! ```text
//! rampart-sim --scenarios a,b,c,d,e --defences rampart,per-ip,geo \
//!     --warmup 45 --attack 60 --cooldown 15 --users 300 --browsers 3
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use rampart_sim::{Defence, Options, Scenario};

#[derive(Parser)]
#[command(version, about = "Rampart's attack simulator")]
struct Cli {
    /// The `rampart` binary (default: beside this one).
    #[arg(long)]
    rampart: Option<PathBuf>,
    /// Scenarios: a (credential stuffing), b (scraping), c (HTTP flood), d (low-and-slow),
    /// e (challenge-solving bots).
    #[arg(long, default_value = "a,b,c,d,e")]
    scenarios: String,
    /// Defences: rampart, flood-only, per-ip, geo.
    #[arg(long, default_value = "rampart,per-ip,geo")]
    defences: String,
    /// Seconds of legitimate traffic before the attack (the baseline is learned then).
    #[arg(long, default_value_t = 45)]
    warmup: u64,
    /// Seconds of attack.
    #[arg(long, default_value_t = 60)]
    attack: u64,
    /// Seconds of legitimate traffic after the attack.
    #[arg(long, default_value_t = 10)]
    cooldown: u64,
    /// Legitimate users on their own addresses.
    #[arg(long, default_value_t = 300)]
    users: usize,
    /// Legitimate users behind one office address.
    #[arg(long, default_value_t = 40)]
    office_users: usize,
    /// API clients.
    #[arg(long, default_value_t = 5)]
    api_clients: usize,
    /// Attack size (1.0: the issue's sizes).
    #[arg(long, default_value_t = 1.0)]
    scale: f64,
    /// Headless Chromium users running the real challenge script (0: none).
    #[arg(long, default_value_t = 0)]
    browsers: usize,
    /// Think time between page views: from PACE to 4 x PACE seconds.
    #[arg(long, default_value_t = 1.0)]
    pace: f64,
    /// Write the reports as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rampart-sim: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let rampart = match cli.rampart {
        Some(p) => p,
        None => std::env::current_exe()?
            .parent()
            .map(|d| d.join("rampart"))
            .ok_or_else(|| anyhow::anyhow!("cannot find the rampart binary; pass --rampart"))?,
    };
    let scenarios = cli
        .scenarios
        .split(',')
        .map(|s| {
            Scenario::parse(s.trim()).ok_or_else(|| anyhow::anyhow!("unknown scenario `{s}` (a–e)"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let defences = cli
        .defences
        .split(',')
        .map(|s| {
            Defence::parse(s.trim()).ok_or_else(|| {
                anyhow::anyhow!("unknown defence `{s}` (rampart, flood-only, per-ip, geo)")
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let tools = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tools/browser");
    let o = Options {
        rampart,
        scenarios,
        defences,
        warmup: Duration::from_secs(cli.warmup),
        attack: Duration::from_secs(cli.attack),
        cooldown: Duration::from_secs(cli.cooldown),
        users: cli.users,
        office_users: cli.office_users,
        api_clients: cli.api_clients,
        scale: cli.scale,
        browsers: cli.browsers,
        tools,
        pace: cli.pace,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let reports = rt.block_on(rampart_sim::run(&o))?;
    println!("{}", rampart_sim::report::markdown(&reports));
    for r in &reports {
        if !r.rules.is_empty() {
            println!(
                "({}) {} rules: {}",
                r.scenario,
                r.defence,
                r.rules.join("; ")
            );
        }
        if let Some(m) = r.solver_max_per_minute {
            println!(
                "({}) {}: most requests one solving bot got through in a minute: {m}",
                r.scenario, r.defence
            );
        }
        if let Some(b) = &r.browsers {
            println!("({}) {} Chromium sample: {b}", r.scenario, r.defence);
        }
    }
    if let Some(p) = cli.json {
        let all: Vec<serde_json::Value> = reports.iter().map(|r| r.to_json()).collect();
        std::fs::write(p, serde_json::to_string_pretty(&all)?)?;
    }
    Ok(())
}
