//! A blocking `NETLINK_NETFILTER` socket inside one namespace: what the nf_tables element client
//! (`firewall::nftables::netlink`) and the conntrack client ([`crate::conntrack`]) share.
//!
//! It only moves bytes: [`NfnlSocket::send`] hands a buffer written with [`wire::Builder`] to the
//! kernel in one `sendmsg`, [`NfnlSocket::recv`] reads one datagram and hands each message in it
//! (walked with [`wire::messages`]) to the caller, [`NfnlSocket::drain`] throws away what an
//! earlier call left queued. Matching answers to requests (sequence numbers, acks, dumps) is the
//! caller's business.

use std::os::fd::{AsFd, BorrowedFd};
use std::time::Duration;

use netlink_sys::{protocols::NETLINK_NETFILTER, Socket, SocketAddr};

use super::wire;
use super::NetlinkError;
use crate::netns::NetNs;

/// How long [`NfnlSocket::recv`] waits for a datagram before giving up. nfnetlink handles a
/// request inside `sendmsg`, so its answers are queued before `send` returns; this only bounds
/// the wait if that ever changes.
pub(crate) const RECV_TIMEOUT: Duration = Duration::from_secs(5);
/// Receive buffer: one datagram (an ack, or one part of a dump).
const RECV_BUF: usize = 64 * 1024;
/// Socket receive buffer: room for thousands of acks.
const SO_RCVBUF_SIZE: usize = 4 * 1024 * 1024;

/// A `NETLINK_NETFILTER` socket opened inside a namespace; it keeps that namespace for its
/// whole life, and any thread may use it. Not shared: callers wrap it in a mutex so that the
/// answers of two exchanges never mix.
#[derive(Debug)]
pub(crate) struct NfnlSocket {
    socket: Socket,
    buf: Vec<u8>,
    /// The socket's send buffer as last set, to grow it for big requests.
    sndbuf: usize,
}

fn open_socket() -> std::io::Result<Socket> {
    use nix::sys::socket::{setsockopt, sockopt};
    let mut socket = Socket::new(NETLINK_NETFILTER)?;
    socket.bind_auto()?;
    // Short acks (no echo of the request), and the kernel's error text and
    // the offset of the attribute it refused (NLMSGERR_ATTR_OFFS).
    socket.set_cap_ack(true)?;
    socket.set_ext_ack(true)?;
    // Past net.core.rmem_max when allowed (CAP_NET_ADMIN), else up to it.
    if setsockopt(&socket, sockopt::RcvBufForce, &SO_RCVBUF_SIZE).is_err() {
        socket.set_rx_buf_sz(SO_RCVBUF_SIZE)?;
    }
    let timeout = nix::sys::time::TimeVal::new(RECV_TIMEOUT.as_secs() as _, 0);
    setsockopt(&socket, sockopt::ReceiveTimeout, &timeout).map_err(std::io::Error::from)?;
    Ok(socket)
}

impl NfnlSocket {
    /// Open a socket inside `ns` (on netkit's helper thread; the caller's thread never changes
    /// namespace). The error's message says what failed; its errno is the system call's.
    pub(crate) fn open(ns: &NetNs) -> Result<Self, NetlinkError> {
        let socket = ns
            .job_blocking(open_socket)
            .map_err(|e| NetlinkError {
                errno: e.errno(),
                message: Some(e.to_string()),
            })?
            .map_err(|e| NetlinkError {
                errno: e.raw_os_error(),
                message: Some(e.to_string()),
            })?;
        Ok(Self {
            socket,
            buf: Vec::with_capacity(RECV_BUF),
            sndbuf: 0,
        })
    }

    /// Throw away anything queued (answers to an earlier call that gave up).
    pub(crate) fn drain(&mut self) {
        loop {
            self.buf.clear();
            match self.socket.recv(&mut self.buf, libc::MSG_DONTWAIT) {
                Ok(_) => continue,
                Err(_) => return,
            }
        }
    }

    /// Send `buf` (one or more messages) to the kernel in one `sendmsg`, growing the socket's
    /// send buffer first when `buf` would not fit in it.
    pub(crate) fn send(&mut self, buf: &[u8]) -> Result<(), NetlinkError> {
        use nix::sys::socket::{setsockopt, sockopt};
        // netlink refuses a message larger than the send buffer (EMSGSIZE):
        // grow it for big batches, as nft does.
        if buf.len() + 4096 > self.sndbuf.max(200 * 1024) {
            let want = (buf.len() + 64 * 1024).next_power_of_two();
            let fd = self.socket.as_fd();
            if setsockopt(&fd, sockopt::SndBufForce, &want).is_err() {
                let _ = setsockopt(&fd, sockopt::SndBuf, &want);
            }
            self.sndbuf = want;
        }
        let n = self
            .socket
            .send_to(buf, &SocketAddr::new(0, 0), 0)
            .map_err(|e| io_error("send", &e))?;
        if n != buf.len() {
            return Err(NetlinkError::local(format!("sent {n} of {} bytes", buf.len())));
        }
        Ok(())
    }

    /// Receive one datagram and hand each netlink message in it to `f`. Fails with `ETIMEDOUT`
    /// when nothing came within [`RECV_TIMEOUT`], and with `ENOBUFS` when the kernel dropped
    /// answers because the socket's receive buffer was full.
    pub(crate) fn recv(&mut self, mut f: impl FnMut(&wire::Message<'_>)) -> Result<(), NetlinkError> {
        self.buf.clear();
        let n = self.socket.recv(&mut self.buf, 0).map_err(|e| match e.raw_os_error() {
            Some(libc::EAGAIN) => NetlinkError {
                errno: Some(libc::ETIMEDOUT),
                message: Some(format!("no answer from the kernel within {RECV_TIMEOUT:?}")),
            },
            Some(libc::ENOBUFS) => NetlinkError {
                errno: Some(libc::ENOBUFS),
                message: Some("answers lost (socket receive buffer overflowed); the outcome is unknown".into()),
            },
            _ => io_error("recv", &e),
        })?;
        wire::messages(&self.buf[..n.min(self.buf.len())]).for_each(|m| f(&m));
        Ok(())
    }
}

impl AsFd for NfnlSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

/// The kernel's answer in an NLMSG_ERROR: `None` for an ack, else the error and the offset of
/// the attribute it refused (NLMSGERR_ATTR_OFFS). An NLMSG_ERROR too short to hold its errno
/// is an error without errno.
pub(crate) fn error_of(m: &wire::Message<'_>) -> Option<(NetlinkError, Option<u32>)> {
    match m.ack() {
        Some(ack) => NetlinkError::from_ack(&ack).map(|e| (e, ack.ext.offset)),
        None => Some((NetlinkError::local("truncated netlink error message"), None)),
    }
}

fn io_error(op: &str, e: &std::io::Error) -> NetlinkError {
    NetlinkError {
        errno: e.raw_os_error(),
        message: Some(format!("netlink {op}: {e}")),
    }
}
