//! `meter::lake::store::Store` against a real S3-protocol server (see
//! `s3_server.rs`): objects land as plain files under
//! `<root>/<bucket>/<key>`, so tests can check what was written on disk.
//!
//! `crate::s3_server::start_s3_server` is for any test that needs an
//! `s3://` location, e.g. billing to a bucket:
//! `Store::open_with(&server.url("prefix"), server.options())`.

use meter::Error;
use meter::lake::store::Store;
use meter::model::shard::Shard;

use crate::s3_server::{S3Server, start_s3_server};

fn server() -> (tempfile::TempDir, S3Server) {
    let tmp = tempfile::tempdir().unwrap();
    let server = start_s3_server(tmp.path());
    (tmp, server)
}

#[test]
fn put_get_list_through_a_real_s3_server() {
    let (_tmp, server) = server();
    let store = Store::open_with(&server.url("some/prefix/"), server.options()).unwrap();
    assert_eq!(store.url(), format!("s3://{}/some/prefix", server.bucket));

    let files: [(&str, &[u8]); 4] = [
        (
            "invoices/2026-10/rev-1/cust_0002.csv",
            b"customer,total\ncust_0002,7.50\n",
        ),
        (
            "invoices/2026-10/rev-1/cust_0001.csv",
            b"customer,total\ncust_0001,12.00\n",
        ),
        ("invoices/2026-10/rev-1/manifest.json", b"{\"files\":2}"),
        ("notes/a b+c.txt", b""),
    ];
    for (key, bytes) in files {
        store.put(key, bytes.to_vec()).unwrap();
    }

    // The bytes are on the server's disk, under bucket/prefix/key.
    let on_disk = server.bucket_dir().join("some/prefix");
    for (key, bytes) in files {
        assert_eq!(std::fs::read(on_disk.join(key)).unwrap(), bytes, "{key}");
        assert_eq!(store.get(key).unwrap().as_deref(), Some(bytes), "{key}");
    }

    assert_eq!(
        store.get("invoices/2026-10/rev-1/cust_9999.csv").unwrap(),
        None
    );
    assert_eq!(store.get("never/written").unwrap(), None);

    // Overwrite.
    store
        .put(
            "invoices/2026-10/rev-1/manifest.json",
            b"{\"files\":3}".to_vec(),
        )
        .unwrap();
    assert_eq!(
        std::fs::read(on_disk.join("invoices/2026-10/rev-1/manifest.json")).unwrap(),
        b"{\"files\":3}"
    );

    // Keys relative to the store prefix, sorted, with sizes.
    assert_eq!(
        store.list("").unwrap(),
        [
            ("invoices/2026-10/rev-1/cust_0001.csv".to_string(), 31),
            ("invoices/2026-10/rev-1/cust_0002.csv".to_string(), 30),
            ("invoices/2026-10/rev-1/manifest.json".to_string(), 11),
            ("notes/a b+c.txt".to_string(), 0),
        ]
    );
    assert_eq!(
        store.list("invoices/2026-10").unwrap().len(),
        3,
        "a prefix lists everything below it"
    );
    assert!(
        store.list("invoices/2026-1").unwrap().is_empty(),
        "prefixes match whole segments"
    );
    assert!(store.list("invoices/2026-11").unwrap().is_empty());

    // A sibling prefix does not see this store's objects.
    let other = Store::open_with(&server.url("some/other"), server.options()).unwrap();
    assert!(other.list("").unwrap().is_empty());
    assert_eq!(
        other.get("invoices/2026-10/rev-1/cust_0001.csv").unwrap(),
        None
    );
}

#[test]
fn list_pages_past_a_thousand_objects() {
    let (_tmp, server) = server();
    // The server lists the folder, so files written straight to disk are
    // objects; S3 answers at most 1000 keys per page.
    let dir = server.bucket_dir().join("p/many");
    std::fs::create_dir_all(&dir).unwrap();
    for i in 0..1205 {
        std::fs::write(dir.join(format!("{i:05}.csv")), i.to_string()).unwrap();
    }
    let store = Store::open_with(&server.url("p"), server.options()).unwrap();
    let listed = store.list("many").unwrap();
    assert_eq!(listed.len(), 1205);
    assert_eq!(listed[0], ("many/00000.csv".to_string(), 1));
    assert_eq!(listed[1204], ("many/01204.csv".to_string(), 4));
    assert!(listed.windows(2).all(|w| w[0].0 < w[1].0));
}

