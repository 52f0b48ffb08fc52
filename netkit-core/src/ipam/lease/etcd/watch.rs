//! Watching an etcd store: an etcd watch on the subnet keys, turned into lease events.

use std::collections::VecDeque;
use std::sync::Arc;

use etcd_client::{Client, EventType, GetOptions, WatchOptions, WatchResponse, WatchStream, Watcher};

use super::super::{LeaseError, LeaseEvent, LeaseWatch, SubnetPlan};
use super::keys::Keys;
use super::{decode_all, subnet_kvs};

struct State {
    /// Kept so the watch stays open; dropping it would end the request stream.
    _watcher: Watcher,
    stream: WatchStream,
    keys: Arc<Keys>,
    plan: SubnetPlan,
    pending: VecDeque<Result<LeaseEvent, LeaseError>>,
    done: bool,
}

/// Start watching `PREFIX/subnets/`: read the subnet keys (the snapshot) at some revision R,
/// then watch from R + 1, so the stream starts with the first change after the snapshot.
pub(super) async fn watch(client: Client, keys: Arc<Keys>, plan: SubnetPlan) -> Result<LeaseWatch, LeaseError> {
    let prefix = keys.subnets();
    let (kvs, revision) = subnet_kvs(&client, &keys, GetOptions::new()).await?;
    let snapshot = decode_all(&kvs, &keys, &plan)?;
    let options = WatchOptions::new()
        .with_prefix()
        .with_prev_key()
        .with_start_revision(revision + 1);
    let (watcher, stream) = client
        .watch_client()
        .watch(prefix.clone(), Some(options))
        .await
        .map_err(|e| keys.error(format!("watch {prefix} from revision {}", revision + 1), e))?;
    let state = State {
        _watcher: watcher,
        stream,
        keys,
        plan,
        pending: VecDeque::new(),
        done: false,
    };
    Ok(LeaseWatch::new(
        snapshot,
        futures::stream::unfold(state, |mut st| async move {
            loop {
                if let Some(item) = st.pending.pop_front() {
                    return Some((item, st));
                }
                if st.done {
                    return None;
                }
                match st.stream.message().await {
                    Ok(Some(resp)) => st.absorb(resp),
                    Ok(None) => {
                        st.done = true;
                        let prefix = st.keys.subnets();
                        let err = etcd_client::Error::WatchError("the server closed the watch".to_string());
                        st.pending.push_back(Err(st.keys.error(format!("watch {prefix}"), err)));
                    }
                    Err(e) => {
                        st.done = true;
                        let prefix = st.keys.subnets();
                        st.pending.push_back(Err(st.keys.error(format!("watch {prefix}"), e)));
                    }
                }
            }
        }),
    ))
}

impl State {
    /// Queue the events of one watch response.
    fn absorb(&mut self, resp: WatchResponse) {
        if resp.canceled() {
            self.done = true;
            let prefix = self.keys.subnets();
            let reason = match resp.compact_revision() {
                0 => format!("canceled by the server: {}", resp.cancel_reason()),
                r => format!("etcd compacted the changes up to revision {r}; watch again"),
            };
            let err = etcd_client::Error::WatchError(reason);
            self.pending
                .push_back(Err(self.keys.error(format!("watch {prefix}"), err)));
            return;
        }
        for event in resp.events() {
            let item = match (event.event_type(), event.kv(), event.prev_kv()) {
                (EventType::Put, Some(kv), _) => self.keys.decode(kv, &self.plan).map(|(_, lease)| {
                    if kv.version() == 1 {
                        LeaseEvent::Added(lease)
                    } else {
                        LeaseEvent::Changed(lease)
                    }
                }),
                (EventType::Delete, _, Some(prev)) => self
                    .keys
                    .decode(prev, &self.plan)
                    .map(|(_, lease)| LeaseEvent::Removed(lease)),
                (kind, kv, _) => Err(LeaseError::Corrupt {
                    location: self.keys.location(kv.map(|kv| kv.key()).unwrap_or_default()),
                    reason: format!("etcd sent a {kind:?} event without the key's value"),
                }),
            };
            self.pending.push_back(item);
        }
    }
}
