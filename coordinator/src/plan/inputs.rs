//! The files a job reads: input paths, URLs and globs expanded into files, local or in an
//! object store, in a stable order.

use std::path::{Path, PathBuf};

use sluice_common::split::FileStamp;
use sluice_common::storage::{Location, ObjectUrl, is_data_name, is_glob};

use super::error::{PlanError, Result};

/// One input file, local or in an object store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputFile {
    /// A local file, read with `std::fs`.
    Local(PathBuf),
    /// An object, with the size and version its listing gave.
    Object {
        /// The object.
        url: ObjectUrl,
        /// Its size in bytes.
        size: u64,
        /// Its ETag (or last-modified time).
        version: String,
    },
}

impl InputFile {
    /// The path or URL as splits carry it and errors name it.
    pub fn name(&self) -> String {
        match self {
            InputFile::Local(p) => p.to_string_lossy().into_owned(),
            InputFile::Object { url, .. } => url.to_string(),
        }
    }

    pub(super) fn len(&self) -> Result<u64> {
        match self {
            InputFile::Local(p) => Ok(std::fs::metadata(p)
                .map_err(|e| PlanError::input(p.to_string_lossy(), e))?
                .len()),
            InputFile::Object { size, .. } => Ok(*size),
        }
    }

    /// What the file is now, for the map that reads it to check (see `FileStamp`).
    pub fn stamp(&self) -> Result<FileStamp> {
        match self {
            InputFile::Local(p) => {
                let meta =
                    std::fs::metadata(p).map_err(|e| PlanError::input(p.to_string_lossy(), e))?;
                Ok(sluice_common::format::snapshot::local_stamp(&meta))
            }
            InputFile::Object { size, version, .. } => Ok(FileStamp {
                size: *size,
                version: version.clone(),
            }),
        }
    }

    /// Local files by path (as before URLs existed), then objects by URL.
    fn order(a: &InputFile, b: &InputFile) -> std::cmp::Ordering {
        match (a, b) {
            (InputFile::Local(x), InputFile::Local(y)) => x.cmp(y),
            (InputFile::Local(_), InputFile::Object { .. }) => std::cmp::Ordering::Less,
            (InputFile::Object { .. }, InputFile::Local(_)) => std::cmp::Ordering::Greater,
            (InputFile::Object { url: x, .. }, InputFile::Object { url: y, .. }) => {
                x.to_string().cmp(&y.to_string())
            }
        }
    }
}

/// Hidden and `_`-prefixed files (`_SUCCESS`, `.crc`, ...) are not data, as in Hadoop.
fn is_data_file(p: &Path) -> bool {
    p.is_file()
        && p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(is_data_name)
}

/// Expands paths, URLs and globs into the files to read, in a stable order. A directory (or
/// an object-store prefix) stands for the files directly in it; directories and globs skip
/// hidden files and names starting with `_`, as Hadoop does (a path named explicitly is always
/// read). A path, URL or glob that matches nothing is an error naming it.
pub fn expand_inputs(inputs: &[String]) -> Result<Vec<InputFile>> {
    let mut files = Vec::new();
    for input in inputs {
        let before = files.len();
        match Location::parse(input).map_err(|e| PlanError::input(input, e))? {
            Location::Local(path) => expand_local(input, &path, &mut files)?,
            Location::Object(url) => expand_object(input, &url, &mut files)?,
        }
        if files.len() == before {
            return Err(PlanError::NoMatch {
                input: input.clone(),
            });
        }
    }
    files.sort_by(InputFile::order);
    files.dedup();
    Ok(files)
}

/// Expands each input, named (`NAME=PATH`) or not, into its files: `(input name, file)`,
/// by name (the unnamed input's name is empty), then in the order of [`expand_inputs`].
pub fn expand_named_inputs(inputs: &[String]) -> Result<Vec<(String, InputFile)>> {
    let mut by_name: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
    for input in inputs {
        let (name, path) = sluice_common::spec::split_input(input);
        by_name
            .entry(name.unwrap_or(""))
            .or_default()
            .push(path.to_string());
    }
    let mut files = Vec::new();
    for (name, paths) in by_name {
        files.extend(
            expand_inputs(&paths)?
                .into_iter()
                .map(|f| (name.to_string(), f)),
        );
    }
    Ok(files)
}

fn expand_local(input: &str, path: &Path, files: &mut Vec<InputFile>) -> Result<()> {
    let text = path.to_string_lossy();
    if is_glob(&text) {
        let paths =
            glob::glob(&text).map_err(|e| PlanError::input(input, format!("bad glob: {e}")))?;
        // A pattern whose last segment starts with `_` or `.` asks for such files.
        let hidden_asked = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with(['_', '.']));
        for p in paths {
            let p = p.map_err(|e| PlanError::input(input, e))?;
            if hidden_asked || is_data_file(&p) {
                files.push(InputFile::Local(p));
            }
        }
        return Ok(());
    }
    let meta = std::fs::metadata(path).map_err(|e| PlanError::input(input, e))?;
    if meta.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| PlanError::input(input, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|e| is_data_file(e))
            .collect();
        entries.sort();
        files.extend(entries.into_iter().map(InputFile::Local));
    } else {
        files.push(InputFile::Local(path.to_path_buf()));
    }
    Ok(())
}

/// An object URL names one object, a prefix ("directory": the objects directly below it) or
/// a glob over keys.
fn expand_object(input: &str, url: &ObjectUrl, files: &mut Vec<InputFile>) -> Result<()> {
    let context = |e: sluice_common::Error| PlanError::input(input, e);
    let found = if is_glob(url.key()) {
        url.glob().map_err(context)?
    } else {
        let exact = if url.key().is_empty() || input.ends_with('/') {
            None
        } else {
            url.info().map_err(context)?
        };
        match exact {
            Some(object) => vec![object],
            None => url.list_files().map_err(context)?,
        }
    };
    files.extend(found.into_iter().map(|o| InputFile::Object {
        url: o.url,
        size: o.size,
        version: o.version,
    }));
    Ok(())
}
