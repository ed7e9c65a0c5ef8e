#!/bin/sh
# Runs every fuzz target for SECONDS (default 300), JOBS at a time (default 2), and prints
# libFuzzer's final figures per target: executions, coverage (cov) and features (ft).
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`). Crashes are left in
# fuzz/artifacts/<target>/; each becomes a regression test next to its parser.
set -eu
seconds=${1:-300}
jobs=${2:-2}
cd "$(dirname "$0")/../fuzz"
out=${FUZZ_LOGS:-$(mktemp -d)}
cargo +nightly fuzz build -O >/dev/null
targets=$(cargo +nightly fuzz list)
# Seed each target with the real outputs the parsers are tested on (copies: the corpus grows;
# a target reads whatever part of an input it understands, so every real output is a fair seed).
for target in $targets; do
  mkdir -p "corpus/$target"
  find ../crates/cmdb-collect -path '*testdata*' -type f -exec cp -n {} "corpus/$target/" \; 2>/dev/null || true
  cp -n ../docs/examples/report-v1.json "corpus/$target/" 2>/dev/null || true
done
run() {
  target=$1
  cargo +nightly fuzz run -O "$target" "corpus/$target" -- -max_total_time="$seconds" -print_final_stats=1 \
    >"$out/$target.log" 2>&1 || echo "$target: FAILED (see $out/$target.log and fuzz/artifacts/$target)"
}
running=0
for target in $targets; do
  run "$target" &
  running=$((running + 1))
  if [ "$running" -ge "$jobs" ]; then
    wait
    running=0
  fi
done
wait
printf '%-18s %14s %8s %8s\n' target executions cov ft
for target in $targets; do
  done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$out/$target.log" | tail -1)
  execs=$(echo "$done_line" | sed -n 's/^#\([0-9]*\).*/\1/p')
  cov=$(echo "$done_line" | sed -n 's/.*cov: \([0-9]*\).*/\1/p')
  ft=$(echo "$done_line" | sed -n 's/.*ft: \([0-9]*\).*/\1/p')
  printf '%-18s %14s %8s %8s\n' "$target" "${execs:-?}" "${cov:-?}" "${ft:-?}"
done
echo "logs: $out"
