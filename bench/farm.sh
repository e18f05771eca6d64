#!/usr/bin/env bash
# Scheduling benchmark (SPEC §7; issues 7 and 14): a simulated farm of
# unequal build hosts (bench/farm.cpp), a seeded batch of jobs of unequal
# sizes run through each proxy by K concurrent clients, the makespan
# compared with a perfect cost-oblivious scheduler's and with a lower bound.
#
#   bench/farm.sh                    # every row below that can run here
#   BALANCE=/path/balance JOBS=200 KS="16 6" RUNS=1 UNIT_MS=30 ORDER=desc \
#     TARGETS="balance haproxy pen" BALANCE_ROWS="pinned learn" bench/farm.sh
#   DISTCC=1 bench/farm.sh           # then a real distcc build (see below)
#   DISTCC=only BUILD_RUNS=5 bench/farm.sh   # the distcc build only
#
# Farm: host 0 has 4 slots x speed 3, host 1 2 x 2, host 2 2 x 1
# (HOSTS=4x3,2x2,2x1).  A job of w work units takes w*UNIT_MS/speed ms on a
# slot; a host running more jobs than slots slows all of them down
# proportionally.  Work units: 2..16, one job in ten 20..40 (a 20x range).
# The client sends w*BYTES_PER_UNIT payload bytes with the job, which the
# host reads whole (and checks) before it starts, as distccd does; balance
# -L learns speeds from those bytes and the time, -j sizes jobs by them.
#
# Sections, each a table, each row at every K of KS (fresh proxy per row):
#  1. every proxy, jobs in ORDER (default desc, biggest first: stable, see
#     farm.cpp)
#  2. size-aware, jobs in SIZED_ORDER (default random): where the
#     cost-oblivious ideal is furthest from the lower bound, so a scheduler
#     that knows sizes has room to be closer to the bound; once for each
#     seed of SIZED_SEEDS (HAProxy for the first only), then a summary: a
#     single seed's makespan turns on where its last big jobs land, by
#     +-10 % with sub-millisecond timing, so the verdict is on all seeds
#  3. a host slows down: host SLOW_HOST becomes SLOW_FACTOR times slower
#     when half the jobs have been handed out (jobs in ORDER)
# Reference rows (simulated, no proxy):
#   lower bound             max(total work / summed speed of the min(K,
#                           slots) fastest slots, longest job on the
#                           fastest slot): no scheduler beats it
#   ideal, cost-oblivious   perfect fastest free slot, FIFO wait, with the
#                           same jobs and clients; notes: its spread when
#                           every job takes 0..1 ms longer at random
#   ideal, starts blind     the same, starting from every weight 1 and
#                           learning each host's true speed the moment one
#                           of its jobs ends (an idle unknown host first,
#                           equal hosts round-robin): no learner does
#                           better counting the warm-up; a -L row's cold
#                           batch is also given over it
#   ideal, size-aware       the same with balance -j's rule (see
#                           balance.1) and perfect knowledge of every speed
#                           and job size: what -j can do at best
#   ideal, knows the change section 3: the same, switching to the host's
#                           new speed at the moment it changes
# Proxy rows (TARGETS picks the proxies; BALANCE_ROWS, SIZED_ROWS and
# CHANGE_ROWS the rows of each section):
#   balance                 pinned: true weights, host:port:slots:speed
#   balance -L w=1          learn: every weight 1, -L (balance learns each
#                           host's speed from the jobs it serves)
#   balance -L inverted     inverted: -L, weights inverted (the slowest host
#                           the highest weight)
#   balance -j0.1           sized: true weights, -j SIZED_MS (size-aware:
#                           waits for the request's bytes, keeps a big job
#                           off a slow slot)
#   balance -L -j0.1 w=1    learnsized: every weight 1, -L -j SIZED_MS
#   haproxy leastconn       'balance leastconn', maxconn = slots, weight =
#                           speed, a long queue (in sections 2 and 3: the
#                           row "haproxy")
#   haproxy first           'balance first', servers sorted by speed
#                           (fastest free slot, without a size or a speed)
#   pen -r                  soft = hard limit = slots; pen has no queue: it
#                           refuses excess clients, so it drops jobs when K
#                           is above the total slots
# A -L row runs the batch twice on the same balance: the row is the second
# (warm) batch; its notes give the first (cold) batch's makespan / ideal,
# i.e. counting the warm-up, and after how many finished jobs balance's
# speeds (the "speed" of each channel in `show json`, sampled every POLL_MS
# over the control socket) were, and stayed, within 10 % of the true speeds
# relative to each other.  In section 3 a -L row's notes say after how many
# of the slowed host's own jobs its estimate, relative to the others', was
# and stayed within 20 % of its new speed.  A balance whose `balance -h`
# lists no -L (or -j) shows "not supported by this balance" on those rows.
# Columns: makespan; /ideal = makespan / the ideal of its section;
# /bound = makespan / lower bound ("-" in section 3); max concurrency per
# host vs slots (over both batches of a -L row); jobs per host; failed jobs.
# Verdict: DROPPED = a job failed (no answer, or a wrong byte reached the
# host), OVER-MAXC = a host had more connections than slots; SLOW = makespan
# over 1.05 x ideal (sections 1 and 3); section 2's rows are judged on
# correctness, and its summary gives, for each row and K, the geometric
# mean over the seeds of makespan / the cost-oblivious ideal (a -L row's
# cold batch too, as a row ", cold"), and of its ratio to the balance row
# of the same seed (/balance, paired), each with its 95 % interval (a t
# interval on the logs of the seeds' ratios: one seed's makespan moves by
# +-10 % with timing, so a verdict on few seeds is weak where the interval
# is wide), and judges a size-aware row: AHEAD =
# below 1 where K is above the farm's slots (jobs queue), else LEVEL = at
# most 1 % above the balance row without -j (NOT-AHEAD, WORSE otherwise;
# FAILED if any of its runs was not ok), and a cold batch: ok within 3 %
# where K is above the slots, 5 % where not (SLOW otherwise).  A cold
# batch is judged there, not in section 1: with the jobs largest first, the
# first K jobs (the biggest) are handed out before any host has finished
# one, so no learner's cold batch can beat the row "ideal, starts blind"
# (about 1.05 x ideal at 6 clients); section 1 gives its cold batch against
# both.
#
# Variables (defaults): BALANCE ($root/balance), HOSTS (4x3,2x2,2x1), JOBS
# (200), KS ("16 6"), RUNS (1: runs of each row), UNIT_MS (30), SEED (7),
# ORDER (desc), SIZED_ORDER (random), SIZED_SEEDS ("1 2 3 4 5 6 7 8"),
# BYTES_PER_UNIT (8192), SIZED_MS (100: balance -j), POLL_MS (100),
# TARGETS ("balance haproxy pen"), BALANCE_ROWS
# ("pinned learn inverted sized learnsized"), SIZED_ROWS ("pinned learn
# inverted sized learnsized haproxy"), CHANGE_ROWS ("pinned learn learnsized haproxy"),
# SLOW_HOST (0), SLOW_FACTOR (3), DISTCC (unset; 1 runs the distcc build
# after the farm, "only" instead of it), KEEP (unset; 1 keeps the work
# directory, logs included, and says where), CXX (c++), FARM (a prebuilt
# farm binary).  An empty row list skips its section.  The farm runs about
# twelve and a half minutes, ten of them section 2's eight seeds
# (SIZED_SEEDS=7 makes it about four).  For a firmer verdict on -j, run
# section 2 alone over 32 seeds (about five minutes at one K):
#   SIZED_SEEDS="$(seq -s ' ' 1 32)" KS=16 SIZED_ROWS="pinned sized" \
#     TARGETS=balance BALANCE_ROWS= CHANGE_ROWS= bench/farm.sh
#
# The distcc build (DISTCC=1 or only): a generated C project of unequal
# translation units built with make -j and distcc through balance in front
# of three distccd daemons that run at different speeds, BUILD_RUNS times
# each way, interleaved; the spread of wall times, and whether every compile
# ran remotely, once, on a host within its slots.
# Hosts: distccd0 4 slots at full speed, distccd1 2 slots 1.5x slower,
# distccd2 2 slots 3x slower (relative speeds 3:2:1, as the farm's).  Each
# distccd runs a compiler wrapper first in its PATH that runs the real
# compiler and then sleeps until the compile has taken BUILD_SCALE x FACTOR
# x its CPU time (user + system of the compiler and its children), FACTOR
# being the host's slowness: on a 2-core machine nice or taskset cannot make
# one host slower than another, and a cost in CPU time does not grow when
# the other hosts' compiles compete for the cores.  balance gives every host
# maxc = its slots; distccd runs with --jobs = slots + 2 so that a
# connection balance sends beyond maxc is served, and seen, at once.
# Concurrency is counted in the distccd logs ("connection from" +1,
# "job_summary" -1, in log order), as tests/distcc.bats does.
# Project: BUILD_FILES units (seeded, SEED): seven in eight have 2..6 small
# functions, one in eight 16..32 (a 16x range of source size, about 7x of
# compile time), in random order, plus main.c; compiled with -O2 through
# "distcc gcc", linked with plain gcc (distcc would link locally).  distcc
# sees balance as one host of BUILD_J slots, so balance queues what the
# hosts cannot take; DISTCC_FALLBACK=0 and DISTCC_SKIP_LOCAL_RETRY=1 make a
# failed remote compile fail the build instead of running locally.
# Modes (BUILD_MODES; one balance per mode, kept across its runs, as a
# farm's balance lives on between builds):
#   balance, weights 3:2:1  pinned: true weights pinned
#   balance -L w=1          learn: -L, every weight 1 (learns the speeds)
#   balance -j0.1           sized: -j SIZED_MS, true weights
#   balance -L -j0.1 w=1    learnsized: -L -j SIZED_MS, every weight 1
#   distcc direct           direct: no balance, DISTCC_HOSTS lists the
#                           three hosts with their slots (distcc's own
#                           choice: the first host with a free slot)
# A mode whose option `balance -h` does not list reports "not supported by
# this balance".  Columns: wall time min / median / max over the runs (s);
# remote: compiles that distcc reports completed remotely, over those
# expected, all runs together; max at once per host vs slots, over every
# run; jobs per host, median over the runs; verdict: ok, or LOCAL (a
# compile ran locally, was retried or failed, or the distccd logs do not add
# up to one job per file), OVER-MAXC, WRONG (the program's output differs
# from the first build's), FAILED (a build failed).  The line below a mode
# lists every run's time, in order (a -L mode's first build includes the
# warm-up).  "max at once" is not judged for direct: distcc frees its slot
# when it has the result, so its next job may connect before the distccd
# child that served the last one logs its summary, and the log count can
# read one more than the slots (balance frees a slot only when the back-end
# connection has closed, after the summary, so its count is exact).
# Variables (defaults): BUILD_RUNS (5), BUILD_FILES (80), BUILD_J (12: make
# -j), BUILD_SCALE (5), BUILD_MODES ("pinned learn sized learnsized
# direct"); SEED, SIZED_MS and BALANCE as above.  About 10 s a build on a
# quiet 2-core machine, a minute a mode; more when the cores are shared.
#
# Everything started here is killed by PID on exit.
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
BALANCE=${BALANCE:-$root/balance}
HOSTS=${HOSTS:-4x3,2x2,2x1}
JOBS=${JOBS:-200}
KS=${KS:-16 6}
RUNS=${RUNS:-1}
UNIT_MS=${UNIT_MS:-30}
SEED=${SEED:-7}
ORDER=${ORDER:-desc}
SIZED_ORDER=${SIZED_ORDER:-random}
SIZED_SEEDS=${SIZED_SEEDS:-1 2 3 4 5 6 7 8}
BYTES_PER_UNIT=${BYTES_PER_UNIT:-8192}
SIZED_MS=${SIZED_MS:-100}
# balance's -j takes seconds.
SIZED_SEC=$(awk -v ms="$SIZED_MS" 'BEGIN { printf "%g", ms / 1000 }')
POLL_MS=${POLL_MS:-100}
TARGETS=${TARGETS:-balance haproxy pen}
BALANCE_ROWS=${BALANCE_ROWS-pinned learn inverted sized learnsized}
SIZED_ROWS=${SIZED_ROWS-pinned learn inverted sized learnsized haproxy}
CHANGE_ROWS=${CHANGE_ROWS-pinned learn learnsized haproxy}
SLOW_HOST=${SLOW_HOST:-0}
SLOW_FACTOR=${SLOW_FACTOR:-3}
DISTCC=${DISTCC:-}
BUILD_RUNS=${BUILD_RUNS:-5}
BUILD_FILES=${BUILD_FILES:-80}
BUILD_J=${BUILD_J:-12}
BUILD_SCALE=${BUILD_SCALE:-5}
BUILD_MODES=${BUILD_MODES:-pinned learn sized learnsized direct}
CXX=${CXX:-c++}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/farm.XXXXXX") || exit 1
pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${pids[@]}"; do
        # bounded wait, then SIGKILL
        for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$p" 2>/dev/null
        wait "$p" 2>/dev/null
    done
    if [ -n "${KEEP:-}" ]; then echo "farm.sh: work directory kept: $tmp" >&2; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

