//! How a [`super::Handle`] talks to the kernel: one NETLINK_ROUTE socket, driven inline by the
//! caller's own task — no background task, no channels, no thread hop.
//!
//! rtnetlink handles a request inside the sender's `sendmsg`: by the time `sendmsg` returns,
//! the answer (the ack, the echoed object, the first part of a dump) is already queued on the
//! socket. So a request is a `send` and then `recv`s on a non-blocking socket; only when nothing
//! is queued yet (a busy kernel may be slow) does the caller wait for the socket to become
//! readable, through tokio's reactor. The socket joins the reactor's epoll set only for such a
//! wait and leaves it after: a socket in the set makes every answer the kernel queues wake the
//! reactor's thread (`sock_def_readable` → `ep_poll_callback`), a thread switch per request for
//! nothing, and registering costs a system call per handle. The receive buffer (64 KiB) comes
//! from a small shared pool for the length of one exchange, so a thousand idle handles hold
//! no buffers. One exchange at a time per socket (an async mutex): answers are matched to
//! requests by sequence number, and leftovers of an exchange whose caller gave up (a dropped
//! future) are skipped by the next one. Handles that must work in parallel use separate sockets
//! (separate [`super::Handle`]s).
//!
//! Several requests can go in one `sendmsg` ([`Transport::exchange`] with more than one
//! message): the kernel handles them in order and answers each; netkit reads the answers
//! after. This is [`super::Batch`].

use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::sync::Mutex;

use netlink_packet_core::{NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST};
use netlink_packet_route::RouteNetlinkMessage;
use tokio::io::unix::AsyncFd;

use super::error::NetlinkError;
use super::{is_interrupted, wire};

/// The receive buffer: a single answer is a few KiB; dump parts are sized by the kernel to
/// what the reader's buffer held before (at most 32 KiB).
const RECV_BUF: usize = 64 * 1024;

/// One request of an exchange.
#[derive(Clone)]
pub(crate) struct Request {
    payload: RouteNetlinkMessage,
    /// NLM_F_* beyond REQUEST (and ACK, added to every request but dumps).
    flags: u16,
    /// A dump, answered by parts and NLMSG_DONE (not by an ack). Said explicitly: the bits of
    /// NLM_F_DUMP are NLM_F_REPLACE and NLM_F_EXCL in a NEW request.
    dump: bool,
    /// Keep the objects of the answer as the kernel's bytes ([`Answer::raw`]) instead of
    /// decoding them with netlink-packet-route ([`Answer::objects`]): for readers that lift a
    /// few attributes themselves (a thousand-link listing).
    raw: bool,
}

impl Request {
    /// A request answered by an ack (and, with NLM_F_ECHO or for a `get`, objects before it).
    pub(crate) fn new(payload: RouteNetlinkMessage, flags: u16) -> Self {
        Self {
            payload,
            flags,
            dump: false,
            raw: false,
        }
    }

    /// A dump of every object matching `payload`.
    pub(crate) fn dump(payload: RouteNetlinkMessage) -> Self {
        Self {
            payload,
            flags: NLM_F_DUMP,
            dump: true,
            raw: false,
        }
    }

    /// This request, with its answer's objects kept as bytes (see [`Answer::raw`]).
    pub(crate) fn raw(mut self) -> Self {
        self.raw = true;
        self
    }
}

/// The kernel's answer to one request.
#[derive(Debug, Default)]
pub(crate) struct Answer {
    /// The objects it sent: the echoed object, the object of a `get`, the parts of a dump.
    pub(crate) objects: Vec<RouteNetlinkMessage>,
    /// The same, for a [`Request::raw`] request: each object's payload (after the netlink
    /// header) as the kernel sent it.
    pub(crate) raw: Vec<Vec<u8>>,
    /// A dump the kernel flagged as interrupted by a concurrent change.
    pub(crate) interrupted: bool,
}

struct State {
    seq: u32,
}

/// Receive buffers not in use, kept for the next exchange (at most [`POOLED`]).
static BUFFERS: Mutex<Vec<Box<[u8]>>> = Mutex::new(Vec::new());
const POOLED: usize = 16;

/// A receive buffer, taken from [`BUFFERS`] (or made) and given back when dropped.
struct RecvBuf(Option<Box<[u8]>>);

impl RecvBuf {
    fn take() -> Self {
        let pooled = BUFFERS.lock().unwrap_or_else(|p| p.into_inner()).pop();
        Self(Some(pooled.unwrap_or_else(|| vec![0; RECV_BUF].into_boxed_slice())))
    }
}

impl std::ops::Deref for RecvBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.0.as_deref().expect("a buffer until dropped")
    }
}

impl std::ops::DerefMut for RecvBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        self.0.as_deref_mut().expect("a buffer until dropped")
    }
}

impl Drop for RecvBuf {
    fn drop(&mut self) {
        if let Some(buf) = self.0.take() {
            let mut pool = BUFFERS.lock().unwrap_or_else(|p| p.into_inner());
            if pool.len() < POOLED {
                pool.push(buf);
            }
        }
    }
}

