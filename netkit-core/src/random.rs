//! Random bytes from the kernel, for the few places netkit needs them (MAC addresses, unique
//! file names, state directory ids): one wrapper around `getrandom(2)`.

/// Fill `buf` with random bytes from the kernel. If `getrandom` fails (a kernel before 3.17,
/// or a seccomp filter), the bytes come from the clock and the buffer's address instead: good
/// enough to tell names and addresses apart, not for secrets (netkit has none).
pub(crate) fn fill(buf: &mut [u8]) {
    let mut done = 0;
    while done < buf.len() {
        let rest = &mut buf[done..];
        // SAFETY: getrandom writes at most `rest.len()` bytes into the valid buffer `rest`.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if n > 0 {
            done += n as usize;
            continue;
        }
        if n < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
            continue;
        }
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
            ^ (buf.as_ptr() as u64).rotate_left(32);
        for (i, b) in buf[done..].iter_mut().enumerate() {
            *b = (t.rotate_left(8 * (i as u32 % 8)) & 0xff) as u8;
        }
        return;
    }
}

/// 64 random bits (see [`fill`]).
pub(crate) fn u64() -> u64 {
    let mut b = [0u8; 8];
    fill(&mut b);
    u64::from_ne_bytes(b)
}

#[cfg(test)]
mod tests {
    #[test]
    fn bytes_differ() {
        let (a, b) = (super::u64(), super::u64());
        assert_ne!(a, b, "two draws of 64 random bits were equal");
        let mut long = [0u8; 300];
        super::fill(&mut long);
        assert!(long.iter().any(|b| *b != 0));
    }
}
