//! Latency of in-process segment allocation across segment switches, with the database answering
//! at once and slowed by 50 ms, measured in the same run. The double buffer should hide the slow
//! database: p99.9 with the slow database stays within 2× the baseline.
//! `cargo bench -p floe-server --bench segment_switch`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use floe_core::{HandBack, Segment, SegmentConfig};
use floe_server::segment::{SegmentService, ServiceConfig};
use floe_store::segment::{
    SegmentStore, SqlSegmentStore, StoreError, StoreOptions, TableSpec, TagRow,
};

/// A store whose claims take `delay` longer: a slow database.
#[derive(Debug)]
struct Slow {
    inner: SqlSegmentStore,
    delay: Duration,
}

#[async_trait]
impl SegmentStore for Slow {
    async fn claim_within(&self, tag: &str, step: u64, end: u64) -> Result<Segment, StoreError> {
        tokio::time::sleep(self.delay).await;
        self.inner.claim_within(tag, step, end).await
    }
    async fn tag(&self, tag: &str) -> Result<Option<TagRow>, StoreError> {
        self.inner.tag(tag).await
    }
    async fn tags(&self) -> Result<Vec<TagRow>, StoreError> {
        self.inner.tags().await
    }
    async fn create(&self, tag: &str, start: u64, step: u64) -> Result<TagRow, StoreError> {
        self.inner.create(tag, start, step).await
    }
    async fn set_step(&self, tag: &str, step: u64) -> Result<TagRow, StoreError> {
        self.inner.set_step(tag, step).await
    }
    async fn hand_back(&self, tag: &str, back: HandBack) -> Result<bool, StoreError> {
        self.inner.hand_back(tag, back).await
    }
}

const STEP: u64 = 2_000_000;
const TAKES: usize = 20_000_000;

/// Takes TAKES single IDs, returning per-take latencies (ns), sorted, and the refill count.
async fn run(delay: Duration, dir: &std::path::Path) -> (Vec<u32>, u64) {
    let url = format!(
        "sqlite:{}",
        dir.join(format!("d{}.db", delay.as_millis())).display()
    );
    let inner = SqlSegmentStore::connect(&url, TableSpec::floe(), StoreOptions::default())
        .await
        .unwrap();
    inner.create("bench", 1, STEP).await.unwrap();
    let svc = SegmentService::new(
        Arc::new(Slow { inner, delay }),
        ServiceConfig {
            // A fixed step: the comparison is about hiding the database, not adapting to it.
            buffer: SegmentConfig {
                min_step: STEP,
                max_step: STEP,
                ..SegmentConfig::default()
            },
            ..ServiceConfig::default()
        },
    )
    .unwrap();
    svc.take("bench", 1).await.unwrap(); // first segment: not part of the measurement
    let mut lat = Vec::with_capacity(TAKES);
    let mut last = 0;
    for _ in 0..TAKES {
        let t = Instant::now();
        let id = svc.take("bench", 1).await.unwrap().first.start;
        lat.push(t.elapsed().as_nanos().min(u32::MAX as u128) as u32);
        assert!(id > last);
        last = id;
    }
    lat.sort_unstable();
    let refills = svc.states()[0].refills;
    (lat, refills)
}

fn pct(sorted: &[u32], p: f64) -> u32 {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    rt.block_on(async {
        let (base, base_refills) = run(Duration::ZERO, dir.path()).await;
        let (slow, slow_refills) = run(Duration::from_millis(50), dir.path()).await;
        println!("segment switch: {TAKES} single-ID takes, step {STEP}, 2 tokio workers");
        println!(
            "{:<22} {:>8} {:>8} {:>8} {:>10} {:>8}",
            "database", "p50 ns", "p99 ns", "p99.9 ns", "max ns", "refills"
        );
        for (name, l, r) in [
            ("immediate", &base, base_refills),
            ("slowed by 50 ms", &slow, slow_refills),
        ] {
            println!(
                "{:<22} {:>8} {:>8} {:>8} {:>10} {:>8}",
                name,
                pct(l, 0.5),
                pct(l, 0.99),
                pct(l, 0.999),
                l[l.len() - 1],
                r
            );
        }
        println!(
            "p99.9 ratio slowed/immediate: {:.2} (target ≤ 2)",
            pct(&slow, 0.999) as f64 / pct(&base, 0.999) as f64
        );
    });
}
