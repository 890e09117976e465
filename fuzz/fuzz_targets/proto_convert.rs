//! Wire messages as the coordinator and worker servers receive them: arbitrary bytes
//! decoded with `prost::Message::decode` as each request (and the assignments a worker is
//! handed), then the conversions of `proto/src/convert.rs` (`JobSpec`, `Split`,
//! `TaskFailure`), the job limits check, and the input schema a worker decodes from an
//! assignment. Round trips domain -> wire -> domain must give the same value.
//! Layout: one selector byte, then the message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use sluice_common::failure::TaskFailure;
use sluice_common::spec::{JobSpec, Limits};
use sluice_common::split::Split;
use sluice_proto::pb;

fn job_spec(spec: &pb::JobSpec) {
    if let Ok(s) = JobSpec::try_from(spec) {
        let _ = s.check_limits(&Limits::default());
        let back =
            JobSpec::try_from(&pb::JobSpec::from(&s)).expect("a converted spec converts back");
        assert_eq!(back, s);
    }
}

fn split(split: &pb::Split) {
    if let Ok(s) = Split::try_from(split) {
        let _ = s.to_string();
        let back = Split::try_from(&pb::Split::from(&s)).expect("a converted split converts back");
        assert_eq!(back, s);
    }
}

fn failure(f: &pb::TaskFailure) {
    let domain = TaskFailure::from(f);
    assert_eq!(TaskFailure::from(&pb::TaskFailure::from(&domain)), domain);
}

fn assignment(a: &pb::TaskAssignment) {
    if let Some(job) = &a.job {
        if let Some(spec) = &job.spec {
            job_spec(spec);
        }
        // Plans that decode re-encode to bytes that decode to the same plan.
        if let Ok(plan) = sluice_proto::convert::decode_input_plan(&job.input_plan) {
            let bytes = sluice_proto::convert::encode_input_plan(&plan).unwrap();
            assert_eq!(sluice_proto::convert::decode_input_plan(&bytes).unwrap(), plan);
        }
    }
    if let Some(pb::task_assignment::Task::Map(m)) = &a.task {
        if let Some(s) = &m.split {
            split(s);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, bytes)) = data.split_first() else {
        return;
    };
    match selector % 10 {
        0 => {
            if let Ok(m) = pb::SubmitJobRequest::decode(bytes) {
                if let Some(spec) = &m.spec {
                    job_spec(spec);
                }
            }
        }
        1 => {
            if let Ok(m) = pb::ReportTaskRequest::decode(bytes) {
                if let Some(pb::report_task_request::Outcome::Failed(f)) = &m.outcome {
                    failure(f);
                }
            }
        }
        2 => {
            let _ = pb::HeartbeatRequest::decode(bytes);
        }
        3 => {
            let _ = pb::RegisterWorkerRequest::decode(bytes);
        }
        4 => {
            let _ = pb::CanCommitRequest::decode(bytes);
        }
        5 => {
            let _ = pb::FetchOutputsRequest::decode(bytes);
        }
        6 => {
            if let Ok(a) = pb::TaskAssignment::decode(bytes) {
                assignment(&a);
            }
        }
        7 => {
            if let Ok(r) = pb::HeartbeatResponse::decode(bytes) {
                r.assignments.iter().for_each(assignment);
            }
        }
        8 => {
            if let Ok(r) = pb::ReportTaskResponse::decode(bytes) {
                r.assignments.iter().for_each(assignment);
            }
        }
        _ => {
            if let Ok(s) = pb::Split::decode(bytes) {
                split(&s);
            }
            if let Ok(f) = pb::TaskFailure::decode(bytes) {
                failure(&f);
            }
        }
    }
});
