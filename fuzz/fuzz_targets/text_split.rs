//! `text` input: a byte-range split of a local file through `read_split`.
//! Layout: 4 control bytes (range mode, two positions, batch rows), then the file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_common::spec::InputFormat;
use sluice_common::split::{Split, SplitRange};
use sluice_fuzz::{batch_rows, byte_range, header, write_temp};

fuzz_target!(|data: &[u8]| {
    let (mut input, file) = header(data, 4);
    let (start, end) = byte_range(&mut input, file.len() as u64);
    let rows = batch_rows(&mut input);
    let path = write_temp("input.txt", file);
    let split = Split {
        path: path.to_string_lossy().into_owned(),
        range: SplitRange::Bytes { start, end },
        input: String::new(),
        stamp: None,
    };
    sluice_fuzz::read_both_ways(&split, InputFormat::Text, None, rows, None);
});