/// The socket's descriptor, lent to tokio's reactor for one wait (the [`Transport`] owns it).
struct Lent(RawFd);

impl AsRawFd for Lent {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

const NLMSG_NOOP: u16 = 1;
const NLMSG_DONE: u16 = 3;
const NLMSG_OVERRUN: u16 = 4;

/// Whether `m` ends the answer to a raw request, and how: an ack or NLMSG_DONE (`Ok`), the
/// kernel's error (`Err`); `None` for an object. As netlink-packet-core reads them: the errno
/// of an NLMSG_ERROR, the (optional) error code of an NLMSG_DONE.
fn raw_end(m: &wire::Message<'_>) -> Option<Result<(), NetlinkError>> {
    match m.header.ty {
        wire::NLMSG_ERROR => Some(match m.ack() {
            Some(ack) => NetlinkError::from_ack(&ack).map_or(Ok(()), Err),
            None => Err(NetlinkError::local("a truncated netlink error message")),
        }),
        NLMSG_DONE => {
            let code = m.payload.get(..4).map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
            Some(match code {
                Some(c) if c < 0 => Err(NetlinkError::from_errno(-c)),
                _ => Ok(()),
            })
        }
        _ => None,
    }
}

/// Wait until `fd` is readable, registered with `runtime`'s reactor for this wait only. Nothing
/// is lost between a `recv` that found the queue empty and the registration: adding a
/// descriptor to an epoll set reports it at once when it is already readable.
async fn wait_readable(runtime: &tokio::runtime::Handle, fd: &OwnedFd) -> Result<(), NetlinkError> {
    let lent = {
        let _in_runtime = runtime.enter();
        // SAFETY: `fd` is borrowed for the whole call, so it stays open; the AsyncFd lives only
        // inside this call (dropped before it returns, or with this future if the caller gives
        // up), so it never refers to a closed or reused number.
        unsafe { AsyncFd::register_with_interest(Lent(fd.as_raw_fd()), tokio::io::Interest::READABLE) }
            .map_err(|e| io_error("register", e.into()))?
    };
    let mut ready = lent.readable().await.map_err(|e| io_error("wait", e))?;
    ready.clear_ready();
    drop(ready);
    // Leaves the epoll set; the descriptor stays open (its owner keeps it).
    let _ = lent.into_inner();
    Ok(())
}

/// A NETLINK_ROUTE socket driven inline (see the module docs).
pub(crate) struct Transport {
    fd: OwnedFd,
    /// The runtime whose reactor a wait uses (the one the handle was made in).
    runtime: tokio::runtime::Handle,
    state: tokio::sync::Mutex<State>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport").field("fd", &self.fd.as_raw_fd()).finish()
    }
}

fn io_error(op: &str, e: std::io::Error) -> NetlinkError {
    NetlinkError {
        errno: e.raw_os_error(),
        message: Some(format!("netlink socket: {op}: {e}")),
    }
}

impl Transport {
    /// Take over `socket` (opened in the namespace the handle is for); waits go through the
    /// reactor of `runtime`.
    pub(crate) fn new(socket: netlink_sys::Socket, runtime: tokio::runtime::Handle) -> Result<Self, NetlinkError> {
        socket
            .set_non_blocking(true)
            .map_err(|e| io_error("set non-blocking", e))?;
        // SAFETY: into_raw_fd relinquishes ownership of the socket's descriptor: the OwnedFd is
        // its only owner.
        let fd = unsafe { OwnedFd::from_raw_fd(socket.into_raw_fd()) };
        Ok(Self {
            fd,
            runtime,
            state: tokio::sync::Mutex::new(State { seq: 0 }),
        })
    }