FARM=${FARM:-}
if [ -z "$FARM" ]; then
    FARM=$tmp/farm
    $CXX -std=c++17 -O2 -Wall -Wextra -pthread -o "$FARM" "$here/farm.cpp" ||
        { echo "farm.sh: cannot build farm.cpp" >&2; exit 1; }
fi

# What this balance can do: its -h has a line per option (or the usage
# lists it in brackets).
balance_help=
[ -x "$BALANCE" ] && balance_help=$("$BALANCE" -h 2>&1)
balance_has() { # letter
    grep -qE "^[[:space:]]+-$1([[:space:],]|\$)|\[-[[:alnum:]]*$1[[:alnum:]]*\]|\[-$1 " <<<"$balance_help"
}
has_L=no; has_j=no
balance_has L && has_L=yes
balance_has j && has_j=yes

# ------------------------------------------------------------------ farm --

# Hosts: one process, prints "CTL PA PB PC" once it listens.
start_hosts() {
    "$FARM" hosts -H "$HOSTS" -u "$UNIT_MS" >"$tmp/hosts.out" 2>"$tmp/hosts.err" &
    pids+=("$!")
    for _ in $(seq 1 50); do [ -s "$tmp/hosts.out" ] && break; sleep 0.1; done
    read -r CTL HP <"$tmp/hosts.out" || { echo "farm.sh: hosts did not start: $(cat "$tmp/hosts.err")" >&2; exit 1; }
    read -r -a HPORTS <<<"$HP"
}
IFS=, read -r -a SPECS <<<"$HOSTS"
nh=${#SPECS[@]}

LP=
proxy_pid=
start_proxy() { # name, command...: starts it (on $LP, which the caller set), waits (5 s at most) until it listens
    local name=$1; shift
    "$@" >"$tmp/$name.out" 2>"$tmp/$name.err" &
    proxy_pid=$!
    pids+=("$proxy_pid")
    if "$FARM" wait "$LP" 5 "$proxy_pid" 2>"$tmp/$name.wait"; then
        sleep 0.2
        return 0
    fi
    if kill -0 "$proxy_pid" 2>/dev/null; then
        echo "$name: $(cat "$tmp/$name.wait")" >&2
    else
        echo "$name: exited at start: $(head -c 300 "$tmp/$name.err")" >&2
    fi
    return 1
}

stop_proxy() {
    [ -n "$proxy_pid" ] || return
    kill "$proxy_pid" 2>/dev/null
    for _ in $(seq 1 50); do kill -0 "$proxy_pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$proxy_pid" 2>/dev/null
    wait "$proxy_pid" 2>/dev/null
    proxy_pid=
}

# One row's farm run: label, K, order, farm run options...
# Every row also goes to $tmp/rows (section 2's summary reads it).
farm_run() {
    local label=$1 k=$2 order=$3 status; shift 3
    timeout 300 "$FARM" run -c "$CTL" -p "$LP" -k "$k" -n "$JOBS" -s "$SEED" -o "$order" -b "$BYTES_PER_UNIT" \
        -l "$label" -t 120 "$@" | tee -a "$tmp/rows"
    status=${PIPESTATUS[0]}
    [ "$status" -eq 0 ] || echo "$label: farm run failed (status $status)"
}

# The section's reference rows: K, order, farm run options...
reference() {
    local k=$1 order=$2; shift 2
    "$FARM" run -I -c "$CTL" -k "$k" -n "$JOBS" -s "$SEED" -o "$order" "$@" | tee -a "$tmp/rows"
}

# Section 2's summary, from the rows of its seeds in $tmp/rows: for each
# row and K (and a -L row's cold batch), the geometric mean of makespan /
# the cost-oblivious ideal over the seeds, its range, the geometric mean of
# its ratio to the balance row without -j or -L in the same seed (paired:
# the same jobs, the same machine, moments apart), and a verdict: a
# size-aware row is AHEAD below 1 where K is above the farm's slots (jobs
# queue), else LEVEL at most 1 % above the balance row; a cold batch is ok
# within 3 % where K is above the slots, 5 % where not; FAILED if any run
# of the row was not ok.
sized_summary() { # slots
    awk -v slots="$1" -v seeds="$SIZED_SEEDS" '
        function add(key, value) {
            if (!(key in runs)) order[++rows] = key
            runs[key]++; logsum[key] += log(value)
            if (!(key in lo) || value < lo[key]) lo[key] = value
            if (!(key in hi) || value > hi[key]) hi[key] = value
            if (!((key, seed) in seedn)) seedkeys[key] = seedkeys[key] " " seed
            seedn[key, seed]++; seedlog[key, seed] += log(value)
        }
        function seedmean(key, s) { return seedlog[key, s] / seedn[key, s] }
        # The geometric mean of x[1..n] (logs) and its 95 % interval (a t
        # interval on the logs; the quantile approximated within 2 % from
        # 3 seeds up) in g, glo, ghi.
        function interval(x, n,   j, m, v, t) {
            m = 0; for (j = 1; j <= n; j++) m += x[j]; m /= n
            v = 0; for (j = 1; j <= n; j++) v += (x[j] - m) ^ 2
            t = n > 1 ? (1.96 + 2.5 / (n - 1) + 3 / (n - 1) ^ 2) * sqrt(v / (n - 1) / n) : 0
            g = exp(m); glo = exp(m - t); ghi = exp(m + t)
        }
        function shown(n) { return n > 1 ? sprintf("%.3f (%.3f..%.3f)", g, glo, ghi) : sprintf("%.3f", g) }
        /^-- seed / { seed = $3; next }
        { label = substr($0, 1, 24); sub(/ +$/, "", label); n = split(substr($0, 25), f, " ") }
        n >= 4 && f[1] ~ /^[0-9]+$/ && f[4] ~ /^[0-9.]+$/ {
            add(label SUBSEP f[1], f[4])
            if (label !~ /^(ideal|lower bound)/ && $0 !~ / ok( |$)/) bad[label SUBSEP f[1]] = 1
            # The first batch of a -L row, warm-up counted, as a row of its own.
            if (match($0, /cold [0-9.]+ x ideal/)) add(label ", cold" SUBSEP f[1], substr($0, RSTART + 5, RLENGTH - 13))
            # What the ideal becomes when each job takes 0..1 ms longer (median).
            if (label == "ideal, cost-oblivious" && match($0, /median [0-9.]+/))
                add("ideal, 0..1 ms more a job" SUBSEP f[1], substr($0, RSTART + 7, RLENGTH - 7))
        }
        END {
            printf "\nsection 2 over seeds %s: makespan / the cost-oblivious ideal, geometric mean over the seeds\n", seeds
            printf "with its 95 %% interval; /balance: the same, of the ratio to the balance row of each seed\n"
            printf "%-30s %3s %5s  %-22s %-13s  %-22s  %s\n", "target", "K", "runs", "geomean (interval)", "min..max",
                "/balance (interval)", "verdict"
            for (i = 1; i <= rows; i++) {
                key = order[i]; split(key, part, SUBSEP)
                if (part[1] == "ideal, cost-oblivious") continue
                m = split(seedkeys[key], s, " "); verdict = ""; paired = "-"
                for (j = 1; j <= m; j++) x[j] = seedmean(key, s[j])
                base = "balance" SUBSEP part[2]
                if (part[1] ~ /^balance ./ && base in runs) {
                    pairs = 0
                    for (j = 1; j <= m; j++)
                        if ((base, s[j]) in seedn) y[++pairs] = seedmean(key, s[j]) - seedmean(base, s[j])
                    if (pairs) { interval(y, pairs); paired = shown(pairs) }
                }
                interval(x, m); value = shown(m)
                if (part[1] ~ /, cold$/) verdict = g <= (part[2] + 0 > slots + 0 ? 1.03 : 1.05) ? "ok" : "SLOW"
                else if (part[1] ~ /^balance .*-j/) {
                    if (part[2] + 0 > slots + 0) verdict = g < 1 ? "AHEAD" : "NOT-AHEAD"
                    else if (!(base in runs)) verdict = "(no balance row to compare)"
                    else verdict = g <= exp(logsum[base] / runs[base]) * 1.01 ? "LEVEL" : "WORSE"
                }
                if (key in bad) verdict = verdict " FAILED"
                printf "%-30s %3d %5d  %-22s %5.3f..%5.3f  %-22s  %s\n", part[1], part[2], runs[key], value, lo[key],
                    hi[key], paired, verdict
            }
        }' "$tmp/rows"
}

not_supported() { # label, K, why
    printf '%-24s %3d      not supported by this balance (%s)\n' "$1" "$2" "$3"
}

want() { case " $TARGETS " in *" $1 "*) return 0;; esac; return 1; }

