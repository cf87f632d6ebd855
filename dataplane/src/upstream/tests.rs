use std::time::Duration;

use super::{Cached, Upstream, DNS_MAX_PENDING};

fn runtime() -> monoio::Runtime<monoio::time::TimeDriver<monoio::LegacyDriver>> {
    monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .attach_thread_pool(crate::offload::pool())
        .build()
        .unwrap()
}

#[test]
fn lookups_run_off_the_worker_and_failures_are_remembered() {
    runtime().block_on(async {
        let up = Upstream::new(4, Duration::from_secs(2));
        // An IP literal needs no lookup.
        let a = up.resolve("127.0.0.1", 80).await.unwrap();
        assert_eq!(a[0].to_string(), "127.0.0.1:80");
        assert!(up.dns.borrow().is_empty());
        // `localhost` is answered (by the resolver, on a control thread).
        let a = up.resolve("localhost", 8080).await.unwrap();
        assert!(a.iter().all(|s| s.port() == 8080 && s.ip().is_loopback()));
        // A name that cannot resolve (at once, or within the connect
        // timeout where no resolver answers) is remembered as failed.
        let bad = "no-such-host.invalid";
        assert!(up.resolve(bad, 80).await.is_err());
        assert!(matches!(
            up.dns.borrow().get(&(bad.to_string(), 80)),
            Some(Cached::Failed(_))
        ));
        // While remembered, it fails without a lookup, even with no room
        // for one.
        up.dns_pending.set(DNS_MAX_PENDING);
        assert!(up.resolve(bad, 80).await.is_err());
        // A name never seen fails fast when too many lookups wait...
        let e = up.resolve("other.invalid", 80).await.unwrap_err();
        assert!(e.to_string().contains("too many name lookups"), "{e}");
        // ...and a known name keeps its answer.
        assert!(up.resolve("localhost", 8080).await.is_ok());
        up.dns_pending.set(0);
    });
}
