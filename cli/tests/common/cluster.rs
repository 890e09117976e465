//! A cluster of real `sluice coordinator` and `sluice worker` processes on loopback, on ports
//! the OS picks. Each process logs to a file in the cluster's directory (read when a test
//! fails); dropping the cluster SIGKILLs whatever still runs.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::sluice;

/// One child process and its log file.
pub struct Proc {
    /// What it is, for messages.
    pub name: String,
    /// The process.
    pub child: Child,
    /// Its stderr.
    pub log: PathBuf,
}

impl Proc {
    /// Starts `sluice <args>` with stderr to `log` and `SLUICE_LOG=info`.
    pub fn spawn(name: &str, mut cmd: Command, log: PathBuf) -> Proc {
        let file = std::fs::File::create(&log).expect("log file");
        let child = cmd
            .env("SLUICE_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("sluice starts");
        Proc {
            name: name.to_string(),
            child,
            log,
        }
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for `key=VALUE` on a log line and returns VALUE; panics with the log if the
    /// process exits first or 30 s pass.
    pub fn wait_for_field(&mut self, key: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        let needle = format!("{key}=");
        loop {
            let text = self.log_text();
            if let Some(line) = text.lines().find(|l| l.contains(&needle)) {
                let rest = &line[line.find(&needle).unwrap() + needle.len()..];
                return rest.split_whitespace().next().unwrap_or("").to_string();
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{} exited ({status}) before logging {key}=:\n{text}",
                    self.name
                );
            }
            assert!(
                Instant::now() < deadline,
                "{} did not log {key}= in 30 s:\n{text}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: sending a signal to our own child.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }

    /// Waits up to `timeout` for the process to exit; returns its exit status.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Options of a test cluster.
#[derive(Default, Clone)]
pub struct ClusterOptions {
    /// Write a token file and require it.
    pub token: bool,
    /// Extra arguments for the coordinator (TLS files, ...).
    pub coordinator_args: Vec<String>,
    /// Extra arguments for every worker and client command.
    pub client_args: Vec<String>,
    /// The coordinator URL scheme (`http` or `https`).
    pub scheme: Option<String>,
    /// Run the coordinator with the product's default heartbeat (1 s) instead of the quick
    /// 100 ms the other tests use, so a test sees what a new user gets.
    pub default_heartbeat: bool,
}

/// A coordinator and its workers.
pub struct Cluster {
    /// The coordinator's gRPC URL.
    pub url: String,
    /// The coordinator's HTTP address.
    pub http: String,
    /// The token file, when required.
    pub token_file: Option<PathBuf>,
    /// The coordinator process.
    pub coordinator: Proc,
    /// Worker processes, in start order.
    pub workers: Vec<Proc>,
    /// Workers killed by [`Cluster::kill_worker`], kept for their logs.
    pub killed: Vec<Proc>,
    options: ClusterOptions,
    restarts: usize,
    spawned: usize,
    /// Holds logs, state, work dirs; tests may put inputs and outputs here. Declared last
    /// so that it is removed after the processes above are killed: removed first, it lost
    /// the race with workers still writing into it and was left behind in `/tmp`.
    pub dir: tempfile::TempDir,
}

impl Cluster {
    /// Starts a coordinator and `workers` workers of 2 slots and waits until all registered.
    pub fn start(workers: usize, options: ClusterOptions) -> Cluster {
        let dir = tempfile::Builder::new()
            .prefix("sluice-cluster-")
            .tempdir()
            .unwrap();
        let token_file = options.token.then(|| {
            let p = dir.path().join("token");
            std::fs::write(&p, "test-cluster-token-0123456789\n").unwrap();
            p
        });
        let cmd = coordinator_command(dir.path(), "127.0.0.1:0", &token_file, &options);
        let mut coordinator = Proc::spawn("coordinator", cmd, dir.path().join("coordinator.log"));
        let grpc = coordinator.wait_for_field("grpc");
        let http = coordinator.wait_for_field("http");
        let scheme = options.scheme.clone().unwrap_or_else(|| "http".into());
        let mut cluster = Cluster {
            url: format!("{scheme}://{grpc}"),
            http,
            token_file,
            coordinator,
            workers: Vec::new(),
            killed: Vec::new(),
            dir,
            options,
            restarts: 0,
            spawned: 0,
        };
        for _ in 0..workers {
            cluster.add_worker();
        }
        cluster.wait_workers(workers);
        cluster
    }

    /// SIGKILLs the coordinator and starts it again on the same address and state dir.
    pub fn kill_and_restart_coordinator(&mut self) {
        let _ = self.coordinator.child.kill();
        let _ = self.coordinator.child.wait();
        let addr = self
            .url
            .rsplit("://")
            .next()
            .unwrap_or_default()
            .to_string();
        self.restarts += 1;
        let cmd = coordinator_command(self.dir.path(), &addr, &self.token_file, &self.options);
        let log = self
            .dir
            .path()
            .join(format!("coordinator-{}.log", self.restarts));
        let mut p = Proc::spawn("coordinator (restarted)", cmd, log);
        p.wait_for_field("grpc");
        self.coordinator = p;
    }

    /// SIGKILLs worker `index` (of `workers`) and waits for it to die; its log stays in
    /// [`Cluster::logs`].
    pub fn kill_worker(&mut self, index: usize) {
        let mut w = self.workers.remove(index);
        let _ = w.child.kill();
        let _ = w.child.wait();
        w.name.push_str(" (killed)");
        self.killed.push(w);
    }

    /// Moves the workers that have exited into `killed` (kept for their logs); how many.
    pub fn reap_dead_workers(&mut self) -> usize {
        let mut dead = 0;
        for mut w in std::mem::take(&mut self.workers) {
            if w.child.try_wait().is_ok_and(|s| s.is_none()) {
                self.workers.push(w);
            } else {
                w.name.push_str(" (died)");
                self.killed.push(w);
                dead += 1;
            }
        }
        dead
    }

    /// Starts one more worker of `slots` slots with extra environment variables.
    pub fn add_worker_with(&mut self, slots: usize, env: &[(&str, &str)]) -> &mut Proc {
        let i = self.spawned;
        self.spawned += 1;
        let mut cmd = self.worker_command(i);
        cmd.args(["--slots", &slots.to_string()]);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let log = self.dir.path().join(format!("worker-{i}.log"));
        let mut p = Proc::spawn(&format!("worker-{i}"), cmd, log);
        p.wait_for_field("shuffle");
        self.workers.push(p);
        self.workers.last_mut().unwrap()
    }

    /// Arguments every worker and client command gets: coordinator URL, token, TLS.
    fn common_args(&self, cmd: &mut Command) {
        cmd.arg("--coordinator").arg(&self.url);
        if let Some(t) = &self.token_file {
            cmd.arg("--token-file").arg(t);
        }
        cmd.args(&self.options.client_args);
    }

    /// A worker command with this cluster's settings (not started).
    pub fn worker_command(&self, index: usize) -> Command {
        let mut cmd = sluice();
        cmd.args(["worker", "--listen", "127.0.0.1:0"])
            .arg("--work-dir")
            .arg(self.dir.path().join(format!("worker-{index}")))
            // Each worker plays a machine of its own: no reads of another's disk.
            .args(["--host-id", &format!("host-{index}")])
            .args(["--http", "127.0.0.1:0"]);
        self.common_args(&mut cmd);
        cmd
    }

    /// Starts one more worker and waits for its shuffle address.
    pub fn add_worker(&mut self) -> &mut Proc {
        let i = self.spawned;
        self.spawned += 1;
        let mut cmd = self.worker_command(i);
        cmd.args(["--slots", "2"]);
        let log = self.dir.path().join(format!("worker-{i}.log"));
        let mut p = Proc::spawn(&format!("worker-{i}"), cmd, log);
        p.wait_for_field("shuffle");
        self.workers.push(p);
        self.workers.last_mut().unwrap()
    }

    /// A client command (`submit`, `jobs`, ...) with this cluster's settings.
    pub fn client(&self, command: &str) -> Command {
        let mut cmd = sluice();
        cmd.arg(command);
        self.common_args(&mut cmd);
        cmd
    }

    /// Runs a client command to its end.
    pub fn run_client(&self, command: &str, args: &[&str]) -> Output {
        self.client(command)
            .args(args)
            .output()
            .expect("sluice runs")
    }

    /// `sluice submit` of word count over `input` into `output`, with `--wait` and `extra`.
    pub fn submit_word_count(&self, input: &Path, output: &Path, extra: &[&str]) -> Output {
        let mut args = job_args(
            &super::plugin("sluice_wordcount"),
            input.to_str().unwrap(),
            "text",
            output,
        );
        args.push("--wait".into());
        args.extend(extra.iter().map(|a| a.to_string()));
        self.client("submit")
            .args(&args)
            .output()
            .expect("sluice runs")
    }

    /// `sluice workers --json`, parsed.
    pub fn workers_json(&self) -> Vec<serde_json::Value> {
        let out = self.run_client("workers", &["--json"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .expect("workers --json is JSON")
            .as_array()
            .expect("an array")
            .clone()
    }

    /// Waits until `n` workers are registered.
    pub fn wait_workers(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let got = self.workers_json().len();
            if got >= n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{got} of {n} workers registered in 30 s:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Every process's log, for failure messages.
    pub fn logs(&self) -> String {
        let mut s = format!("--- coordinator\n{}", self.coordinator.log_text());
        for w in self.killed.iter().chain(&self.workers) {
            s.push_str(&format!("--- {}\n{}", w.name, w.log_text()));
        }
        s
    }

    /// A path inside the cluster's directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn coordinator_command(
    dir: &Path,
    listen: &str,
    token_file: &Option<PathBuf>,
    options: &ClusterOptions,
) -> Command {
    let mut cmd = sluice();
    cmd.args(["coordinator", "--listen", listen, "--http", "127.0.0.1:0"])
        .arg("--state-dir")
        .arg(dir.join("state"))
        .args(&options.coordinator_args);
    if !options.default_heartbeat {
        cmd.args(["--heartbeat-ms", "100"]);
    }
    if let Some(t) = token_file {
        cmd.arg("--token-file").arg(t);
    }
    cmd
}

/// Arguments of a text job over `input` writing `output`.
pub fn job_args(plugin: &Path, input: &str, format: &str, output: &Path) -> Vec<String> {
    vec![
        "--plugin".into(),
        plugin.to_string_lossy().into_owned(),
        "--input".into(),
        input.into(),
        "--format".into(),
        format.into(),
        "--output".into(),
        output.to_string_lossy().into_owned(),
    ]
}

/// The body of `GET path` from an HTTP/1.1 server at `addr` (no TLS, no token).
pub fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect to the HTTP port");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    text.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}