# The hosts, a line each: index, port, slots, speed (the farm's order:
# sorted by speed by default).
host_list() {
    local i s
    for i in $(seq 0 $((nh - 1))); do
        s=${SPECS[$i]}
        echo "$i ${HPORTS[$i]} ${s%x*} ${s#*x}"
    done
}

# balance's channels; weights: true (each host's speed), one (every weight
# 1), inverted (the slowest host the highest: max + min - speed).
balance_channels() { # true|one|inverted
    local s sp w max=0 min=0
    for s in "${SPECS[@]}"; do
        sp=${s#*x}
        [ "$max" -eq 0 ] || [ "$sp" -gt "$max" ] && max=$sp
        [ "$min" -eq 0 ] || [ "$sp" -lt "$min" ] && min=$sp
    done
    host_list | while read -r _ port slots sp; do
        case $1 in
            true) w=$sp ;;
            one) w=1 ;;
            inverted) w=$((max + min - sp)) ;;
        esac
        echo "127.0.0.1:$port:$slots:$w"
    done
}

haproxy_cfg() { # algorithm
    cat <<EOF
global
    nbthread 1
    maxconn 4000
defaults
    mode tcp
    timeout connect 5s
    timeout client 300s
    timeout server 300s
    timeout queue 300s
frontend fe
    bind 127.0.0.1:$LP
    default_backend farm
backend farm
    balance $1
$(host_list | while read -r i port slots speed; do
    echo "    server h$i 127.0.0.1:$port maxconn $slots weight $speed"
done)
EOF
}

