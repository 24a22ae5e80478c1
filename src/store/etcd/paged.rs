//! Reading every key under a prefix in pages.
//!
//! One range request for a whole prefix comes back as one gRPC message,
//! and the client refuses messages over 4 MiB: at a few hundred bytes a
//! lease, a site with some 30,000 leases could no longer be read, and a
//! server could not start. So a prefix is read a page at a time, each page
//! continuing after the last key of the one before, all pages at the
//! revision of the first (one consistent view). When etcd compacts that
//! revision between two pages, the read starts over at the newest.
//!
//! Pages are as large as fit in about [`PAGE_BYTES`]: the first asks for
//! [`PAGE`] keys, the next for as many as the first's keys suggest. Small
//! pages would be slow on a big site: etcd counts every key left in the
//! range for each page it answers, so a read costs pages times keys (1M
//! leases in pages of 500 took 190 s to read; see BENCHMARKS.md).

use etcd_client::{Client, GetOptions, GetResponse, KeyValue};

/// Keys in the first page: a lease record is about 150 bytes and a
/// timeline a few KiB, so even 500 timelines stay below the client's 4 MiB
/// message limit.
pub(super) const PAGE: i64 = 500;

/// What a page after the first aims at, by the size of the keys seen:
/// a quarter of the client's message limit.
const PAGE_BYTES: usize = 1 << 20;

/// The most keys a page asks for.
const MAX_PAGE: i64 = 20_000;

/// Every key under a prefix, as of one revision.
#[derive(Debug, Default)]
pub(super) struct Snapshot {
    pub kvs: Vec<KeyValue>,
    /// The revision the keys were read at.
    pub revision: i64,
}

/// The first key after every key that starts with `prefix` (etcd's
/// `range_end` for a prefix): the prefix with its last byte below 0xff
/// incremented and what follows it dropped; `\0` (every key) when there is
/// no such byte.
pub(super) fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// A paged read under way: where the next page starts, the revision
/// every page is read at (the first page's), and what was read so far.
pub(super) struct Cursor {
    prefix: Vec<u8>,
    from: Vec<u8>,
    end: Vec<u8>,
    revision: i64,
    min_mod_revision: i64,
    /// Keys the next page asks for.
    limit: i64,
    done: bool,
    out: Snapshot,
}

impl Cursor {
    /// A read of every key under `prefix` modified after
    /// `min_mod_revision` (0: all of them).
    pub(super) fn new(prefix: &[u8], min_mod_revision: i64) -> Cursor {
        Cursor {
            prefix: prefix.to_vec(),
            from: prefix.to_vec(),
            end: prefix_end(prefix),
            revision: 0,
            min_mod_revision,
            limit: PAGE,
            done: false,
            out: Snapshot::default(),
        }
    }

    /// The next page's key and options.
    pub(super) fn request(&self) -> (Vec<u8>, GetOptions) {
        let mut options = GetOptions::new()
            .with_range(self.end.clone())
            .with_limit(self.limit)
            .with_revision(self.revision);
        if self.min_mod_revision > 0 {
            options = options.with_min_mod_revision(self.min_mod_revision);
        }
        (self.from.clone(), options)
    }

    /// Takes a page's answer; true while there is more to read.
    pub(super) fn take(&mut self, mut resp: GetResponse) -> bool {
        if self.revision == 0 {
            self.revision = resp.header().map_or(0, |h| h.revision());
            self.out.revision = self.revision;
        }
        let more = resp.more();
        let kvs = resp.take_kvs();
        if !kvs.is_empty() {
            // Each key and value, and about 32 bytes of framing.
            let bytes: usize = kvs
                .iter()
                .map(|kv| kv.key().len() + kv.value().len() + 32)
                .sum();
            let per_key = bytes.div_ceil(kvs.len()).max(1);
            self.limit = ((PAGE_BYTES / per_key) as i64).clamp(1, MAX_PAGE);
        }
        match kvs.last() {
            Some(last) if more => {
                self.from = last.key().to_vec();
                self.from.push(0);
            }
            _ => self.done = true,
        }
        self.out.kvs.extend(kvs);
        !self.done
    }

    /// Whether a failed page is worth reading again from the start: the
    /// revision the pages were pinned at was compacted meanwhile.
    pub(super) fn restart_after(&mut self, e: &etcd_client::Error) -> bool {
        if self.revision != 0 && is_compacted(e) {
            *self = Cursor::new(&self.prefix, self.min_mod_revision);
            return true;
        }
        false
    }

    /// The keys read, once [`Cursor::take`] said there is no more.
    pub(super) fn finish(self) -> Snapshot {
        self.out
    }
}

/// Whether etcd refused a read because its revision was compacted.
pub(super) fn is_compacted(e: &etcd_client::Error) -> bool {
    e.to_string().contains("compacted")
}

/// Reads every key under `prefix` modified after `min_mod_revision`, in
/// pages (from a task on the store's runtime).
pub(super) async fn read(
    client: &mut Client,
    prefix: &[u8],
    min_mod_revision: i64,
) -> Result<Snapshot, etcd_client::Error> {
    let mut cursor = Cursor::new(prefix, min_mod_revision);
    loop {
        let (key, options) = cursor.request();
        match client.get(key, Some(options)).await {
            Ok(resp) => {
                if !cursor.take(resp) {
                    return Ok(cursor.finish());
                }
            }
            Err(e) if cursor.restart_after(&e) => {}
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::prefix_end;

    #[test]
    fn a_prefix_ends_after_its_last_byte_is_incremented() {
        assert_eq!(prefix_end(b"/bf/leases/"), b"/bf/leases0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
        assert_eq!(prefix_end(b""), vec![0]);
    }
}
