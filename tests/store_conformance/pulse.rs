//! The pulse counters: increments from several handles add up per bucket, a read returns the
//! buckets since a time for every job, and pruning removes only the older ones.

use std::sync::Arc;

use avesa_console::domain::Service;
use avesa_console::store::pulse::{BUCKET_SECS, bucket_of};
use avesa_console::store::{PulseCounts, PulseRow};

use super::backends::Fixture;

fn row(job: &str, service: Service, bucket: i64, n: u64) -> PulseRow {
    PulseRow {
        tenant_id: "acme".into(),
        service,
        job_id: job.into(),
        bucket,
        counts: PulseCounts {
            requests: n,
            rate_limited: n * 2,
            records: n * 100,
        },
    }
}

pub async fn increments_add_up_and_old_buckets_go(fx: Arc<Fixture>) {
    let t = bucket_of(1_767_225_600);
    let (a, b) = (fx.open(), fx.open());
    // Two writers of the same buckets at once, each flushing several times.
    let write = |store: Arc<dyn avesa_console::store::JobStore>| async move {
        for _ in 0..5 {
            store
                .add_pulse(&[
                    row("job_a", Service::Connectwise, t, 2),
                    row("job_a", Service::Connectwise, t + BUCKET_SECS, 1),
                    row("job_b", Service::Servicenow, t, 3),
                ])
                .await
                .unwrap();
        }
    };
    tokio::join!(write(a.clone()), write(b.clone()));
    a.add_pulse(&[row("job_a", Service::Connectwise, t - 7200, 9)])
        .await
        .unwrap();

    let mut got = b.pulse_since(t).await.unwrap();
    got.sort_by(|x, y| (x.bucket, &x.job_id).cmp(&(y.bucket, &y.job_id)));
    assert_eq!(
        got,
        vec![
            row("job_a", Service::Connectwise, t, 20),
            row("job_b", Service::Servicenow, t, 30),
            row("job_a", Service::Connectwise, t + BUCKET_SECS, 10),
        ]
    );
    assert_eq!(b.pulse_since(t + BUCKET_SECS).await.unwrap().len(), 1);
    assert_eq!(b.pulse_since(t - 7200).await.unwrap().len(), 4);

    assert_eq!(a.prune_pulse(t - 3600).await.unwrap(), 1);
    assert_eq!(b.pulse_since(0).await.unwrap().len(), 3);
    assert_eq!(a.prune_pulse(t - 3600).await.unwrap(), 0);
}
