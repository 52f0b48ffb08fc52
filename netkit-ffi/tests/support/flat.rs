//! The memory check of the two "100,000 calls" test binaries.

/// Resident set size in KiB, from /proc/self/statm.
fn rss_kib() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("statm");
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64;
    pages * page / 1024
}

/// Run `round(i)` `warm_up` times, then 100,000 times, and assert the resident set grew by
/// less than 2 MiB over the 100,000 (a leak of even 40 bytes a call would be 4 MB).
pub fn assert_memory_flat(warm_up: usize, mut round: impl FnMut(usize)) {
    for i in 0..warm_up {
        round(i);
    }
    let before = rss_kib();
    for i in 0..100_000 {
        round(i);
    }
    let after = rss_kib();
    let grown = after.saturating_sub(before);
    assert!(
        grown < 2048,
        "RSS grew by {grown} KiB over 100,000 calls ({before} -> {after} KiB)"
    );
}
