//! Planning the side inputs (`--side NAME=PATH`): each path expanded into its files, which
//! together may hold at most `--side-max-bytes`, each file read whole by one split.
//!
//! A side input is checked as an input is (a CSV header against the schema, Parquet types
//! against the declared ones), so a wrong rate table fails the submission, not every task.

use std::collections::BTreeMap;

use arrow::datatypes::SchemaRef;
use sluice_common::input_plan::SideInput;
use sluice_common::plugin::Plugin;
use sluice_common::spec::{InputFormat, JobSpec};
use sluice_common::split::{Split, SplitRange};

use super::error::{PlanError, Result};
use super::inputs::{InputFile, expand_inputs};
use super::schemas;

/// The planned side inputs of `spec`; their schemas join `schemas`.
pub(super) fn plan_sides(
    spec: &JobSpec,
    plugin: &Plugin,
    schemas: &mut BTreeMap<String, SchemaRef>,
) -> Result<Vec<SideInput>> {
    let mut sides = Vec::new();
    for (name, path) in spec.side_inputs() {
        let files: Vec<(String, InputFile)> = expand_inputs(&[path.to_string()])
            .map_err(|e| match e {
                PlanError::NoMatch { input } => PlanError::NoMatch {
                    input: format!("{input} (side input {name})"),
                },
                PlanError::Input { input, reason } => PlanError::Input {
                    input: format!("{input} (side input {name})"),
                    reason,
                },
                other => other,
            })?
            .into_iter()
            .map(|f| (name.to_string(), f))
            .collect();
        let held = files.iter().map(|(_, f)| f.len()).sum::<Result<u64>>()?;
        if held > spec.side_max_bytes {
            return Err(PlanError::Common(sluice_common::Error::SideInputTooLarge {
                name: name.to_string(),
                held,
                counted: " in its files",
                limit: spec.side_max_bytes,
            }));
        }
        let declared = schemas::declared_schemas(plugin, [name])?;
        schemas.extend(schemas::input_schemas(spec, &declared, &files)?);
        let format = spec.format_of(name);
        let mut splits = Vec::with_capacity(files.len());
        for (_, f) in &files {
            let stamp = f.stamp()?;
            let range = match format {
                InputFormat::Parquet => {
                    let groups = schemas::parquet_row_group_sizes(f, declared.get(name), None)?;
                    SplitRange::RowGroups((0..groups.compressed.len() as u32).collect())
                }
                _ => SplitRange::Bytes {
                    start: 0,
                    end: stamp.size,
                },
            };
            splits.push(Split {
                path: f.name(),
                range,
                input: name.to_string(),
                stamp: Some(stamp),
            });
        }
        sides.push(SideInput {
            name: name.to_string(),
            files: splits,
        });
    }
    Ok(sides)
}
