//! `parse_decimal(s, precision, scale)` with any precision and scale.
//! Layout: precision byte, scale byte (as i8), then the text (invalid UTF-8 is replaced).
//! Checks too that an accepted value has at most `precision` digits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_common::format::decimal::parse_decimal;
use sluice_fuzz::header;

fuzz_target!(|data: &[u8]| {
    let (mut input, text) = header(data, 2);
    let precision = input.byte();
    let scale = input.byte() as i8;
    let text = String::from_utf8_lossy(text);
    if let Ok(v) = parse_decimal(&text, precision, scale) {
        let max = 10u128.pow(u32::from(precision.min(38)));
        assert!(
            v.unsigned_abs() < max || precision > 38,
            "{text:?} parsed as {v}, more than {precision} digits"
        );
    }
});
