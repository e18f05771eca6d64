#!/usr/bin/env bats
# A real distcc build through balance (SPEC §7: "a real distcc build through
# balance compiles every file remotely with no retries").
#
# Three distccd daemons on loopback play three unequal build hosts; balance
# sits in front of them with maxc 4, 2 and 1; distcc sees balance as one host
# with 12 slots and make -j12 pushes 12 compiles at once at 7 real slots, so
# balance has to queue the excess, never hand a host more than its maxc, and
# never lose or break a job.
#
# Concurrency is measured in the distccd logs, independently of balance:
# every distccd is started with --jobs = maxc + 2 (spare capacity), so a
# connection balance sends beyond maxc is accepted and served at once instead
# of waiting unseen in the kernel's listen backlog.  All children of one
# distccd write their log lines to the same stderr, so the lines are in the
# order things happened: "(dcc_check_client) connection from" is logged just
# after accept(), "(dcc_job_summary)" just before the child closes the
# connection; +1 / -1 in log order gives the number of jobs in progress on
# that distccd at every moment, and its maximum is compared with maxc.
# (Balance frees a slot only when the back-end connection has ended, i.e.
# after the summary line, so there are no false alarms.)

load test_helper

NFILES=24          # .c files besides main.c
NFUNCS=15          # functions per file: a little work for the compiler
MAXC=(4 2 1)       # balance's maxc per distccd
WEIGHT=(3 2 1)     # balance's weight per distccd

need_distcc() {
  if ! command -v distcc >/dev/null 2>&1 || ! command -v distccd >/dev/null 2>&1; then
    skip "distcc not installed"
  fi
  if ! command -v gcc >/dev/null 2>&1 || ! command -v make >/dev/null 2>&1; then
    skip "gcc or make not installed"
  fi
}

# start_distccd NAME JOBS: a foreground distccd on a free loopback port, its
# log (--log-stderr, so no file permission trouble when root makes distccd
# switch to its own user) in $T/NAME.err, its port in $T/NAME.port.
start_distccd() {
  local name=$1 jobs=$2 port
  port=$(free_port)
  echo "$port" >"$T/$name.port"
  # TMPDIR=/tmp: distccd (possibly running as user distccd) keeps its
  # temporary files there; the test's TMPDIR may not be writable for it.
  spawn "$name" env TMPDIR=/tmp distccd --daemon --no-detach --log-stderr --verbose \
    --listen 127.0.0.1 --port "$port" --allow 127.0.0.1 --jobs "$jobs"
  LISTEN_WAIT=10 listens "$name" "$port" || { cat "$T/$name.err" >&2; return 1; }
}

# gen_sources DIR: NFILES translation units with a little to compile each
# (NFUNCS small functions at -O2), main.c, a Makefile whose compile rule uses
# $(CC) and whose link uses plain gcc (distcc would run a link locally, which
# would muddy the "nothing ran locally" check).  Written by one awk: shell
# loops are slow under bats' traps.
gen_sources() {
  mkdir -p "$1"
  awk -v dir="$1" -v nfiles="$NFILES" -v nfuncs="$NFUNCS" 'BEGIN {
    for (i = 1; i <= nfiles; i++) {
      f = dir "/f" i ".c"
      printf "/* unit %d */\n", i > f
      for (j = 0; j < nfuncs; j++) {
        printf "static unsigned g%d(unsigned x) {\n  unsigned s = x;\n", j > f
        printf "  for (unsigned k = 0; k < 16; k++) {\n    switch ((s + k) %% 5) {\n", j > f
        printf "    case 0: s = s * 3u + %d; break;\n    case 1: s ^= s >> 3; break;\n", j > f
        printf "    case 2: s += k * %d; break;\n    case 3: s = (s << 1) | 1u; break;\n", i > f
        printf "    default: s -= %d;\n    }\n  }\n  return s;\n}\n", j > f
      }
      printf "static volatile unsigned sink;\nunsigned f%d(void) {\n  unsigned s = 0;\n", i > f
      printf "  for (unsigned k = 0; k < 1000; k++) s += (k * %d) %% 7;\n  sink = 0", i > f
      for (j = 0; j < nfuncs; j++) printf " + g%d(%d)", j, j > f
      printf ";\n  return s;\n}\n" > f
      close(f)
    }
    f = dir "/main.c"
    printf "#include <stdio.h>\n" > f
    for (i = 1; i <= nfiles; i++) printf "unsigned f%d(void);\n", i > f
    printf "int main(void) {\n  unsigned long t = 0;\n" > f
    for (i = 1; i <= nfiles; i++) printf "  t += f%d();\n", i > f
    printf "  printf(\"total %%lu\\n\", t);\n  return 0;\n}\n" > f
    close(f)
    f = dir "/Makefile"
    printf "OBJS =" > f
    for (i = 1; i <= nfiles; i++) printf " f%d.o", i > f
    printf " main.o\nprog: $(OBJS)\n\tgcc -o prog $(OBJS)\n" > f
    printf "%%.o: %%.c\n\t$(CC) -O2 -c $< -o $@\n" > f
    close(f)
  }'
}

