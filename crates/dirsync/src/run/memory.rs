//! This process's resident memory, for the phase log.

/// Resident memory of this process in MiB (Linux; 0 elsewhere), for the phase log.
pub(super) fn resident_mib() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map(|pages| pages * 4096 / (1024 * 1024))
        // default: no /proc (not Linux) reports 0 MiB.
        .unwrap_or(0)
}
