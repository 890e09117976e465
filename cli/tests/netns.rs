//! A cluster across network namespaces: the coordinator and three workers each on a host of
//! their own (`ip netns`, veth pairs into a bridge, addresses 10.77.0.1-4), so every RPC and
//! every shuffle fetch crosses a network interface between distinct addresses, as on
//! separate machines.
//!
//! Needs root and iproute2 (`.ci/run` installs it; CI runs as root). Anywhere else the test
//! prints why it is skipped and passes.

mod common;

use std::path::Path;
use std::process::Command;

use common::cluster::{Proc, job_args};
use common::*;

/// Namespaces and links of one test run, removed on drop.
struct Net {
    prefix: String,
    hosts: Vec<String>,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("ip runs");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Net {
    /// A bridge in a switch namespace and one namespace per host, host `i` at 10.77.0.(i+1).
    fn new(hosts: usize) -> Net {
        // Short names: interface names have at most 15 bytes.
        let prefix = format!("sl{}", std::process::id() % 100_000);
        let sw = format!("{prefix}sw");
        let mut net = Net {
            prefix: prefix.clone(),
            hosts: Vec::new(),
        };
        ip(&["netns", "add", &sw]);
        ip(&["-n", &sw, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &sw, "link", "set", "br0", "up"]);
        for i in 0..hosts {
            let ns = format!("{prefix}h{i}");
            ip(&["netns", "add", &ns]);
            net.hosts.push(ns.clone());
            let (a, b) = (format!("{prefix}h{i}a"), format!("{prefix}h{i}b"));
            ip(&["link", "add", &a, "type", "veth", "peer", "name", &b]);
            ip(&["link", "set", &a, "netns", &ns]);
            ip(&["link", "set", &b, "netns", &sw]);
            ip(&["-n", &sw, "link", "set", &b, "master", "br0"]);
            ip(&["-n", &sw, "link", "set", &b, "up"]);
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{}/24", Net::addr(i)),
                "dev",
                &a,
            ]);
            ip(&["-n", &ns, "link", "set", &a, "up"]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
        }
        net
    }

    fn addr(i: usize) -> String {
        format!("10.77.0.{}", i + 1)
    }

    /// `sluice` run inside host `i`'s namespace.
    fn sluice(&self, i: usize) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args([
            "netns",
            "exec",
            &self.hosts[i],
            env!("CARGO_BIN_EXE_sluice"),
        ]);
        cmd
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        // Deleting a namespace deletes the veth ends inside it.
        for ns in self.hosts.iter().chain([&format!("{}sw", self.prefix)]) {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

fn skip_reason() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root (network namespaces need CAP_NET_ADMIN)".into());
    }
    if Command::new("ip").arg("-V").output().is_err() {
        return Some("iproute2's `ip` is not installed".into());
    }
    None
}

#[test]
fn word_count_across_four_network_namespaces() {
    if let Some(why) = skip_reason() {
        eprintln!("SKIPPED word_count_across_four_network_namespaces: {why}");
        return;
    }
    let net = Net::new(4);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    // An address other hosts reach needs a cluster token: without one the coordinator
    // refuses to start, naming the flag.
    let coordinator_cmd = || {
        let mut cmd = net.sluice(0);
        cmd.args(["coordinator", "--http", "off", "--heartbeat-ms", "100"])
            .args(["--listen", &format!("{}:0", Net::addr(0))])
            .arg("--state-dir")
            .arg(d.join("state"));
        cmd
    };
    let refused = coordinator_cmd()
        .env_remove("SLUICE_TOKEN_FILE")
        .output()
        .unwrap();
    let err = assert_failed(&refused);
    assert!(
        err.contains("10.77.0.1") && err.contains("--token-file") && err.contains("--insecure"),
        "{err}"
    );
    let token = d.join("token");
    std::fs::write(&token, "netns-cluster-token\n").unwrap();
    let mut cmd = coordinator_cmd();
    cmd.env("SLUICE_TOKEN_FILE", &token);
    let mut coordinator = Proc::spawn("coordinator", cmd, d.join("coordinator.log"));
    let grpc = coordinator.wait_for_field("grpc");
    assert!(grpc.starts_with("10.77.0.1:"), "{grpc}");
    let url = format!("http://{grpc}");

    let mut workers = Vec::new();
    for i in 1..=3 {
        let mut cmd = net.sluice(i);
        cmd.env("SLUICE_TOKEN_FILE", &token)
            .args(["worker", "--coordinator", &url, "--slots", "2"])
            .args(["--listen", &format!("{}:0", Net::addr(i))])
            .arg("--work-dir")
            .arg(d.join(format!("worker-{i}")));
        let mut w = Proc::spawn(
            &format!("worker-{i}"),
            cmd,
            d.join(format!("worker-{i}.log")),
        );
        w.wait_for_field("shuffle");
        workers.push(w);
    }

    let input = d.join("corpus");
    std::fs::create_dir(&input).unwrap();
    let texts: Vec<String> = (0..4)
        .map(|f| {
            (0..400)
                .map(|i| format!("host{} word{} common{}\n", f, i % 37, i % 5))
                .collect()
        })
        .collect();
    for (i, t) in texts.iter().enumerate() {
        std::fs::write(input.join(format!("f{i}.txt")), t).unwrap();
    }
    // The client runs on the coordinator's host.
    let client = |args: &[&str]| {
        let mut cmd = net.sluice(0);
        cmd.env("SLUICE_TOKEN_FILE", &token)
            .args(args)
            .args(["--coordinator", &url]);
        cmd.output().unwrap()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let workers_json = loop {
        let out = client(&["workers", "--json"]);
        assert_ok(&out);
        let v: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
        if v.len() == 3 || std::time::Instant::now() > deadline {
            break v;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let mut hosts: Vec<&str> = workers_json
        .iter()
        .map(|w| {
            w["shuffle_addr"]
                .as_str()
                .unwrap()
                .split(':')
                .next()
                .unwrap()
        })
        .collect();
    hosts.sort();
    assert_eq!(hosts, ["10.77.0.2", "10.77.0.3", "10.77.0.4"]);

    let out_dir = d.join("out");
    let mut args = job_args(
        &plugin("sluice_wordcount"),
        input.to_str().unwrap(),
        "text",
        Path::new(&out_dir),
    );
    args.extend(
        [
            "--reducers",
            "3",
            "--split-size",
            "2048",
            "--wait",
            "--quiet",
        ]
        .map(String::from),
    );
    let mut submit = vec!["submit"];
    submit.extend(args.iter().map(String::as_str));
    let out = client(&submit);
    if !out.status.success() {
        let mut logs = coordinator.log_text();
        for w in &workers {
            logs.push_str(&w.log_text());
        }
        panic!(
            "submit failed: {}\n{logs}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(
        read_counts(&out_dir, "word", "count"),
        reference_word_count(&texts.iter().map(String::as_str).collect::<Vec<_>>())
    );
    // Maps ran on at least two hosts, so every reducer fetched across the network.
    let ran = (1..=3)
        .filter(|i| d.join(format!("worker-{i}/plugins")).is_dir())
        .count();
    assert!(ran >= 2, "tasks ran on {ran} host(s) only");
    drop(workers);
    drop(coordinator);
}
