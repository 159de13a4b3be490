#!/usr/bin/env bash
# Load the reference, the learned-token BED and the bigWigs written by `mergedna tracks` into IGV
# (Debian package igv, headless under xvfb-run, batch mode) and save a PNG snapshot.
#
#   benchmarks/igv_snapshot.sh REF.fa.gz PREFIX chr17:43,044,295-43,046,000 OUT.png
set -euo pipefail
REF=$(realpath "$1"); PREFIX=$(realpath "$2"); LOCUS=$3; OUT=$(realpath -m "$4")
WORK=$(mktemp -d)
export HOME="$WORK" _JAVA_OPTIONS="-Duser.home=$WORK"  # a private IGV profile (IGV reads user.home)
mkdir -p "$WORK/igv"
printf 'DEFAULT_GENOME_KEY=%s\nSHOW_SPLASH_SCREEN=false\nENABLE_ANTIALIASING=true\n' "$REF" > "$WORK/igv/prefs.properties"
{
  echo "new"
  echo "genome $REF"
  echo "load $PREFIX.tokens.bed"
  for track in boundary token_length entropy llr; do
    [ -f "$PREFIX.$track.bw" ] && echo "load $PREFIX.$track.bw"
  done
  echo "expand $(basename "$PREFIX").tokens.bed"
  echo "goto $LOCUS"
  echo "snapshotDirectory $(dirname "$OUT")"
  echo "snapshot $(basename "$OUT")"
  echo "exit"
} > "$WORK/batch.txt"
timeout "${IGV_TIMEOUT:-180}" xvfb-run -a -s "-screen 0 1600x1000x24" igv -g "$REF" -b "$WORK/batch.txt" > "$WORK/igv.log" 2>&1 || {
  echo "IGV failed; its log:" >&2; tail -20 "$WORK/igv.log" >&2; exit 1; }
test -s "$OUT" || { echo "IGV wrote no snapshot; its log:" >&2; tail -20 "$WORK/igv.log" >&2; exit 1; }
echo "wrote $OUT"
rm -rf "$WORK"