# A balance row: mode (pinned|learn|inverted|sized|learnsized), K, order,
# farm run options...
balance_row() {
    local mode=$1 k=$2 order=$3; shift 3
    local label weights opts=() farm=() chans=()
    case $mode in
        pinned) label=balance; weights=true ;;
        learn) label="balance -L w=1"; weights=one; opts=(-L) ;;
        inverted) label="balance -L inverted"; weights=inverted; opts=(-L) ;;
        sized) label="balance -j$SIZED_SEC"; weights=true; opts=(-j "$SIZED_SEC") ;;
        learnsized) label="balance -L -j$SIZED_SEC w=1"; weights=one; opts=(-L -j "$SIZED_SEC") ;;
        *) echo "farm.sh: unknown balance row '$mode' (pinned learn inverted sized learnsized)" >&2; return ;;
    esac
    if [ ! -x "$BALANCE" ]; then
        printf '%-24s %3d      (not built: %s)\n' "$label" "$k" "$BALANCE"
        return
    fi
    case " ${opts[*]} " in *" -L "*)
        [ "$has_L" = yes ] || { not_supported "$label" "$k" "no -L in balance -h"; return; }
        farm=(-W -S "$tmp/ctl.sock" -P "$POLL_MS") ;;
    esac
    case " ${opts[*]} " in *" -j "*)
        [ "$has_j" = yes ] || { not_supported "$label" "$k" "no -j in balance -h"; return; } ;;
    esac
    mapfile -t chans < <(balance_channels "$weights")
    for _ in $(seq 1 "$RUNS"); do
        LP=$("$FARM" freeport)
        if start_proxy balance "$BALANCE" -f "${opts[@]}" -b 127.0.0.1 -S "$tmp/ctl.sock" "$LP" "${chans[@]}"; then
            farm_run "$label" "$k" "$order" "${farm[@]}" "$@"
        fi
        stop_proxy
    done
}