# expected_total: what prog prints.
expected_total() {
  awk -v nfiles="$NFILES" 'BEGIN {
    for (i = 1; i <= nfiles; i++) for (k = 0; k < 1000; k++) t += (k * i) % 7
    printf "total %d\n", t }'
}

# max_jobs LOG: the highest number of jobs a distccd had in progress at once
# (see the comment at the top).
max_jobs() {
  awk '
    /\(dcc_check_client\) connection from/ { cur++; if (cur > max) max = cur }
    /\(dcc_job_summary\)/ { cur-- }
    END { print max + 0 }' "$1"
}

# farm_build [BALANCE OPTIONS]: three distccd behind balance (weights from
# $WEIGHTS, default the real ones), a parallel build of the generated
# project through it, and every check below.
farm_build() {
  need_distcc
  local i ports=() channels=() src=$T/src nsrc=$((NFILES + 1))
  local weights=(${WEIGHTS:-${WEIGHT[*]}})

  for i in 0 1 2; do
    start_distccd "distccd$i" $((MAXC[i] + 2))
    ports+=("$(port_of "distccd$i")")
    channels+=("127.0.0.1:${ports[i]}:${MAXC[i]}:${weights[i]}")
  done
  # -d: a line per connection in $T/balance.err, shown if the test fails.
  start_balance -d "$@" -- "${channels[@]}"

  gen_sources "$src"
  mkdir -p "$T/home" "$T/distcc-dir"
  # DISTCC_HOSTS: balance as one host of 12 slots (>= the 7 real ones, so
  # distcc never holds jobs back itself; balance queues them).
  # FALLBACK=0 / SKIP_LOCAL_RETRY=1: a failed remote compile fails the build
  # instead of being quietly redone locally; BACKOFF_PERIOD=0: no host is
  # ever put aside; IO_TIMEOUT: queued jobs wait in balance, give them time.
  run env HOME="$T/home" DISTCC_DIR="$T/distcc-dir" \
    DISTCC_HOSTS="127.0.0.1:$BAL_PORT/12" \
    DISTCC_FALLBACK=0 DISTCC_SKIP_LOCAL_RETRY=1 DISTCC_BACKOFF_PERIOD=0 \
    DISTCC_IO_TIMEOUT=120 DISTCC_LOG="$T/distcc.log" DISTCC_VERBOSE=1 \
    timeout 300 make -C "$src" -j12 CC="distcc gcc"
  if [ "$status" -ne 0 ]; then
    echo "$output"
    grep -E 'ERROR|Warning|failed' "$T/distcc.log" | head -20
    false
  fi

  # The program works.
  run "$src/prog"
  [ "$status" -eq 0 ]
  [ "$output" = "$(expected_total)" ]

  # Every translation unit was compiled remotely through balance, once.
  local remote
  remote=$(grep -cE "compile [^ ]+\.c on 127\.0\.0\.1:$BAL_PORT/12 completed ok" "$T/distcc.log")
  echo "remote compiles: $remote of $nsrc"
  [ "$remote" -eq "$nsrc" ]
  [ "$(grep -oE "compile [^ ]+\.c on 127\.0\.0\.1:$BAL_PORT/12 completed ok" "$T/distcc.log" | sort -u | wc -l)" -eq "$nsrc" ]

  # Nothing compiled locally, nothing retried, nothing broken.
  if grep -nE 'running locally|retrying locally|retried locally|fallbacks are disabled|compile [^ ]+ on localhost|still in backoff|failed to connect|ERROR|Warning|Broken pipe|unexpected eof|[Tt]imed out|IO timeout' "$T/distcc.log"; then
    false
  fi

  # The distccd logs together show every job, all fine; no host over maxc.
  local total=0 n max
  for i in 0 1 2; do
    n=$(grep -c '(dcc_job_summary) .* COMPILE_OK ' "$T/distccd$i.err" || true)
    max=$(max_jobs "$T/distccd$i.err")
    echo "distccd$i: maxc ${MAXC[i]} weight ${weights[i]}: $n jobs, at most $max at once"
    total=$((total + n))
    [ "$max" -le "${MAXC[i]}" ]
    [ "$n" -ge 1 ]
    if grep -nE 'ERROR|Broken pipe|unexpected eof|COMPILE_ERROR|CLIENT_DISCONNECTED|IO_ERROR|TIMEOUT' "$T/distccd$i.err"; then
      false
    fi
  done
  [ "$total" -eq "$nsrc" ]
}

@test "distcc: a parallel build through balance compiles every file remotely, hosts never over maxc" {
  farm_build
}

@test "distcc: with every weight 1, learning (-L) and size-aware placement (-j), every file compiles remotely" {
  WEIGHTS="1 1 1" farm_build -L -j 0.1
  # The speeds were learned from the jobs: every channel rests on some.
  run -0 "$BALANCE" -S "$T/ctl.sock" -c "show csv" "$BAL_PORT"
  [ "$(awk -F, 'NR > 1 && $16 == "true" && $17 > 0' <<<"$output" | wc -l)" -eq 3 ]
}
