//! The web UI in a real headless Chromium, against a real coordinator and workers with a
//! cluster token: logging in, a job's progress changing without a reload, a worker killed
//! mid-job turning lost with its maps re-run on the timeline, cancelling from the UI, a
//! failed job's error and its attempt's log. Screenshots of each page land in
//! `target/tmp/ui-screenshots/`. And without the token, no page or endpoint gives job data.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::browser::Browser;
use common::chaos::*;
use common::cluster::{Cluster, ClusterOptions, job_args};
use common::*;
use fantoccini::Locator;

const TOKEN: &str = "test-cluster-token-0123456789";

fn token_cluster(workers: usize) -> Cluster {
    Cluster::start(
        workers,
        ClusterOptions {
            token: true,
            ..Default::default()
        },
    )
}

/// Opens the UI, which sends the browser to its login form, and submits `token`.
async fn submit_login(b: &Browser, http: &str, token: &str) {
    b.client.goto(&format!("http://{http}/ui")).await.unwrap();
    let url = b.client.current_url().await.unwrap();
    assert!(url.path().ends_with("/ui/login"), "{url}");
    let field = b.client.find(Locator::Css("#token")).await.unwrap();
    field.send_keys(token).await.unwrap();
    let button = b.client.find(Locator::Css("#login")).await.unwrap();
    button.click().await.unwrap();
}

#[test]
fn an_operator_follows_a_job_through_a_lost_worker_cancels_one_and_reads_a_failure() {
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(follow_jobs());
}

