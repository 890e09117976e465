//! # sluice-datagen: deterministic sample data for the Sluice examples
//!
//! Benchmarks and tests need inputs that are large, realistic in shape and identical from
//! run to run, without shipping gigabytes of fixtures. Everything here is a pure function of
//! a seed, streams through a fixed-size buffer (memory does not grow with the output) and has
//! no dependencies, so the generators build in a second.
//!
//! # Layout
//! - [`rng`]: the small deterministic PRNG (SplitMix64) everything draws from.
//! - [`eod`]: bank transactions as CSV, the input of the end-of-day (EOD) aggregation job.
//! - [`recon`]: a ledger and a statement with known differences, for `examples/reconcile`.
//! - [`text`]: English-like text lines with a Zipf-skewed vocabulary, for word count.
//! - [`args`]: the hand-rolled argument parsing shared by the two binaries.

#![warn(missing_docs)]

pub mod args;
pub mod eod;
pub mod recon;
pub mod rng;
pub mod text;

pub use eod::{write_eod_csv, write_eod_files};
pub use text::write_text;
