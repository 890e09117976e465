//! Storage locations (`common/src/storage.rs`): `Location::parse` of any string, the
//! `ObjectUrl` helpers (`key`, `bucket`, `file_name`, `join`, display and re-parse), and the
//! glob listing filter (`glob_dir`, `glob_keeps`) over keys as a store may list them.
//! Layout: lines (invalid UTF-8 replaced): the location, a name to join, then listed keys.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_common::storage::{Location, glob_dir, glob_keeps, is_data_name, is_glob};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let location = lines.next().unwrap_or("");
    let name = lines.next().unwrap_or("");
    let listed: Vec<&str> = lines.collect();
    let _ = is_glob(location);
    let Ok(Location::Object(url)) = Location::parse(location) else {
        return;
    };
    let _ = (
        url.scheme(),
        url.bucket(),
        url.file_name(),
        is_data_name(url.file_name()),
    );
    let joined = url.join(name);
    let _ = (joined.key(), joined.file_name());
    let _ = Location::parse(&url.to_string());
    let _ = Location::parse(&joined.to_string());
    let Ok(pattern) = glob::Pattern::new(url.key()) else {
        return;
    };
    let dir = glob_dir(url.key());
    for key in listed {
        // Keys as a store lists them below the prefix, and as it may return them.
        let _ = glob_keeps(&pattern, dir, &format!("{dir}/{key}"));
        let _ = glob_keeps(&pattern, dir, key);
    }
});
