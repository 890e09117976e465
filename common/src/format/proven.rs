//! Data-quality rules a Parquet footer proves before a row is decoded.
//!
//! A column chunk's statistics count its nulls, and a `REQUIRED` column cannot hold one, so
//! the footer alone shows a not-null rule holding for a whole row group. Such a rule is not
//! checked row by row, and a column the job reads only for rules proven so is not decoded
//! at all: EOD's transaction ids, unique strings the aggregation never looks at, were about
//! 4% of its run for a `not_null(txn_id)` that the footer answers. DuckDB and Spark skip row
//! groups on the same statistics; like them, Sluice trusts what the file's writer counted.
//!
//! Only `not_null` is proven here: the other rules check columns the map reads anyway, where
//! a vectorised check costs little next to decoding.

use std::sync::Arc;

use parquet::file::metadata::ParquetMetaData;
use sluice_sdk::rules::{Check, Rule};

use crate::rules::RuleSet;

/// What to read of some row groups of a Parquet file, and what to check of it.
#[derive(Debug)]
pub struct ParquetRead {
    /// The root columns to decode (`None`: all of them).
    pub columns: Option<Vec<String>>,
    /// The rules left to check row by row (`None`: nothing to check).
    pub rules: Option<Arc<RuleSet>>,
}

/// Plans reading row groups `groups` of the file `meta` describes for a job that reads
/// `columns` (`None`: all) and checks `rules`: a column only rules check is read unless the
/// footer proves all of them, and proven rules are dropped. So whether a batch holds such a
/// column depends on the row group: what reads every batch (`map`, `Job::check`, control
/// sums) must be among `columns`.
pub fn plan(
    meta: &ParquetMetaData,
    groups: &[u32],
    columns: Option<&[String]>,
    rules: Option<&Arc<RuleSet>>,
) -> ParquetRead {
    let Some(rules) = rules else {
        return ParquetRead {
            columns: columns.map(<[String]>::to_vec),
            rules: None,
        };
    };
    let proven = |r: &Rule| proves(meta, groups, r);
    let unproven = rules.rules().filter(|r| !proven(r));
    ParquetRead {
        columns: crate::rules::with_rule_columns(columns, unproven),
        rules: rules.unproven(proven),
    }
}

