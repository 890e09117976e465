//! Input snapshots: each split carries what its file was at planning (size, and
//! modification time or ETag); a map that finds the file otherwise fails the job with
//! "input changed during the job" instead of mixing two versions of it in one output, as a
//! file rewritten by a late upstream delivery would.

use std::time::UNIX_EPOCH;

use crate::split::FileStamp;
use crate::storage::Location;
use crate::{Error, Result};

/// The stamp of a local file from its metadata: size and modification time in nanoseconds.
pub fn local_stamp(meta: &std::fs::Metadata) -> FileStamp {
    let version = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| format!("modified {}", d.as_nanos()))
        .unwrap_or_default();
    FileStamp {
        size: meta.len(),
        version,
    }
}

/// How `now` differs from `planned`, if it does. An empty version on either side (a file
/// system without modification times) compares sizes alone.
pub fn change(planned: &FileStamp, now: &FileStamp) -> Option<String> {
    if planned.size != now.size {
        return Some(format!(
            "it held {} bytes at planning and holds {} now",
            planned.size, now.size
        ));
    }
    let known = !planned.version.is_empty() && !now.version.is_empty();
    (known && planned.version != now.version).then(|| {
        format!(
            "it was written again since planning ({} then, {} now)",
            planned.version, now.version
        )
    })
}

/// Fails with [`Error::InputChanged`] unless the file at `location` (named `name`) is still
/// what `planned` says.
pub fn check(location: &Location, name: &str, planned: &FileStamp) -> Result<()> {
    let gone = || Error::InputChanged {
        file: name.to_string(),
        change: "it is gone".into(),
    };
    let now = match location {
        Location::Local(path) => match std::fs::metadata(path) {
            Ok(meta) => local_stamp(&meta),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(gone()),
            Err(e) => return Err(Error::io(path, e)),
        },
        Location::Object(url) => {
            let info = url.info()?.ok_or_else(gone)?;
            FileStamp {
                size: info.size,
                version: info.version,
            }
        }
    };
    match change(planned, &now) {
        None => Ok(()),
        Some(change) => Err(Error::InputChanged {
            file: name.to_string(),
            change,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(size: u64, version: &str) -> FileStamp {
        FileStamp {
            size,
            version: version.into(),
        }
    }

    #[test]
    fn a_file_of_another_size_or_version_has_changed() {
        assert_eq!(change(&stamp(10, "a"), &stamp(10, "a")), None);
        assert!(
            change(&stamp(10, "a"), &stamp(12, "a"))
                .unwrap()
                .contains("10 bytes")
        );
        assert!(
            change(&stamp(10, "a"), &stamp(10, "b"))
                .unwrap()
                .contains("written again")
        );
        // Without versions only the size tells.
        assert_eq!(change(&stamp(10, ""), &stamp(10, "b")), None);
        assert!(change(&stamp(10, ""), &stamp(11, "")).is_some());
    }

    #[test]
    fn a_rewritten_local_file_fails_the_check_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("txns.csv");
        std::fs::write(&path, "a\n").unwrap();
        let planned = local_stamp(&std::fs::metadata(&path).unwrap());
        let location = Location::Local(path.clone());
        check(&location, "txns.csv", &planned).unwrap();
        std::fs::write(&path, "a\nb\n").unwrap();
        let e = check(&location, "txns.csv", &planned).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("input changed during the job: txns.csv: it held 2 bytes"),
            "{e}"
        );
        std::fs::remove_file(&path).unwrap();
        let e = check(&location, "txns.csv", &planned).unwrap_err();
        assert!(e.to_string().ends_with("it is gone"), "{e}");
    }
}