haproxy_row() { # algorithm, label, K, order, farm run options...
    local algo=$1 label=$2 k=$3 order=$4; shift 4
    if ! command -v haproxy >/dev/null 2>&1; then
        printf '%-24s %3d      (not installed)\n' "$label" "$k"
        return
    fi
    for _ in $(seq 1 "$RUNS"); do
        LP=$("$FARM" freeport)
        haproxy_cfg "$algo" >"$tmp/haproxy-$algo.cfg"
        if start_proxy "haproxy-$algo" haproxy -db -f "$tmp/haproxy-$algo.cfg"; then
            farm_run "$label" "$k" "$order" "$@"
        fi
        stop_proxy
    done
}

pen_row() { # K, order, farm run options...
    local k=$1 order=$2; shift 2
    if ! command -v pen >/dev/null 2>&1; then
        printf '%-24s %3d      (not installed)\n' "pen -r" "$k"
        return
    fi
    local servers=()
    mapfile -t servers < <(host_list | while read -r _ port slots speed; do echo "127.0.0.1:$port:$slots:$slots:$speed"; done)
    for _ in $(seq 1 "$RUNS"); do
        LP=$("$FARM" freeport)
        if start_proxy pen pen -f -r -x 1000 "127.0.0.1:$LP" "${servers[@]}"; then
            farm_run "pen -r" "$k" "$order" "$@"
        fi
        stop_proxy
    done
}

# The farm benchmark: its three sections.
farm_bench() {
    local k mode row change
    start_hosts
    echo "farm: hosts $HOSTS (slots x speed), $JOBS jobs (seed $SEED), unit ${UNIT_MS} ms," \
        "$BYTES_PER_UNIT payload bytes per unit, K = $KS"
    echo "balance: $BALANCE (-L: $has_L, -j: $has_j)"

    # Section 1: every proxy, jobs in ORDER.
    if [ -n "$BALANCE_ROWS" ] || want haproxy || want pen; then
        echo
        echo "== 1. jobs in $ORDER order =="
        "$FARM" header
        for k in $KS; do
            reference "$k" "$ORDER"
            if want balance; then
                for mode in $BALANCE_ROWS; do balance_row "$mode" "$k" "$ORDER"; done
            fi
            if want haproxy; then
                haproxy_row leastconn "haproxy leastconn" "$k" "$ORDER"
                haproxy_row first "haproxy first" "$k" "$ORDER"
            fi
            want pen && pen_row "$k" "$ORDER"
        done
    fi

    # Section 2: size-aware placement where it matters, over several
    # seeds (one seed's makespan turns on where its last big jobs land).
    if [ -n "$SIZED_ROWS" ]; then
        local seed first=yes main_seed=$SEED spec slots=0
        for spec in "${SPECS[@]}"; do slots=$((slots + ${spec%%x*})); done
        echo
        echo "== 2. size-aware, jobs in $SIZED_ORDER order, seeds $SIZED_SEEDS (judged over all seeds, at the end) =="
        : >"$tmp/rows"
        for seed in $SIZED_SEEDS; do
            SEED=$seed
            echo "-- seed $seed" | tee -a "$tmp/rows"
            "$FARM" header
            for k in $KS; do
                reference "$k" "$SIZED_ORDER"
                for row in $SIZED_ROWS; do
                    case $row in
                        haproxy) [ "$first" = yes ] && want haproxy &&
                            haproxy_row leastconn "haproxy leastconn" "$k" "$SIZED_ORDER" -V none ;;
                        *) want balance && balance_row "$row" "$k" "$SIZED_ORDER" -V none ;;
                    esac
                done
            done
            first=no
        done
        SEED=$main_seed
        sized_summary "$slots"
    fi

    # Section 3: a host slows down half-way.
    if [ -n "$CHANGE_ROWS" ]; then
        change=(-C "$SLOW_HOST:$SLOW_FACTOR")
        echo
        echo "== 3. host $SLOW_HOST (${SPECS[$SLOW_HOST]}) becomes ${SLOW_FACTOR}x slower when job $((JOBS / 2)) is handed out, jobs in $ORDER order =="
        "$FARM" header
        for k in $KS; do
            reference "$k" "$ORDER" "${change[@]}"
            for row in $CHANGE_ROWS; do
                case $row in
                    haproxy) want haproxy && haproxy_row leastconn "haproxy leastconn" "$k" "$ORDER" "${change[@]}" ;;
                    *) want balance && balance_row "$row" "$k" "$ORDER" "${change[@]}" ;;
                esac
            done
        done
    fi
}

