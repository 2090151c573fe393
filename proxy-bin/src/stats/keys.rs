//! Big keys and hot keys, in memory that stays fixed whatever the key space (`RKPROXY BIGKEYS`, `RKPROXY
//! HOTKEYS`, and their metrics).
//!
//! - **Hot keys**: a session samples one keyed request in [`HOT_SAMPLE_EVERY`] (a countdown in a plain field;
//!   the key is looked at only for a sampled request) and adds it to its worker's sketch at once, under the
//!   worker's lock. Each worker keeps a Count-Min sketch of (tenant, pool, key) and, per tenant, the
//!   [`HOT_KEYS_PER_TENANT`] keys with the highest estimates. A read takes every worker's candidates and sums
//!   each candidate's estimate over the workers' sketches; the estimate (an upper bound of the sampled count)
//!   times the sampling rate is the requests shown.
//! - **Big keys**: a request of at least the big-request threshold, or a reply of at least it, is rare and
//!   costs far more than a lock: it is recorded at once into one process-wide table, at most
//!   [`BIG_KEYS_PER_TENANT`] keys per tenant (when full, the key seen least often gives way).
//!
//! Keys are the client's own (before any tenant prefix) and kept at most [`KEY_BYTES_KEPT`] bytes; every row
//! carries its tenant, and a tenant reads only its own rows.

use std::collections::HashMap;
use std::fmt::Write;
use std::hash::BuildHasher;
use std::sync::Arc;

/// A session samples one keyed request in this many for the hot keys.
pub const HOT_SAMPLE_EVERY: u32 = 128;
/// Hot-key candidates kept per tenant in each worker.
pub const HOT_KEYS_PER_TENANT: usize = 32;
/// Big keys kept per tenant.
pub const BIG_KEYS_PER_TENANT: usize = 64;
/// Leading bytes of a key that are kept and shown (a longer key is shown cut, with its length).
pub const KEY_BYTES_KEPT: usize = 128;

const SKETCH_DEPTH: usize = 4;
const SKETCH_WIDTH: usize = 2048;

/// A key as kept: its first [`KEY_BYTES_KEPT`] bytes and its full length.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeptKey {
    pub bytes: Box<[u8]>,
    pub len: usize,
}

impl KeptKey {
    pub fn new(key: &[u8]) -> KeptKey {
        KeptKey {
            bytes: key[..key.len().min(KEY_BYTES_KEPT)].into(),
            len: key.len(),
        }
    }

    /// The key for a `key=value` line or a metric label: printable ASCII as is, anything else (and space, `\`,
    /// `=`, `"`) as `\xHH`;
    /// a cut key ends in `...(<len> bytes)`.
    pub fn shown(&self) -> String {
        let mut out = String::with_capacity(self.bytes.len());
        for &byte in self.bytes.iter() {
            if byte.is_ascii_graphic() && !matches!(byte, b'\\' | b'=' | b'"') {
                out.push(char::from(byte));
            } else {
                let _ = write!(out, "\\x{byte:02x}");
            }
        }
        if self.len > self.bytes.len() {
            let _ = write!(out, "...({} bytes)", self.len);
        }
        out
    }
}

/// The hasher of the sketch: foldhash, seeded per process (a hot-key hash is computed for every sampled key;
/// SipHash cost several times more, and the sketch needs no defence against chosen collisions beyond a seed).
type SketchHasher = foldhash::fast::RandomState;

/// A Count-Min sketch: `SKETCH_DEPTH` rows of counters; a key's estimate is its smallest counter.
#[derive(Debug)]
struct CountMin {
    counters: Vec<u32>,
    hasher: SketchHasher,
}

impl Default for CountMin {
    fn default() -> Self {
        CountMin {
            counters: vec![0; SKETCH_DEPTH * SKETCH_WIDTH],
            hasher: SketchHasher::default(),
        }
    }
}

impl CountMin {
    /// The hash of a key of `tenant` in `pool`, kept as `kept` (its first bytes) of `len` bytes: the one
    /// definition both counting and reading use.
    fn hash(&self, tenant: &str, pool: &str, kept: &[u8], len: usize) -> u64 {
        self.hasher.hash_one((tenant, pool, kept, len))
    }

