//! `wiremesh up`: turns a node's plan into a running tun device, routes, UDP socket and engine,
//! then waits for signals: SIGTERM/SIGINT remove what it created and exit, SIGHUP re-reads the
//! topology and applies only the difference.

mod cni_sweep;
mod control_handler;
mod loops;
mod node_state;
mod policy;
pub mod registry;
mod resolve;
mod rotate;
mod routes;
pub mod settings;
mod source;
mod timing;
mod uapi;

use crate::core::diff::PlanDiff;
use crate::core::plan::Plan;
use crate::core::topology::{Document, Topology, TopologyError};
use crate::engine::{Device, Scratch};
use crate::io::dns::{DnsError, Resolver};
use crate::io::keyfile::{self, KeyFileError};
use crate::io::metrics;
use crate::io::netlink::{NetlinkError, Routes};
use crate::io::tun::{self, TunError};
use crate::io::udp::{Udp, UdpError};
use loops::DataPath;
use node_state::NodeStatePublisher;
use resolve::Resolvers;
use settings::Settings;
use std::sync::Arc;
use timing::ApplyTiming;
use tokio::signal::unix::{signal, SignalKind};

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Topology(#[from] TopologyError),
    #[error(transparent)]
    Key(#[from] KeyFileError),
    #[error("{key_file}: this private key's public key is {actual}, but the topology gives node '{node}' the key {expected}")]
    KeyMismatch {
        key_file: String,
        node: String,
        expected: String,
        actual: String,
    },
    #[error(transparent)]
    Tun(#[from] TunError),
    #[error(transparent)]
    Udp(#[from] UdpError),
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    #[error(transparent)]
    Dns(#[from] DnsError),
    #[error(transparent)]
    Uapi(#[from] crate::io::uapi::UapiError),
    #[error(transparent)]
    Control(#[from] crate::io::control_socket::ControlError),
    #[error(transparent)]
    Metrics(#[from] crate::io::metrics::MetricsError),
    #[error(transparent)]
    NodeState(#[from] crate::io::node_state_file::NodeStateFileError),
    #[error("signal handler: {0}")]
    Signal(#[source] std::io::Error),
    #[error(transparent)]
    Settings(#[from] settings::SettingsError),
    #[error(transparent)]
    Registry(#[from] registry::RegistryError),
    #[error("policy: {0}")]
    Policy(#[from] crate::core::policy::CompileError),
}

/// The running pieces a reload touches.
struct Running {
    settings: Settings,
    plan: Plan,
    io: Arc<DataPath>,
    routes: routes::RouteSync,
    resolver: Resolver,
    resolvers: Resolvers,
    node_state: NodeStatePublisher,
}

/// Plans `topo` for this node and checks that the key file holds the key it gives the node.
fn prepare(
    settings: &Settings,
    topo: &Topology,
) -> Result<(Plan, crate::core::key::PrivateKey), DaemonError> {
    let plan = Plan::compute(topo, &settings.node)?;
    let key_path = settings.private_key_path();
    let key = keyfile::read_private(&key_path)?;
    if key.public_key() != plan.public_key {
        return Err(DaemonError::KeyMismatch {
            key_file: key_path.display().to_string(),
            node: settings.node.clone(),
            expected: plan.public_key.to_string(),
            actual: key.public_key().to_string(),
        });
    }
    Ok((plan, key))
}

/// Runs the daemon until SIGTERM or SIGINT.
pub async fn run(settings: Settings) -> Result<(), DaemonError> {
    let mut timing = ApplyTiming::start();
    // The key first: a registry join publishes its public key. Nothing is created before the
    // topology is known and planned, so bad input fails here with nothing to undo.
    let own_key = keyfile::read_private(&settings.private_key_path())?.public_key();
    let (doc, mut source) = source::Source::open(&settings, &own_key).await?;
    let (plan, key) = prepare(&settings, &doc.topology)?;
    timing.prepared();
    let mut term = signal(SignalKind::terminate()).map_err(DaemonError::Signal)?;
    let mut int = signal(SignalKind::interrupt()).map_err(DaemonError::Signal)?;
    let mut hup = signal(SignalKind::hangup()).map_err(DaemonError::Signal)?;

    let udp = Arc::new(Udp::bind(plan.listen_port)?);
    let tun = Arc::new(tun::open(&settings.interface, plan.mtu, &plan.addresses)?);
    let psk = match &settings.mesh_secret {
        Some(path) => Some(crate::engine::PskSettings {
            secret: keyfile::read_secret(path)?,
            epoch_len: crate::constants::PSK_EPOCH,
        }),
        None => None,
    };
    timing.resume();
    let device = Arc::new(Device::with_options(
        key,
        &plan,
        crate::core::rotation::RotationTiming {
            grace: settings.rotation_grace.0,
            ..Default::default()
        },
        psk,
        std::time::Instant::now(),
        std::time::SystemTime::now(),
    ));
    device.set_release_after(settings.release_idle_after.map(|s| s.0));
    if let Some(p) = policy::compiled(&device, &doc)? {
        policy::put_in_force(&device, p);
    }
    timing.applied();
    let mut routes = routes::RouteSync::new(Routes::for_interface(&settings.interface).await?);
    routes.sync(&plan, &device).await?;
    let timing = timing.routed();
    // small packets get a tun queue of their own where the receive side has a fast lane to
    // hand them to
    let fast_tun = if udp.has_fast_lane() {
        match crate::io::tun_lanes::add_fast_queue(&tun) {
            Ok(fast) => Some(fast),
            Err(e) => {
                tracing::info!(error = %e, "one tun queue: small packets are not steered apart");
                None
            }
        }
    } else {
        None
    };
    let io = Arc::new(DataPath::new(device.clone(), tun, fast_tun, udp));
    let resolver = Resolver::new(&settings.dns_servers)?;
    let node_state =
        NodeStatePublisher::new(settings.cni_state_dir.clone(), settings.interface.clone());
    let mut running = Running {
        settings,
        plan,
        io: io.clone(),
        routes,
        resolver,
        resolvers: Resolvers::default(),
        node_state,
    };
    let rotator = Arc::new(rotate::Rotator {
        device: device.clone(),
        node: running.plan.node.clone(),
        key_path: running.settings.private_key_path(),
        topology: source.file(),
    });
    let control = crate::io::control_socket::serve(
        &running.settings.control_socket(),
        Arc::new(control_handler::DaemonControl {
            device: device.clone(),
            node: running.plan.node.clone(),
            interface: running.settings.interface.clone(),
            rotator: rotator.clone(),
        }),
    )
    .await?;
    let scheduled = running
        .settings
        .rotate_every
        .map(|every| tokio::spawn(rotate::every(rotator, every.0)));
    let metrics = match running.settings.metrics_listen {
        Some(addr) => Some(metrics::serve(addr, metrics::registry(device.clone())).await?),
        None => None,
    };
    cni_sweep::sweep(&running.settings.cni_conf_dir, &running.node_state.file());
    // once the tun device and routes are there: the file tells the CNI plugin the node is
    // ready; written before the data-path threads start, so a failure leaves none to stop
    running.node_state.publish(&running.plan, &device, true)?;
    // last: tools (and the lab) take the UAPI socket as the sign that the daemon is up, so the
    // control socket and the node state must be there before it
    let uapi = crate::io::uapi::serve(
        &running.settings.uapi_socket(),
        Arc::new(uapi::EngineUapi(device.clone())),
    )
    .await?;
    let peers: Vec<_> = device.peers().iter().cloned().collect();
    running.resolvers.sync(&running.resolver, &peers, true);
    io.drain_early();
    let threads = loops::start(&io, running.settings.realtime_priority);
    start_handshakes(&io, &peers);
    crate::io::memory::release_freed_heap();
    tracing::info!(
        node = %running.plan.node,
        interface = %running.settings.interface,
        public_key = %device.public_key(),
        peers = running.plan.peers.len(),
        port = running.plan.listen_port,
        apply_ms = timing.total_ms(),
        prepare_ms = timing.prepare_ms(),
        engine_ms = timing.engine_ms(),
        routes_ms = timing.routes_ms(),
        "wiremesh is up"
    );

    let mut paths = tokio::time::interval(crate::constants::TIMER_TICK);
    loop {
        tokio::select! {
            _ = paths.tick() => {
                apply_path_events(&mut running).await;
                source.publish_key(rotate::settled_key(&device));
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
            next = source.next() => match next {
                Some(doc) => log_reload(reload(&mut running, &doc).await),
                // removed from the registry: stop as on SIGTERM
                None => break,
            },
            _ = hup.recv() => {
                match source.reread() {
                    Ok(Some(doc)) => log_reload(reload(&mut running, &doc).await),
                    Ok(None) => {}
                    Err(e) => tracing::error!(error = %e, "reload refused; still running the previous topology"),
                }
            }
        }
    }
    tracing::info!("shutting down");
    source.leave().await;
    running.node_state.remove();
    if let Some(t) = &scheduled {
        t.abort();
    }
    loops::stop(&io, threads);
    running.resolvers.stop();
    drop(uapi);
    drop(control);
    drop(metrics);
    running.routes.clear().await;
    // The tun device disappears when its last descriptor closes, with the threads and `io`.
    Ok(())
}

/// Sends a first handshake to each new peer with a known endpoint, so a mesh forms at once
/// instead of on the first packet; unless there are more than
/// [`EAGER_HANDSHAKES`](crate::constants::EAGER_HANDSHAKES) of them (a hub with thousands of
/// spokes): those wake on demand, and the spokes, each with a handful of peers, start theirs.
fn start_handshakes(io: &DataPath, peers: &[Arc<crate::engine::Peer>]) {
    if peers.len() > crate::constants::EAGER_HANDSHAKES {
        tracing::info!(
            peers = peers.len(),
            "many new peers: sessions start on demand, not all at once"
        );
        return;
    }
    let mut scratch = Scratch::new();
    let mut batch = loops::new_batch();
    let mut gro = tun_rs::GROTable::default();
    // A peer that already sent us an initiation (answered by `drain_early`, or by the inbound
    // loop while this runs) needs none. Each initiation leaves at once: held back for the
    // whole loop, it would cross the peer's own more often, and a pair would do two handshakes.
    for p in peers.iter().filter(|p| !p.is_awake()) {
        io.device.initiate(p, &mut scratch, &mut batch);
        io.flush(&mut batch, &mut gro);
    }
}

/// Logs each path-MTU change once, with its cause, and moves the routes' MTUs and the
/// containers' MTU (the node state) with it.
async fn apply_path_events(r: &mut Running) {
    let events = r.io.device.take_path_events();
    if events.is_empty() {
        return;
    }
    for e in &events {
        tracing::info!(peer = %e.peer, mtu = e.mtu, was = e.was, cause = ?e.cause, "path MTU changed");
    }
    if let Err(e) = r.routes.follow_paths(&r.plan, &r.io.device, &events).await {
        tracing::warn!(error = %e, "could not update route MTUs");
    }
    r.node_state.publish_or_warn(&r.plan, &r.io.device, false);
}

fn log_reload(result: Result<(PlanDiff, ApplyTiming), DaemonError>) {
    match result {
        Ok((diff, timing)) => tracing::info!(
            added = diff.added.len(),
            removed = diff.removed.len(),
            changed = diff.changed.len(),
            routes_added = diff.routes_added.len(),
            routes_removed = diff.routes_removed.len(),
            routes_changed = diff.routes_changed.len(),
            apply_ms = timing.total_ms(),
            prepare_ms = timing.prepare_ms(),
            engine_ms = timing.engine_ms(),
            routes_ms = timing.routes_ms(),
            "topology reloaded"
        ),
        Err(e) => {
            tracing::error!(error = %e, "reload refused; still running the previous topology")
        }
    }
}

/// Re-plans and applies only the difference: routes and DNS resolvers are touched only for
/// what the diff names, and the engine is not called at all when no peer and none of the
/// node's own settings changed (a route-only change, or an edit elsewhere in a hub mesh).
async fn reload(r: &mut Running, doc: &Document) -> Result<(PlanDiff, ApplyTiming), DaemonError> {
    let mut timing = ApplyTiming::start();
    let (plan, _) = prepare(&r.settings, &doc.topology)?;
    let policy = policy::compiled(&r.io.device, doc)?;
    let diff = PlanDiff::between(&r.plan, &plan);
    timing.prepared();
    if let Some(p) = policy {
        policy::put_in_force(&r.io.device, p);
    }
    let created = if diff.touches_peers() || diff.own || diff.mtu.is_some() {
        // Device::apply takes the whole plan; it keeps every peer whose key is unchanged,
        // session included, and touches only the peers whose settings changed
        r.io.device.apply(&plan, std::time::Instant::now())
    } else {
        Vec::new()
    };
    timing.applied();
    r.routes.apply(&diff, &r.io.device).await?;
    let timing = timing.routed();
    r.resolvers
        .update(&r.resolver, &diff, &r.io.device.peers(), true);
    start_handshakes(&r.io, &created);
    r.plan = plan;
    r.node_state.publish_or_warn(&r.plan, &r.io.device, true);
    crate::io::memory::release_freed_heap();
    Ok((diff, timing))
}

/// Builds the runtime and runs the daemon; for the CLI.
pub fn run_blocking(settings: Settings) -> Result<(), DaemonError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(DaemonError::Signal)?;
    rt.block_on(run(settings))
}
