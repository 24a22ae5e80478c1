//! The wall clock, read in one place, below everything else: leases
//! expire in Unix seconds, timelines and heartbeats are in Unix
//! milliseconds. Every part that stores or compares times across
//! processes (a restarted server, the servers of one site) reads it here.

use std::time::{SystemTime, UNIX_EPOCH};

/// Unix milliseconds now (0 if the clock is before 1970).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Unix seconds now.
pub fn now_secs() -> u64 {
    now_ms() / 1000
}