    fn item_hash(&self, item: &HotItem) -> u64 {
        self.hash(&item.tenant, &item.pool, &item.key.bytes, item.key.len)
    }

    /// Adds one to the item whose hash is `hash` and returns its new estimate.
    fn add_hashed(&mut self, hash: u64) -> u32 {
        let mut estimate = u32::MAX;
        for cell in cells_of(hash) {
            if let Some(counter) = self.counters.get_mut(cell) {
                *counter = counter.saturating_add(1);
                estimate = estimate.min(*counter);
            }
        }
        estimate
    }

    fn estimate(&self, item: &HotItem) -> u32 {
        cells_of(self.item_hash(item))
            .iter()
            .map(|&cell| self.counters.get(cell).copied().unwrap_or(0))
            .min()
            .unwrap_or(0)
    }
}

/// The counter of each row for an item whose hash is `hash` (two hashes combined, as Kirsch and Mitzenmacher
/// show suffices).
fn cells_of(hash: u64) -> [usize; SKETCH_DEPTH] {
    let (first, second) = (hash as u32 as usize, (hash >> 32) as usize | 1);
    let mut cells = [0; SKETCH_DEPTH];
    for (row, cell) in cells.iter_mut().enumerate() {
        *cell = row * SKETCH_WIDTH + first.wrapping_add(row.wrapping_mul(second)) % SKETCH_WIDTH;
    }
    cells
}

/// What the hot-key sketch counts: a key of one tenant in one pool.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HotItem {
    pub tenant: Arc<str>,
    pub pool: Arc<str>,
    pub key: KeptKey,
}

/// One tenant's best candidates in one worker.
#[derive(Debug, Default)]
struct TenantTop {
    /// Each candidate, its estimate, and its hash (compared first: most sampled keys are not candidates).
    entries: Vec<(HotItem, u32, u64)>,
    /// When `entries` is full, the smallest estimate in it (else 0). A sampled key whose new estimate is at
    /// most this is not a candidate: a candidate's estimate was at least this when stored, and every sample
    /// raises it by one. So most samples of cold keys stop here, without a scan.
    least: u32,
}

impl TenantTop {
    fn is_full(&self) -> bool {
        self.entries.len() >= HOT_KEYS_PER_TENANT
    }

    fn note_least(&mut self) {
        self.least = match self.is_full() {
            true => self.entries.iter().map(|entry| entry.1).min().unwrap_or(0),
            false => 0,
        };
    }

    /// Counts a sampled key whose hash is `hash` and estimate now `estimate`.
    fn offer(
        &mut self,
        hash: u64,
        estimate: u32,
        item: impl FnOnce() -> HotItem,
        same: impl Fn(&HotItem) -> bool,
    ) {
        if self.is_full() && estimate <= self.least {
            return;
        }
        if let Some(known) = self
            .entries
            .iter_mut()
            .find(|(known, _, known_hash)| *known_hash == hash && same(known))
        {
            known.1 = estimate;
        } else if !self.is_full() {
            self.entries.push((item(), estimate, hash));
        } else if let Some(smallest) = self.entries.iter_mut().min_by_key(|entry| entry.1) {
            *smallest = (item(), estimate, hash);
        }
        self.note_least();
    }
}

/// One worker's hot keys: the sketch and each tenant's best candidates with their estimates.
#[derive(Debug, Default)]
pub struct HotKeys {
    sketch: CountMin,
    top: super::FastMap<Arc<str>, TenantTop>,
}

impl HotKeys {
    /// Counts one sampled request for `key` (of `tenant` in `pool`).
    pub fn add_key(&mut self, tenant: &Arc<str>, pool: &Arc<str>, key: &[u8]) {
        let top = match self.top.get_mut(tenant) {
            Some(top) => top,
            None => self.top.entry(Arc::clone(tenant)).or_default(),
        };
        let (kept, len) = (key.get(..KEY_BYTES_KEPT).unwrap_or(key), key.len());
        let hash = self.sketch.hash(tenant, pool, kept, len);
        let estimate = self.sketch.add_hashed(hash);
        let item = || HotItem {
            tenant: Arc::clone(tenant),
            pool: Arc::clone(pool),
            key: KeptKey {
                bytes: kept.into(),
                len,
            },
        };
        let same = |known: &HotItem| {
            known.key.len == len && *known.key.bytes == *kept && *known.pool == **pool
        };
        top.offer(hash, estimate, item, same);
    }

