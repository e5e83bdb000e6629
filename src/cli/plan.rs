//! `wiremesh plan`: a node's peers, AllowedIPs, endpoints and routes, as a table, JSON or a
//! `wg setconf` file.

use crate::core::plan::Plan;
use crate::core::topology::Topology;
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Wg,
}

#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    /// Topology file.
    #[arg(long, short)]
    pub topology: PathBuf,
    /// Node to plan for; all nodes when absent (table and JSON only).
    #[arg(long, short)]
    pub node: Option<String>,
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    /// Same as `--format json`.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: PlanArgs) -> anyhow::Result<()> {
    let topo = Topology::load(&args.topology)?;
    let names: Vec<String> = match &args.node {
        Some(n) => vec![n.clone()],
        None => topo.nodes.iter().map(|n| n.name.clone()).collect(),
    };
    let plans = names
        .iter()
        .map(|n| Plan::compute(&topo, n))
        .collect::<Result<Vec<_>, _>>()?;
    let format = if args.json { Format::Json } else { args.format };
    match format {
        Format::Json if args.node.is_some() => {
            println!("{}", serde_json::to_string_pretty(&plans[0])?)
        }
        Format::Json => println!("{}", serde_json::to_string_pretty(&plans)?),
        Format::Wg => {
            anyhow::ensure!(plans.len() == 1, "--format wg needs --node");
            print!("{}", plans[0].to_wg_config(None));
        }
        Format::Table => {
            for (i, p) in plans.iter().enumerate() {
                if i > 0 {
                    println!();
                }
                print!("{}", p.to_table());
            }
        }
    }
    Ok(())
}
