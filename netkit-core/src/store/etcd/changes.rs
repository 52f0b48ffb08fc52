//! Reading a key prefix at one etcd revision and watching it from the next: the part the etcd
//! lease store and the etcd object store share. Each maps the key-values and events into its
//! own objects and the etcd errors into its own error type.

use std::collections::VecDeque;

use etcd_client::{Client, Event, GetOptions, KeyValue, WatchOptions, WatchStream, Watcher};
use futures::Stream;

/// How many keys one read of [`get_prefix`] asks for: etcd answers each read in one message,
/// and the client refuses a message over 4 MiB, so a large prefix is read in pages.
const PAGE: i64 = 500;

/// Every key-value under `prefix` (read with `options`, plus the prefix), and the revision of
/// the store they were read at: read in pages of [`PAGE`] keys, every page at the revision of
/// the first, so the whole is one consistent snapshot however large.
pub(crate) async fn get_prefix(
    client: &Client,
    prefix: &str,
    options: GetOptions,
) -> Result<(Vec<KeyValue>, i64), etcd_client::Error> {
    let end = prefix_end(prefix.as_bytes());
    let mut kvs = Vec::new();
    let mut from = prefix.as_bytes().to_vec();
    let mut revision = None;
    loop {
        let mut page = options.clone().with_range(end.clone()).with_limit(PAGE);
        if let Some(r) = revision {
            page = page.with_revision(r);
        }
        let mut resp = client.kv_client().get(from.clone(), Some(page)).await?;
        let rev = resp
            .header()
            .map(|h| h.revision())
            .ok_or_else(|| etcd_client::Error::InvalidArgs("etcd answered without a response header".to_string()))?;
        revision.get_or_insert(rev);
        let more = resp.more();
        let batch = resp.take_kvs();
        let Some(last) = batch.last() else { break };
        // The next page starts right after the last key read.
        from = last.key().to_vec();
        from.push(0);
        kvs.extend(batch);
        if !more {
            break;
        }
    }
    Ok((kvs, revision.unwrap_or_default()))
}

/// The end of etcd's range for `prefix`: the prefix with its last byte below 0xff raised by
/// one (etcd's own rule for prefix reads).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(&b) = end.last() {
        if b < 0xff {
            *end.last_mut().expect("not empty") = b + 1;
            return end;
        }
        end.pop();
    }
    // An empty (or all-0xff) prefix: every key.
    vec![0]
}

/// The changes under `prefix` from revision `start` on, one etcd event an item, with each
/// delete's previous key-value. A broken watch (the server closed or canceled it, or etcd
/// compacted away revisions it still had to send, or the connection failed) is an `Err`, the
/// stream's last item. Pass the revision a [`get_prefix`] answered at plus one, and the
/// stream follows on from what it read, none missed in between.
pub(crate) async fn watch_from(
    client: &Client,
    prefix: &str,
    start: i64,
) -> Result<impl Stream<Item = Result<Event, etcd_client::Error>> + Send + 'static, etcd_client::Error> {
    let options = WatchOptions::new()
        .with_prefix()
        .with_prev_key()
        .with_start_revision(start);
    let (watcher, stream) = client.watch_client().watch(prefix, Some(options)).await?;
    let state = State {
        _watcher: watcher,
        stream,
        pending: VecDeque::new(),
        done: false,
    };
    Ok(futures::stream::unfold(state, |mut st| async move {
        loop {
            if let Some(item) = st.pending.pop_front() {
                return Some((item, st));
            }
            if st.done {
                return None;
            }
            match st.stream.message().await {
                Ok(Some(resp)) if resp.canceled() => {
                    let reason = match resp.compact_revision() {
                        0 => format!("canceled by the server: {}", resp.cancel_reason()),
                        r => format!("etcd compacted the changes up to revision {r}; watch again"),
                    };
                    st.fail(etcd_client::Error::WatchError(reason));
                }
                Ok(Some(resp)) => st.pending.extend(resp.events().iter().cloned().map(Ok)),
                Ok(None) => st.fail(etcd_client::Error::WatchError(
                    "the server closed the watch".to_string(),
                )),
                Err(e) => st.fail(e),
            }
        }
    }))
}

struct State {
    /// Kept so the watch stays open; dropping it would end the request stream.
    _watcher: Watcher,
    stream: WatchStream,
    pending: VecDeque<Result<Event, etcd_client::Error>>,
    done: bool,
}

impl State {
    /// Queue `err` as the last item.
    fn fail(&mut self, err: etcd_client::Error) {
        self.done = true;
        self.pending.push_back(Err(err));
    }
}