    /// Send `requests` in one `sendmsg` and read every answer: one entry per request, an
    /// `Err` for each the kernel refused. An `Err` of the whole call is a socket failure.
    pub(crate) async fn exchange(
        &self,
        requests: Vec<Request>,
    ) -> Result<Vec<Result<Answer, NetlinkError>>, NetlinkError> {
        let mut state = self.state.lock().await;
        let first = state.seq.wrapping_add(1);
        let mut out = Vec::new();
        let mut dumps = Vec::with_capacity(requests.len());
        let mut raws = Vec::with_capacity(requests.len());
        for r in requests {
            state.seq = state.seq.wrapping_add(1);
            let dump = r.dump;
            dumps.push(dump);
            raws.push(r.raw);
            let mut header = NetlinkHeader::default();
            header.flags = NLM_F_REQUEST | r.flags | if dump { 0 } else { NLM_F_ACK };
            header.sequence_number = state.seq;
            let mut msg = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(r.payload));
            msg.finalize();
            let at = out.len();
            out.resize(at + msg.buffer_len(), 0);
            msg.serialize(&mut out[at..]);
        }
        self.send(&out)?;
        let mut buf = RecvBuf::take();
        let mut answers: Vec<Option<Result<Answer, NetlinkError>>> = (0..dumps.len()).map(|_| None).collect();
        let mut partial: Vec<Answer> = (0..dumps.len()).map(|_| Answer::default()).collect();
        let mut pending = dumps.len();
        while pending > 0 {
            let n = self.recv(&mut buf).await?;
            for m in wire::messages(&buf[..n]) {
                let i = m.header.seq.wrapping_sub(first) as usize;
                if i >= answers.len() || answers[i].is_some() {
                    // An answer to an earlier exchange whose caller gave up.
                    continue;
                }
                if raws[i] {
                    partial[i].interrupted |= is_interrupted(m.header.flags);
                    if m.truncated {
                        answers[i] = Some(Err(NetlinkError::local("a truncated netlink answer")));
                        pending -= 1;
                    } else if let Some(end) = raw_end(&m) {
                        answers[i] = Some(end.map(|()| std::mem::take(&mut partial[i])));
                        pending -= 1;
                    } else if !matches!(m.header.ty, NLMSG_NOOP | NLMSG_OVERRUN) {
                        partial[i].raw.push(m.payload.to_vec());
                    }
                    continue;
                }
                let raw = m.raw;
                let msg = match NetlinkMessage::<RouteNetlinkMessage>::deserialize(raw) {
                    Ok(m) => m,
                    Err(e) => {
                        answers[i] = Some(Err(NetlinkError::local(format!("undecodable netlink answer: {e}"))));
                        pending -= 1;
                        continue;
                    }
                };
                partial[i].interrupted |= is_interrupted(msg.header.flags);
                let done = match msg.payload {
                    NetlinkPayload::InnerMessage(m) => {
                        partial[i].objects.push(m);
                        false
                    }
                    NetlinkPayload::Error(e) if e.code.is_some() => {
                        answers[i] = Some(Err(NetlinkError::from_kernel(&e, msg.header.flags)));
                        true
                    }
                    // The ack (errno 0) ends a request; NLMSG_DONE ends a dump.
                    NetlinkPayload::Error(_) | NetlinkPayload::Done(_) => {
                        answers[i] = Some(Ok(std::mem::take(&mut partial[i])));
                        true
                    }
                    _ => false,
                };
                if done {
                    pending -= 1;
                }
            }
        }
        Ok(answers
            .into_iter()
            .map(|a| a.expect("every request answered"))
            .collect())
    }

    fn send(&self, buf: &[u8]) -> Result<(), NetlinkError> {
        loop {
            // SAFETY: `buf` is a valid buffer of its length; the kernel is the socket's peer.
            let n = unsafe { libc::send(self.fd.as_raw_fd(), buf.as_ptr().cast(), buf.len(), 0) };
            if n >= 0 {
                return Ok(());
            }
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EINTR) {
                return Err(io_error("send", e));
            }
        }
    }

    async fn wait_readable(&self) -> Result<(), NetlinkError> {
        wait_readable(&self.runtime, &self.fd).await
    }

    /// Read what is queued, waiting for it only when nothing is.
    async fn recv(&self, buf: &mut [u8]) -> Result<usize, NetlinkError> {
        loop {
            let fd = self.fd.as_raw_fd();
            // SAFETY: `buf` is a valid, writable buffer of its length. MSG_TRUNC: the length of
            // the datagram even when the buffer was too small for it.
            let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_TRUNC) };
            if n >= 0 {
                let n = n as usize;
                if n > buf.len() {
                    return Err(NetlinkError::local(format!(
                        "netlink socket: an answer of {n} bytes did not fit the {} byte buffer",
                        buf.len()
                    )));
                }
                return Ok(n);
            }
            let e = std::io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EAGAIN) => self.wait_readable().await?,
                _ => return Err(io_error("recv", e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::OwnedFd;
    use std::os::unix::net::UnixDatagram;

    use super::wait_readable;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_wait_registers_for_itself_only_and_misses_nothing() {
        let (a, b) = UnixDatagram::pair().unwrap();
        let fd = OwnedFd::from(a);
        let rt = tokio::runtime::Handle::current();
        // Readable before the wait starts: reported at registration.
        b.send(b"1").unwrap();
        wait_readable(&rt, &fd).await.unwrap();
        // Drain it, then wait again (a second registration of the same descriptor works, so the
        // first one left the epoll set) and make it readable while the wait is pending.
        let a = UnixDatagram::from(fd);
        let mut byte = [0u8; 1];
        a.recv(&mut byte).unwrap();
        let fd = OwnedFd::from(a);
        let waiter = {
            let rt = rt.clone();
            tokio::spawn(async move {
                wait_readable(&rt, &fd).await.unwrap();
                fd
            })
        };
        b.send(b"2").unwrap();
        let fd = tokio::time::timeout(std::time::Duration::from_secs(10), waiter)
            .await
            .expect("the wait ends once the socket is readable")
            .unwrap();
        let a = UnixDatagram::from(fd);
        a.recv(&mut byte).unwrap();
        assert_eq!(&byte, b"2");
    }
}
