#!/usr/bin/env bash
# Build every fuzz target and run each for SECONDS (default 60), one after another.
#
#   fuzz/run.sh [SECONDS]
#
# Environment: FUZZ_TARGETS (default: all seven), FUZZ_SANITIZER (address, the default, which
# also catches leaks; or none, about twice as fast), FUZZ_RSS_LIMIT_MB (2048), FUZZ_TIMEOUT
# (seconds per input, 20), FUZZ_COVERAGE=1 (after each target, list the edges its corpus covers
# in each function of the protocol crate; needs llvm-symbolizer on PATH).
#
# Installs cargo-fuzz and the nightly toolchain if they are missing; if nightly cannot be
# installed (an offline machine), builds with the default toolchain and RUSTC_BOOTSTRAP=1.
# Each target starts from its committed seeds (fuzz/seeds/<target>) copied into a scratch corpus
# (fuzz/corpus/<target>, kept between runs, not in git). Prints per target: executions, exec/s,
# coverage and a verdict; exits non-zero on any crash, leak, out-of-memory or timeout, after
# printing the input's path (under fuzz/artifacts/<target>/) and how to replay it.
set -euo pipefail

seconds=${1:-60}
if [[ ! $seconds =~ ^[0-9]+$ ]] || ((seconds == 0)); then
  echo "usage: $0 [SECONDS]   (seconds per target, default 60)" >&2
  exit 2
fi
fuzz=$(cd "$(dirname "$0")" && pwd)
cd "$fuzz"
read -r -a targets <<<"${FUZZ_TARGETS:-handshake frame_decoder session utf8 roundtrip deflate_offer inflate}"
sanitizer=${FUZZ_SANITIZER:-address}
rss_mb=${FUZZ_RSS_LIMIT_MB:-2048}
timeout_s=${FUZZ_TIMEOUT:-20}

# --- tools -----------------------------------------------------------------------------------
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi
toolchain=(+nightly)
if ! command -v rustup >/dev/null 2>&1; then
  toolchain=()
elif ! rustup run nightly rustc --version >/dev/null 2>&1; then
  echo "== installing the nightly toolchain"
  rustup toolchain install nightly --profile minimal || toolchain=()
