//! ADD and DEL of one attachment: the delegate configuration is built from the node state,
//! cached, handed to `bridge`; masquerade follows. A failed ADD is undone before it returns
//! (spec section 4), and DEL succeeds whatever is already gone.

use super::cache::{Cache, Cached};
use super::config::{bridge_conf, BridgeConf, NetConf};
use super::delegate::{common_version, Delegate};
use super::env::Invocation;
use super::error::CniError;
use super::masq;
use super::spec::{AddResult, Attachment, Command};
use super::state::NodeState;

/// The delegates of an attachment, found in `CNI_PATH`.
pub struct Delegates {
    pub bridge: Delegate,
    pub host_local: Delegate,
}

impl Delegates {
    pub fn find(inv: &Invocation) -> Result<Delegates, CniError> {
        let path = inv.cni_path.as_deref().unwrap_or_default();
        Ok(Delegates {
            bridge: Delegate::find("bridge", path)?,
            host_local: Delegate::find("host-local", path)?,
        })
    }

    /// The version both speak, preferring the request's; their answers are remembered in the
    /// network's cache directory.
    pub fn version(&self, requested: &str, conf: &NetConf) -> Result<String, CniError> {
        let remembered = Cache::new(&conf.data_dir, &conf.name).dir().to_path_buf();
        common_version(
            requested,
            &[&self.bridge, &self.host_local],
            Some(&remembered),
        )
    }
}

pub fn attachment(inv: &Invocation) -> Attachment {
    Attachment {
        container_id: inv.container_id().into(),
        ifname: inv.ifname().into(),
    }
}

/// Fails with code 3 when the runtime's netns path is not there.
pub fn require_netns(inv: &Invocation) -> Result<(), CniError> {
    match &inv.netns {
        Some(p) if p.exists() => Ok(()),
        Some(p) => Err(CniError::NoNetns { path: p.clone() }),
        None => Err(CniError::Environment {
            var: "CNI_NETNS",
            problem: "missing or empty".into(),
        }),
    }
}

/// ADD: the result, in the request's version.
pub fn add(inv: &Invocation, conf: &NetConf) -> Result<AddResult, CniError> {
    require_netns(inv)?;
    let state = NodeState::load(&conf.subnet_file)?;
    let delegates = Delegates::find(inv)?;
    let version = delegates.version(&conf.cni_version, conf)?;
    let bconf = bridge_conf(conf, &state, &version);
    let cache = Cache::new(&conf.data_dir, &conf.name);
    let att = attachment(inv);
    let entry = Cached {
        delegate: bconf.clone(),
        netns: inv.netns.clone(),
        boot_id: super::stale::boot_id(),
    };
    cache.save(&att, &entry)?;
    let added = delegates
        .bridge
        .run(Command::Add, inv, &bconf)
        .and_then(|r| r.ok_or_else(|| CniError::config("bridge's ADD result", "empty")))
        .and_then(|r| masq::apply(&conf.name, &state, conf.ip_masq).map(|()| r));
    let mut result = match added {
        Ok(r) => r,
        Err(e) => {
            // Undo what the delegate may have done; keep the cache if that failed too, so the
            // runtime's DEL can try again.
            if delegates.bridge.run(Command::Del, inv, &bconf).is_ok() {
                let _ = cache.remove(&att);
            }
            return Err(e);
        }
    };
    result.cni_version = conf.cni_version.clone();
    if conf.cni_version != "1.0.0" {
        // 1.1.0 results may say the MTU of each interface: the container's is the tunnel's.
        for i in result.interfaces.iter_mut().filter(|i| i.sandbox.is_some()) {
            i.mtu.get_or_insert(state.mtu);
        }
    }
    Ok(result)
}

/// The configuration the attachment was added with; failing that, what ADD would use now.
/// `None` when neither is known: nothing of ours can be left to undo.
pub fn known_conf(inv: &Invocation, conf: &NetConf) -> Result<Option<BridgeConf>, CniError> {
    let cache = Cache::new(&conf.data_dir, &conf.name);
    if let Some(c) = cache.load(&attachment(inv))? {
        return Ok(Some(c.delegate));
    }
    match NodeState::load(&conf.subnet_file) {
        Ok(state) => {
            let version = Delegates::find(inv)?.version(&conf.cni_version, conf)?;
            Ok(Some(bridge_conf(conf, &state, &version)))
        }
        Err(CniError::NoNodeState { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// `prevResult` in the delegate's version: 1.0.0 and 1.1.0 results have the same shape.
pub fn with_prev_result(mut bconf: BridgeConf, conf: &NetConf) -> BridgeConf {
    bconf.prev_result = conf.prev_result.clone().map(|mut r| {
        r.cni_version = bconf.cni_version.clone();
        r
    });
    bconf
}

/// DEL: idempotent; the cache entry goes only once `bridge` has released everything.
pub fn del(inv: &Invocation, conf: &NetConf) -> Result<(), CniError> {
    let Some(bconf) = known_conf(inv, conf)? else {
        return Ok(());
    };
    let bconf = with_prev_result(bconf, conf);
    let bridge = Delegate::find("bridge", inv.cni_path.as_deref().unwrap_or_default())?;
    bridge.run(Command::Del, inv, &bconf)?;
    Cache::new(&conf.data_dir, &conf.name).remove(&attachment(inv))
}
