//! Alerts: a webhook receiver (a small HTTP server in the test) gets the failure alert of a
//! job with the right fields and signature, after first answering 500 (the coordinator
//! retries), and a job's own `--notify` URL gets its success.

use crate::common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::chaos::*;
use common::cluster::{Cluster, ClusterOptions, job_args};
use common::*;

/// One request the receiver got: its path, headers (lower-case names) and body.
type Received = (String, Vec<(String, String)>, Vec<u8>);

/// Answers 500 to the first `failures` requests, 200 to the others; records each.
fn receiver(failures: usize) -> (String, Arc<Mutex<Vec<Received>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let got: Arc<Mutex<Vec<Received>>> = Arc::default();
    let seen = got.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
            let mut headers = Vec::new();
            loop {
                let mut h = String::new();
                reader.read_line(&mut h).unwrap();
                let h = h.trim_end();
                if h.is_empty() {
                    break;
                }
                if let Some((k, v)) = h.split_once(':') {
                    headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
                }
            }
            let len: usize = headers
                .iter()
                .find(|(k, _)| k == "content-length")
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(0);
            let mut body = vec![0; len];
            reader.read_exact(&mut body).unwrap();
            let n = {
                let mut g = seen.lock().unwrap();
                g.push((path, headers, body));
                g.len()
            };
            let status = if n <= failures {
                "500 Internal Server Error"
            } else {
                "200 OK"
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
        }
    });
    (url, got)
}

fn wait_for(got: &Arc<Mutex<Vec<Received>>>, n: usize) -> Vec<Received> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let g = got.lock().unwrap().clone();
        if g.len() >= n {
            return g;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {n} alerts arrived",
            g.len()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_failure_alert_reaches_a_webhook_signed_and_after_a_retry() {
    let (hook, got) = receiver(1);
    let (notify, notified) = receiver(0);
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("alert-secret");
    std::fs::write(&secret, "s3cret\n").unwrap();
    let config = dir.path().join("sluice.toml");
    let paged = dir.path().join("paged.json");
    std::fs::write(
        &config,
        format!(
            "[[alerts]]\nurl = \"{hook}/sluice\"\non = [\"failed\"]\nsecret_file = \"{}\"\n\
             [[alerts]]\ncommand = [\"sh\", \"-c\", \"cat > {}\"]\n",
            secret.display(),
            paged.display()
        ),
    )
    .unwrap();
    let mut opts: ClusterOptions = options(10_000);
    opts.coordinator_args
        .extend(["--config".into(), config.to_string_lossy().into_owned()]);
    let cluster = Cluster::start(1, opts);
    let input = cluster.path("in.txt");
    std::fs::write(&input, "a\nbb\n").unwrap();

    // A job that fails: the configured hook hears it (a success would not be sent there).
    let mut args = job_args(
        &plugin("sluice_testjobs"),
        input.to_str().unwrap(),
        "text",
        &cluster.path("out-failed"),
    );
    args.extend(["--param", "fail=map-error", "--run-key", "eod@2026-11-28"].map(String::from));
    let failed = submit_wait(&cluster, &args);
    assert!(!failed.status.success());
    let alerts = wait_for(&got, 2);
    assert_eq!(alerts[0].2, alerts[1].2, "the retry sends the same alert");
    let (path, headers, body) = &alerts[1];
    assert_eq!(path, "/sluice");
    let alert: serde_json::Value = serde_json::from_slice(body).unwrap();
    assert_eq!(alert["kind"], "job");
    assert_eq!(alert["id"], "job-0001");
    assert_eq!(alert["state"], "failed");
    assert_eq!(alert["run_key"], "eod@2026-11-28");
    assert_eq!(alert["name"], "line-lengths");
    assert!(
        alert["error"]
            .as_str()
            .unwrap()
            .contains("deliberate error in map"),
        "{alert}"
    );
    assert!(alert["finished_ms"].as_u64() >= alert["started_ms"].as_u64());
    let sig = headers
        .iter()
        .find(|(k, _)| k == "x-sluice-signature")
        .map(|(_, v)| v.clone())
        .expect("signed");
    assert_eq!(sig, sluice_coordinator::alerts::signature(b"s3cret", body));
    // The command hook got the same alert on its standard input.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !paged.is_file() {
        assert!(Instant::now() < deadline, "the command hook never ran");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(200));
    let piped: serde_json::Value = serde_json::from_slice(&std::fs::read(&paged).unwrap()).unwrap();
    assert_eq!(piped, alert);

    // A job of its own with --notify: told of its success; the failure hook is not.
    let mut args = job_args(
        &plugin("sluice_testjobs"),
        input.to_str().unwrap(),
        "text",
        &cluster.path("out-ok"),
    );
    args.extend(["--notify".into(), format!("{notify}/done")]);
    let ok = submit_wait(&cluster, &args);
    assert_job_ok(&cluster, &ok);
    let told = wait_for(&notified, 1);
    let alert: serde_json::Value = serde_json::from_slice(&told[0].2).unwrap();
    assert_eq!(
        (alert["id"].as_str(), alert["state"].as_str()),
        (Some("job-0002"), Some("succeeded"))
    );
    assert!(alert["rows_out"].as_u64() > Some(0), "{alert}");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        got.lock().unwrap().len(),
        2,
        "no success alert to the failure hook"
    );
}

