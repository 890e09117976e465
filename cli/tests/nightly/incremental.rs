//! Incremental runs (`--incremental NAME`): each run reads only the input files earlier
//! successful runs of NAME did not read, or that changed since; a run with nothing new
//! succeeds with no rows.

use crate::common;

use std::path::Path;

use common::*;

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

#[test]
fn each_run_reads_only_the_files_not_read_before() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir(&input).unwrap();
    let state = dir.path().join("state");
    let wc = plugin("sluice_wordcount");
    let run_into = |out: &str| {
        let out = dir.path().join(out);
        let result = run(&[
            "--local",
            "1",
            "--format",
            "text",
            "--plugin",
            wc.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
            "--incremental",
            "words",
            "--state-dir",
            state.to_str().unwrap(),
        ]);
        assert_ok(&result);
        (out, String::from_utf8_lossy(&result.stdout).into_owned())
    };
    for (name, text) in [
        ("a.txt", "alpha\n"),
        ("b.txt", "beta\n"),
        ("c.txt", "gamma\n"),
    ] {
        write(&input, name, text);
    }
    let (out, said) = run_into("run1");
    assert!(said.contains("incremental.files_read=3"), "{said}");
    assert_eq!(read_counts(&out, "word", "count").len(), 3);

    write(&input, "d.txt", "delta delta\n");
    write(&input, "e.txt", "epsilon\n");
    let (out, said) = run_into("run2");
    assert!(said.contains("incremental.files_read=2"), "{said}");
    let counts = read_counts(&out, "word", "count");
    let expected: std::collections::HashMap<String, i64> =
        [("delta".to_string(), 2), ("epsilon".to_string(), 1)].into();
    assert_eq!(counts, expected, "only the two new files");

    let (out, said) = run_into("run3");
    assert!(said.contains("rows in 0"), "{said}");
    assert!(said.contains("incremental.files_read=0"), "{said}");
    assert!(out.join("_SUCCESS").is_file());
    assert!(read_counts(&out, "word", "count").is_empty());

    // A file rewritten since it was read is read again.
    write(&input, "a.txt", "alpha alpha omega\n");
    let (out, said) = run_into("run4");
    assert!(said.contains("incremental.files_read=1"), "{said}");
    let counts = read_counts(&out, "word", "count");
    assert_eq!(counts.get("omega"), Some(&1));
    assert_eq!(counts.get("alpha"), Some(&2));
    assert_eq!(counts.len(), 2);
}
