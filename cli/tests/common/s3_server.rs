//! A real S3-compatible server (moto's `moto_server`) for tests, started as a child process
//! on a port the OS picked and killed on drop, plus a small client of our own (plain
//! `object_store`, not Sluice's storage module) to fill and read its bucket.
//!
//! The server comes from `.ci/install-s3-server`. It is looked for in `$SLUICE_S3_SERVER`,
//! then in the script's default virtualenv (`~/.cache/sluice/moto-venv/bin/moto_server`, or
//! `$SLUICE_S3_VENV/bin/moto_server`), then as `moto_server` on PATH. Without it,
//! [`S3Server::start`] prints why and returns `None` (the test passes), unless
//! `SLUICE_REQUIRE_S3=1`, which makes a missing server a failure (CI sets it).

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

pub const BUCKET: &str = "sluice-test";
pub const KEY_ID: &str = "testing";
pub const SECRET: &str = "testing";
pub const REGION: &str = "us-east-1";

/// Where the server executable is, if anywhere.
pub fn find_server() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("SLUICE_S3_SERVER") {
        let p = PathBuf::from(p);
        if !p.is_file() {
            eprintln!("SLUICE_S3_SERVER={} is not a file", p.display());
            return None;
        }
        return Some(p);
    }
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let venv = std::env::var_os("SLUICE_S3_VENV")
        .map(PathBuf::from)
        .or_else(|| home.map(|h| h.join(".cache/sluice/moto-venv")));
    if let Some(bin) = venv
        .map(|v| v.join("bin/moto_server"))
        .filter(|p| p.is_file())
    {
        return Some(bin);
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join("moto_server"))
        .find(|p| p.is_file())
}

/// The running server; killed on drop.
pub struct S3Server {
    child: Child,
    /// The port it listens on.
    pub port: u16,
    _log_dir: tempfile::TempDir,
}

impl S3Server {
    /// Starts the server, or returns `None` (after saying why) when it is not installed and
    /// `SLUICE_REQUIRE_S3` is not set.
    pub fn start() -> Option<S3Server> {
        let Some(bin) = find_server() else {
            let required = std::env::var("SLUICE_REQUIRE_S3").is_ok_and(|v| v == "1");
            assert!(
                !required,
                "SLUICE_REQUIRE_S3=1 but no moto_server found: run .ci/install-s3-server \
                 (or set SLUICE_S3_SERVER to the executable)"
            );
            eprintln!(
                "SKIPPED: no S3-compatible server (moto_server) installed; run \
                 .ci/install-s3-server to run the S3 tests"
            );
            return None;
        };
        // A port the OS picked; released just before the server binds it.
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let log_dir = tempfile::tempdir().unwrap();
        let log = std::fs::File::create(log_dir.path().join("moto.log")).unwrap();
        let child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
        let mut server = S3Server {
            child,
            port,
            _log_dir: log_dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while http(port, "GET", "/").is_err() {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("{} exited with {status}: {}", bin.display(), server.log());
            }
            assert!(
                Instant::now() < deadline,
                "S3 server did not answer within 30 s: {}",
                server.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(server)
    }

    /// Creates the test bucket [`BUCKET`].
    pub fn create_bucket(&self) {
        let status = http(self.port, "PUT", &format!("/{BUCKET}")).expect("create bucket");
        assert_eq!(status, 200, "creating bucket {BUCKET}: {}", self.log());
    }

    /// What the server printed.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self._log_dir.path().join("moto.log")).unwrap_or_default()
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The environment `sluice` needs to reach this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT", self.endpoint()),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_ACCESS_KEY_ID", KEY_ID.into()),
            ("AWS_SECRET_ACCESS_KEY", SECRET.into()),
            ("AWS_REGION", REGION.into()),
        ]
    }

    /// Our own client of the bucket (not Sluice's storage module).
    pub fn store(&self) -> Arc<dyn ObjectStore> {
        Arc::new(
            AmazonS3Builder::new()
                .with_endpoint(self.endpoint())
                .with_allow_http(true)
                .with_access_key_id(KEY_ID)
                .with_secret_access_key(SECRET)
                .with_region(REGION)
                .with_bucket_name(BUCKET)
                .build()
                .unwrap(),
        )
    }

    /// Runs `sluice run` against this server.
    pub fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_sluice"))
            .arg("run")
            .args(args)
            .envs(self.env())
            .output()
            .expect("sluice starts")
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One plain HTTP/1.1 request without a body; returns the status code.
pub fn http(port: u16, method: &str, path: &str) -> std::io::Result<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    s.read_to_string(&mut response)?;
    response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad response {response:?}")))
}

pub fn argv(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

pub fn put(store: &Arc<dyn ObjectStore>, key: &str, bytes: impl Into<Bytes>) {
    rt().block_on(store.put(&ObjectPath::from(key), PutPayload::from(bytes.into())))
        .unwrap();
}

pub fn get(store: &Arc<dyn ObjectStore>, key: &str) -> Bytes {
    rt().block_on(async { store.get(&ObjectPath::from(key)).await?.bytes().await })
        .unwrap_or_else(|e| panic!("get {key}: {e}"))
}

/// Every key under `prefix/`, sorted.
pub fn keys(store: &Arc<dyn ObjectStore>, prefix: &str) -> Vec<String> {
    let metas: Vec<_> = rt()
        .block_on(store.list(Some(&ObjectPath::from(prefix))).try_collect())
        .unwrap();
    let mut keys: Vec<String> = metas.into_iter().map(|m| m.location.to_string()).collect();
    keys.sort();
    keys
}
