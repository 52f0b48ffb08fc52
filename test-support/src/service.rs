//! Service proxies on a simulated cluster's nodes, in this process: each runs on the test's
//! runtime and programs its node's firewall from a shared cluster store.

use std::sync::{Arc, Mutex};

use netkit_core::firewall::{self, AnyFirewall, FirewallOptions};
use netkit_core::service::{ProxyConfig, ProxyStatus, ServiceProxy};
use netkit_core::store::ObjectStore;
use netkit_core::NetNs;
use tokio::sync::watch;

/// A running [`ServiceProxy`]; stopped (its rules left in place, as a real proxy leaves them)
/// by [`stop`](Self::stop) or when dropped.
pub struct ProxyTask {
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
    status: Arc<Mutex<ProxyStatus>>,
    /// The node's namespace.
    pub ns: NetNs,
}

impl ProxyTask {
    /// Start a proxy for node `node` (its namespace is the node's name) on `store`, with the
    /// firewall netkit-cni uses in that namespace (the default options).
    pub async fn start<S: ObjectStore + 'static>(node: &str, store: S) -> ProxyTask {
        ProxyTask::start_with(store, ProxyConfig::new(node)).await
    }

    /// [`ProxyTask::start`] with `config` (its `node` names the namespace too).
    pub async fn start_with<S: ObjectStore + 'static>(store: S, config: ProxyConfig) -> ProxyTask {
        let node = config.node.clone();
        let node = node.as_str();
        let ns = NetNs::open(node).unwrap_or_else(|e| panic!("open {node}: {e}"));
        let fw: AnyFirewall = firewall::open(&ns, FirewallOptions::default())
            .await
            .unwrap_or_else(|e| panic!("the firewall of {node}: {e}"));
        let proxy = ServiceProxy::new(store, fw, ns.clone(), config);
        let status = proxy.status();
        let (stop, mut rx) = watch::channel(false);
        let task = tokio::spawn(async move {
            proxy
                .run(async move {
                    let _ = rx.wait_for(|s| *s).await;
                })
                .await
        });
        ProxyTask {
            stop,
            task: Some(task),
            status,
            ns,
        }
    }

    /// What the proxy reports now.
    pub fn status(&self) -> ProxyStatus {
        self.status.lock().expect("status lock").clone()
    }

    /// Stop it and wait until it has.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.task.take() {
            t.await.expect("the proxy task");
        }
    }
}

impl Drop for ProxyTask {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}