# ---------------------------------------------------------- distcc build --

BUILD_SLOTS=(4 2 2)
BUILD_FACTOR=(1 1.5 3)
BUILD_WEIGHT=(3 2 1)
declare -A build_label build_hosts build_ok

# wrapper DIR FACTOR: compiler wrappers in DIR for the names distccd may be
# asked to run (distcc sends gcc as TRIPLE-gcc).  `times` must run in the
# wrapper's own shell (a pipe or $(...) would fork and see no children), so
# it writes to a file.
wrapper() {
    local dir=$1 factor=$2 name real k
    k=$(awk -v a="$BUILD_SCALE" -v b="$factor" 'BEGIN { print a * b }')
    mkdir -p "$dir"
    for name in gcc cc "$(gcc -dumpmachine)-gcc"; do
        real=$(command -v "$name") || continue
        cat >"$dir/$name" <<EOF
#!/bin/bash
# A build host $factor times slower than the fastest: every compile takes
# $BUILD_SCALE x $factor x its CPU time in all (bench/farm.sh).
t0=\${EPOCHREALTIME:-\$(date +%s.%N)}
"$real" "\$@"
rc=\$?
t1=\${EPOCHREALTIME:-\$(date +%s.%N)}
f=\${TMPDIR:-/tmp}/farm-build-wrapper.\$\$
times >"\$f"
rest=\$(awk -v t0="\$t0" -v t1="\$t1" -v k="$k" '
    NR == 2 {
        for (i = 1; i <= 2; i++) { split(\$i, a, "m"); sub(/s\$/, "", a[2]); cpu += a[1] * 60 + a[2] }
        d = k * cpu - (t1 - t0)
        printf "%.3f\n", (d > 0 ? d : 0)
    }' "\$f")
rm -f "\$f"
sleep "\$rest"
exit \$rc
EOF
        chmod 755 "$dir/$name"
    done
    chmod 755 "$dir"
}

# start_distccds: the three build hosts, each a distccd with its compiler
# wrapper; their ports in dports.
start_distccds() {
    local i port
    dports=()
    for i in 0 1 2; do
        wrapper "$bt/host$i/bin" "${BUILD_FACTOR[i]}"
        chmod 755 "$bt/host$i"
        port=$("$FARM" freeport)
        # TMPDIR=/tmp: distccd (possibly running as its own user) keeps its
        # temporary files there.
        env PATH="$bt/host$i/bin:$PATH" TMPDIR=/tmp distccd --daemon --no-detach --log-stderr --verbose \
            --listen 127.0.0.1 --port "$port" --allow 127.0.0.1 --jobs $((BUILD_SLOTS[i] + 2)) \
            >"$bt/distccd$i.out" 2>"$bt/distccd$i.err" &
        pids+=("$!")
        "$FARM" wait "$port" 10 "$!" || { echo "distccd$i did not start: $(tail -3 "$bt/distccd$i.err")" >&2; return 1; }
        dports+=("$port")
    done
}

# gen_project DIR: BUILD_FILES units of unequal size, main.c, a Makefile.
gen_project() {
    mkdir -p "$1"
    awk -v dir="$1" -v nfiles="$BUILD_FILES" -v seed="$SEED" '
    function unit(i, n,   f, j) {
        f = dir "/u" i ".c"
        printf "/* generated unit %d: %d functions */\n", i, n > f
        for (j = 0; j < n; j++) {
            printf "static unsigned long mix%d_%d(unsigned long a, unsigned long b) {\n", i, j > f
            printf "  unsigned long acc = a ^ %du;\n  for (int r = 0; r < %d; r++) {\n", i * 131 + j, 8 + j % 5 > f
            printf "    acc = (acc << %d) | (acc >> %d);\n", 1 + j % 7, 63 - j % 7 > f
            printf "    if ((acc ^ b) & %du) acc += b * %du; else acc -= r;\n", 1 + j % 13, 3 + 2 * j > f
            printf "    b = b * 6364136223846793005ul + %du;\n  }\n  return acc + b;\n}\n", j + 1 > f
        }
        printf "unsigned long unit%d(unsigned long seed) {\n  unsigned long s = seed;\n", i > f
        for (j = 0; j < n; j++) printf "  s = mix%d_%d(s, %d);\n", i, j, j > f
        printf "  return s %% 1000u;\n}\n" > f
        close(f)
    }
    BEGIN {
        srand(seed)
        objs = ""; decls = ""; table = ""
        for (i = 1; i <= nfiles; i++) {
            unit(i, rand() < 0.125 ? 16 + int(rand() * 17) : 2 + int(rand() * 5))
            objs = objs " u" i ".o"
            decls = decls "unsigned long unit" i "(unsigned long);\n"
            table = table "  unit" i ",\n"
        }
        # main.c calls every unit through a table and prints the sum.
        f = dir "/main.c"
        printf "#include <stdio.h>\n%sstatic unsigned long (*const units[])(unsigned long) = {\n%s};\n", decls, table > f
        printf "int main(void) {\n  unsigned long t = 0;\n" > f
        printf "  for (unsigned i = 0; i < sizeof units / sizeof units[0]; i++) t += units[i](i + 1);\n" > f
        printf "  printf(\"total %%lu\\n\", t);\n  return 0;\n}\n" > f
        close(f)
        f = dir "/Makefile"
        printf "OBJS =%s main.o\nprog: $(OBJS)\n\tgcc -o prog $(OBJS)\n", objs > f
        printf "%%.o: %%.c\n\t$(CC) -O2 -c $< -o $@\nclean:\n\trm -f prog $(OBJS)\n" > f
        close(f)
    }'
}

# start_modes: per mode of BUILD_MODES, its label, whether it runs here
# (supported: yes, or why not), and the DISTCC_HOSTS of its builds (a
# balance started for it, or the hosts themselves).
start_modes() {
    local mode opts w o p i chans
    for mode in $BUILD_MODES; do
        opts=(); w=("${BUILD_WEIGHT[@]}"); build_ok[$mode]=yes
        case $mode in
            pinned) build_label[$mode]="balance, weights 3:2:1" ;;
            learn) build_label[$mode]="balance -L w=1"; opts=(-L); w=(1 1 1) ;;
            sized) build_label[$mode]="balance -j$SIZED_SEC"; opts=(-j "$SIZED_SEC") ;;
            learnsized) build_label[$mode]="balance -L -j$SIZED_SEC w=1"; opts=(-L -j "$SIZED_SEC"); w=(1 1 1) ;;
            direct) build_label[$mode]="distcc direct, no balance" ;;
            *) echo "farm.sh: unknown build mode '$mode' (pinned learn sized learnsized direct)" >&2; exit 2 ;;
        esac
        if [ "$mode" = direct ]; then
            build_hosts[$mode]="127.0.0.1:${dports[0]}/${BUILD_SLOTS[0]} 127.0.0.1:${dports[1]}/${BUILD_SLOTS[1]} 127.0.0.1:${dports[2]}/${BUILD_SLOTS[2]}"
            continue
        fi
        for o in "${opts[@]}"; do
            case $o in -L|-j) balance_has "${o#-}" || build_ok[$mode]="no $o in balance -h" ;; esac
        done
        [ "${build_ok[$mode]}" = yes ] || continue
        if [ ! -x "$BALANCE" ]; then build_ok[$mode]="not built: $BALANCE"; continue; fi
        p=$("$FARM" freeport)
        chans=()
        for i in 0 1 2; do chans+=("127.0.0.1:${dports[i]}:${BUILD_SLOTS[i]}:${w[i]}"); done
        "$BALANCE" -f "${opts[@]}" -b 127.0.0.1 -S "$bt/$mode.sock" "$p" "${chans[@]}" \
            >"$bt/balance-$mode.out" 2>"$bt/balance-$mode.err" &
        pids+=("$!")
        "$FARM" wait "$p" 5 "$!" || { build_ok[$mode]="did not start: $(head -c 200 "$bt/balance-$mode.err")"; continue; }
        build_hosts[$mode]="127.0.0.1:$p/$BUILD_J"
    done
}

