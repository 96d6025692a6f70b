//! One rate budget and one circuit breaker per tenant + service, shared by every process: two
//! "processes" are two store handles on one SQLite file (each its own connection, as two `run`
//! processes have), two DynamoDB clients on one table, or two handles on one in-memory row
//! whose writes yield like real ones; on paused tokio time where waits are involved.

#[allow(dead_code)]
#[path = "store_conformance/backends.rs"]
mod backends;

use std::sync::Arc;
use std::time::Duration;

use avesa_console::domain::Service;
use avesa_console::engine::breaker::Admission;
use avesa_console::engine::{BreakerState, CircuitBreaker, RateBudget};
use avesa_console::store::{
    DynamoOptions, DynamoStore, MemoryRateStore, RateChange, RateClock, RateRow, RateStore,
    SqliteStore, StoreError,
};
use tokio::time::Instant;

const TENANT: &str = "acme";
const SVC: Service = Service::Connectwise;

/// Two handles on one SQLite file: what two processes on one workspace have.
fn two_sqlite(dir: &tempfile::TempDir) -> (Arc<dyn RateStore>, Arc<dyn RateStore>) {
    let path = dir.path().join("state.db");
    (
        Arc::new(SqliteStore::open(&path).unwrap()),
        Arc::new(SqliteStore::open(&path).unwrap()),
    )
}

fn budget(per_minute: u32, store: &Arc<dyn RateStore>, clock: RateClock) -> Arc<RateBudget> {
    Arc::new(RateBudget::shared(
        Some(per_minute),
        store.clone(),
        TENANT,
        SVC,
        clock,
    ))
}

/// `callers` tasks per budget, each acquiring `each` times; every acquire's instant (since
/// `start`) and slot, in the order they happened.
async fn hammer(
    budgets: &[Arc<RateBudget>],
    callers: usize,
    each: usize,
) -> (Vec<Duration>, Vec<i64>) {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for b in budgets {
        for _ in 0..callers {
            let b = b.clone();
            tasks.push(tokio::spawn(async move {
                let mut out = Vec::new();
                for _ in 0..each {
                    let slot = b.acquire_slot().await;
                    out.push((start.elapsed(), slot));
                }
                out
            }));
        }
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort();
    all.into_iter().unzip()
}

fn assert_spaced(what: &str, times: &[i64], spacing_ms: i64) {
    let mut sorted = times.to_vec();
    sorted.sort();
    for w in sorted.windows(2) {
        assert!(
            w[1] - w[0] >= spacing_ms,
            "{what}: two requests {} ms apart, less than {spacing_ms} ms: {sorted:?}",
            w[1] - w[0]
        );
    }
}

#[tokio::test(start_paused = true)]
async fn two_processes_on_one_sqlite_file_keep_one_rate() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = two_sqlite(&dir);
    let clock = RateClock::now();
    // 600/min: one request per 100 ms, whichever process sends it.
    let budgets = [budget(600, &a, clock), budget(600, &b, clock)];
    let (times, slots) = hammer(&budgets, 3, 10).await;
    let ms: Vec<i64> = times.iter().map(|d| d.as_millis() as i64).collect();
    assert_spaced("acquire instants", &ms, 100);
    assert_spaced("slots", &slots, 100);
    // 60 requests at 100 ms: the configured rate, give or take the last block's unused slots.
    let span = ms.last().unwrap() - ms.first().unwrap();
    assert!(
        (5_900..=6_500).contains(&span),
        "60 requests took {span} ms"
    );
}

/// A process's handle on a shared in-memory row whose writes take a turn of the scheduler,
/// as a write to SQLite or DynamoDB does, but deterministically: the requests that arrive
/// while a reservation is on its way wait for the next one.
struct Process {
    row: Arc<MemoryRateStore>,
    writes: std::sync::atomic::AtomicU64,
}

