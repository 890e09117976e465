//! Alerts: when a job or a pipeline run ends, the coordinator tells the targets that asked
//! for that end: webhooks (a JSON POST, signed with HMAC-SHA256 when a secret is set) and
//! commands (the JSON on their standard input, for mail or paging tools), from the
//! `[[alerts]]` of its config, and each job's own `--notify URL`s.
//!
//! A delivery is retried with backoff ([`ATTEMPTS`] tries) while the receiver answers
//! other than 2xx or cannot be reached, and logged when given up; it never holds up the
//! scheduler.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::Serialize;

/// Tries per delivery.
pub const ATTEMPTS: u32 = 5;
/// The header carrying the signature: `sha256=<hex of HMAC-SHA256(secret, body)>`.
pub const SIGNATURE_HEADER: &str = "x-sluice-signature";
/// The ends an alert target gets when it names none.
pub const DEFAULT_ON: &[&str] = &["failed"];
/// The ends a target may ask for (`deadline_missed`: a schedule's run had not succeeded
/// by its deadline).
pub const ENDS: &[&str] = &["failed", "cancelled", "succeeded", "deadline_missed"];

/// Where alerts go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertTarget {
    /// A webhook URL (`http://` or `https://`).
    pub url: Option<String>,
    /// Or a command and its arguments, run with the alert's JSON on stdin.
    pub command: Vec<String>,
    /// The ends it wants (`failed`, `cancelled`, `succeeded`).
    pub on: BTreeSet<String>,
    /// Signs webhook bodies when set.
    pub secret: Option<Vec<u8>>,
}

impl AlertTarget {
    /// A target that gets every end (a job's `--notify URL`).
    pub fn notify(url: &str) -> Self {
        AlertTarget {
            url: Some(url.to_string()),
            command: Vec::new(),
            on: ENDS.iter().map(|s| s.to_string()).collect(),
            secret: None,
        }
    }

    /// Whether it wants an alert of a job or run that ended `state`.
    pub fn wants(&self, state: &str) -> bool {
        self.on.contains(state)
    }
}

/// What an alert says, as its JSON body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Alert {
    /// `job` or `pipeline`.
    pub kind: &'static str,
    /// The job or pipeline run id.
    pub id: String,
    /// The job's or pipeline's name.
    pub name: String,
    /// Its run key (empty: none).
    pub run_key: String,
    /// `succeeded`, `failed` or `cancelled`.
    pub state: String,
    /// Why it failed.
    pub error: String,
    /// Submission, ms since the Unix epoch.
    pub started_ms: u64,
    /// End, ms since the Unix epoch.
    pub finished_ms: u64,
    /// Rows written (jobs).
    pub rows_out: u64,
    /// Bad records set aside (jobs).
    pub bad_records: u64,
    /// The output (jobs).
    pub output: String,
}

/// `sha256=<hex>` of HMAC-SHA256 of `body` under `secret`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let tag = ring::hmac::sign(&key, body);
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// How long to wait before try `n` (1-based) again.
fn backoff(n: u32) -> Duration {
    Duration::from_millis(500u64 << n.min(6))
}

/// Delivers `alert` to `target`, retrying; logs what became of it.
pub async fn deliver(target: AlertTarget, alert: Alert) {
    let body = match serde_json::to_vec(&alert) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, "cannot encode an alert");
            return;
        }
    };
    let what = target
        .url
        .clone()
        .unwrap_or_else(|| target.command.join(" "));
    let mut last_error = String::new();
    for n in 1..=ATTEMPTS {
        let tried = match &target.url {
            Some(url) => post(url, &body, target.secret.as_deref()).await,
            None => run_command(&target.command, &body).await,
        };
        match tried {
            Ok(()) => {
                tracing::info!(target = %what, id = %alert.id, state = %alert.state, "alert delivered");
                return;
            }
            Err(e) => {
                tracing::warn!(target = %what, id = %alert.id, attempt = n, error = %e, "alert not delivered");
                last_error = e;
            }
        }
        if n < ATTEMPTS {
            tokio::time::sleep(backoff(n)).await;
        }
    }
    tracing::error!(target = %what, id = %alert.id, state = %alert.state, error = %last_error, "alert given up after {ATTEMPTS} tries");
}

async fn post(url: &str, body: &[u8], secret: Option<&[u8]>) -> Result<(), String> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| e.to_string())?;
    let mut req = client
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_vec());
    if let Some(secret) = secret {
        req = req.header(SIGNATURE_HEADER, signature(secret, body));
    }
    let resp = req.send().await.map_err(|e| e.to_string())?;
    if resp.status().is_success() {
        Ok(())
    } else {
        Err(format!("answered {}", resp.status()))
    }
}

async fn run_command(command: &[String], body: &[u8]) -> Result<(), String> {
    use tokio::io::AsyncWriteExt;
    let (program, args) = command.split_first().ok_or("an empty command")?;
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {program}: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(body).await.map_err(|e| e.to_string())?;
    }
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .map_err(|_| format!("{program} ran over 60 s"))?
        .map_err(|e| e.to_string())?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{program} exited with {status}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_hmac_sha256_as_rfc_4231_gives_them() {
        // RFC 4231, test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn targets_get_the_ends_they_asked_for() {
        let t = AlertTarget {
            url: Some("http://x".into()),
            command: Vec::new(),
            on: ["failed".to_string()].into(),
            secret: None,
        };
        assert!(t.wants("failed") && !t.wants("succeeded"));
        let n = AlertTarget::notify("http://y");
        assert!(n.wants("succeeded") && n.wants("failed") && n.wants("cancelled"));
        assert!(backoff(1) < backoff(2));
    }
}