# max_jobs FILE: the most jobs a distccd had in progress at once in that log.
max_jobs() {
    awk '/\(dcc_check_client\) connection from/ { cur++; if (cur > max) max = cur }
         /\(dcc_job_summary\)/ { cur-- }
         END { print max + 0 }' "$1"
}

# build MODE RUN: one clean build; appends "wall ok remote max0 max1 max2
# jobs0 jobs1 jobs2 output" to $bt/MODE.runs.
build() {
    local mode=$1 run=$2 i t0 t1 rc ok=ok remote bad n
    local log=$bt/$mode.$run.log marks=()
    for i in 0 1 2; do marks+=("$(wc -l <"$bt/distccd$i.err")"); done
    make -s -C "$src" clean >/dev/null 2>&1
    mkdir -p "$bt/home" "$bt/distcc-dir"
    t0=$EPOCHREALTIME
    env HOME="$bt/home" DISTCC_DIR="$bt/distcc-dir" DISTCC_HOSTS="${build_hosts[$mode]}" \
        DISTCC_FALLBACK=0 DISTCC_SKIP_LOCAL_RETRY=1 DISTCC_BACKOFF_PERIOD=0 \
        DISTCC_IO_TIMEOUT=300 DISTCC_LOG="$log" DISTCC_VERBOSE=1 \
        timeout 600 make -s -C "$src" -j"$BUILD_J" CC="distcc gcc" >"$bt/$mode.$run.make" 2>&1
    rc=$?
    t1=$EPOCHREALTIME
    [ "$rc" -eq 0 ] || ok=FAILED
    remote=$(grep -oE "compile [^ ]+\.c on 127\.0\.0\.1:[0-9]+/[0-9]+ completed ok" "$log" 2>/dev/null | sort -u | wc -l)
    bad=$(grep -cE 'running locally|retrying locally|retried locally|fallbacks are disabled|compile [^ ]+ on localhost|still in backoff|failed to connect|ERROR|Warning|Broken pipe|unexpected eof|[Tt]imed out|IO timeout' "$log" 2>/dev/null)
    [ "${bad:-1}" -eq 0 ] || ok="$ok,LOCAL"
    local maxes=() jobs=()
    for i in 0 1 2; do
        tail -n +"$((marks[i] + 1))" "$bt/distccd$i.err" >"$bt/seg$i"
        maxes+=("$(max_jobs "$bt/seg$i")")
        n=$(grep -c '(dcc_job_summary) .* COMPILE_OK ' "$bt/seg$i")
        jobs+=("$n")
        grep -qE 'COMPILE_ERROR|CLIENT_DISCONNECTED|IO_ERROR|TIMEOUT|Broken pipe|unexpected eof' "$bt/seg$i" &&
            ok="$ok,LOCAL"
    done
    [ $((jobs[0] + jobs[1] + jobs[2])) -eq "$nsrc" ] || ok="$ok,LOCAL"
    local out
    out=$("$src/prog" 2>&1 | tr ' ' _)
    echo "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }') $ok $remote ${maxes[*]} ${jobs[*]} ${out:-none}" \
        >>"$bt/$mode.runs"
}

