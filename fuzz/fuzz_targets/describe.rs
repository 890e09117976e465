//! The bytes that cross the plugin ABI: `JobDescription::decode` (what a plugin's
//! `describe` returns, and what the job store keeps) and `TaskContext::decode` (what the
//! engine hands each call), on any bytes. Decoding must never panic or allocate past its
//! limit, and a description or context that decodes must encode to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_sdk::{JobDescription, TaskContext};

fuzz_target!(|data: &[u8]| {
    if let Ok(d) = JobDescription::decode(data) {
        assert_eq!(
            JobDescription::decode(&d.encode()).as_ref(),
            Ok(&d),
            "{data:?}"
        );
    }
    if let Ok(c) = TaskContext::decode(data) {
        assert_eq!(
            TaskContext::decode(&c.encode()).as_ref(),
            Ok(&c),
            "{data:?}"
        );
    }
});
