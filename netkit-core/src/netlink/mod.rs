//! The netlink connection every kernel call goes through.
//!
//! A [`Handle`] owns an rtnetlink socket opened *inside* a namespace (the socket keeps that
//! namespace for its whole life), driven inline by the calling task (the `transport` module: the
//! answer to a request is read right after it is sent; no background task or thread hop).
//! Requests are built with `netlink-packet-route` types by the modules that own each object
//! type; this module sends them, waits for acks, collects dumps and retries dumps the kernel
//! marks interrupted (`NLM_F_DUMP_INTR`), so a caller never sees a partial or inconsistent
//! listing. [`Batch`] sends several requests in one system call.

mod batch;
mod error;
pub(crate) mod nfnl;
mod transport;
pub(crate) mod wire;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use netlink_packet_core::NLM_F_DUMP_INTR;
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket};

pub use batch::{Batch, BatchError};
pub use error::NetlinkError;
pub(crate) use error::{errno_not_found, errno_predicates};

use crate::netns::NetNs;

/// How many times a dump interrupted by concurrent changes is retried before
/// giving up with `EINTR`.
const DUMP_RETRIES: usize = 32;

/// A netlink connection bound to one network namespace.
///
/// Clone it freely: clones share the socket. Every operation of the link,
/// address, route, rule and neighbour modules is a method on `Handle`, named
/// after the iproute2 command it mirrors (`link_add`, `addr_add`, `route_get`,
/// …). Create one with [`NetNs::handle`], [`Handle::create_netns`] or [`Handle::current`].
///
/// A socket carries one exchange at a time: tasks sharing a handle (or its clones) take
/// turns, which costs little because the kernel does most of a request's work inside the
/// sender's `sendmsg`. Work that should really run in parallel (on several cores) opens one
/// handle per task, as [`crate::container::setup_many`] does. Several requests of one task go
/// in one system call with [`Handle::batch`].
#[derive(Clone, Debug)]
pub struct Handle {
    conn: Arc<transport::Transport>,
    /// The namespace the socket lives in, held open: work that must run inside it (sysctls,
    /// tun devices, event sockets, detached deletes) goes there, wherever the caller runs.
    netns: NetNs,
    /// Dumps thrown away because the kernel flagged them interrupted.
    dump_restarts: Arc<AtomicU64>,
}

fn open_socket() -> std::io::Result<Socket> {
    let mut socket = Socket::new(NETLINK_ROUTE)?;
    socket.bind_auto()?;
    // Short acks (no echo of the request) and the kernel's error text.
    socket.set_cap_ack(true)?;
    socket.set_ext_ack(true)?;
    // Large dumps of a busy namespace should not overflow the socket.
    socket.set_rx_buf_sz(4 * 1024 * 1024)?;
    // Dump requests are checked strictly and their filters applied by the kernel (as iproute2
    // asks since 5.x): a route dump for one table sends that table only.
    socket.set_netlink_get_strict_chk(true)?;
    Ok(socket)
}

impl Handle {
    /// Open a handle whose socket lives in `netns`. The socket is created inside the namespace
    /// by a netkit helper thread; the caller's thread never moves. Needs a tokio runtime (the
    /// socket is driven by a task): outside one it is an error, not a panic.
    pub async fn new(netns: &NetNs) -> Result<Self, NetlinkError> {
        let runtime = runtime()?;
        let socket = netns
            .job(open_socket)
            .await
            .map_err(|e| NetlinkError::local(e.to_string()))?
            .map_err(|e| io_error(&e))?;
        Self::from_socket(&runtime, socket, netns.clone())
    }

    /// Create the named namespace `name` (as [`NetNs::create`]) and open a handle inside it, in
    /// one trip to a netkit helper thread instead of two: what a runtime does for every new
    /// container. The handle holds the namespace ([`Handle::netns`]). When the socket cannot be
    /// opened the namespace is deleted again. Needs a tokio runtime.
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
    /// let ctr = netkit_core::Handle::create_netns("ctr1").await?;
    /// ctr.link_set_up("lo").await?;
    /// assert_eq!(ctr.netns().name(), Some("ctr1"));
    /// # Ok(()) }
    /// ```
    pub async fn create_netns(name: &str) -> Result<Self, crate::NetnsError> {
        let runtime =
            runtime().map_err(|e| crate::NetnsError::io("open a handle in", name, std::io::Error::other(e)))?;
        let (netns, socket) = NetNs::create_then(name, open_socket).await?;
        Self::from_socket(&runtime, socket, netns.clone()).map_err(|e| {
            let _ = NetNs::delete(name);
            crate::NetnsError::io("open a handle in", name, std::io::Error::other(e))
        })
    }

