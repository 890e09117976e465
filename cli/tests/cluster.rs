//! A real cluster: a `sluice coordinator` process and three `sluice worker` processes on
//! loopback, jobs submitted with `sluice submit --wait`, outputs compared with references.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::cluster::{Cluster, ClusterOptions, Proc, job_args};
use common::*;

fn write_corpus(dir: &Path, files: usize) -> Vec<String> {
    std::fs::create_dir_all(dir).unwrap();
    let words = [
        "alpha", "beta", "gamma", "delta", "Epsilon", "zeta", "eta", "théta", "iota", "kappa",
    ];
    (0..files)
        .map(|f| {
            let mut text = String::new();
            for i in 0..3000usize {
                let w = words[(i * 7 + f * 3 + i / 11) % words.len()];
                text.push_str(w);
                text.push(if i % 13 == 12 { '\n' } else { ' ' });
            }
            std::fs::write(dir.join(format!("f{f}.txt")), &text).unwrap();
            text
        })
        .collect()
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn job_id_line(out: &std::process::Output) -> String {
    let text = stdout(out);
    let id = text.lines().next().unwrap_or("").to_string();
    assert!(
        id.starts_with("job-"),
        "first stdout line is the job id: {text}"
    );
    id
}

#[test]
fn word_count_and_eod_on_three_worker_processes() {
    let c = Cluster::start(
        3,
        ClusterOptions {
            token: true,
            ..Default::default()
        },
    );
    let corpus = c.path("corpus");
    let texts = write_corpus(&corpus, 4);
    let expected = reference_word_count(&texts.iter().map(String::as_str).collect::<Vec<_>>());
    let wc_out = c.path("wc-out");
    let mut args = job_args(
        &plugin("sluice_wordcount"),
        corpus.to_str().unwrap(),
        "text",
        &wc_out,
    );
    args.extend(["--reducers", "4", "--split-size", "4096", "--wait"].map(String::from));
    let out = c.client("submit").args(&args).output().unwrap();
    assert_ok(&out);
    let wc_id = job_id_line(&out);
    assert_eq!(
        read_counts(&wc_out, "word", "count"),
        expected,
        "{}",
        c.logs()
    );
    assert!(wc_out.join("_SUCCESS").is_file());

    let txns = c.path("txns");
    std::fs::create_dir_all(&txns).unwrap();
    let files = sluice_datagen::write_eod_files(&txns, 20_000, 3, 7).unwrap();
    let eod_out = c.path("eod-out");
    let mut args = job_args(
        &plugin("sluice_eod"),
        txns.to_str().unwrap(),
        "csv",
        &eod_out,
    );
    args.extend(
        [
            "--reducers",
            "3",
            "--split-size",
            "65536",
            "--output-format",
            "csv",
            "--wait",
            "--json",
        ]
        .map(String::from),
    );
    let out = c.client("submit").args(&args).output().unwrap();
    assert_ok(&out);
    let eod_id = job_id_line(&out);
    let json: serde_json::Value =
        serde_json::from_str(stdout(&out).split_once('\n').unwrap().1).expect("--json output");
    assert_eq!(json["state"], "succeeded");
    assert_eq!(json["rows_in"], 20_000);
    assert_eq!(read_eod_csv_output(&eod_out), reference_eod(&files));

    // Work was spread over the processes: each worker downloaded a plugin into its cache.
    for i in 0..3 {
        let cache = c.path(&format!("worker-{i}/plugins"));
        let cached = std::fs::read_dir(&cache)
            .map(|d| d.filter_map(Result::ok).count())
            .unwrap_or(0);
        assert!(cached >= 1, "worker-{i} ran no task:\n{}", c.logs());
    }

    let out = c.run_client("status", &[&wc_id, "--json"]);
    assert_ok(&out);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["state"], "succeeded");
    assert_eq!(
        status["rows_out"].as_u64().unwrap() as usize,
        expected.len()
    );
    let out = c.run_client("jobs", &["--json"]);
    assert_ok(&out);
    let jobs: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let ids: Vec<&str> = jobs.iter().map(|j| j["job_id"].as_str().unwrap()).collect();
    assert_eq!(ids, [wc_id.as_str(), eod_id.as_str()]);
    let out = c.run_client("workers", &[]);
    assert_ok(&out);
    assert_eq!(stdout(&out).lines().count(), 4, "header and 3 workers");
}

