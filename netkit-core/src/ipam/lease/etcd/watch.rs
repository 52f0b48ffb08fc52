//! Watching an etcd store: an etcd watch on the subnet keys, turned into lease events.

use std::sync::Arc;

use etcd_client::{Event, EventType, GetOptions};
use futures::StreamExt;

use super::super::{LeaseError, LeaseEvent, LeaseWatch, SubnetPlan};
use super::keys::Keys;
use super::{decode_all, subnet_kvs};
use crate::store::etcd::changes;

/// Start watching `PREFIX/subnets/`: read the subnet keys (the snapshot) at some revision R,
/// then watch from R + 1, so the stream starts with the first change after the snapshot.
pub(super) async fn watch(
    client: etcd_client::Client,
    keys: Arc<Keys>,
    plan: SubnetPlan,
) -> Result<LeaseWatch, LeaseError> {
    let prefix = keys.subnets();
    let (kvs, revision) = subnet_kvs(&client, &keys, GetOptions::new()).await?;
    let snapshot = decode_all(&kvs, &keys, &plan)?;
    let events = changes::watch_from(&client, &prefix, revision + 1)
        .await
        .map_err(|e| keys.error(format!("watch {prefix} from revision {}", revision + 1), e))?;
    Ok(LeaseWatch::new(
        snapshot,
        events.map(move |item| match item {
            Ok(event) => lease_event(&keys, &plan, &event),
            Err(e) => Err(keys.error(format!("watch {prefix}"), e)),
        }),
    ))
}

/// The lease event of one etcd event on a subnet key.
fn lease_event(keys: &Keys, plan: &SubnetPlan, event: &Event) -> Result<LeaseEvent, LeaseError> {
    match (event.event_type(), event.kv(), event.prev_kv()) {
        (EventType::Put, Some(kv), _) => keys.decode(kv, plan).map(|(_, lease)| {
            if kv.version() == 1 {
                LeaseEvent::Added(lease)
            } else {
                LeaseEvent::Changed(lease)
            }
        }),
        (EventType::Delete, _, Some(prev)) => keys.decode(prev, plan).map(|(_, lease)| LeaseEvent::Removed(lease)),
        (kind, kv, _) => Err(LeaseError::Corrupt {
            location: keys.location(kv.map(|kv| kv.key()).unwrap_or_default()),
            reason: format!("etcd sent a {kind:?} event without the key's value"),
        }),
    }
}
