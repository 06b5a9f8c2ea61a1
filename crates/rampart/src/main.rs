//! `rampart`: one binary for the whole system.
//!
//! - `rampart serve -c FILE`: run the edge (SIGHUP reloads, SIGTERM/SIGINT drain and stop);
//! - `rampart check -c FILE`: validate a configuration as `serve` would, printing every
//!   problem with file:line:col, what was expected and a hint (exit 0 valid, 1 invalid);
//! - `rampart reload -c FILE`: ask a running edge (through its admin endpoint) to reload;
//! - `rampart flood -c FILE [list | pin | unpin | cancel SITE RULE]`: a running edge's
//!   automatic flood rules and baselines (through its admin endpoint);
//! - `rampart waf check PATH`: read and compile a SecLang ruleset (a file or a CRS
//!   `rules/` directory), printing every problem and every rule that cannot run;
//! - `rampart waf test --crs DIR`: run CRS's regression suite in-process and print
//!   per-file failures and `N passed, M failed`.
//! - `rampart explain -c FILE [REQUEST]`: the decision the edge would take for a raw HTTP
//!   request (a file, or standard input), with every verdict in order;
//! - `rampart report EVENTS`: per day, how many requests each rule, limit and list
//!   blocked or would have blocked, with examples (the onboarding report);
//! - `rampart policy fields`: the fields and functions rule expressions can use;
//! - `rampart geo asn-mmdb --csv FILE… -o OUT`: an ASN database in MaxMind format from
//!   the free CSV tables.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use rampart_edge::EdgeError;

/// mimalloc: the request path allocates small, short-lived objects on every worker
/// thread (header maps, buffers); mimalloc's thread-local free lists serve them faster
/// than glibc's arenas (see BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "rampart",
    version,
    about = "Rampart: web application and API protection on any port"
)]
struct Cli {
    /// Diagnostic log format (the access log is always JSON lines).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the edge.
    Serve {
        /// Configuration file.
        #[arg(short, long)]
        config: PathBuf,
    },
    /// Validate a configuration file (syntax, references, certificates) and exit.
    Check {
        /// Configuration file.
        #[arg(short, long)]
        config: PathBuf,
    },
    /// Ask a running edge to reload its configuration (via the admin endpoint).
    Reload {
        /// Configuration file (its `[edge] admin` address is used).
        #[arg(short, long)]
        config: PathBuf,
    },
    /// A running edge's automatic flood rules: list them, pin, unpin or cancel one (via
    /// the admin endpoint).
    Flood {
        /// Configuration file (its `[edge] admin` address is used).
        #[arg(short, long)]
        config: PathBuf,
        #[command(subcommand)]
        command: Option<FloodCommand>,
    },
    /// The WAF engine: check rulesets, run the CRS regression suite.
    Waf {
        #[command(subcommand)]
        command: WafCommand,
    },
    /// Print the decision the edge would take for a raw HTTP request, with its trace.
    Explain {
        /// Configuration file.
        #[arg(short, long)]
        config: PathBuf,
        /// The request as sent (head and body); standard input when absent.
        request: Option<PathBuf>,
        /// The client's address.
        #[arg(long, default_value = "192.0.2.1")]
        client_ip: std::net::IpAddr,
        /// The listener it arrives on (default: the first HTTP listener).
        #[arg(long)]
        listener: Option<String>,
        /// Also run the response rules, as if the origin answered with this status.
        #[arg(long)]
        response_status: Option<u16>,
    },
    /// The onboarding report: per day, requests each rule, limit and list blocked or
    /// would have blocked, from a security log.
    Report {
        /// The security log (JSON lines); standard input when absent.
        events: Option<PathBuf>,
    },
    /// Policies: the reference of rule expressions.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Geo databases.
    Geo {
        #[command(subcommand)]
        command: GeoCommand,
    },
}

#[derive(Subcommand)]
enum FloodCommand {
    /// Every site's state (baseline, current rate, attack) and automatic rules.
    List,
    /// Keep a rule after the attack ends (until cancelled).
    Pin {
        /// Site id.
        site: String,
        /// Rule id (`auto-SITE-N`).
        rule: String,
    },
    /// Let a pinned rule expire again.
    Unpin {
        /// Site id.
        site: String,
        /// Rule id.
        rule: String,
    },
    /// Withdraw a rule now.
    Cancel {
        /// Site id.
        site: String,
        /// Rule id.
        rule: String,
    },
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// List the fields and functions of rule expressions.
    Fields,
}