    /// The candidates of the visible tenants.
    fn candidates<'a>(
        &'a self,
        visible: &'a dyn Fn(&str) -> bool,
    ) -> impl Iterator<Item = &'a HotItem> + 'a {
        self.top
            .iter()
            .filter(move |(tenant, _)| visible(tenant))
            .flat_map(|(_, top)| top.entries.iter().map(|(item, _, _)| item))
    }
}

/// A hot key as read: its estimated requests (sampled estimate times the sampling rate).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HotKey {
    pub item: HotItem,
    pub requests: u64,
}

/// Merges the workers' hot keys: every candidate's estimate summed over the workers; per tenant the `per_tenant`
/// hottest, hottest first.
pub fn merge_hot_keys(
    workers: &[&HotKeys],
    visible: &dyn Fn(&str) -> bool,
    per_tenant: usize,
) -> Vec<HotKey> {
    let mut candidates: Vec<&HotItem> = workers
        .iter()
        .flat_map(|worker| worker.candidates(visible))
        .collect();
    candidates.sort();
    candidates.dedup();
    let mut keys: Vec<HotKey> = candidates
        .into_iter()
        .map(|item| HotKey {
            item: item.clone(),
            requests: workers
                .iter()
                .map(|worker| u64::from(worker.sketch.estimate(item)))
                .sum::<u64>()
                * u64::from(HOT_SAMPLE_EVERY),
        })
        .collect();
    keys.sort_by(|a, b| {
        (&a.item.tenant, std::cmp::Reverse(a.requests), &a.item).cmp(&(
            &b.item.tenant,
            std::cmp::Reverse(b.requests),
            &b.item,
        ))
    });
    keep_per_tenant(keys, per_tenant, |key| &key.item.tenant)
}

/// The first `per_tenant` rows of each tenant (rows sorted by tenant).
fn keep_per_tenant<T>(rows: Vec<T>, per_tenant: usize, tenant: impl Fn(&T) -> &str) -> Vec<T> {
    let mut kept = Vec::new();
    let mut current: Option<String> = None;
    let mut taken = 0;
    for row in rows {
        if current.as_deref() != Some(tenant(&row)) {
            current = Some(tenant(&row).to_owned());
            taken = 0;
        }
        if taken < per_tenant {
            kept.push(row);
            taken += 1;
        }
    }
    kept
}

/// Which side of a request crossed the threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BigSide {
    Request,
    Reply,
}

impl BigSide {
    pub fn label(self) -> &'static str {
        match self {
            BigSide::Request => "request",
            BigSide::Reply => "reply",
        }
    }
}

/// One big key of one tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BigKey {
    pub tenant: Arc<str>,
    pub pool: Arc<str>,
    pub key: KeptKey,
    /// The command of its latest big request or reply.
    pub command: &'static str,
    pub side: BigSide,
    /// Big requests and replies seen for it.
    pub count: u64,
    /// The largest of them, in bytes.
    pub max_bytes: u64,
}

/// The big keys of every tenant, at most [`BIG_KEYS_PER_TENANT`] each.
#[derive(Debug, Default)]
pub struct BigKeys {
    tenants: HashMap<Arc<str>, Vec<BigKey>>,
}

/// A big request or reply, as seen.
#[derive(Debug)]
pub struct BigSeen<'a> {
    pub tenant: &'a Arc<str>,
    pub pool: &'a Arc<str>,
    pub key: &'a [u8],
    pub command: &'static str,
    pub side: BigSide,
    pub bytes: usize,
}

