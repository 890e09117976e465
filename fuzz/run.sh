#!/usr/bin/env bash
# Builds and runs the fuzz targets, then minimizes their corpora.
#
#   fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]
#
# SECONDS_PER_TARGET defaults to 60; TARGET defaults to every target. SANITIZER (default
# `none`: coverage-guided only, about twice as fast; `address` for ASan) is passed to
# cargo fuzz. Logs go to fuzz/logs/<target>.log, crash inputs to fuzz/artifacts/<target>/.
# Exits non-zero, naming them, when any target crashed (or failed to build or run).
set -uo pipefail

cd "$(dirname "$0")"
secs=${1:-60}
shift || true
sanitizer=${SANITIZER:-none}
all=(text_split csv_split jsonl_split decimal parquet_split remote_ranges storage_keys proto_convert describe)
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=("${all[@]}")

# Largest input per target: a few KiB cover every reader state, the small Parquet seeds
# (footer and a few row groups) included; it also keeps the stored corpora small.
max_len() {
    case "$1" in
        decimal) echo 128 ;;
        storage_keys) echo 1024 ;;
        *) echo 4096 ;;
    esac
}

mkdir -p logs
if ! cargo +nightly fuzz build -s "$sanitizer" >logs/build.log 2>&1; then
    tail -30 logs/build.log
    echo "fuzz build failed (fuzz/logs/build.log)" >&2
    exit 2
fi

failed=()
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t"
    len=$(max_len "$t")
    echo "== $t: ${secs}s, max_len $len"
    cargo +nightly fuzz run -s "$sanitizer" "$t" "corpus/$t" -- \
        -max_total_time="$secs" -rss_limit_mb=2048 -max_len="$len" -timeout=20 \
        -print_final_stats=1 >"logs/$t.log" 2>&1
    rc=$?
    grep -E '^stat::number_of_executed_units|^Done [0-9]+ runs' "logs/$t.log" | tail -2
    if [ $rc -ne 0 ]; then
        echo "!! $t crashed (exit $rc); see fuzz/logs/$t.log and fuzz/artifacts/$t/"
        grep -m3 -E 'panicked at|ERROR: libFuzzer|SUMMARY' "logs/$t.log"
        failed+=("$t")
        continue
    fi
    # Keep the stored corpus small: only inputs that add coverage.
    if ! cargo +nightly fuzz cmin -s "$sanitizer" "$t" "corpus/$t" -- \
        -rss_limit_mb=2048 -max_len="$len" -timeout=20 >"logs/$t.cmin.log" 2>&1; then
        echo "!! $t: corpus minimization failed; see fuzz/logs/$t.cmin.log"
        failed+=("$t")
    fi
    echo "   corpus: $(find "corpus/$t" -type f | wc -l) files, $(du -sh --apparent-size "corpus/$t" | cut -f1)"
done

if [ ${#failed[@]} -ne 0 ]; then
    echo "FAILED: ${failed[*]}" >&2
    exit 1
fi
echo "all ${#targets[@]} targets ran ${secs}s without a crash"