# build_table: a row per mode, from its runs.
build_table() {
    local mode ref="" judge
    printf '%-28s %4s  %-22s %-9s %-13s %-14s %s\n' mode runs "wall min/median/max" remote "max at once" "jobs per host" verdict
    for mode in $BUILD_MODES; do
        if [ "${build_ok[$mode]}" != yes ]; then
            printf '%-28s       not supported by this balance (%s)\n' "${build_label[$mode]}" "${build_ok[$mode]}"
            continue
        fi
        [ -n "$ref" ] || ref=$(awk '{ print $10 }' "$bt/$mode.runs" | head -1)
        judge=1
        [ "$mode" = direct ] && judge=0
        awk -v label="${build_label[$mode]}" -v nsrc="$nsrc" -v ref="$ref" -v judge="$judge" \
            -v s0="${BUILD_SLOTS[0]}" -v s1="${BUILD_SLOTS[1]}" -v s2="${BUILD_SLOTS[2]}" '
        function median(a, n,   i, j, t) {
            for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j - 1] > a[j]; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
            return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
        }
        {
            n++; w[n] = $1; times = times " " $1
            if ($2 != "ok") { split($2, v, ","); for (i in v) if (v[i] != "ok") bad[v[i]] = 1 }
            if ($3 != nsrc) allremote = 0
            remote += $3
            for (i = 0; i < 3; i++) { if ($(4 + i) > mx[i]) mx[i] = $(4 + i); jobs[i, n] = $(7 + i) }
            if ($10 != ref) bad["WRONG"] = 1
        }
        BEGIN { allremote = 1 }
        END {
            slots[0] = s0; slots[1] = s1; slots[2] = s2
            for (i = 0; i < 3; i++) if (judge && mx[i] > slots[i]) bad["OVER-MAXC"] = 1
            per = ""
            for (i = 0; i < 3; i++) { for (r = 1; r <= n; r++) col[r] = jobs[i, r]; per = per (i ? " " : "") median(col, n) }
            conc = mx[0] "/" s0 " " mx[1] "/" s1 " " mx[2] "/" s2
            if (!allremote) bad["LOCAL"] = 1
            verdict = ""
            for (b in bad) verdict = verdict (verdict == "" ? "" : " ") b
            if (verdict == "") verdict = "ok"
            for (i = 1; i <= n; i++) s[i] = w[i]
            med = median(s, n)
            mn = w[1]; mxw = w[1]
            for (i = 1; i <= n; i++) { if (w[i] < mn) mn = w[i]; if (w[i] > mxw) mxw = w[i] }
            printf "%-28s %4d  %6.2f %6.2f %6.2f s  %4d/%-4d %-13s %-14s %s\n", label, n, mn, med, mxw, remote, n * nsrc, conc, per, verdict
            printf "  runs in order:%s s\n", times
        }' "$bt/$mode.runs"
    done
}

# The distcc build: hosts, project, a balance per mode, the builds
# interleaved, the table.
distcc_bench() {
    local tool run mode
    for tool in distcc distccd gcc make; do
        if ! command -v "$tool" >/dev/null 2>&1; then
            echo "distcc build: skipped ($tool is not installed)"
            return
        fi
    done
    # distccd drops root for its own user, which must reach the wrappers.
    bt=$tmp/build
    mkdir -p "$bt"
    chmod 711 "$tmp"
    chmod 755 "$bt"
    start_distccds || return
    src=$bt/src
    gen_project "$src"
    nsrc=$((BUILD_FILES + 1))
    start_modes
    echo "distcc build: $BUILD_FILES units + main.c, make -j$BUILD_J, $BUILD_RUNS runs each way, interleaved;" \
        "hosts distccd0 ${BUILD_SLOTS[0]} slots x1, distccd1 ${BUILD_SLOTS[1]} slots ${BUILD_FACTOR[1]}x slower," \
        "distccd2 ${BUILD_SLOTS[2]} slots ${BUILD_FACTOR[2]}x slower (a compile takes $BUILD_SCALE x that x its CPU time)"
    for run in $(seq 1 "$BUILD_RUNS"); do
        for mode in $BUILD_MODES; do
            [ "${build_ok[$mode]}" = yes ] && build "$mode" "$run"
        done
    done
    build_table
}

case $DISTCC in
    "") farm_bench ;;
    only) distcc_bench ;;
    *) farm_bench; echo; distcc_bench ;;
esac