    /// Open a handle in each of `namespaces`, all sockets made in one trip to a helper thread
    /// (which enters the namespaces one after the other): for work across many namespaces at
    /// once, such as reading a whole lab. One result per namespace, in order. Needs a tokio
    /// runtime.
    pub async fn open_many(namespaces: &[NetNs]) -> Result<Vec<Result<Self, NetlinkError>>, NetlinkError> {
        let runtime = runtime()?;
        let sockets = NetNs::job_each(namespaces.to_vec(), open_socket)
            .await
            .map_err(|e| NetlinkError::local(e.to_string()))?;
        Ok(sockets
            .into_iter()
            .zip(namespaces)
            .map(|(s, ns)| match s {
                Ok(Ok(socket)) => Self::from_socket(&runtime, socket, ns.clone()),
                Ok(Err(e)) => Err(io_error(&e)),
                Err(e) => Err(NetlinkError::local(e.to_string())),
            })
            .collect())
    }

    /// Open a handle in the namespace of the calling thread. The handle holds that namespace
    /// open and keeps working in it (for netlink and for the work it does inside the
    /// namespace) whatever thread later uses it. Needs a tokio runtime, as [`Handle::new`].
    pub fn current() -> Result<Self, NetlinkError> {
        let runtime = runtime()?;
        let netns = NetNs::current().map_err(|e| NetlinkError::local(e.to_string()))?;
        let socket = open_socket().map_err(|e| io_error(&e))?;
        Self::from_socket(&runtime, socket, netns)
    }

    fn from_socket(runtime: &tokio::runtime::Handle, socket: Socket, netns: NetNs) -> Result<Self, NetlinkError> {
        Ok(Self {
            conn: Arc::new(transport::Transport::new(socket, runtime.clone())?),
            netns,
            dump_restarts: Arc::default(),
        })
    }

    /// The namespace this handle talks to.
    pub fn netns(&self) -> &NetNs {
        &self.netns
    }

    /// The namespace as it appears in error messages.
    pub(crate) fn ns_label(&self) -> String {
        self.netns.to_string()
    }