fi
if ((${#toolchain[@]} == 0)); then
  echo "== no nightly toolchain: using $(rustc --version) with RUSTC_BOOTSTRAP=1"
  export RUSTC_BOOTSTRAP=1
fi
host=$(rustc "${toolchain[@]}" -vV | sed -n 's/^host: //p')

# --- build -----------------------------------------------------------------------------------
echo "== building the fuzz targets ($(rustc "${toolchain[@]}" --version), sanitizer: $sanitizer)"
start=$(date +%s)
cargo "${toolchain[@]}" fuzz build --sanitizer "$sanitizer"
echo "built in $(($(date +%s) - start)) s"
bin=$fuzz/target/$host/release
logs=$fuzz/target/logs
mkdir -p "$logs"

# --- run -------------------------------------------------------------------------------------
stat() { sed -n "s/^stat::$1: *//p" "$2" | tail -n 1; }

# Run a target's corpus once and print the edges covered in each function of the protocol crate
# (the fuzzing crate, in protocol/fuzzing/src, left out). A lower bound: code the optimiser inlined into a caller counts
# under the caller, and inlined into the harness it is not listed.
coverage() {
  local t=$1 out=$logs/$t.coverage
  "$bin/$t" -runs=0 -print_coverage=1 "corpus/$t" >"$out" 2>&1 || true
  grep -E '^(UN)?COVERED_FUNC:' "$out" | grep '/protocol/src/' |
    sed -E 's/^(UN)?COVERED_FUNC: hits: ([0-9]+) edges: ([0-9]+)\/([0-9]+) (.*) (\/[^ ]*\/protocol\/src\/[^ ]*)$/\3 \4 \5/' |
    awk '{ c += $1; n += $2; f += ($1 > 0); k++; name = $3; for (i = 4; i <= NF; i++) name = name " " $i;
           if ($1 > 0) printf "    %4d/%-4d %s\n", $1, $2, name }
         END { printf "  %s: protocol crate: %d of %d functions reached, %d of %d edges\n", "'"$t"'", f, k, c, n }' |
    sort -k1,1 -t/ -rn
}
failed=0
summary=()
for t in "${targets[@]}"; do
  [[ -x $bin/$t ]] || { echo "no such fuzz target: $t" >&2; exit 2; }
  corpus=corpus/$t
  artifacts=artifacts/$t
  mkdir -p "$corpus" "$artifacts"
  cp -f seeds/"$t"/* "$corpus"/
  args=(
    -max_total_time="$seconds" -rss_limit_mb="$rss_mb" -malloc_limit_mb="$rss_mb"
    -timeout="$timeout_s" -print_final_stats=1 -artifact_prefix="$artifacts/"
  )
  [[ -f dict/$t.dict ]] && args+=(-dict="dict/$t.dict")
  log=$logs/$t.log
  echo
  echo "== $t: ${seconds} s, corpus fuzz/$corpus ($(find "$corpus" -type f | wc -l) inputs)"
  rc=0
  "$bin/$t" "${args[@]}" "$corpus" >"$log" 2>&1 || rc=$?

  execs=$(stat number_of_executed_units "$log")
  rate=$(stat average_exec_per_sec "$log")
  final=$(grep -E '^#[0-9]+' "$log" | grep -E 'cov: [0-9]+' | tail -n 1 || true)
  cov=$(sed -n 's/.*cov: \([0-9]*\).*/\1/p' <<<"$final")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$final")
  corp=$(sed -n 's/.* corp: \([0-9]*\)\/.*/\1/p' <<<"$final")
  edges=$(sed -n 's/.*(\([0-9]*\) inline 8-bit counters).*/\1/p' "$log" | head -n 1)
  verdict=ok
  artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)
  if ((rc != 0)) || grep -qE '^==[0-9]+==ERROR|ERROR: libFuzzer' "$log"; then
    if grep -q 'ERROR: libFuzzer: timeout' "$log"; then
      verdict="TIMEOUT (an input took over ${timeout_s} s)"
      # libFuzzer's timeout is wall-clock time: on a starved machine an input that takes a
      # millisecond can trip it. A real hang or blow-up reproduces when the input runs alone.
      if [[ -n $artifact ]]; then
        t0=$(date +%s%N)
        if "$bin/$t" -timeout="$timeout_s" -rss_limit_mb="$rss_mb" "$artifact" >"$log.replay" 2>&1; then
          ms=$((($(date +%s%N) - t0) / 1000000))
          verdict="ok (a timeout that did not reproduce: the input runs alone in ${ms} ms, so the machine was starved; kept in fuzz/$artifact)"
        fi
      fi
    elif grep -qE 'ERROR: libFuzzer: (out-of-memory|malloc limit)' "$log"; then
      verdict="OUT OF MEMORY (over ${rss_mb} MB)"
    elif grep -q 'LeakSanitizer' "$log"; then
      verdict="LEAK"
    elif grep -q 'panicked at' "$log"; then
      verdict="CRASH: $(grep -m 1 -A 1 'panicked at' "$log" | tr '\n' ' ')"
    else
      verdict="CRASH (exit $rc): $(grep -m 1 -E 'ERROR' "$log" || true)"
    fi
  fi
  [[ $verdict == ok* ]] || failed=1
  line=$(printf '%-14s %12s execs %9s exec/s   cov %5s edges of %5s   ft %6s   corpus %5s   %s' \
    "$t" "${execs:-?}" "${rate:-?}" "${cov:-?}" "${edges:-?}" "${ft:-?}" "${corp:-?}" "$verdict")
  echo "$line"
  summary+=("$line")
  if [[ ${FUZZ_COVERAGE:-0} == 1 ]]; then
    coverage "$t"
  fi
  if [[ $verdict != ok* ]]; then
    echo "---- last lines of fuzz/target/logs/$t.log"
    tail -n 40 "$log"
    echo "----"
    if [[ -n $artifact ]]; then
      echo "input:    fuzz/$artifact"
      echo "replay:   cd fuzz && cargo +nightly fuzz run $t $artifact"
      echo "minimise: cd fuzz && cargo +nightly fuzz tmin $t $artifact"
      echo "as test:  copy it to protocol/fuzzing/tests/fuzz-regressions/$t/<bug-name> (see fuzz/README.md)"
    fi
  fi
done

echo
echo "== fuzz summary (${seconds} s per target; cov = edges covered, ft = features)"
printf '%s\n' "${summary[@]}"
if ((failed)); then
  echo "fuzz: FAILED"
  exit 1
fi
echo "fuzz: all targets passed"
