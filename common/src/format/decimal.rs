//! A strict decimal parser for CSV money columns.
//!
//! arrow's generic cast rounds or truncates extra fractional digits; a bank amount with more
//! fractional digits than its column's scale is a bad record, not a value to round.

/// Parses `s` as a decimal of at most `precision` digits and at most `scale` fractional
/// digits into the unscaled `i128` (`"12.5"` with scale 2 is `1250`).
pub fn parse_decimal(s: &str, precision: u8, scale: i8) -> Result<i128, String> {
    let bytes = s.as_bytes();
    let (negative, digits) = match bytes.first() {
        Some(b'-') => (true, &bytes[1..]),
        Some(b'+') => (false, &bytes[1..]),
        _ => (false, bytes),
    };
    let scale = scale.max(0) as usize;
    let (int_part, frac_part) = match digits.iter().position(|&b| b == b'.') {
        Some(i) => (&digits[..i], &digits[i + 1..]),
        None => (digits, &digits[digits.len()..]),
    };
    if int_part.is_empty() && frac_part.is_empty() {
        return Err(format!("{s:?} is not a decimal number"));
    }
    if frac_part.len() > scale {
        return Err(format!(
            "{s:?} has {} fractional digits, at most {scale} allowed",
            frac_part.len()
        ));
    }
    let mut value: i128 = 0;
    let mut significant = 0usize;
    for &b in int_part.iter().chain(frac_part) {
        if !b.is_ascii_digit() {
            return Err(format!("{s:?} is not a decimal number"));
        }
        if significant > 0 || b != b'0' {
            significant += 1;
        }
        // Checked before multiplying: a 39th digit would overflow `i128`.
        if significant > 38 {
            return Err(format!("{s:?} has too many digits"));
        }
        value = value * 10 + i128::from(b - b'0');
    }
    for _ in frac_part.len()..scale {
        significant += usize::from(significant > 0);
        if significant > 38 {
            return Err(format!("{s:?} at scale {scale} has more than 38 digits"));
        }
        value *= 10;
    }
    if significant > usize::from(precision) {
        return Err(format!("{s:?} does not fit in {precision} digits"));
    }
    Ok(if negative { -value } else { value })
}

#[cfg(test)]
mod tests {
    use super::parse_decimal;

    #[test]
    fn parses_exactly_and_refuses_extra_digits() {
        assert_eq!(parse_decimal("12.5", 18, 2), Ok(1250));
        assert_eq!(parse_decimal("1034.07", 18, 2), Ok(103407));
        assert_eq!(parse_decimal("7", 18, 2), Ok(700));
        assert_eq!(parse_decimal("-0.01", 18, 2), Ok(-1));
        assert_eq!(parse_decimal(".5", 18, 2), Ok(50));
        assert!(
            parse_decimal("1.005", 18, 2)
                .unwrap_err()
                .contains("fractional")
        );
        assert!(parse_decimal("1,5", 18, 2).is_err());
        assert!(parse_decimal("", 18, 2).is_err());
        assert!(parse_decimal(".", 18, 2).is_err());
        assert!(parse_decimal("abc", 18, 2).is_err());
        assert!(parse_decimal("1234567890123456.00", 18, 2).is_ok());
        assert!(parse_decimal("12345678901234567.00", 18, 2).is_err());
    }

    /// Fuzz crash (decimal): padding to a scale past 38 digits overflowed `i128`
    /// (`"000002"` at precision 5, scale 46), and so did a 39th significant digit.
    #[test]
    fn digits_past_38_are_refused_not_overflowed() {
        let e = parse_decimal("000002", 5, 46).unwrap_err();
        assert!(e.contains("more than 38 digits"), "{e}");
        assert!(parse_decimal("1", 38, 127).is_err());
        assert_eq!(parse_decimal("0", 0, 127), Ok(0));
        let nines = "9".repeat(39);
        assert!(
            parse_decimal(&nines, 38, 0)
                .unwrap_err()
                .contains("too many digits")
        );
        assert!(parse_decimal(&"9".repeat(38), 38, 0).is_ok());
        assert!(parse_decimal(&format!("{}.9", "9".repeat(38)), 38, 1).is_err());
    }
}