    /// Run short blocking work inside this handle's namespace (sysctls, ioctls, sockets that
    /// must be born there): right here when the calling thread is in it already, else on
    /// netkit's helper thread.
    pub(crate) async fn exec_in<F, T>(&self, f: F) -> Result<T, NetlinkError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.netns.job(f).await.map_err(|e| NetlinkError::local(e.to_string()))
    }

    /// How many dumps this handle (and its clones) restarted because the
    /// kernel flagged them interrupted by a concurrent change.
    pub fn dump_restarts(&self) -> u64 {
        self.dump_restarts.load(Ordering::Relaxed)
    }

    /// An `rtnetlink::Handle` on a new socket in the same namespace (feature `rtnetlink`), for
    /// code written against rtnetlink's builders (or requests netkit does not
    /// model yet). Must be called from within a tokio runtime.
    ///
    /// ```no_run
    /// # async fn f(h: &netkit_core::Handle) -> Result<(), Box<dyn std::error::Error>> {
    /// use futures::TryStreamExt;
    /// let rt = h.rtnetlink().await?;
    /// let mut links = rt.link().get().execute();
    /// while let Some(l) = links.try_next().await? {
    ///     println!("{}", l.header.index);
    /// }
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "rtnetlink")]
    pub async fn rtnetlink(&self) -> Result<rtnetlink::Handle, NetlinkError> {
        let socket = self
            .netns
            .job(open_socket)
            .await
            .map_err(|e| NetlinkError::local(e.to_string()))?
            .map_err(|e| io_error(&e))?;
        socket.set_non_blocking(true).map_err(|e| io_error(&e))?;
        use std::os::fd::{FromRawFd, IntoRawFd};
        // SAFETY: into_raw_fd hands over sole ownership of a valid netlink socket fd.
        let socket = unsafe { netlink_sys::TokioSocket::from_raw_fd(socket.into_raw_fd()) };
        let (conn, handle, _) = rtnetlink::from_socket(socket);
        tokio::spawn(conn);
        Ok(handle)
    }

    /// One request and its answer.
    async fn one(&self, request: transport::Request) -> Result<transport::Answer, NetlinkError> {
        let mut answers = self.conn.exchange(vec![request]).await?;
        answers.pop().expect("one answer per request")
    }

    /// Send a request that expects an ack (`flags` adds NLM_F_CREATE,
    /// NLM_F_EXCL, NLM_F_REPLACE, …).
    pub(crate) async fn ack(&self, payload: RouteNetlinkMessage, flags: u16) -> Result<(), NetlinkError> {
        self.one(transport::Request::new(payload, flags)).await.map(drop)
    }

    /// Like [`Handle::ack`], and return the last object the kernel sent back
    /// before the ack: with `NLM_F_ECHO` in `flags` (kernel 6.3+ for links) the
    /// created object comes back in the same round trip. `None` when the
    /// kernel echoed nothing.
    pub(crate) async fn ack_echo(
        &self,
        payload: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Option<RouteNetlinkMessage>, NetlinkError> {
        Ok(self.one(transport::Request::new(payload, flags)).await?.objects.pop())
    }

    /// Send a request answered by exactly one message (a `get` by key).
    pub(crate) async fn get(&self, payload: RouteNetlinkMessage) -> Result<RouteNetlinkMessage, NetlinkError> {
        self.one(transport::Request::new(payload, 0))
            .await?
            .objects
            .pop()
            .ok_or_else(|| NetlinkError::local("the kernel sent no answer"))
    }

    /// Dump every object matching `payload`. A dump the kernel flags as
    /// interrupted (the table changed while it was being read) is thrown away
    /// and started again, so the result is always one consistent snapshot.
    pub(crate) async fn dump(&self, payload: RouteNetlinkMessage) -> Result<Vec<RouteNetlinkMessage>, NetlinkError> {
        Ok(self.dump_answer(transport::Request::dump(payload)).await?.objects)
    }

    /// [`Handle::dump`], with each object kept as the kernel's bytes (the payload after the
    /// netlink header), for readers that lift a few attributes themselves.
    pub(crate) async fn dump_raw(&self, payload: RouteNetlinkMessage) -> Result<Vec<Vec<u8>>, NetlinkError> {
        Ok(self.dump_answer(transport::Request::dump(payload).raw()).await?.raw)
    }

    /// [`Handle::get`], with the answer kept as the kernel's bytes (see [`Handle::dump_raw`]).
    pub(crate) async fn get_raw(&self, payload: RouteNetlinkMessage) -> Result<Vec<u8>, NetlinkError> {
        self.one(transport::Request::new(payload, 0).raw())
            .await?
            .raw
            .pop()
            .ok_or_else(|| NetlinkError::local("the kernel sent no answer"))
    }

    async fn dump_answer(&self, request: transport::Request) -> Result<transport::Answer, NetlinkError> {
        for _ in 0..DUMP_RETRIES {
            let answer = self.one(request.clone()).await?;
            if !answer.interrupted {
                return Ok(answer);
            }
            self.dump_restarts.fetch_add(1, Ordering::Relaxed);
        }
        Err(NetlinkError {
            errno: Some(libc::EINTR),
            message: Some(format!(
                "dump interrupted {DUMP_RETRIES} times in a row by concurrent changes"
            )),
        })
    }

    /// Several requests in one system call (see [`Batch`]).
    pub fn batch(&self) -> Batch<'_> {
        Batch::new(self)
    }

    pub(crate) fn transport(&self) -> &transport::Transport {
        &self.conn
    }
}

/// True when a dump part carries NLM_F_DUMP_INTR.
pub(crate) fn is_interrupted(flags: u16) -> bool {
    flags & NLM_F_DUMP_INTR != 0
}

/// The tokio runtime of the calling thread, or an error that says a handle needs one.
fn runtime() -> Result<tokio::runtime::Handle, NetlinkError> {
    tokio::runtime::Handle::try_current().map_err(|_| {
        NetlinkError::local(
            "a netlink Handle needs a tokio runtime (create it from async code, or inside Runtime::block_on)",
        )
    })
}

fn io_error(e: &std::io::Error) -> NetlinkError {
    NetlinkError {
        errno: e.raw_os_error(),
        message: Some(format!("netlink socket: {e}")),
    }
}
