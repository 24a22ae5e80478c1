//! Spreading the browser load over workers, deterministically.

use std::collections::HashMap;
use std::ops::Range;

use crate::spec::{Spec, Spread};

/// Browser numbers (1-based, contiguous) per worker name.
///
/// `even`: counts differ by at most one, the first workers in spec order
/// take the remainder. `fill`: each worker in spec order takes up to the cap.
/// The spec check guarantees the load fits.
pub fn assign_browsers(spec: &Spec) -> HashMap<String, Range<u32>> {
    let mut out = HashMap::new();
    let Some(load) = &spec.load else { return out };
    let workers: Vec<&str> = spec.workers().map(|n| n.name.as_str()).collect();
    if workers.is_empty() {
        return out;
    }
    let total = load.browsers;
    let n = workers.len() as u32;
    let mut next = 1u32;
    let mut left = total;
    for (i, name) in workers.iter().enumerate() {
        let count = match load.spread {
            Spread::Even => total / n + u32::from((i as u32) < total % n),
            Spread::Fill => left.min(load.per_node_cap.unwrap_or(left)),
        };
        out.insert((*name).to_owned(), next..next + count);
        next += count;
        left -= count;
    }
    out
}
