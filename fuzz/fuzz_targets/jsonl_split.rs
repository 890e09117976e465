//! JSON-lines input: a byte-range split of a local file through `read_split`, with a schema
//! of 1 to 4 columns (scalars, decimals, lists, structs).
//! Layout: 16 control bytes (range, batch rows, schema), then the file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_common::spec::InputFormat;
use sluice_common::split::{Split, SplitRange};
use sluice_fuzz::{batch_rows, byte_range, header, json_schema, write_temp};

fuzz_target!(|data: &[u8]| {
    let (mut input, file) = header(data, 16);
    let (start, end) = byte_range(&mut input, file.len() as u64);
    let rows = batch_rows(&mut input);
    let schema = json_schema(&mut input);
    let path = write_temp("input.jsonl", file);
    let split = Split {
        path: path.to_string_lossy().into_owned(),
        range: SplitRange::Bytes { start, end },
        input: String::new(),
        stamp: None,
    };
    sluice_fuzz::read_both_ways(&split, InputFormat::JsonLines, Some(schema), rows, None);
});
