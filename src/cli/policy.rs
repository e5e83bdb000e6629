//! `wiremesh policy explain | check`: what a topology's policy does to one packet, and what is
//! suspicious in it, without a running mesh (docs/policy.md, section 7).

use crate::core::policy::explain::{explain, packet, parse_target};
use crate::core::policy::lint::{lint, Severity};
use crate::core::policy::{compile, Policy};
use crate::core::topology::{Document, Topology};
use crate::engine::control_message::CONTROL_PORT;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct PolicyArgs {
    #[command(subcommand)]
    pub command: PolicyCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum PolicyCommand {
    /// Print the decision a packet from SRC to DST gets, and the rule that makes it.
    Explain(ExplainArgs),
    /// Lint the policy: shadowed rules, rules that match nothing, denials that cut DNS; exits
    /// non-zero on an error.
    Check(CheckArgs),
}

#[derive(Debug, clap::Args)]
pub struct ExplainArgs {
    /// Topology file.
    #[arg(long, short)]
    pub topology: PathBuf,
    /// The source: an address, or a node name (its overlay address).
    pub src: String,
    /// The destination: `ADDR` or `NODE`, then optionally `:PORT` and `/tcp` (the default) or
    /// `/udp`; an IPv6 address with a port as `[ADDR]:PORT`. Without a port: an ICMP echo.
    pub dst: String,
}

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Topology file.
    #[arg(long, short)]
    pub topology: PathBuf,
    /// Fail on warnings too.
    #[arg(long)]
    pub strict: bool,
}

pub fn run(args: PolicyArgs) -> anyhow::Result<()> {
    match args.command {
        PolicyCommand::Explain(a) => run_explain(a),
        PolicyCommand::Check(a) => run_check(a),
    }
}

fn load(path: &std::path::Path) -> anyhow::Result<(Document, Policy)> {
    let doc = Topology::load_with_policy(path)?;
    let policy = compile(&doc, None).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok((doc, policy))
}

fn run_explain(args: ExplainArgs) -> anyhow::Result<()> {
    let (doc, policy) = load(&args.topology)?;
    let target = parse_target(&args.dst)?;
    let pkt = packet(&args.src, &target, &doc.topology)?;
    print!("{}", explain(&policy, pkt));
    Ok(())
}

fn run_check(args: CheckArgs) -> anyhow::Result<()> {
    let (doc, policy) = load(&args.topology)?;
    let lints = lint(&doc, &policy, CONTROL_PORT);
    for l in &lints {
        println!("{}: {l}", args.topology.display());
    }
    let count = |s| lints.iter().filter(|l| l.severity == s).count();
    let (errors, warnings, notes) = (
        count(Severity::Error),
        count(Severity::Warning),
        count(Severity::Note),
    );
    println!(
        "{}: {} rule(s), default-action = \"{}\": {errors} error(s), {warnings} warning(s), \
         {notes} note(s)",
        args.topology.display(),
        policy.rules.len(),
        match policy.default_action {
            crate::core::policy::DefaultAction::Allow => "allow",
            crate::core::policy::DefaultAction::Deny => "deny",
        }
    );
    if errors > 0 || (args.strict && warnings > 0) {
        anyhow::bail!(
            "{}: policy check failed: {errors} error(s), {warnings} warning(s)",
            args.topology.display()
        );
    }
    Ok(())
}
