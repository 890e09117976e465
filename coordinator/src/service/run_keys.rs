//! Run keys: a job submitted with `--run-key KEY` runs once per key, as a nightly batch
//! must run once per business day however often its scheduler (cron, Airflow, a person)
//! submits it.
//!
//! A submission with a key whose job is running gets that job (and waits for it, with
//! `--wait`), not a second one; with a key that already succeeded it gets the job that
//! did, unless it asks to run again (`--rerun`). A key whose jobs all failed or were
//! cancelled runs again. Two submissions of one new key at once give one job: the first
//! claims the key while it plans, the second waits for the claim and then finds its job.

use sluice_proto::pb::JobState;

/// What a submission with a run key does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyDecision {
    /// Submit a new job.
    Run,
    /// Answer with this earlier job.
    Reuse(String),
    /// Another submission of the key is being planned: ask again once it is done.
    Wait,
}

/// Decides for a submission of a key given the jobs that carry it (`(job id, state)`, in
/// submission order), whether another submission holds the key's claim, and `--rerun`.
pub fn decide<'a>(
    jobs: impl IntoIterator<Item = (&'a str, JobState)>,
    claimed: bool,
    rerun: bool,
) -> KeyDecision {
    let (mut running, mut succeeded) = (None, None);
    for (id, state) in jobs {
        match state {
            // A commit-failed job is not over: its `_SUCCESS` may still be written.
            JobState::Running | JobState::CommitFailed => running = Some(id),
            JobState::Succeeded => succeeded = Some(id),
            JobState::Failed | JobState::Cancelled | JobState::Unspecified => {}
        }
    }
    if let Some(id) = running {
        return KeyDecision::Reuse(id.to_string());
    }
    if claimed {
        return KeyDecision::Wait;
    }
    match succeeded {
        Some(id) if !rerun => KeyDecision::Reuse(id.to_string()),
        _ => KeyDecision::Run,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use JobState::*;

    #[test]
    fn a_key_runs_once_unless_its_jobs_failed_or_a_rerun_is_asked() {
        assert_eq!(decide([], false, false), KeyDecision::Run);
        assert_eq!(
            decide([("job-1", Succeeded)], false, false),
            KeyDecision::Reuse("job-1".into())
        );
        assert_eq!(
            decide([("job-1", Succeeded)], false, true),
            KeyDecision::Run
        );
        assert_eq!(
            decide([("job-1", Failed), ("job-2", Cancelled)], false, false),
            KeyDecision::Run
        );
        // The latest success is the answer.
        assert_eq!(
            decide(
                [
                    ("job-1", Succeeded),
                    ("job-2", Failed),
                    ("job-3", Succeeded)
                ],
                false,
                false
            ),
            KeyDecision::Reuse("job-3".into())
        );
    }

    #[test]
    fn a_running_job_is_joined_even_by_a_rerun_and_a_claim_is_waited_for() {
        let running = [("job-1", Succeeded), ("job-2", Running)];
        assert_eq!(
            decide(running, false, true),
            KeyDecision::Reuse("job-2".into())
        );
        assert_eq!(
            decide([("job-4", CommitFailed)], true, false),
            KeyDecision::Reuse("job-4".into())
        );
        assert_eq!(decide([], true, false), KeyDecision::Wait);
        assert_eq!(
            decide([("job-1", Succeeded)], true, false),
            KeyDecision::Wait
        );
    }
}
