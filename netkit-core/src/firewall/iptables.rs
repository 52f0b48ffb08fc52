//! The iptables driver (placeholder until it lands).

use super::engine::{self, Backend, Engine};
use super::error::Result;
use super::model::Rules;
use super::state::StateDir;
use super::{firewall_via_engine, Driver, FirewallError, FirewallOptions};
use crate::NetNs;

/// The iptables driver.
#[derive(Clone)]
pub struct Iptables(Engine<IptBackend>);

firewall_via_engine!(Iptables, Driver::Iptables);

impl Iptables {
    /// Open the firewall of `ns` with the iptables driver.
    pub async fn open(ns: &NetNs, options: FirewallOptions) -> Result<Self> {
        let ns = ns.clone();
        engine::blocking(move || {
            let backend = IptBackend;
            Ok(Iptables(Engine::new(&ns, engine::state_dir(&ns, &options)?, backend)?))
        })
        .await
    }
}

pub(crate) struct IptBackend;

impl Backend for IptBackend {
    fn apply(&self, _owner: &str, _old: &Rules, _new: &Rules, _state: &StateDir) -> Result<()> {
        Err(FirewallError::Unavailable {
            driver: "iptables",
            reason: "not implemented yet".into(),
        })
    }
    fn rebuild(&self, _all: &[(String, Rules)]) -> Result<()> {
        Ok(())
    }
    fn clear(&self) -> Result<()> {
        Ok(())
    }
}