async fn follow_jobs() {
    let t0 = std::time::Instant::now();
    let step = |what: &str| eprintln!("{:>6.1} s  {what}", t0.elapsed().as_secs_f64());
    let mut c = token_cluster(3);
    step("cluster");
    let Some(b) = Browser::start().await else {
        return;
    };
    step("browser");
    let http = c.http.clone();

    // A wrong token is refused on the login page.
    submit_login(&b, &http, "not-the-token").await;
    assert!(
        b.text("#login-error")
            .await
            .contains("not the cluster token")
    );
    b.shot("login").await;
    submit_login(&b, &http, TOKEN).await;
    b.text("table#jobs").await;
    step("login");

    // A job parked in its shuffle: its maps are done, its reduces wait for the gate.
    let input = c.path("in");
    let texts = write_corpus(&input, 4, 2500);
    let mut gated = submit_gated(&c, &input, 4);
    // The workers hold the job's map outputs now, and the workers page says how much.
    b.client
        .goto(&format!("http://{http}/ui/workers"))
        .await
        .unwrap();
    let mut held = Vec::new();
    for cell in b
        .client
        .find_all(Locator::Css("td.shuffle-held"))
        .await
        .unwrap()
    {
        held.push(cell.text().await.unwrap());
    }
    assert_eq!(held.len(), 3, "{held:?}");
    assert!(held.iter().any(|h| h.ends_with("KiB")), "{held:?}");
    step("gated");
    b.client
        .goto(&format!("http://{http}/ui/jobs/job-0001"))
        .await
        .unwrap();
    let maps = gated.status["maps_total"].as_u64().unwrap();
    assert_eq!(b.text("#progress-maps").await, format!("{maps}/{maps}"));
    assert_eq!(b.text("#progress-reduces").await, "0/4");
    // Marks this page load: a reload would forget it.
    b.client
        .execute("window.sluiceLoad = 'first'", vec![])
        .await
        .unwrap();

    // Kill a worker that holds map outputs and runs a reduce; the workers page shows it
    // lost, live.
    let victim = worker_with_reduce_and_outputs(&c, "job-0001", 4);
    c.workers[victim].child.kill().unwrap();
    std::fs::write(&gated.gate, "").unwrap();
    let status = gated.submit.wait().unwrap();
    assert!(status.success(), "{}", c.logs());
    assert_eq!(
        read_counts(&gated.out_dir, "word", "count"),
        reference(&texts)
    );
    step("job 1 done");

    // The job page followed without a reload: all reduces done, the state succeeded.
    b.wait_text("#progress-reduces", "reduces done", |t| t == "4/4")
        .await;
    b.wait_text("#job-state", "job state", |t| t == "succeeded")
        .await;
    let load = b
        .client
        .execute("return window.sluiceLoad", vec![])
        .await
        .unwrap();
    assert_eq!(load, "first", "the page was reloaded");
    let updates = b
        .client
        .execute("return window.sluiceUpdates", vec![])
        .await
        .unwrap();
    assert!(updates.as_u64() > Some(0), "{updates}");
    // The timeline shows the loss: a mark for the worker, and the maps it held re-run.
    assert!(b.count("svg.timeline line.mark").await >= 1);
    assert!(b.count("svg.timeline rect.bar.re-run").await >= 1);
    assert!(b.count("table#reruns tbody tr").await >= 1);
    // Each finished attempt says what it read and wrote.
    let result = b
        .text("table#attempts tr[data-task=map-0][data-state=done] td.result")
        .await;
    assert!(
        result.contains("rows read") && result.contains("bytes"),
        "{result}"
    );
    b.shot("job-lost-worker").await;
    step("lost shot");
    b.client
        .goto(&format!("http://{http}/ui/workers"))
        .await
        .unwrap();
    b.wait_text(
        "tr[data-state=lost] td",
        "the killed worker listed lost",
        |t| t.starts_with("worker-"),
    )
    .await;
    assert_eq!(b.count("table#workers tr[data-state=running]").await, 2);
    b.shot("workers").await;
    step("workers");

    // A job cancelled from its page: its reduces wait for a gate that never opens.
    let never = c.path("never");
    let out2 = c.path("out2");
    let params = [format!("reduce_gate={}", never.display())];
    let mut submit = spawn_submit(&c, &chaos_args(&input, &out2, 2, 1 << 20, &params));
    wait_status(&c, "job-0002", Duration::from_secs(60), |s| {
        s["maps_done"] == s["maps_total"] && s["maps_total"].as_u64() > Some(0)
    });
    b.client
        .goto(&format!("http://{http}/ui/jobs/job-0002"))
        .await
        .unwrap();
    b.client
        .find(Locator::Css("#cancel"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.wait_text("#job-state", "cancelled job", |t| t == "cancelled")
        .await;
    assert!(!submit.wait().unwrap().success());
    assert!(!out2.join("_SUCCESS").exists());
    // Plugin code cannot be interrupted: the cancelled reduces hold their slots until
    // their call returns, so the gate opens for them.
    std::fs::write(&never, "").unwrap();
    b.shot("job-cancelled").await;
    step("cancelled");

    // A failed job: its error, the failing attempt's error, and that attempt's log.
    let one = c.path("one.txt");
    std::fs::write(&one, "one line\n").unwrap();
    let mut args = job_args(
        &plugin("sluice_testjobs"),
        one.to_str().unwrap(),
        "text",
        &c.path("out3"),
    );
    args.extend(["--param", "fail=map-error", "--wait"].map(String::from));
    assert_failed(&c.client("submit").args(&args).output().unwrap());
    b.client
        .goto(&format!("http://{http}/ui/jobs/job-0003"))
        .await
        .unwrap();
    assert!(
        b.text("#job-error")
            .await
            .contains("deliberate error in map")
    );
    let failed = b
        .text("table#attempts tr[data-state=failed] td.error")
        .await;
    assert!(failed.contains("deliberate error in map"), "{failed}");
    b.shot("job-failed").await;
    b.client
        .find(Locator::Css("table#attempts tr[data-state=failed] a.log"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let log = b.text("pre#log").await;
    assert!(
        log.contains("attempt started") && log.contains("deliberate error in map"),
        "{log}"
    );
    b.shot("attempt-log").await;
    step("log");

    b.client
        .goto(&format!("http://{http}/ui/jobs"))
        .await
        .unwrap();
    assert_eq!(b.count("table#jobs tbody tr").await, 3);
    b.shot("jobs").await;
    b.client
        .goto(&format!("http://{http}/ui/jobs?state=failed"))
        .await
        .unwrap();
    assert_eq!(b.text("table#jobs tbody tr td").await, "job-0003");
    b.client
        .goto(&format!("http://{http}/ui/nightly"))
        .await
        .unwrap();
    b.text("table#queues").await;
    b.shot("nightly").await;
    step("nightly");
    b.close().await;
    step("closed");
}

/// `METHOD path` on the coordinator's HTTP port with extra headers and body: status, body.
fn request(addr: &str, method: &str, path: &str, headers: &[&str], body: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s.write_all(req.as_bytes()).unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text[9..12].parse().unwrap();
    (status, text)
}

#[test]
fn without_the_token_no_page_or_endpoint_gives_job_data() {
    let c = token_cluster(1);
    let out = c.submit_word_count(
        &{
            let p = c.path("in.txt");
            std::fs::write(&p, "secret words here\n").unwrap();
            p
        },
        &c.path("out"),
        &["--reducers", "2"],
    );
    assert_ok(&out);
    let workers = c.workers_json();
    let worker = workers[0]["worker_id"].as_str().unwrap().to_string();
    let form = "application/x-www-form-urlencoded";
    let gets = [
        "/ui",
        "/ui/jobs",
        "/ui/jobs?state=succeeded",
        "/ui/jobs/job-0001",
        "/ui/jobs/job-0001/log?task=map-0&attempt=0",
        "/ui/workers",
        "/ui/nightly",
    ];
    let content = format!("Content-Type: {form}");
    for headers in [
        vec![],
        vec!["Authorization: Bearer wrong-token"],
        vec!["Cookie: sluice_session=test-cluster-token-0123456789"],
        vec!["Accept: text/html"],
    ] {
        for path in gets {
            let (status, text) = request(&c.http, "GET", path, &headers, "");
            assert!(status == 401 || status == 303, "{path} {headers:?}: {text}");
            for secret in ["job-0001", "wordcount", worker.as_str(), "secret"] {
                assert!(
                    !text.contains(secret),
                    "{path} {headers:?} shows {secret}: {text}"
                );
            }
        }
        for path in [
            "/ui/jobs/job-0001/cancel",
            &format!("/ui/workers/{worker}/drain"),
        ] {
            let mut h = headers.clone();
            h.push(&content);
            let (status, text) = request(&c.http, "POST", path, &h, "csrf=x");
            assert!(status == 401 || status == 303, "{path}: {text}");
        }
    }
    // With the token the same pages answer; an action without the CSRF value is refused.
    let bearer = format!("Authorization: Bearer {TOKEN}");
    for path in gets {
        let (status, text) = request(&c.http, "GET", path, &[&bearer], "");
        assert_eq!(status, 200, "{path}: {text}");
    }
    let (_, page) = request(&c.http, "GET", "/ui/jobs/job-0001", &[&bearer], "");
    assert!(
        page.contains("wordcount") && page.contains("table id=\"attempts\""),
        "{page}"
    );
    let drain = format!("/ui/workers/{worker}/drain");
    let (status, _) = request(&c.http, "POST", &drain, &[&bearer, &content], "csrf=forged");
    assert_eq!(status, 403);
    assert_eq!(
        c.workers_json()[0]["draining"],
        false,
        "the forged drain did nothing"
    );
    // Probes and metrics stay open: they carry no job data.
    let (status, metrics) = request(&c.http, "GET", "/metrics", &[], "");
    assert_eq!(status, 200);
    assert!(!metrics.contains("job-0001"));
}