#[test]
fn two_jobs_with_different_plugins_run_at_the_same_time() {
    let c = Cluster::start(3, ClusterOptions::default());
    let corpus = c.path("corpus");
    let texts = write_corpus(&corpus, 6);
    let expected_wc = reference_word_count(&texts.iter().map(String::as_str).collect::<Vec<_>>());
    let txns = c.path("txns");
    std::fs::create_dir_all(&txns).unwrap();
    let files = sluice_datagen::write_eod_files(&txns, 20_000, 4, 11).unwrap();

    let wc_out = c.path("wc-out");
    let mut wc = job_args(
        &plugin("sluice_wordcount"),
        corpus.to_str().unwrap(),
        "text",
        &wc_out,
    );
    wc.extend(["--reducers", "3", "--split-size", "2048", "--wait"].map(String::from));
    let eod_out = c.path("eod-out");
    let mut eod = job_args(
        &plugin("sluice_eod"),
        txns.to_str().unwrap(),
        "csv",
        &eod_out,
    );
    eod.extend(
        [
            "--reducers",
            "2",
            "--split-size",
            "32768",
            "--output-format",
            "csv",
            "--wait",
        ]
        .map(String::from),
    );
    let spawn = |args: &[String]| {
        c.client("submit")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(&wc), spawn(&eod));
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert_ok(&a);
    assert_ok(&b);
    assert_eq!(read_counts(&wc_out, "word", "count"), expected_wc);
    assert_eq!(read_eod_csv_output(&eod_out), reference_eod(&files));

    // Both jobs were running at once: each was submitted before the other finished.
    let out = c.run_client("jobs", &["--json"]);
    let jobs: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(jobs.len(), 2);
    let span = |j: &serde_json::Value| {
        (
            j["submitted_ms"].as_u64().unwrap(),
            j["finished_ms"].as_u64().unwrap(),
        )
    };
    let ((s0, f0), (s1, f1)) = (span(&jobs[0]), span(&jobs[1]));
    assert!(s0 < f1 && s1 < f0, "jobs did not overlap: {jobs:?}");
    let plugins: std::collections::HashSet<&str> = jobs
        .iter()
        .map(|j| j["plugin_sha256"].as_str().unwrap())
        .collect();
    assert_eq!(plugins.len(), 2, "two different plugins");
}

#[test]
fn job_history_survives_a_coordinator_restart() {
    let mut c = Cluster::start(1, ClusterOptions::default());
    let corpus = c.path("corpus");
    write_corpus(&corpus, 1);
    let out_dir = c.path("out");
    let out = c.submit_word_count(&corpus, &out_dir, &[]);
    assert_ok(&out);
    let id = job_id_line(&out);

    // A failing job is history too, with its error.
    let out = c.submit_word_count(&corpus, &out_dir, &[]);
    assert!(
        !out.status.success(),
        "the output exists: submit is refused"
    );

    c.coordinator.terminate();
    let status = c.coordinator.wait_exit(Duration::from_secs(20));
    assert!(
        status.is_some_and(|s| s.success()),
        "coordinator stops cleanly on SIGTERM: {status:?}\n{}",
        c.coordinator.log_text()
    );
    let mut cmd = sluice();
    cmd.args(["coordinator", "--listen", "127.0.0.1:0", "--http", "off"])
        .arg("--state-dir")
        .arg(c.path("state"));
    let mut restarted = Proc::spawn("coordinator-2", cmd, c.path("coordinator-2.log"));
    let grpc = restarted.wait_for_field("grpc");
    let out = sluice()
        .args(["jobs", "--json", "--coordinator", &format!("http://{grpc}")])
        .output()
        .unwrap();
    assert_ok(&out);
    let jobs: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0]["job_id"], id.as_str());
    assert_eq!(jobs[0]["state"], "succeeded");
    assert_eq!(jobs[0]["name"], "wordcount");
    assert!(jobs[0]["rows_out"].as_u64().unwrap() > 0);
    // A new job continues the numbering.
    let out = sluice()
        .args(["status", &id, "--coordinator", &format!("http://{grpc}")])
        .output()
        .unwrap();
    assert_ok(&out);
    assert!(stdout(&out).contains("succeeded"));
}

