//! The texts that cross the plugin ABI: `JobDescription::decode` (what a plugin's
//! `describe` returns, and what the job store keeps) and `TaskContext::decode` (what the
//! engine hands each call), on any text. A description or context that decodes must
//! encode and decode again to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_sdk::{JobDescription, TaskContext};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(d) = JobDescription::decode(&text) {
        assert_eq!(JobDescription::decode(&d.encode()).as_ref(), Ok(&d), "{text:?}");
    }
    if let Ok(c) = TaskContext::decode(&text) {
        assert_eq!(TaskContext::decode(&c.encode()).as_ref(), Ok(&c), "{text:?}");
    }
});
