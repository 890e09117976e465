//! Parquet input: a local file through `read_split` with a `RowGroups` split naming any row
//! groups (missing ones included) and an optional column projection.
//! Layout: group count byte, 4 group bytes, batch rows, columns read, then the file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_common::format::read::read_split;
use sluice_common::spec::InputFormat;
use sluice_common::split::{Split, SplitRange};
use sluice_fuzz::{batch_rows, columns, drain, header, write_temp};

fuzz_target!(|data: &[u8]| {
    let (mut input, file) = header(data, 7);
    let n = input.byte() % 5;
    let groups: Vec<u32> = (0..4)
        .map(|_| match input.byte() {
            255 => u32::MAX,
            b => u32::from(b % 8),
        })
        .take(n as usize)
        .collect();
    let rows = batch_rows(&mut input);
    let columns = columns(&mut input);
    let path = write_temp("input.parquet", file);
    let split = Split {
        path: path.to_string_lossy().into_owned(),
        range: SplitRange::RowGroups(groups),
        input: String::new(),
        stamp: None,
    };
    if let Ok(batches) = read_split(
        &split,
        InputFormat::Parquet,
        None,
        rows,
        columns.as_deref(),
        Default::default(),
    ) {
        drain(batches);
    }
});
