//! `floe leaf`: the worker-id nodes a Meituan Leaf cluster keeps in ZooKeeper. `list` shows
//! them; `reclaim` deletes the idle ones so Floe can lease their ids (Leaf never frees them:
//! every pod that ever ran keeps one of the 1,024 ids). The rules of what is deleted are
//! `floe_store::registry::zookeeper::reclaim_leaf_nodes`'.

use std::fmt::Write as _;
use std::time::Duration;

use floe_core::rfc3339;
use floe_store::registry::zookeeper::{
    list_leaf_nodes, reclaim_leaf_nodes, Kept, LeafNode, ReclaimOptions, ReclaimReport,
    DEFAULT_ROOT,
};
use floe_store::registry::{RegistryError, ZookeeperConfig};

use crate::cli::Failure;

/// Floe's default `registry.namespace`.
const DEFAULT_NAMESPACE: &str = "floe";

/// The shortest `--idle`: a live Leaf process uploads its timestamp every 3 s, so a shorter
/// idle time would be a typo rather than an intent, and could delete the node of a Leaf process
/// that is merely slow to reach ZooKeeper (it keeps issuing IDs with its id meanwhile).
const MIN_IDLE: Duration = Duration::from_secs(60);

/// Options of `floe leaf`.
#[derive(Debug, clap::Args)]
pub struct LeafArgs {
    #[command(subcommand)]
    command: LeafCommand,
}

#[derive(Debug, clap::Subcommand)]
enum LeafCommand {
    /// One line per Leaf node: worker id, endpoint, last timestamp (UTC) and its age, and with
    /// --namespace or --root whether a live Floe lease holds the id.
    List(ListArgs),
    /// Delete the Leaf nodes idle for longer than --idle, so Floe can lease their worker ids;
    /// a dry run unless --yes. Keeps a node whose id a live Floe lease holds in --namespace,
    /// the --endpoint's own node, and one written since it was read.
    Reclaim(ReclaimArgs),
}

/// Where Leaf's nodes are.
#[derive(Debug, clap::Args)]
struct Target {
    /// ZooKeeper's connect string.
    #[arg(long, value_name = "HOST:PORT[,HOST:PORT…]")]
    zookeeper: String,
    /// Leaf's `leaf.name`: its nodes are /snowflake/NAME/forever/IP:PORT-SEQUENCE.
    #[arg(long, value_name = "NAME")]
    leaf_name: String,
    /// Digest credentials, if the ensemble requires them.
    #[arg(
        long,
        value_name = "USER:PASSWORD",
        env = "FLOE_ZOOKEEPER_AUTH",
        hide_env_values = true
    )]
    auth: Option<String>,
    /// Bound on connecting and on each ZooKeeper call (500ms, 5s, …).
    #[arg(long, value_name = "DURATION", default_value = "5s")]
    timeout: String,
}

/// Options of `floe leaf list`.
#[derive(Debug, clap::Args)]
struct ListArgs {
    #[command(flatten)]
    target: Target,
    /// Show Floe's leases in this namespace (`registry.namespace`; default floe when --root
    /// is given).
    #[arg(long, value_name = "NAMESPACE")]
    namespace: Option<String>,
    /// Floe's root path (`registry.key_prefix`; default /floe when --namespace is given).
    #[arg(long, value_name = "PATH")]
    root: Option<String>,
}

/// Options of `floe leaf reclaim`.
#[derive(Debug, clap::Args)]
struct ReclaimArgs {
    #[command(flatten)]
    target: Target,
    /// Delete only nodes whose stored timestamp is older than this (24h, 7days, …; at least 1m).
    #[arg(long, value_name = "DURATION")]
    idle: String,
    /// The Floe namespace whose live leases keep their ids (`registry.namespace`).
    #[arg(long, value_name = "NAMESPACE", default_value = DEFAULT_NAMESPACE)]
    namespace: String,
    /// Floe's root path (`registry.key_prefix`).
    #[arg(long, value_name = "PATH", default_value = DEFAULT_ROOT)]
    root: String,
    /// An endpoint (IP:PORT) whose node is never deleted, e.g. one a Floe node is about to
    /// take over (`registry.endpoint`).
    #[arg(long, value_name = "IP:PORT")]
    endpoint: Option<String>,
    /// Delete; without it, only print what would be deleted.
    #[arg(long)]
    yes: bool,
}

/// `floe leaf`.
pub fn run(args: LeafArgs) -> Result<(), Failure> {
    match args.command {
        LeafCommand::List(args) => list(args),
        LeafCommand::Reclaim(args) => reclaim(args),
    }
}

/// Parses a duration flag in the grammar of every Floe duration (humantime), naming the flag.
fn duration(flag: &str, text: &str) -> Result<Duration, Failure> {
    humantime::parse_duration(text.trim()).map_err(|e| {
        Failure::usage(format!(
            "{flag} `{text}`: {e}; expected a duration such as 500ms, 30s, 24h or 7days"
        ))
    })
}

/// The registry config for `target`, Floe's nodes under `root`.
fn config(
    target: &Target,
    root: &str,
    endpoint: Option<String>,
) -> Result<ZookeeperConfig, Failure> {
    let timeout = duration("--timeout", &target.timeout)?;
    if timeout.is_zero() {
        return Err(Failure::usage("--timeout must be above zero"));
    }
    Ok(ZookeeperConfig {
        root: root.to_string(),
        call_timeout: timeout,
        auth: target.auth.clone(),
        leaf_name: Some(target.leaf_name.clone()),
        endpoint,
        ..ZookeeperConfig::new(target.zookeeper.trim())
    })
}

