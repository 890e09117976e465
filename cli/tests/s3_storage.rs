//! Sluice's storage module (`sluice_common::storage`) against a real S3-compatible server:
//! multipart uploads, downloads, ranged reads, listing, globs, copy/rename and prefix
//! deletion. One test in its own binary, because the storage clients read their
//! configuration from the process environment, which this test sets before any other thread
//! exists. Skipped without the server unless `SLUICE_REQUIRE_S3=1` (see `s3.rs`).

#[path = "common/s3_server.rs"]
mod s3_server;

use sluice_common::storage::{Location, ObjectUrl};

use s3_server::*;

fn url(s: &str) -> ObjectUrl {
    match Location::parse(s).unwrap() {
        Location::Object(u) => u,
        other => panic!("{s} is {other:?}"),
    }
}

#[test]
fn storage_operations_against_s3() {
    let Some(server) = S3Server::start() else {
        return;
    };
    server.create_bucket();
    for (k, v) in server.env() {
        // SAFETY: this binary's only test sets the variables before it uses the storage
        // module (the only reader), and no other thread of this process touches the
        // environment meanwhile.
        unsafe { std::env::set_var(k, v) };
    }
    let store = server.store();
    let dir = tempfile::tempdir().unwrap();

    // 40 MiB: a multipart upload of three parts (16 MiB each, the last shorter).
    let big: Vec<u8> = (0..40u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let local = dir.path().join("big.bin");
    std::fs::write(&local, &big).unwrap();
    let obj = url(&format!("s3://{BUCKET}/data/big.bin"));
    obj.upload_file(&local).unwrap();
    assert_eq!(get(&store, "data/big.bin").as_ref(), big.as_slice());
    assert_eq!(obj.size().unwrap(), Some(big.len() as u64));
    let range = obj.get_range(1_000_000..1_000_100).unwrap();
    assert_eq!(range.as_ref(), &big[1_000_000..1_000_100]);

    let back = dir.path().join("back.bin");
    assert_eq!(obj.download_to(&back).unwrap(), big.len() as u64);
    assert!(std::fs::read(&back).unwrap() == big);

    // Small objects, listing and globs (hidden and `_` names are not data).
    for key in [
        "data/a.csv",
        "data/b.csv",
        "data/_SUCCESS",
        "data/.hidden.csv",
        "data/sub/c.csv",
    ] {
        url(&format!("s3://{BUCKET}/{key}"))
            .put(bytes::Bytes::from_static(b"x,y\n1,2\n"))
            .unwrap();
    }
    let names = |found: Vec<sluice_common::storage::ObjectInfo>| -> Vec<String> {
        found.into_iter().map(|o| o.url.key().to_string()).collect()
    };
    let prefix = url(&format!("s3://{BUCKET}/data/"));
    assert_eq!(
        names(prefix.list_files().unwrap()),
        ["data/a.csv", "data/b.csv", "data/big.bin"]
    );
    assert_eq!(
        names(url(&format!("s3://{BUCKET}/data/*.csv")).glob().unwrap()),
        ["data/a.csv", "data/b.csv"]
    );
    assert_eq!(
        names(url(&format!("s3://{BUCKET}/data/*/*.csv")).glob().unwrap()),
        ["data/sub/c.csv"]
    );
    assert!(prefix.exists().unwrap());
    assert!(!url(&format!("s3://{BUCKET}/nothing")).exists().unwrap());
    assert_eq!(
        url(&format!("s3://{BUCKET}/data/none")).size().unwrap(),
        None
    );

    // Rename is copy + delete.
    let moved = url(&format!("s3://{BUCKET}/moved/a.csv"));
    url(&format!("s3://{BUCKET}/data/a.csv"))
        .rename_to(&moved)
        .unwrap();
    assert_eq!(moved.read_all().unwrap().as_ref(), b"x,y\n1,2\n");
    assert!(!keys(&store, "data").contains(&"data/a.csv".to_string()));

    // Deleting a prefix removes everything below it, at any depth, and nothing beside it.
    prefix.delete_prefix().unwrap();
    assert!(keys(&store, "data").is_empty());
    assert_eq!(keys(&store, "moved"), ["moved/a.csv"]);

    // Errors name the URL.
    let e = url(&format!("s3://{BUCKET}/missing.txt"))
        .get_range(0..10)
        .unwrap_err()
        .to_string();
    assert!(e.contains(&format!("s3://{BUCKET}/missing.txt")), "{e}");
}