#[derive(Subcommand)]
enum GeoCommand {
    /// Build an ASN database (MaxMind format) from CSV tables of
    /// `first,last,asn,organisation` rows (as the `@ip-location-db/asn` package ships).
    AsnMmdb {
        /// CSV tables (IPv4 and IPv6).
        #[arg(long, required = true)]
        csv: Vec<PathBuf>,
        /// The database to write.
        #[arg(short, long)]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum WafCommand {
    /// Read and compile a SecLang ruleset; print every problem (exit 1 if any).
    Check {
        /// A rule file, or a directory whose *.conf files are read in name order.
        path: PathBuf,
    },
    /// Run the CRS regression suite (go-ftw YAML) in-process.
    Test {
        /// The CRS directory (with rules/, tests/regression/tests/ and crs-setup.conf.example).
        #[arg(long)]
        crs: PathBuf,
        /// Only tests whose name (RULE-TEST) matches this regular expression.
        #[arg(long)]
        filter: Option<String>,
        /// A TOML file of excluded tests: `"RULE-TEST" = "reason"`.
        #[arg(long)]
        exclusions: Option<PathBuf>,
    },
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RAMPART_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let result = match cli.command {
        Command::Check { config } => check(&config),
        Command::Serve { config } => serve(config),
        Command::Reload { config } => reload(&config),
        Command::Flood { config, command } => flood(&config, command),
        Command::Waf {
            command: WafCommand::Check { path },
        } => waf_check(&path),
        Command::Waf {
            command:
                WafCommand::Test {
                    crs,
                    filter,
                    exclusions,
                },
        } => waf_test(&crs, filter.as_deref(), exclusions.as_deref()),
        Command::Explain {
            config,
            request,
            client_ip,
            listener,
            response_status,
        } => explain(
            &config,
            request.as_deref(),
            client_ip,
            listener,
            response_status,
        ),
        Command::Report { events } => report_events(events.as_deref()),
        Command::Policy {
            command: PolicyCommand::Fields,
        } => policy_fields(),
        Command::Geo {
            command: GeoCommand::AsnMmdb { csv, out },
        } => asn_mmdb(&csv, &out),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn report(e: &EdgeError) {
    match e {
        EdgeError::Config(d) => eprintln!("{d}"),
        other => eprintln!("error: {other}"),
    }
}

fn check(path: &std::path::Path) -> anyhow::Result<ExitCode> {
    match rampart_edge::check(path) {
        Ok(cfg) => {
            println!(
                "{}: OK ({} tenant(s), {} listener(s), {} site(s), {} pool(s), {} certificate(s))",
                path.display(),
                cfg.tenants.len(),
                cfg.listeners.len(),
                cfg.sites.len(),
                cfg.pools.len(),
                cfg.certificates.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            report(&e);
            Ok(ExitCode::FAILURE)
        }
    }
}

fn serve(path: PathBuf) -> anyhow::Result<ExitCode> {
    let cfg = match rampart_edge::check(&path) {
        Ok(c) => c,
        Err(e) => {
            report(&e);
            return Ok(ExitCode::FAILURE);
        }
    };
    // The control thread: signals, admin endpoint, reloads, health checks. The data
    // plane runs on the edge's own worker threads (`[edge] workers`).
    let _ = cfg;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_name("rampart-control")
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async move {
        let edge = match rampart_edge::Edge::start(&path).await {
            Ok(e) => e,
            Err(e) => {
                report(&e);
                return Ok(ExitCode::FAILURE);
            }
        };
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .context("SIGHUP handler")?;
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("SIGTERM handler")?;
        let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
            .context("SIGINT handler")?;
        loop {
            tokio::select! {
                _ = hup.recv() => {
                    tracing::info!("SIGHUP: reloading configuration");
                    if let Err(e) = edge.reload().await {
                        report(&e);
                    }
                }
                _ = term.recv() => break,
                _ = int.recv() => break,
            }
        }
        let deadline = edge.current().config.edge.drain_timeout;
        tracing::info!(
            deadline_ms = deadline.as_millis() as u64,
            "draining in-flight requests"
        );
        let left = edge.shutdown(deadline).await;
        if left > 0 {
            tracing::warn!(
                connections = left,
                "drain deadline reached; closing remaining connections"
            );
        } else {
            tracing::info!("drained; exiting");
        }
        Ok(ExitCode::SUCCESS)
    })
}

fn reload(path: &std::path::Path) -> anyhow::Result<ExitCode> {
    let Some((ok, body)) = admin_request(path, "POST", "/-/reload")? else {
        return Ok(ExitCode::FAILURE);
    };
    if ok {
        print!("{body}");
        Ok(ExitCode::SUCCESS)
    } else {
        eprint!("{body}");
        Ok(ExitCode::FAILURE)
    }
}

fn flood(path: &std::path::Path, command: Option<FloodCommand>) -> anyhow::Result<ExitCode> {
    let (method, target) = match &command {
        None | Some(FloodCommand::List) => ("GET", "/-/flood".to_owned()),
        Some(FloodCommand::Pin { site, rule }) => ("POST", format!("/-/flood/{site}/{rule}/pin")),
        Some(FloodCommand::Unpin { site, rule }) => {
            ("POST", format!("/-/flood/{site}/{rule}/unpin"))
        }
        Some(FloodCommand::Cancel { site, rule }) => {
            ("POST", format!("/-/flood/{site}/{rule}/cancel"))
        }
    };
    let Some((ok, body)) = admin_request(path, method, &target)? else {
        return Ok(ExitCode::FAILURE);
    };
    if !ok {
        eprint!("{body}");
        return Ok(ExitCode::FAILURE);
    }
    let v: serde_json::Value =
        serde_json::from_str(body.trim()).context("the admin endpoint's answer is not JSON")?;
    if method == "POST" {
        println!(
            "{} {}: pinned {}, cancelled {}",
            v["id"].as_str().unwrap_or("?"),
            v["expression"].as_str().unwrap_or(""),
            v["pinned"],
            v["cancelled"]
        );
        return Ok(ExitCode::SUCCESS);
    }
    for site in v["sites"].as_array().into_iter().flatten() {
        println!(
            "site {} ({}): {}, baseline {} req/s, now {} req/s{}",
            site["site"].as_str().unwrap_or("?"),
            site["tenant"].as_str().unwrap_or("?"),
            if site["under_attack"] == true {
                "UNDER ATTACK"
            } else {
                "normal"
            },
            site["baseline_rps"],
            site["rate_rps"],
            if site["learned"] == true {
                ""
            } else {
                " (still learning)"
            }
        );
        for r in site["rules"].as_array().into_iter().flatten() {
            println!(
                "  {} [{} {}{}] {} — baseline share {}, hits {}, stopped {}, passed {}, since {}",
                r["id"].as_str().unwrap_or("?"),
                r["action"].as_str().unwrap_or("?"),
                r["mode"].as_str().unwrap_or("?"),
                if r["pinned"] == true { ", pinned" } else { "" },
                r["expression"].as_str().unwrap_or(""),
                r["baseline_share"],
                r["hits"],
                r["stopped"],
                r["passed"],
                r["created"].as_str().unwrap_or("?"),
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Sends `method target` to the admin endpoint named in the configuration `path`;
/// whether it answered 200, and its body. `None` when the configuration is invalid (the
/// diagnostics are printed).
fn admin_request(
    path: &std::path::Path,
    method: &str,
    target: &str,
) -> anyhow::Result<Option<(bool, String)>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let source = rampart_core::config::SourceFile::new(path.display().to_string(), text);
    let cfg = match rampart_core::config::load_str(&source) {
        Ok(c) => c,
        Err(d) => {
            eprintln!("{d}");
            return Ok(None);
        }
    };
    let Some(admin) = cfg.edge.admin else {
        bail!(
            "{} has no [edge] admin address; send SIGHUP to the rampart process instead",
            path.display()
        );
    };
    let connect_to = if admin.ip().is_unspecified() {
        std::net::SocketAddr::new([127, 0, 0, 1].into(), admin.port())
    } else {
        admin
    };
    let mut s = std::net::TcpStream::connect_timeout(&connect_to, Duration::from_secs(5))
        .with_context(|| format!("cannot reach the admin endpoint at {connect_to}"))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    write!(
        s,
        "{method} {target} HTTP/1.1\r\nHost: {connect_to}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    Ok(Some((head.starts_with("HTTP/1.1 200"), body.to_owned())))
}

fn waf_check(path: &std::path::Path) -> anyhow::Result<ExitCode> {
    use rampart_waf::seclang::{self, OsFs};
    let loaded = seclang::load(&OsFs, path);
    for d in &loaded.diagnostics {
        eprintln!("{d}");
    }
    let rs = rampart_waf::engine::Ruleset::compile(&loaded, &OsFs);
    for e in &rs.errors {
        eprintln!("error: {e}");
    }
    for d in &rs.disabled {
        eprintln!(
            "warning: {}: rule {} does not run: {}",
            d.origin, d.id, d.reason
        );
    }
    println!(
        "{}: {} file(s), {} directive(s), {} rule(s) compiled, {} disabled, {} error(s)",
        path.display(),
        loaded.files.len(),
        loaded.directives.len(),
        rs.rule_count(),
        rs.disabled.len(),
        loaded.diagnostics.len() + rs.errors.len()
    );
    let (gated, literals) = rs.prefilter_stats();
    println!(
        "prefilter: {gated} rule(s) skipped unless one of {literals} literal(s) occurs in a value they read"
    );
    Ok(if loaded.diagnostics.is_empty() && rs.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn waf_test(
    crs: &std::path::Path,
    filter: Option<&str>,
    exclusions: Option<&std::path::Path>,
) -> anyhow::Result<ExitCode> {
    use rampart_waf::ftw;
    let rs = match ftw::harness_ruleset(crs) {
        Ok(rs) => rs,
        Err(errors) => {
            for e in errors {
                eprintln!("{e}");
            }
            bail!("the CRS ruleset at {} does not load", crs.display());
        }
    };
    for d in &rs.disabled {
        eprintln!(
            "warning: {}: rule {} does not run: {}",
            d.origin, d.id, d.reason
        );
    }
    let filter = filter
        .map(regex::Regex::new)
        .transpose()
        .context("--filter is not a valid regular expression")?;
    let excluded = match exclusions {
        Some(p) => ftw::load_exclusions(p).map_err(anyhow::Error::msg)?,
        None => Default::default(),
    };
    let files = ftw::load_tests(&crs.join("tests/regression/tests")).map_err(anyhow::Error::msg)?;
    let report = ftw::run(&rs, &files, &excluded, filter.as_ref());
    for (file, fails) in &report.failed {
        println!("{file}: {} failed", fails.len());
        for (test, reasons) in fails {
            println!("  {test}: {}", reasons.join("; "));
        }
    }
    for (test, why) in &report.skipped {
        println!("skipped {test}: {why}");
    }
    println!("{} passed, {} failed", report.passed, report.failed_count());
    Ok(if report.failed_count() == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn explain(
    config: &std::path::Path,
    request: Option<&std::path::Path>,
    client_ip: std::net::IpAddr,
    listener: Option<String>,
    response_status: Option<u16>,
) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(config)
        .with_context(|| format!("cannot read {}", config.display()))?;
    let src = rampart_core::config::SourceFile::new(config.display().to_string(), text);
    let cfg = match rampart_core::config::load_str(&src) {
        Ok(c) => c,
        Err(d) => {
            eprintln!("{d}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let mut raw = Vec::new();
    match request {
        Some(p) => {
            raw = std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?
        }
        None => {
            std::io::stdin().read_to_end(&mut raw)?;
        }
    }
    // A request typed or saved with bare LF line ends is read as if sent with CRLF.
    if !raw.windows(2).any(|w| w == b"\r\n") {
        let mut fixed = Vec::with_capacity(raw.len() + 32);
        for &b in &raw {
            if b == b'\n' {
                fixed.push(b'\r');
            }
            fixed.push(b);
        }
        raw = fixed;
    }
    let input = rampart_edge::explain::Input {
        raw,
        client_ip,
        listener,
        response_status,
    };
    match rampart_edge::explain::explain(&src, &cfg, &input) {
        Ok(trace) => {
            print!("{trace}");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

fn report_events(events: Option<&std::path::Path>) -> anyhow::Result<ExitCode> {
    let report = match events {
        Some(p) => {
            let f =
                std::fs::File::open(p).with_context(|| format!("cannot read {}", p.display()))?;
            rampart_edge::report::read(std::io::BufReader::new(f))?
        }
        None => rampart_edge::report::read(std::io::stdin().lock())?,
    };
    println!("{report}");
    Ok(ExitCode::SUCCESS)
}

fn policy_fields() -> anyhow::Result<ExitCode> {
    use rampart_policy::expr::{FIELDS, FUNCTIONS};
    println!("fields:");
    for f in FIELDS {
        let when = if f.response { " (response)" } else { "" };
        println!("  {:<30} {:<24} {}{when}", f.name, f.ty.name(), f.doc);
    }
    println!("functions:");
    for f in FUNCTIONS {
        println!("  {:<46} {}", f.signature, f.doc);
    }
    println!(
        "operators: == != < <= > >= (eq ne lt le gt ge), contains, starts_with, ends_with, matches (~), in {{set}} / in $list; and (&&), or (||), not (!)"
    );
    Ok(ExitCode::SUCCESS)
}

fn asn_mmdb(csv: &[PathBuf], out: &std::path::Path) -> anyhow::Result<ExitCode> {
    let mut w = rampart_policy::geo::Writer::new("GeoLite2-ASN");
    for p in csv {
        let text =
            std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?;
        match rampart_policy::geo::add_asn_csv(&mut w, &text) {
            Ok(rows) => eprintln!("{}: {rows} rows", p.display()),
            Err(e) => {
                eprintln!("{}:{}: {}", p.display(), e.line, e.message);
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    let bytes = w.finish();
    std::fs::write(out, &bytes).with_context(|| format!("cannot write {}", out.display()))?;
    eprintln!("wrote {} ({} bytes)", out.display(), bytes.len());
    Ok(ExitCode::SUCCESS)
}