#[async_trait::async_trait]
impl RateStore for Process {
    async fn read_rate(&self, tenant_id: &str, service: Service) -> Result<RateRow, StoreError> {
        tokio::task::yield_now().await;
        self.row.read_rate(tenant_id, service).await
    }

    async fn update_rate(
        &self,
        tenant_id: &str,
        service: Service,
        change: RateChange,
    ) -> Result<(RateRow, RateRow), StoreError> {
        tokio::task::yield_now().await;
        let (before, after) = self.row.update_rate(tenant_id, service, change).await?;
        if before != after {
            self.writes
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        Ok((before, after))
    }

    fn rate_writes(&self) -> u64 {
        self.writes.load(std::sync::atomic::Ordering::Relaxed)
    }
}

#[tokio::test(start_paused = true)]
async fn a_burst_of_waiting_requests_reserves_its_slots_in_blocks() {
    let row = Arc::new(MemoryRateStore::new());
    let process = || -> Arc<dyn RateStore> {
        Arc::new(Process {
            row: row.clone(),
            writes: Default::default(),
        })
    };
    let (a, b) = (process(), process());
    let clock = RateClock::now();
    let budgets = [budget(600, &a, clock), budget(600, &b, clock)];
    // Ten requests wait at once in each process: the first reservation takes one slot (the
    // others arrive while it is written), the next one a block for the other nine (a block
    // covers at most a second: nine slots at 101 ms). Two writes per process, where one
    // write per request would be twenty; the spacing holds across both all the same.
    let (times, slots) = hammer(&budgets, 10, 1).await;
    let ms: Vec<i64> = times.iter().map(|d| d.as_millis() as i64).collect();
    assert_spaced("acquire instants", &ms, 100);
    assert_spaced("slots", &slots, 100);
    let writes = a.rate_writes() + b.rate_writes();
    assert_eq!(writes, 4, "{writes} writes for 20 requests");
}

#[tokio::test(start_paused = true)]
async fn a_pause_written_by_one_process_holds_the_other() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = two_sqlite(&dir);
    let clock = RateClock::now();
    let (pa, pb) = (budget(600, &a, clock), budget(600, &b, clock));
    let start = Instant::now();
    pa.acquire().await; // slot 0
    // B reserves the next slot (100 ms) and waits for it...
    let other = {
        let pb = pb.clone();
        tokio::spawn(async move {
            pb.acquire().await;
            start.elapsed()
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    // ...while A is told to wait 7 s: B must not send during that pause.
    pa.rate_limited(Some(Duration::from_secs(7)), Duration::ZERO)
        .await;
    let theirs = other.await.unwrap();
    assert!(theirs >= Duration::from_millis(7_050), "{theirs:?}");
    assert!(pb.snapshot().paused_for.is_none());
    // A new reservation by B also starts after a pause A writes.
    pa.rate_limited(Some(Duration::from_secs(3)), Duration::ZERO)
        .await;
    let before = Instant::now();
    pb.acquire().await;
    assert!(before.elapsed() >= Duration::from_secs(3));
}

fn breaker(store: &Arc<dyn RateStore>, clock: RateClock) -> Arc<CircuitBreaker> {
    Arc::new(CircuitBreaker::shared(
        2,
        Duration::from_secs(30),
        store.clone(),
        TENANT,
        SVC,
        clock,
    ))
}

fn failure() -> avesa_console::engine::breaker::Outcome {
    avesa_console::engine::breaker::Outcome::Failure("HTTP 503".into())
}

#[tokio::test(start_paused = true)]
async fn a_breaker_opened_by_one_process_stops_the_other_and_one_probe_goes_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = two_sqlite(&dir);
    let clock = RateClock::now();
    let (ba, bb) = (breaker(&a, clock), breaker(&b, clock));
    // One failure in each process: two consecutive failures of the pair open it.
    assert_eq!(bb.admit(|_| {}).await, Admission::Normal);
    assert_eq!(bb.record(Admission::Normal, failure()).await, None);
    let t = ba
        .record(Admission::Normal, failure())
        .await
        .expect("the pair's second failure opens the breaker");
    assert_eq!((t.state, t.consecutive_failures), (BreakerState::Open, 2));

    // B is held for the cool-down, then probes.
    let start = Instant::now();
    let mut seen = Vec::new();
    assert_eq!(bb.admit(|t| seen.push(t.state)).await, Admission::Probe);
    assert_eq!(start.elapsed(), Duration::from_secs(30));
    assert_eq!(seen, vec![BreakerState::HalfOpen]);

    // While B's probe is out, A waits.
    let other = {
        let ba = ba.clone();
        tokio::spawn(async move { (ba.admit(|_| {}).await, start.elapsed()) })
    };
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(!other.is_finished(), "A went while B's probe was out");
    let t = bb
        .record(
            Admission::Probe,
            avesa_console::engine::breaker::Outcome::Success,
        )
        .await
        .unwrap();
    assert_eq!(t.state, BreakerState::Closed);
    let (admission, at) = other.await.unwrap();
    assert_eq!(admission, Admission::Normal);
    assert!(
        at >= Duration::from_secs(35) && at <= Duration::from_secs(36),
        "{at:?}"
    );
}

async fn dynamo_pair() -> Option<(DynamoStore, DynamoStore)> {
    let url = backends::dynamodb_url()?;
    let config = backends::dynamodb_config(&url);
    let options = DynamoOptions {
        table_prefix: backends::unique_prefix(),
        ..Default::default()
    };
    let open = || {
        DynamoStore::new(
            aws_sdk_dynamodb::Client::from_conf(config.clone()),
            options.clone(),
        )
    };
    let a = open();
    a.ensure_tables().await.unwrap();
    Some((a, open()))
}

/// On DynamoDB Local, in real time: two processes' reservations never overlap (the conditional
/// writes), with one request at a time per process and with several waiting per process
/// (blocks); prints the rate item writes per request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_on_dynamodb_keep_one_rate() {
    let Some((a, b)) = dynamo_pair().await else {
        return;
    };
    let (da, db): (Arc<dyn RateStore>, Arc<dyn RateStore>) =
        (Arc::new(a.clone()), Arc::new(b.clone()));
    let clock = RateClock::now();
    let mut last_slot = 0;
    // 1200/min (50 ms apart) with one request at a time per process; 6000/min (10 ms apart)
    // with four, so a block of waiting requests spans several slots.
    for (rate, spacing, callers, each) in [(1200, 50, 1, 30), (6000, 10, 4, 15)] {
        let requests = 2 * callers * each;
        let writes_before = da.rate_writes() + db.rate_writes();
        let budgets = [budget(rate, &da, clock), budget(rate, &db, clock)];
        let (_, slots) = hammer(&budgets, callers, each).await;
        assert_eq!(slots.len(), requests);
        assert_spaced("slots", &slots, spacing);
        assert!(
            slots[0] > last_slot,
            "a new schedule overlapped the last one"
        );
        last_slot = *slots.last().unwrap();
        let writes = da.rate_writes() + db.rate_writes() - writes_before;
        println!(
            "DynamoDB rate writes at {rate}/min, {callers} waiting per process: {writes} for {requests} requests ({:.2} per request)",
            writes as f64 / requests as f64
        );
        // One write per reservation once a process knows the pair is busy (about one per
        // request here; its first may lose a race and write again). The exact figure depends
        // on how the machine keeps up, so only a gross excess fails.
        assert!(
            writes <= 2 * requests as u64,
            "{writes} writes for {requests} requests"
        );
    }
    // The row is one item both see.
    let row: RateRow = db.read_rate(TENANT, SVC).await.unwrap();
    assert!(row.next_slot_ms > last_slot);
    a.delete_tables().await.unwrap();
}