/// A scheduled run still going at its deadline raises `deadline_missed`; a firing whose
/// run is refused (its input is not there) raises `failed`.
#[test]
fn a_scheduled_run_past_its_deadline_or_refused_raises_an_alert() {
    let (hook, got) = receiver(0);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sluice.toml");
    std::fs::write(
        &config,
        format!("[[alerts]]\nurl = \"{hook}/late\"\non = [\"deadline_missed\", \"failed\"]\n"),
    )
    .unwrap();
    let mut opts: ClusterOptions = options(10_000);
    opts.coordinator_args
        .extend(["--config".into(), config.to_string_lossy().into_owned()]);
    let cluster = Cluster::start(1, opts);
    let input = cluster.path("in.txt");
    std::fs::write(&input, "slow words\n").unwrap();
    let out = format!("{}/{{run_key}}", cluster.path("out").display());
    let chaos = plugin("sluice_chaos");
    let add = cluster
        .client("schedule")
        .args([
            "add",
            "late",
            "--cron",
            "*/5 * * * * *",
            "--deadline",
            "+1s",
            "--",
        ])
        .args(["--plugin", chaos.to_str().unwrap(), "--format", "text"])
        .args(["--input", input.to_str().unwrap(), "--output", &out])
        .args(["--param", "fixed_sleep_map_ms=4000"])
        .output()
        .unwrap();
    assert!(add.status.success(), "{add:?}");
    let broken = cluster
        .client("schedule")
        .args(["add", "broken", "--cron", "*/5 * * * * *", "--"])
        .args(["--plugin", chaos.to_str().unwrap(), "--format", "text"])
        .args(["--input", "/nowhere/{date}.txt", "--output", &out])
        .output()
        .unwrap();
    assert!(broken.status.success(), "{broken:?}");
    let alerts: Vec<serde_json::Value> = {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let all: Vec<serde_json::Value> = got
                .lock()
                .unwrap()
                .iter()
                .map(|r| serde_json::from_slice(&r.2).unwrap())
                .collect();
            let has = |name: &str| all.iter().any(|a| a["name"] == name);
            if has("late") && has("broken") {
                break all;
            }
            assert!(Instant::now() < deadline, "{all:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    for name in ["late", "broken"] {
        let removed = cluster
            .client("schedule")
            .args(["remove", name])
            .output()
            .unwrap();
        assert!(removed.status.success());
    }
    let refused = alerts.iter().find(|a| a["name"] == "broken").unwrap();
    assert_eq!(refused["state"], "failed", "{refused}");
    assert!(
        refused["error"].as_str().unwrap().contains("/nowhere/"),
        "{refused}"
    );
    let alert = alerts.iter().find(|a| a["name"] == "late").unwrap();
    assert_eq!(alert["kind"], "schedule", "{alert}");
    assert_eq!(alert["state"], "deadline_missed", "{alert}");
    assert_eq!(alert["name"], "late");
    assert!(
        alert["run_key"].as_str().unwrap().starts_with("late@"),
        "{alert}"
    );
    assert!(alert["id"].as_str().unwrap().starts_with("job-"), "{alert}");
    assert!(
        alert["error"]
            .as_str()
            .unwrap()
            .contains("had not succeeded by its deadline +1s"),
        "{alert}"
    );
}