#[test]
fn wrong_credentials_are_a_store_error_naming_the_object() {
    let (_tmp, server) = server();
    let options: Vec<(String, String)> = server
        .options()
        .into_iter()
        .map(|(k, v)| {
            let v = if k == "aws_secret_access_key" {
                "wrong".to_string()
            } else {
                v
            };
            (k, v)
        })
        .collect();
    let store = Store::open_with(&server.url("p"), options).unwrap();
    let err = store.put("k.csv", b"x".to_vec()).unwrap_err();
    match &err {
        Error::Store { url, .. } => assert_eq!(url, &format!("s3://{}/p/k.csv", server.bucket)),
        other => panic!("expected a store error, got {other}"),
    }
    assert!(
        !server.bucket_dir().join("p/k.csv").exists(),
        "nothing written"
    );
    assert!(matches!(store.list("").unwrap_err(), Error::Store { .. }));
}

#[test]
fn a_missing_bucket_is_a_store_error_on_list() {
    let (_tmp, server) = server();
    let store = Store::open_with("s3://no-such-bucket/p", server.options()).unwrap();
    let err = store.list("").unwrap_err();
    match &err {
        Error::Store { url, .. } => assert_eq!(url, "s3://no-such-bucket/p"),
        other => panic!("expected a store error, got {other}"),
    }
}

#[test]
fn an_http_endpoint_is_allowed_without_allow_http() {
    let (_tmp, server) = server();
    let options: Vec<(String, String)> = server
        .options()
        .into_iter()
        .filter(|(k, _)| k != "aws_allow_http")
        .collect();
    let store = Store::open_with(&server.url("p"), options).unwrap();
    store.put("k.csv", b"x".to_vec()).unwrap();
    assert_eq!(
        std::fs::read(server.bucket_dir().join("p/k.csv")).unwrap(),
        b"x"
    );
}

#[test]
fn a_lease_on_an_s3_lake_excludes_takes_over_and_fences() {
    use chrono::TimeZone;
    use meter::lake::lease::{Claim, LEASE_KEY, Lease};
    use std::time::Duration;

    let (tmp, server) = server();
    let url = server.url("lake");
    let store = std::sync::Arc::new(Store::open_with(&url, server.options()).unwrap());
    let start = chrono::Utc.with_ymd_and_hms(2026, 12, 5, 2, 0, 0).unwrap();
    let clock = meter::model::ctx::ManualClock::new(start);
    let ttl = Duration::from_secs(60);
    let margin = Duration::from_secs(10);

    let stalled =
        Lease::acquire(&store, "run-a", "compact", Claim::EXCLUSIVE, ttl, &clock).unwrap();
    assert_eq!(stalled.fence(&clock, margin).unwrap(), 1);
    assert!(
        tmp.path()
            .join(&server.bucket)
            .join("lake")
            .join(LEASE_KEY)
            .is_file()
    );
    for claim in [Claim::EXCLUSIVE, Claim::shard(Shard::ALL)] {
        let err = Lease::acquire(&store, "run-b", "erase", claim, ttl, &clock).unwrap_err();
        assert!(
            matches!(&err, Error::Locked { holder, .. } if holder.contains("run-a")),
            "{err}"
        );
    }

    // The holder stalls past its expiry; another job takes the lake over.
    clock.advance(chrono::Duration::seconds(61));
    let erase = Lease::acquire(&store, "run-b", "erase", Claim::EXCLUSIVE, ttl, &clock).unwrap();
    assert_eq!(erase.holder().generation, 2);
    let err = stalled.fence(&clock, margin).unwrap_err();
    assert!(err.to_string().contains("was lost"), "{err}");
    stalled.release().unwrap();
    assert_eq!(erase.fence(&clock, margin).unwrap(), 2);
    erase.release().unwrap();

    // Jobs on four machines (four clients) start at once: one wins.
    let stores: Vec<std::sync::Arc<Store>> = (0..4)
        .map(|_| std::sync::Arc::new(Store::open_with(&url, server.options()).unwrap()))
        .collect();
    let barrier = std::sync::Barrier::new(stores.len());
    let won: Vec<bool> = std::thread::scope(|s| {
        let handles: Vec<_> = stores
            .iter()
            .enumerate()
            .map(|(i, store)| {
                let (clock, barrier) = (&clock, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    let id = format!("run-{i}");
                    match Lease::acquire(store, &id, "erase", Claim::EXCLUSIVE, ttl, clock) {
                        Ok(lease) => {
                            std::mem::forget(lease);
                            true
                        }
                        Err(Error::Locked { .. }) => false,
                        Err(e) => panic!("{e}"),
                    }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(won.iter().filter(|w| **w).count(), 1, "{won:?}");
}