impl BigKeys {
    pub fn record(&mut self, seen: BigSeen<'_>) {
        let keys = self.tenants.entry(Arc::clone(seen.tenant)).or_default();
        let key = KeptKey::new(seen.key);
        let bytes = seen.bytes as u64;
        if let Some(known) = keys
            .iter_mut()
            .find(|known| *known.pool == **seen.pool && known.key == key)
        {
            known.count += 1;
            known.max_bytes = known.max_bytes.max(bytes);
            known.command = seen.command;
            known.side = seen.side;
            return;
        }
        let entry = BigKey {
            tenant: Arc::clone(seen.tenant),
            pool: Arc::clone(seen.pool),
            key,
            command: seen.command,
            side: seen.side,
            count: 1,
            max_bytes: bytes,
        };
        if keys.len() < BIG_KEYS_PER_TENANT {
            keys.push(entry);
            return;
        }
        // Full: the key seen least often (the smallest of those) gives way.
        if let Some(least) = keys.iter_mut().min_by_key(|k| (k.count, k.max_bytes)) {
            *least = entry;
        }
    }

    /// Per visible tenant the `per_tenant` biggest keys: by count, then by size.
    pub fn top(&self, visible: &dyn Fn(&str) -> bool, per_tenant: usize) -> Vec<BigKey> {
        let mut rows: Vec<BigKey> = self
            .tenants
            .iter()
            .filter(|(tenant, _)| visible(tenant))
            .flat_map(|(_, keys)| keys.iter().cloned())
            .collect();
        rows.sort_by(|a, b| {
            (&a.tenant, std::cmp::Reverse((a.count, a.max_bytes)), &a.key).cmp(&(
                &b.tenant,
                std::cmp::Reverse((b.count, b.max_bytes)),
                &b.key,
            ))
        });
        keep_per_tenant(rows, per_tenant, |key| &key.tenant)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hottest_keys_of_each_tenant_come_first_and_memory_stays_bounded() {
        let (alpha, beta, pool): (Arc<str>, Arc<str>, Arc<str>) =
            (Arc::from("alpha"), Arc::from("beta"), Arc::from("main"));
        let mut one = HotKeys::default();
        let mut two = HotKeys::default();
        for round in 0..10_000u32 {
            // Many distinct cold keys, and two hot ones split over two workers.
            one.add_key(&alpha, &pool, format!("cold{round}").as_bytes());
            if round % 10 == 0 {
                one.add_key(&alpha, &pool, b"hot");
                two.add_key(&alpha, &pool, b"hot");
                two.add_key(&beta, &pool, b"theirs");
            }
        }
        assert!(one
            .top
            .values()
            .all(|top| top.entries.len() <= HOT_KEYS_PER_TENANT));
        let all = merge_hot_keys(&[&one, &two], &|_| true, 1);
        assert_eq!(all.len(), 2);
        assert_eq!(&*all[0].item.key.bytes, b"hot");
        assert!(all[0].requests >= 2_000 * u64::from(HOT_SAMPLE_EVERY));
        let beta_only = merge_hot_keys(&[&one, &two], &|t| t == "beta", 5);
        assert_eq!(beta_only.len(), 1);
        assert_eq!(&*beta_only[0].item.tenant, "beta");
    }

    #[test]
    fn big_keys_are_bounded_per_tenant_and_ranked_by_count_then_size() {
        let (tenant, pool): (Arc<str>, Arc<str>) = (Arc::from("t"), Arc::from("main"));
        let mut big = BigKeys::default();
        let seen = |key: &'static [u8], bytes| BigSeen {
            tenant: &tenant,
            pool: &pool,
            key,
            command: "set",
            side: BigSide::Request,
            bytes,
        };
        for _ in 0..3 {
            big.record(seen(b"often", 10));
        }
        big.record(seen(b"huge", 1000));
        for index in 0..200u32 {
            let key: &'static [u8] = Box::leak(format!("k{index}").into_bytes().into_boxed_slice());
            big.record(seen(key, 5));
        }
        let top = big.top(&|_| true, 2);
        assert_eq!(top.len(), 2);
        assert_eq!((&*top[0].key.bytes, top[0].count), (&b"often"[..], 3));
        assert!(big
            .tenants
            .values()
            .all(|keys| keys.len() <= BIG_KEYS_PER_TENANT));
    }

    #[test]
    fn keys_are_shown_escaped_and_cut() {
        assert_eq!(
            KeptKey::new(b"a b=c\\\x01").shown(),
            "a\\x20b\\x3dc\\x5c\\x01"
        );
        let long = vec![b'x'; 300];
        assert!(KeptKey::new(&long).shown().ends_with("...(300 bytes)"));
    }
}