/// Whether the footer shows `rule` holding for every row of row groups `groups`.
fn proves(meta: &ParquetMetaData, groups: &[u32], rule: &Rule) -> bool {
    if rule.check != Check::NotNull {
        return false;
    }
    // A top-level primitive column is the leaf whose path is its name alone; a nested
    // column's leaves count their own nulls, not the column's.
    let schema = meta.file_metadata().schema_descr();
    let Some(leaf) = (0..schema.num_columns())
        .find(|&i| schema.column(i).path().parts() == [rule.column.as_str()])
    else {
        return false;
    };
    let required = schema.column(leaf).max_def_level() == 0;
    groups.iter().all(|&g| {
        meta.row_groups()
            .get(g as usize)
            .and_then(|rg| rg.columns().get(leaf))
            .is_some_and(|chunk| {
                required || chunk.statistics().and_then(|s| s.null_count_opt()) == Some(0)
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use bytes::Bytes;
    use parquet::arrow::ArrowWriter;
    use parquet::file::metadata::ParquetMetaDataReader;
    use parquet::file::properties::{EnabledStatistics, WriterProperties};

    /// A file of two row groups of two rows: `id` has a null in the second only, `name`
    /// none, `amount` is declared non-nullable.
    fn file(statistics: EnabledStatistics) -> Vec<u8> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, true),
            Field::new("name", DataType::Utf8, true),
            Field::new("amount", DataType::Int64, false),
        ]));
        let props = WriterProperties::builder()
            .set_max_row_group_row_count(Some(2))
            .set_statistics_enabled(statistics)
            .build();
        let mut out = Vec::new();
        let mut w = ArrowWriter::try_new(&mut out, schema.clone(), Some(props)).unwrap();
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(vec![
                Some("a"),
                Some("b"),
                Some("c"),
                None,
            ])),
            Arc::new(StringArray::from(vec!["w", "x", "y", "z"])),
            Arc::new(Int64Array::from(vec![1, 2, 3, 4])),
        ];
        w.write(&RecordBatch::try_new(schema, columns).unwrap())
            .unwrap();
        w.close().unwrap();
        out
    }

    fn footer(statistics: EnabledStatistics) -> ParquetMetaData {
        ParquetMetaDataReader::new()
            .parse_and_finish(&Bytes::from(file(statistics)))
            .unwrap()
    }

    fn rules(rules: &[Rule]) -> Arc<RuleSet> {
        RuleSet::new(rules, None).unwrap().unwrap()
    }

    fn names(rules: &Option<Arc<RuleSet>>) -> Vec<String> {
        rules
            .iter()
            .flat_map(|r| r.rules().map(|r| r.name.clone()))
            .collect()
    }

    fn cols(c: &[&str]) -> Vec<String> {
        c.iter().map(|c| c.to_string()).collect()
    }

    #[test]
    fn a_column_read_only_for_proven_rules_is_not_decoded() {
        let meta = footer(EnabledStatistics::Chunk);
        let set = rules(&[Rule::not_null("name"), Rule::not_null("id")]);
        let wanted = cols(&["amount"]);
        // Group 0: neither column has a null, so neither is read nor checked.
        let read = plan(&meta, &[0], Some(&wanted), Some(&set));
        assert_eq!(read.columns, Some(cols(&["amount"])));
        assert!(read.rules.is_none());
        // Group 1 holds a null id: id is read and checked, name still is not.
        for groups in [&[1][..], &[0, 1]] {
            let read = plan(&meta, groups, Some(&wanted), Some(&set));
            assert_eq!(read.columns, Some(cols(&["amount", "id"])));
            assert_eq!(names(&read.rules), ["not_null(id)"]);
        }
    }

    #[test]
    fn only_not_null_is_proven_and_a_column_with_another_rule_is_read() {
        let meta = footer(EnabledStatistics::Chunk);
        let set = rules(&[Rule::not_null("name"), Rule::one_of("name", &["w", "x"])]);
        let read = plan(&meta, &[0], Some(&cols(&["amount"])), Some(&set));
        assert_eq!(read.columns, Some(cols(&["amount", "name"])));
        assert_eq!(names(&read.rules), ["one_of(name)"]);
    }

    #[test]
    fn without_statistics_only_required_columns_are_proven() {
        let meta = footer(EnabledStatistics::None);
        let set = rules(&[Rule::not_null("name"), Rule::not_null("amount")]);
        let read = plan(&meta, &[0, 1], Some(&[]), Some(&set));
        assert_eq!(read.columns, Some(cols(&["name"])));
        assert_eq!(names(&read.rules), ["not_null(name)"]);
    }

    #[test]
    fn reading_every_column_still_drops_proven_rules() {
        let meta = footer(EnabledStatistics::Chunk);
        let set = rules(&[Rule::not_null("name"), Rule::not_null("id")]);
        let read = plan(&meta, &[1], None, Some(&set));
        assert_eq!(read.columns, None);
        assert_eq!(names(&read.rules), ["not_null(id)"]);
        let read = plan(&meta, &[0], Some(&cols(&["id"])), None);
        assert_eq!(read.columns, Some(cols(&["id"])));
        assert!(read.rules.is_none());
    }

    #[test]
    fn a_column_the_file_lacks_or_a_group_it_lacks_proves_nothing() {
        let meta = footer(EnabledStatistics::Chunk);
        let set = rules(&[Rule::not_null("missing"), Rule::not_null("name")]);
        let read = plan(&meta, &[0, 7], Some(&cols(&["amount"])), Some(&set));
        // The missing column is still asked for, so the reader's error names it.
        assert_eq!(read.columns, Some(cols(&["amount", "missing", "name"])));
        assert_eq!(names(&read.rules), ["not_null(missing)", "not_null(name)"]);
    }

    /// Through `read_split`: a split the footer proves reads no `id`; one it does not reads
    /// it and still sets the null aside, or fails naming the file's row groups and line.
    #[test]
    fn a_split_reads_the_rule_column_only_where_it_is_not_proven() {
        use crate::bad_records::RejectSink;
        use crate::format::read::{ReadChecks, read_split};
        use crate::spec::InputFormat;
        use crate::split::{Split, SplitRange};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("day.parquet");
        std::fs::write(&path, file(EnabledStatistics::Chunk)).unwrap();
        let split = |g: u32| Split {
            path: path.to_string_lossy().into_owned(),
            range: SplitRange::RowGroups(vec![g]),
            input: String::new(),
            stamp: None,
        };
        let set = rules(&[Rule::not_null("id")]);
        let read = |g: u32, rejects: Option<RejectSink>| {
            let checks = ReadChecks {
                rejects,
                rules: Some(set.clone()),
            };
            read_split(
                &split(g),
                InputFormat::Parquet,
                None,
                8,
                Some(&cols(&["amount"])),
                checks,
            )
            .unwrap()
            .collect::<crate::Result<Vec<RecordBatch>>>()
        };
        let sink = RejectSink::new(false);
        let proven = read(0, Some(sink.clone())).unwrap();
        assert_eq!(proven[0].schema().fields().len(), 1, "only amount");
        assert_eq!(proven[0].num_rows(), 2);
        let checked = read(1, Some(sink.clone())).unwrap();
        assert!(checked[0].column_by_name("id").is_some());
        assert_eq!(checked[0].num_rows(), 1, "the null id is left out");
        let rejected = sink.take();
        assert_eq!(rejected.len(), 1);
        assert_eq!(
            (rejected[0].line, rejected[0].kind.as_str()),
            (2, "not_null(id)")
        );
        let e = read(1, None).unwrap_err().to_string();
        assert!(
            e.contains("day.parquet (row groups 1)") && e.contains("line 2"),
            "{e}"
        );
    }
}
