//! The binary form of what crosses the plugin boundary besides batches (the job
//! description, the task context) and what the job store keeps of it: serde + bincode,
//! behind a format number.
//!
//! Each value is written as its format number (a varint) followed by the value, so a host
//! reading bytes another SDK wrote refuses them by name instead of misreading them. Change a
//! type that is encoded here and you bump its format. Decoding never allocates more than
//! [`MAX_ENCODED_BYTES`], whatever a length prefix claims, and refuses trailing bytes.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Largest encoded value accepted: far above any real description or context, far below
/// what a hostile length prefix could make a decoder allocate.
pub const MAX_ENCODED_BYTES: usize = 16 << 20;

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_ENCODED_BYTES>()
}

/// Why bytes did not decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// Written in another format of this type (another SDK or Sluice version).
    Format {
        /// What was decoded.
        what: &'static str,
        /// The format found.
        found: u32,
        /// The format this build reads.
        expected: u32,
    },
    /// Not a valid encoding.
    Malformed {
        /// What was decoded.
        what: &'static str,
        /// The decoder's reason.
        reason: String,
    },
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::Format {
                what,
                found,
                expected,
            } => write!(
                f,
                "{what} is in format {found}, this build reads format {expected} (rebuild the \
                 plugin against this sluice-sdk)"
            ),
            DecodeError::Malformed { what, reason } => write!(f, "{what} is malformed: {reason}"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// `value` in format `format`.
pub fn encode<T: Serialize>(format: u32, value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing to a Vec fails only past the size limit, which no description or context
    // nears; an empty result then fails to decode with a clear message.
    if bincode::serde::encode_into_std_write(format, &mut out, config()).is_err()
        || bincode::serde::encode_into_std_write(value, &mut out, config()).is_err()
    {
        out.clear();
    }
    out
}

/// Decodes what [`encode`] wrote in format `format`; `what` names the value in errors.
pub fn decode<T: DeserializeOwned>(
    format: u32,
    what: &'static str,
    bytes: &[u8],
) -> Result<T, DecodeError> {
    let malformed = |reason: String| DecodeError::Malformed { what, reason };
    let (found, used): (u32, usize) = bincode::serde::decode_from_slice(bytes, config())
        .map_err(|e| malformed(format!("no format number: {e}")))?;
    if found != format {
        return Err(DecodeError::Format {
            what,
            found,
            expected: format,
        });
    }
    let body = &bytes[used..];
    let (value, read): (T, usize) =
        bincode::serde::decode_from_slice(body, config()).map_err(|e| malformed(e.to_string()))?;
    if read != body.len() {
        return Err(malformed(format!(
            "{} bytes left over after the value",
            body.len() - read
        )));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn another_format_and_garbage_are_refused_by_name() {
        let bytes = encode(2, &("a".to_string(), 7u32));
        let v: (String, u32) = decode(2, "pair", &bytes).unwrap();
        assert_eq!(v, ("a".to_string(), 7));
        let e = decode::<(String, u32)>(1, "pair", &bytes).unwrap_err();
        assert_eq!(
            e,
            DecodeError::Format {
                what: "pair",
                found: 2,
                expected: 1
            }
        );
        let mut long = bytes.clone();
        long.push(0);
        assert!(matches!(
            decode::<(String, u32)>(2, "pair", &long),
            Err(DecodeError::Malformed { .. })
        ));
        assert!(decode::<(String, u32)>(2, "pair", &[]).is_err());
        // A length prefix claiming 2^60 bytes is refused, not allocated.
        let mut huge = encode(2, &0u8);
        huge.truncate(1);
        huge.extend([0xfd, 0, 0, 0, 0, 0, 0, 0, 0x10]);
        assert!(decode::<(String, u32)>(2, "pair", &huge).is_err());
    }
}