/// Runs a ZooKeeper call on a runtime of its own.
fn block_on<T>(
    call: impl std::future::Future<Output = Result<T, RegistryError>>,
) -> Result<T, Failure> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::runtime(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(call).map_err(|e| match e {
        // A wrong input: leaf name, connect string, root, namespace.
        RegistryError::Config(message) => Failure::usage(message),
        other => Failure::runtime(other),
    })
}

/// `2days 3h 4m 5s ago`, or how far ahead of this clock.
fn age(timestamp_ms: u64, now_ms: u64) -> String {
    let whole = |ms: u64| humantime::format_duration(Duration::from_secs(ms / 1000));
    if timestamp_ms <= now_ms {
        format!("{} ago", whole(now_ms - timestamp_ms))
    } else {
        format!("{} ahead of this clock", whole(timestamp_ms - now_ms))
    }
}

/// `worker 3  10.0.0.1:8080  last 2025-01-01T00:00:00.123Z (2days ago)  version 7`.
fn describe(node: &LeafNode, now_ms: u64) -> String {
    let last = match node.timestamp_ms {
        Some(ts) => format!("last {} ({})", rfc3339(ts), age(ts, now_ms)),
        None => "last unknown (no numeric timestamp in its data)".to_string(),
    };
    format!(
        "worker {:<4}  {}  {last}  version {}",
        node.worker_id, node.endpoint, node.version
    )
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// `floe leaf list`.
fn list(args: ListArgs) -> Result<(), Failure> {
    let namespace = match (&args.namespace, &args.root) {
        (None, None) => None,
        (ns, _) => Some(ns.as_deref().unwrap_or(DEFAULT_NAMESPACE).to_string()),
    };
    let root = args.root.as_deref().unwrap_or(DEFAULT_ROOT);
    let config = config(&args.target, root, None)?;
    let nodes = block_on(list_leaf_nodes(&config, namespace.as_deref()))?;
    let now = now_ms();
    let mut out = String::new();
    for node in &nodes {
        let _ = write!(out, "{}", describe(node, now));
        if let Some(ns) = &namespace {
            match &node.floe_holder {
                Some(owner) => {
                    let _ = write!(out, "  floe lease in {ns}: held by {owner}");
                }
                None => {
                    let _ = write!(out, "  floe lease in {ns}: free");
                }
            }
        }
        out.push('\n');
    }
    print!("{out}");
    if nodes.is_empty() {
        eprintln!(
            "floe: no Leaf nodes under /snowflake/{}/forever",
            args.target.leaf_name
        );
    }
    Ok(())
}

/// `floe leaf reclaim`.
fn reclaim(args: ReclaimArgs) -> Result<(), Failure> {
    let idle = duration("--idle", &args.idle)?;
    if idle < MIN_IDLE {
        return Err(Failure::usage(format!(
            "--idle {} is below the minimum of {}: a live Leaf process uploads its timestamp every 3 s, and one that cannot reach ZooKeeper keeps issuing IDs with its worker id",
            args.idle,
            humantime::format_duration(MIN_IDLE)
        )));
    }
    let config = config(&args.target, &args.root, args.endpoint.clone())?;
    let options = ReclaimOptions {
        namespace: args.namespace.clone(),
        idle,
        dry_run: !args.yes,
    };
    let report = block_on(reclaim_leaf_nodes(&config, &options))?;
    print!("{}", render(&report, now_ms()));
    match report.kept.iter().find_map(|(_, kept)| match kept {
        Kept::Failed(why) => Some(why),
        _ => None,
    }) {
        Some(why) => Err(Failure::runtime(format!("reclaim stopped: {why}"))),
        None => Ok(()),
    }
}

/// The report, one line per node in worker-id order, then a summary.
fn render(report: &ReclaimReport, now: u64) -> String {
    let verb = if report.dry_run {
        "would delete"
    } else {
        "deleted"
    };
    let mut lines: Vec<(u32, String)> = report
        .deleted
        .iter()
        .map(|n| (n.worker_id, format!("{verb:<12}  {}", describe(n, now))))
        .chain(report.kept.iter().map(|(n, why)| {
            (
                n.worker_id,
                format!("{:<12}  {}  kept: {why}", "keep", describe(n, now)),
            )
        }))
        .collect();
    lines.sort_by_key(|(id, _)| *id);
    let mut out = String::new();
    for (_, line) in &lines {
        let _ = writeln!(out, "{line}");
    }
    let total = report.deleted.len() + report.kept.len();
    if report.dry_run {
        let _ = writeln!(
            out,
            "dry run: would delete {} of {total} Leaf nodes; run again with --yes to delete them",
            report.deleted.len()
        );
    } else {
        let _ = writeln!(
            out,
            "deleted {} of {total} Leaf nodes; their worker ids are free for Floe in namespace {}",
            report.deleted.len(),
            report.namespace
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{age, duration};
    use std::time::Duration;

    #[test]
    fn durations_and_ages() {
        assert_eq!(
            duration("--idle", "24h").unwrap(),
            Duration::from_secs(86_400)
        );
        assert_eq!(
            duration("--idle", "7days").unwrap(),
            Duration::from_secs(7 * 86_400)
        );
        let e = duration("--idle", "soon").unwrap_err();
        assert_eq!(e.code, 64);
        assert!(e.message.contains("--idle `soon`"), "{}", e.message);
        assert_eq!(age(1_000, 90_061_500), "1day 1h 1m ago");
        assert_eq!(age(4_000, 1_000), "3s ahead of this clock");
    }
}
