//! The `sluice` command.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use sluice_broker::bootstrap::{reconcile, Bootstrap};
use sluice_broker::{cli, server, Broker, BrokerConfig};
use sluice_protocol::alloc::GuardedAlloc;
use tracing::{error, info, warn};

/// Keeps impossible element counts in request frames from aborting the broker.
#[global_allocator]
static ALLOC: GuardedAlloc = GuardedAlloc;

#[derive(Debug, Parser)]
#[command(
    name = "sluice",
    version,
    about = "A Kafka-compatible event-streaming broker"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a broker (single node, embedded defaults unless told otherwise).
    Serve(ServeArgs),
    /// Run a local cluster of brokers in this terminal (Ctrl-C stops it).
    Dev(DevArgs),
    #[command(flatten)]
    Client(cli::ClientCommand),
}

#[derive(Debug, clap::Args)]
struct DevArgs {
    /// Number of brokers.
    #[arg(long, default_value_t = 3)]
    nodes: u16,
    /// Client port of the first broker; broker i listens on base+i-1 and talks to
    /// its peers on base+100+i-1.
    #[arg(long, default_value_t = 9092)]
    base_port: u16,
    /// Directory holding each broker's data directory (node-1, node-2, ...).
    #[arg(long, value_name = "DIR", default_value = "./data-dev")]
    data_dir: PathBuf,
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// TOML config file; its keys override the defaults (see config/sluice.toml).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address of the client listener.
    #[arg(long, value_name = "HOST:PORT")]
    listen: Option<String>,
    /// Address clients are told to connect to.
    #[arg(long, value_name = "HOST:PORT")]
    advertised_listener: Option<String>,
    /// Directory for partition logs and metadata.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// This broker's node id.
    #[arg(long, value_name = "N")]
    node_id: Option<i32>,
    /// Address of the inter-broker (Raft) listener.
    #[arg(long, value_name = "HOST:PORT")]
    raft_listen: Option<String>,
    /// Every broker of the cluster with its inter-broker address:
    /// `1@HOST:PORT,2@HOST:PORT,3@HOST:PORT`.
    #[arg(long, value_name = "ID@HOST:PORT,...")]
    peers: Option<String>,
    /// Bootstrap topics file: the topics to create and keep configured on start
    /// (default: the shipped e-commerce topics, config/topics.toml).
    #[arg(long, value_name = "FILE", conflicts_with = "no_bootstrap")]
    topics: Option<PathBuf>,
    /// Create no bootstrap topics.
    #[arg(long)]
    no_bootstrap: bool,
}

impl ServeArgs {
    fn bootstrap(&self) -> Bootstrap {
        match (&self.topics, self.no_bootstrap) {
            (_, true) => Bootstrap::Off,
            (Some(path), false) => Bootstrap::File(path.clone()),
            (None, false) => Bootstrap::BuiltIn,
        }
    }
}

fn load_config(args: &ServeArgs) -> anyhow::Result<BrokerConfig> {
    let mut config = match &args.config {
        Some(path) => BrokerConfig::load(path)?,
        None => BrokerConfig::default(),
    };
    if let Some(v) = &args.listen {
        config.listen = v.clone();
    }
    if let Some(v) = &args.advertised_listener {
        config.advertised_listener = v.clone();
    }
    if let Some(v) = &args.data_dir {
        config.data_dir = v.clone();
    }
    if let Some(v) = args.node_id {
        config.node_id = v;
    }
    if let Some(v) = &args.raft_listen {
        config.cluster.raft_listen = v.clone();
    }
    if let Some(v) = &args.peers {
        config.cluster.peers = v.clone();
    }
    config.validate("command line")?;
    Ok(config)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            error!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = ctrl_c => info!("SIGINT received"),
        () = term => info!("SIGTERM received"),
    }
}

/// How long a broker waits for the cluster to match the bootstrap file before it
/// serves clients anyway.
const BOOTSTRAP_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = load_config(&args)?;
    let topics = args.bootstrap().load()?;
    let addr: SocketAddr = config.listen.parse().context("listen address")?;
    let broker = tokio::task::spawn_blocking(move || Broker::open(config))
        .await?
        .context("opening the data directory")?;
    if broker.config.is_clustered() {
        let raft_addr = broker.config.cluster.raft_listen.clone();
        let raft_listener = tokio::net::TcpListener::bind(&raft_addr)
            .await
            .with_context(|| format!("binding the inter-broker listener to {raft_addr}"))?;
        broker
            .start_cluster(raft_listener)
            .await
            .map_err(anyhow::Error::msg)
            .context("joining the cluster")?;
        info!(raft_listen = %raft_addr, peers = %broker.config.cluster.peers, "cluster member started");
        let caught_up = match broker.controller() {
            Some(c) => c.wait_caught_up(std::time::Duration::from_secs(60)).await,
            None => false,
        };
        if !caught_up {
            warn!("the cluster metadata did not catch up within 60 s; serving clients anyway");
        }
    }
    if let Some(file) = &topics {
        reconcile::converge(&broker, file, BOOTSTRAP_WAIT).await;
    }
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the client listener to {addr}"))?;
    let (host, port) = broker.config.advertised();
    info!(
        listen = %listener.local_addr()?,
        advertised = %format!("{host}:{port}"),
        data_dir = %broker.config.data_dir.display(),
        node_id = broker.node_id(),
        "sluice broker started"
    );
    server::run(listener, broker, shutdown_signal()).await?;
    Ok(())
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=error")),
        )
        .with_writer(std::io::stderr)
        // Colour only on a terminal: a redirected log stays plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e)
            if !e.use_stderr()
                || e.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand =>
        {
            e.exit()
        }
        Err(e) => {
            // Usage errors in one line, like every other error.
            let text = e.render().to_string();
            let first = text.lines().next().unwrap_or_default();
            eprintln!("sluice: {}", first.trim_start_matches("error: "));
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sluice: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Serve(args) => runtime.block_on(serve(args)),
        Command::Dev(args) => runtime.block_on(sluice_broker::dev::run(
            args.nodes,
            args.base_port,
            &args.data_dir,
        )),
        Command::Client(command) => runtime
            .block_on(cli::run(command))
            .map_err(anyhow::Error::from),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sluice: {e:#}");
            ExitCode::FAILURE
        }
    }
}
