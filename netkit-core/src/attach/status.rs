//! STATUS: whether the network can attach containers now.

use super::attachment::Host;
use super::error::{AttachError, ErrorKind};
use super::{fw, NetworkConfig};

/// The network's IPAM is usable (netkit's store can be opened and written, or the delegated
/// plugin says so) and, for a network that uses the firewall
/// ([`NetworkConfig::needs_firewall`]), the firewall can be opened in the host namespace;
/// [`ErrorKind::NotAvailable`] (or the delegated plugin's error) otherwise.
pub async fn status(conf: &NetworkConfig, host: &Host) -> Result<(), AttachError> {
    conf.ipam.status(host)?;
    // The firewall matters only to a network that uses it.
    if conf.needs_firewall() {
        let host_ns = host.open().map_err(AttachError::io)?;
        fw::open(conf, &host_ns)
            .await
            .map_err(|e| AttachError::new(ErrorKind::NotAvailable, e.msg))?;
    }
    Ok(())
}
