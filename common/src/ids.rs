//! Identities as newtypes, converted at the proto boundary.
//!
//! Ids order naturally: `job-9999` before `job-10000` (by the number they end in, then as
//! text), so jobs are scheduled and listed in the order they were submitted.

use std::cmp::Ordering;
use std::fmt;

/// `s` split into the text before its trailing digits and those digits without leading
/// zeros.
fn split_number(s: &str) -> (&str, &str) {
    let digits = s.len() - s.bytes().rev().take_while(u8::is_ascii_digit).count();
    let (stem, number) = s.split_at(digits);
    (stem, number.trim_start_matches('0'))
}

/// Natural order of ids: by the text before the trailing number, then the number's value
/// (of any length), then the whole text (so `job-7` and `job-07` differ but stay apart).
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    let ((sa, na), (sb, nb)) = (split_number(a), split_number(b));
    sa.cmp(sb)
        .then(na.len().cmp(&nb.len()))
        .then(na.cmp(nb))
        .then(a.cmp(b))
}

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub struct $name(String);

        impl Ord for $name {
            fn cmp(&self, other: &Self) -> Ordering {
                natural_cmp(&self.0, &other.0)
            }
        }

        impl PartialOrd for $name {
            fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
                Some(self.cmp(other))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                $name(s)
            }
        }

        impl $name {
            /// The id `s`.
            pub fn new(s: impl Into<String>) -> Self {
                $name(s.into())
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The id's text, owned.
            pub fn into_string(self) -> String {
                self.0
            }
        }
    };
}

string_id!(
    /// A job, e.g. `job-0003`.
    JobId
);
string_id!(
    /// A worker as the coordinator registered it, e.g. `worker-2`.
    WorkerId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_order_by_their_number() {
        let mut ids: Vec<JobId> = ["job-10000", "job-9999", "job-0002", "job-0010", "job-0001"]
            .into_iter()
            .map(JobId::new)
            .collect();
        ids.sort();
        let text: Vec<&str> = ids.iter().map(JobId::as_str).collect();
        assert_eq!(
            text,
            ["job-0001", "job-0002", "job-0010", "job-9999", "job-10000"]
        );
        assert_eq!(natural_cmp("worker-9", "worker-10"), Ordering::Less);
        assert_eq!(natural_cmp("a", "b"), Ordering::Less);
        assert_eq!(natural_cmp("job-7", "job-07"), "job-7".cmp("job-07"));
        assert_ne!(natural_cmp("job-7", "job-07"), Ordering::Equal);
        assert_eq!(natural_cmp("x-1", "x-1"), Ordering::Equal);
    }
}
