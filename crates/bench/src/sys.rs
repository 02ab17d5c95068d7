//! Process facts the tools need: the open-file limit and a process's resident memory.

/// Raises the soft open-file limit to the hard one and returns the new soft limit.
///
/// # Errors
///
/// When `getrlimit`/`setrlimit` fail.
pub fn raise_nofile_limit() -> std::io::Result<u64> {
    rlimit::increase_nofile_limit(u64::MAX)
}

/// Resident set size of process `pid` in bytes, from `/proc/PID/status` (`VmRSS`).
///
/// # Errors
///
/// When the file cannot be read or has no `VmRSS` line.
pub fn rss_bytes(pid: u32) -> std::io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map(|kib| kib * 1024)
        .ok_or_else(|| std::io::Error::other(format!("no VmRSS in /proc/{pid}/status")))
}

/// Summed RSS of `pids` in bytes; `None` when `pids` is empty.
///
/// # Errors
///
/// As [`rss_bytes`].
pub fn rss_total(pids: &[u32]) -> std::io::Result<Option<u64>> {
    if pids.is_empty() {
        return Ok(None);
    }
    let mut total = 0;
    for &pid in pids {
        total += rss_bytes(pid)?;
    }
    Ok(Some(total))
}
