//! Identities as newtypes, converted at the proto boundary.

use std::fmt;

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

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