#[test]
fn a_draining_worker_finishes_its_tasks_and_exits() {
    let mut c = Cluster::start(2, ClusterOptions::default());
    let w = &mut c.workers[0];
    w.terminate();
    let status = w.wait_exit(Duration::from_secs(20));
    assert!(
        status.is_some_and(|s| s.success()),
        "worker exits 0 after draining: {status:?}\n{}",
        w.log_text()
    );
    assert!(w.log_text().contains("worker draining"));
    let workers = c.workers_json();
    let drained: Vec<_> = workers.iter().filter(|w| w["draining"] == true).collect();
    assert_eq!(drained.len(), 1, "{workers:?}");

    // The remaining worker still runs jobs.
    let corpus = c.path("corpus");
    let texts = write_corpus(&corpus, 2);
    let out_dir = c.path("out");
    let out = c.submit_word_count(&corpus, &out_dir, &[]);
    assert_ok(&out);
    assert_eq!(
        read_counts(&out_dir, "word", "count"),
        reference_word_count(&texts.iter().map(String::as_str).collect::<Vec<_>>())
    );
}

#[test]
fn config_file_and_environment_settle_every_setting() {
    let mut c = Cluster::start(
        0,
        ClusterOptions {
            token: true,
            ..Default::default()
        },
    );
    let token = c.token_file.clone().unwrap();
    let config = c.path("sluice.toml");
    std::fs::write(
        &config,
        format!(
            "token_file = {token:?}\n[worker]\ncoordinator = {:?}\nlisten = \"127.0.0.1:0\"\n\
             work_dir = {:?}\nslots = 3\n",
            c.url,
            c.path("configured-worker")
        ),
    )
    .unwrap();
    // Everything from the file: coordinator URL, token, listen address, work dir, slots.
    let mut cmd = sluice();
    cmd.arg("worker").arg("--config").arg(&config);
    let mut w = Proc::spawn("configured", cmd, c.path("configured.log"));
    w.wait_for_field("shuffle");
    c.workers.push(w);
    // Clients from the environment alone.
    let env_client = |args: &[&str]| {
        sluice()
            .args(args)
            .env("SLUICE_COORDINATOR", &c.url)
            .env("SLUICE_TOKEN_FILE", &token)
            .output()
            .unwrap()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let out = env_client(&["workers", "--json"]);
        assert_ok(&out);
        let workers: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
        if let [only] = workers.as_slice() {
            assert_eq!(only["slots"], 3, "slots from the file");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{}", c.logs());
        std::thread::sleep(Duration::from_millis(50));
    }
    // A flag beats the environment: a bad URL in the flag wins over the good one in env.
    let out = sluice()
        .args(["jobs", "--coordinator", "http://127.0.0.1:1"])
        .env("SLUICE_COORDINATOR", &c.url)
        .env("SLUICE_TOKEN_FILE", &token)
        .output()
        .unwrap();
    assert_failed(&out);

    // An unknown key is an error naming it, for every process.
    let bad = c.path("bad.toml");
    std::fs::write(&bad, "[worker]\nslotz = 3\n").unwrap();
    for command in ["worker", "coordinator", "jobs"] {
        let out = sluice()
            .arg(command)
            .arg("--config")
            .arg(&bad)
            .output()
            .unwrap();
        let err = assert_failed(&out);
        assert!(
            err.contains("slotz") && err.contains("bad.toml"),
            "{command}: {err}"
        );
    }
}

#[test]
fn shuffle_files_go_when_the_job_ends_and_a_dirty_work_dir_is_cleaned() {
    let mut c = Cluster::start(1, ClusterOptions::default());
    // A worker restarted on the work dir of a crashed one removes its left-over spills.
    let junk = c.path("worker-1/shuffle/job-0042");
    std::fs::create_dir_all(&junk).unwrap();
    std::fs::write(junk.join("3-0.parquet"), "left over").unwrap();
    // Registration comes after the clean-up.
    c.add_worker().wait_for_field("worker_id");
    assert!(!c.path("worker-1/shuffle/job-0042").exists());
    c.wait_workers(2);

    let corpus = c.path("corpus");
    let texts = write_corpus(&corpus, 3);
    let out_dir = c.path("out");
    let out = c.submit_word_count(&corpus, &out_dir, &["--split-size", "4096"]);
    assert_ok(&out);
    assert_eq!(
        read_counts(&out_dir, "word", "count"),
        reference_word_count(&texts.iter().map(String::as_str).collect::<Vec<_>>())
    );
    // Every worker hears that the job ended with its next heartbeat and drops its spills.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    for i in 0..2 {
        let dir = c.path(&format!("worker-{i}/shuffle/job-0001"));
        while dir.exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "{} remains",
                dir.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[test]
fn a_plugin_over_the_upload_limit_is_refused_and_nothing_runs() {
    let c = Cluster::start(
        1,
        ClusterOptions {
            coordinator_args: vec!["--max-plugin-bytes".into(), "1000".into()],
            ..Default::default()
        },
    );
    let corpus = c.path("corpus");
    write_corpus(&corpus, 1);
    let out_dir = c.path("out");
    let out = c.submit_word_count(&corpus, &out_dir, &[]);
    let err = assert_failed(&out);
    assert!(err.contains("exceeds the coordinator's limit"), "{err}");
    assert!(!out_dir.exists(), "no job was planned");
    let plugins = std::fs::read_dir(c.path("state/plugins")).unwrap().count();
    assert_eq!(plugins, 0, "no partial upload is kept");
    let out = c.run_client("jobs", &["--json"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "[]");
}

#[test]
fn a_job_is_run_only_where_its_task_memory_fits_in_a_slots_share() {
    let mut c = Cluster::start(0, ClusterOptions::default());
    // 1 GiB over 2 slots: 512 MiB a task. 2 GiB over 1 slot: 2 GiB a task.
    c.add_worker_with(2, &[("SLUICE_WORKER_MEMORY", "1GiB")]);
    c.add_worker_with(1, &[("SLUICE_WORKER_MEMORY", "2GiB")]);
    let corpus = c.path("corpus");
    let texts = write_corpus(&corpus, 3);
    let out_dir = c.path("out");
    let out = c.submit_word_count(&corpus, &out_dir, &["--task-memory", "3GiB"]);
    let err = assert_failed(&out);
    assert!(
        err.contains("exceeds what any worker gives a task slot") && err.contains("2147483648"),
        "{err}"
    );
    assert!(!out_dir.exists(), "no job was planned");

    let out = c.submit_word_count(&corpus, &out_dir, &["--task-memory", "1GiB"]);
    assert_ok(&out);
    let expected = reference_word_count(&texts.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(read_counts(&out_dir, "word", "count"), expected);
    // Every task ran on the worker with room: only it needed the plugin.
    assert!(!c.workers[0].log_text().contains("plugin downloaded"));
    assert!(c.workers[1].log_text().contains("plugin downloaded"));

    // A worker whose slots would get almost nothing refuses to start.
    let out = c
        .worker_command(9)
        .args(["--slots", "4", "--memory", "32MiB"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--memory"), "{err}");
}

#[test]
fn a_finished_task_gets_its_slots_next_task_in_the_reports_reply() {
    // The product's 1 s heartbeat: waiting for ticks would make this job crawl.
    let c = Cluster::start(
        1,
        ClusterOptions {
            default_heartbeat: true,
            ..Default::default()
        },
    );
    let corpus = c.path("corpus");
    let texts = write_corpus(&corpus, 3);
    let out_dir = c.path("out");
    let out = c.submit_word_count(&corpus, &out_dir, &["--split-size", "64"]);
    assert_ok(&out);
    let expected = reference_word_count(&texts.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(read_counts(&out_dir, "word", "count"), expected);
    let metrics = common::cluster::http_get(&c.http, "/metrics");
    let count = |via: &str| -> u64 {
        let key = format!("sluice_assignments_total{{via=\"{via}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&key))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {key} in\n{metrics}"))
    };
    let (report, heartbeat) = (count("report"), count("heartbeat"));
    assert!(report + heartbeat >= 20, "too few tasks to tell: {metrics}");
    // Only the first tasks, and those after a reply found nothing ready, need a heartbeat.
    assert!(
        report > 4 * heartbeat,
        "report {report}, heartbeat {heartbeat}"
    );
}

/// A `/metrics` page, parsed as Prometheus parses it.
fn scrape(addr: &str) -> prometheus_parse::Scrape {
    let text = common::cluster::http_get(addr, "/metrics");
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// The sum of the samples of `name` whose labels include `labels` (0 when none).
fn sum(s: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    s.samples
        .iter()
        .filter(|x| x.metric == name && labels.iter().all(|(k, v)| x.labels.get(k) == Some(v)))
        .map(|x| match &x.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => *v,
            other => panic!("{name} is {other:?}"),
        })
        .sum()
}

#[test]
fn every_process_serves_metrics_and_the_histograms_move_when_a_job_runs() {
    let mut c = Cluster::start(2, ClusterOptions::default());
    let worker_http: Vec<String> = c
        .workers
        .iter_mut()
        .map(|w| w.wait_for_field("http"))
        .collect();
    for addr in &worker_http {
        assert_eq!(common::cluster::http_get(addr, "/healthz"), "ok\n");
        assert_eq!(common::cluster::http_get(addr, "/readyz"), "ready\n");
    }
    let before = scrape(&c.http);
    assert_eq!(sum(&before, "sluice_job_duration_seconds_count", &[]), 0.0);
    assert_eq!(sum(&before, "sluice_workers", &[]), 2.0);
    for addr in &worker_http {
        let w = scrape(addr);
        assert_eq!(sum(&w, "sluice_worker_slots", &[]), 2.0);
        assert_eq!(sum(&w, "sluice_task_duration_seconds_count", &[]), 0.0);
    }

    let corpus = c.path("corpus");
    let texts = write_corpus(&corpus, 3);
    let input_bytes: usize = texts.iter().map(String::len).sum();
    let out_dir = c.path("out");
    let out = c.submit_word_count(
        &corpus,
        &out_dir,
        &["--split-size", "256", "--reducers", "3"],
    );
    assert_ok(&out);
    let out = c.run_client("status", &["job-0001", "--json"]);
    assert_ok(&out);
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let maps = s["maps_total"].as_f64().unwrap();

    let after = scrape(&c.http);
    let job = [("state", "succeeded")];
    assert_eq!(sum(&after, "sluice_job_duration_seconds_count", &job), 1.0);
    assert!(sum(&after, "sluice_job_duration_seconds_sum", &job) > 0.0);
    let delays = |kind| {
        sum(
            &after,
            "sluice_scheduling_delay_seconds_count",
            &[("kind", kind)],
        )
    };
    assert_eq!(delays("map"), maps, "one first attempt per map");
    assert_eq!(delays("reduce"), 3.0);

    // Summed over the workers (backups of slow tasks may add attempts).
    let workers: Vec<_> = worker_http.iter().map(|a| scrape(a)).collect();
    let total = |name: &str, labels: &[(&str, &str)]| -> f64 {
        workers.iter().map(|w| sum(w, name, labels)).sum()
    };
    let map = [("kind", "map")];
    assert!(total("sluice_task_duration_seconds_count", &map) >= maps);
    assert!(total("sluice_task_duration_seconds_count", &[("kind", "reduce")]) >= 3.0);
    let ok = [("kind", "map"), ("outcome", "succeeded")];
    assert!(total("sluice_attempts_total", &ok) >= maps);
    assert!(total("sluice_input_bytes_total", &[]) >= input_bytes as f64);
    assert!(total("sluice_spilled_bytes_total", &[]) > 0.0);
    // Every reduce read every map output, from disk or over the network.
    assert!(total("sluice_shuffle_read_outputs_total", &[]) >= maps * 3.0);
    assert!(
        total("sluice_fetch_duration_seconds_count", &[]) > 0.0,
        "two workers fetch"
    );
    assert_eq!(total("sluice_slots_busy", &[]), 0.0, "nothing runs now");
    // Labels stay bounded: no job id anywhere.
    for sample in after
        .samples
        .iter()
        .chain(workers.iter().flat_map(|w| &w.samples))
    {
        assert!(
            !format!("{}", sample.labels).contains("job-"),
            "{}: {}",
            sample.metric,
            sample.labels
        );
    }
}
