//! A job's output at submission: refused when it exists (unless `--overwrite`), and never
//! deleted when it holds an input of the job or anything that is not an earlier Sluice
//! output; then prepared for the reduces.

use std::path::{Path, PathBuf};

use sluice_common::spec::JobSpec;
use sluice_common::storage::Location;

use super::error::{PlanError, Result};
use super::inputs::InputFile;

/// Refuses an existing output unless `--overwrite` (then removes it, if [`overwrite_refusal`]
/// allows), and prepares the output: a local directory with `_temporary/` in it; nothing
/// for an object store, which has no directories.
pub(super) fn check_output(spec: &JobSpec, files: &[InputFile]) -> Result<()> {
    let output = &spec.output;
    match Location::parse(output).map_err(|e| PlanError::output(output, e))? {
        Location::Local(out) => check_local_output(&out, spec.overwrite, files),
        Location::Object(url) => {
            let fail = |e: sluice_common::Error| PlanError::output(output, e);
            if url.key().is_empty() {
                return Err(PlanError::output(
                    output,
                    "name a prefix inside the bucket, not the bucket itself",
                ));
            }
            if url.exists().map_err(fail)? {
                if !spec.overwrite {
                    return Err(PlanError::output(
                        output,
                        "already exists (use --overwrite to replace it)",
                    ));
                }
                let prefix = format!("{}/", url.to_string().trim_end_matches('/'));
                let input = files.iter().find_map(|f| match f {
                    InputFile::Object { url: i, .. } if i.to_string().starts_with(&prefix) => {
                        Some(i.to_string())
                    }
                    _ => None,
                });
                if let Some(input) = input {
                    return Err(PlanError::output(
                        output,
                        format!(
                            "--overwrite would delete {url}, which holds {input}, an input of \
                             this job"
                        ),
                    ));
                }
                url.delete_prefix()
                    .map_err(|e| PlanError::output(output, format!("removing it: {e}")))?;
            }
            Ok(())
        }
    }
}

/// Whether the names in an output directory are what a Sluice job writes there: part
/// files, `_SUCCESS` (and its temporary), `_temporary`, `_rejects` and the `key=value`
/// directories of a partitioned output.
fn is_sluice_output_entry(name: &str) -> bool {
    if let Some((key, value)) = name.split_once('=') {
        return !key.is_empty() && !value.is_empty() && !key.starts_with('.');
    }
    let part = name
        .strip_prefix("part-")
        .and_then(|rest| rest.split_once('.'));
    matches!(
        name,
        "_SUCCESS" | "._SUCCESS.tmp" | "_temporary" | "_rejects"
    ) || part.is_some_and(|(n, ext)| {
        !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) && !ext.is_empty()
    })
}

/// Why `--overwrite` must not delete `out`, holding `entries`, for a job reading `inputs`:
/// it holds an input of the job, or something other than an earlier Sluice output (a state
/// or work directory, a home directory, a typo'd path). `None` when deleting it loses only
/// an earlier output.
pub fn overwrite_refusal(out: &Path, entries: &[String], inputs: &[&Path]) -> Option<String> {
    if let Some(input) = inputs.iter().find(|i| i.starts_with(out)) {
        return Some(format!(
            "--overwrite would delete {}, which holds {}, an input of this job",
            out.display(),
            input.display()
        ));
    }
    let foreign = entries.iter().find(|e| !is_sluice_output_entry(e))?;
    Some(format!(
        "--overwrite refuses to delete {}: it holds {foreign:?}, which is not Sluice output \
         (remove it yourself, or choose another output directory)",
        out.display()
    ))
}

fn check_local_output(out: &Path, overwrite: bool, files: &[InputFile]) -> Result<()> {
    if out.exists() {
        if !overwrite {
            return Err(PlanError::output(
                out.display(),
                "already exists (use --overwrite to replace it)",
            ));
        }
        let entries: Vec<String> = std::fs::read_dir(out)
            .map_err(|e| PlanError::output(out.display(), format!("reading it: {e}")))?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        let out_real = out.canonicalize().unwrap_or_else(|_| out.to_path_buf());
        let inputs: Vec<PathBuf> = files
            .iter()
            .filter_map(|f| match f {
                InputFile::Local(p) => Some(p.canonicalize().unwrap_or_else(|_| p.clone())),
                InputFile::Object { .. } => None,
            })
            .collect();
        let inputs: Vec<&Path> = inputs.iter().map(PathBuf::as_path).collect();
        if let Some(why) = overwrite_refusal(&out_real, &entries, &inputs) {
            return Err(PlanError::output(out.display(), why));
        }
        std::fs::remove_dir_all(out)
            .map_err(|e| PlanError::output(out.display(), format!("removing it: {e}")))?;
    }
    std::fs::create_dir_all(out.join("_temporary"))
        .map_err(|e| PlanError::output(out.display(), format!("creating it: {e}")))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{is_sluice_output_entry, overwrite_refusal};
    use std::path::Path;

    #[test]
    fn overwrite_deletes_only_an_earlier_sluice_output_that_holds_no_input() {
        let out = Path::new("/data/out");
        let ours: Vec<String> = [
            "_SUCCESS",
            "_temporary",
            "part-00000.parquet",
            "part-10000.csv",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(overwrite_refusal(out, &ours, &[]), None);
        assert_eq!(overwrite_refusal(out, &[], &[]), None, "an empty directory");
        let input = Path::new("/data/out/in.txt");
        let why = overwrite_refusal(out, &ours, &[Path::new("/data/in.txt"), input]).unwrap();
        assert!(
            why.contains("/data/out/in.txt") && why.contains("input"),
            "{why}"
        );
        assert_eq!(
            overwrite_refusal(out, &ours, &[Path::new("/data/outside/in.txt")]),
            None,
            "a sibling whose name starts the same is not inside"
        );
        let mut state = ours.clone();
        state.push("sluice.db".into());
        let why = overwrite_refusal(out, &state, &[]).unwrap();
        assert!(
            why.contains("\"sluice.db\"") && why.contains("not Sluice output"),
            "{why}"
        );
        for bad in ["part-.csv", "part-12", "part-1a.csv", "keep.txt", ".ssh"] {
            assert!(!is_sluice_output_entry(bad), "{bad}");
        }
    }
}
