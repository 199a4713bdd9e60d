#!/usr/bin/env bash
# Every capture of ../shared/corpus through kscflow under valgrind's
# memcheck, with both readers (issue 5: no memory error on hostile input).
# Not part of `cargo test` (about 7 minutes on 2 cores); run it by hand:
#   tests/memcheck_corpus.sh [CORPUS_DIR]
# Prints one line per run (file, reader, exit status, valgrind error lines)
# and exits 1 if valgrind reported anything.
set -uo pipefail
cd "$(dirname "$0")/.."
corpus=${1:-../shared/corpus}
command -v valgrind >/dev/null || { echo "valgrind is not installed" >&2; exit 2; }
cargo build --release -q || exit 2
bad=0
for f in "$corpus"/pcaps/*; do
    for reader in fast libpcap; do
        err=$(valgrind --error-exitcode=99 -q target/release/kscflow audit "$f" --reader "$reader" \
            --format json -o /dev/null --no-progress --threads 1 2>&1 >/dev/null)
        rc=$?
        lines=$(grep -c '^==[0-9]*==' <<<"$err")
        printf '%s\t%s\t%s\t%s\n' "$(basename "$f")" "$reader" "$rc" "$lines"
        if [ "$rc" = 99 ] || [ "$lines" != 0 ]; then bad=1; echo "$err" >&2; fi
    done
done
exit $bad
