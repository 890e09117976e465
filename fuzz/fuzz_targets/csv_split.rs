//! CSV input: a byte-range split of a local file through `read_split`, with a schema of
//! 1 to 4 typed columns (decimals of any precision and scale) and an optional projection.
//! Layout: 16 control bytes (range, batch rows, columns read, schema), then the file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_common::spec::InputFormat;
use sluice_common::split::{Split, SplitRange};
use sluice_fuzz::{batch_rows, byte_range, columns, csv_schema, header, write_temp};

fuzz_target!(|data: &[u8]| {
    let (mut input, file) = header(data, 16);
    let (start, end) = byte_range(&mut input, file.len() as u64);
    let rows = batch_rows(&mut input);
    let columns = columns(&mut input);
    let schema = csv_schema(&mut input);
    let path = write_temp("input.csv", file);
    let split = Split {
        path: path.to_string_lossy().into_owned(),
        range: SplitRange::Bytes { start, end },
        input: String::new(),
        stamp: None,
    };
    sluice_fuzz::read_both_ways(
        &split,
        InputFormat::Csv,
        Some(schema),
        rows,
        columns.as_deref(),
    );
});
