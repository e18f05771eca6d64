#!/usr/bin/env bash
# Costs that do not grow with the farm (SPEC §7): balance's short-connection
# rate and CPU per connection at 10 to 100,000 channels, all available and
# then with 90 % of them disabled; its CPU per served waiter with 100 to
# 10,000 clients waiting; and the 64 B ping-pong rate beside thousands of
# idle relayed connections; with memory per channel, per waiting client and
# per idle connection. Medians of REPS repetitions, each taking the sizes
# in a rotated order, and ratios to the smallest size (paired: the median
# of the per-repetition ratios, so that the machine's slow moments cancel).
# Run as `bash bench/growth.sh` from the repository root (make bench runs
# it after run.sh); a few minutes with the defaults.
#
# Environment (defaults):
#   SIZES    channel counts (10 1000 10000 100000)
#   WAITERS  clients waiting at once (100 1000 10000)
#   IDLE     idle relayed connections (2500 5000 10000 20000); a size the fd
#            hard limit cannot hold (balance needs 2 descriptors for each)
#            becomes the largest that fits
#   REPS     repetitions, medians reported (3)
#   CONNS    short connections per measurement, 32 at once, 64 B echo (20000)
#   SECS     seconds of each ping-pong measurement (2)
#   SLOTS    slots (maxc) of the queue row's one channel (1)
#   SERVED   waiters served per queue measurement at least: a smaller queue
#            is filled and served again, in rounds (2000)
#   ROWS     subset of: channels queue idle (all three)
#   QPIN     CPU placement in the queue row: split (balance on CPU 0, the
#            clients and their back-end on CPU 1; the default with 2 CPUs
#            and taskset), same (all on CPU 0) or none (the scheduler's)
#   KEEP=1   keep the work directory (logs, raw results) and print its path
#
# Every process this script starts is killed by PID on exit.

set -u

BENCH=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$BENCH")
SIZES=${SIZES:-10 1000 10000 100000}
WAITERS=${WAITERS:-100 1000 10000}
IDLE=${IDLE:-2500 5000 10000 20000}
REPS=${REPS:-3}
CONNS=${CONNS:-20000}
SECS=${SECS:-2}
SLOTS=${SLOTS:-1}
SERVED=${SERVED:-2000}
ROWS=${ROWS:-channels queue idle}
QPIN=${QPIN:-split}
KEEP=${KEEP:-0}
if [ $# -gt 0 ]; then
    case $1 in -h|--help) sed -n '2,31p' "$0"; exit 0 ;; esac
    echo "growth.sh: no arguments, only environment variables (see -h)" >&2
    exit 2
fi

log() { echo "$*" >&2; }
whole() {  # $1 = name, then values: whole numbers above 0 only
    local name=$1 v
    shift
    [ $# -gt 0 ] || { log "growth.sh: $name is empty"; exit 2; }
    for v in "$@"; do
        case $v in ''|*[!0-9]*|0) log "growth.sh: $name: $v is not a whole number above 0"; exit 2 ;; esac
    done
}
read -ra sizes <<<"$SIZES"
read -ra waiters <<<"$WAITERS"
read -ra idles <<<"$IDLE"
read -ra rows <<<"$ROWS"
whole SIZES "${sizes[@]}"
whole WAITERS "${waiters[@]}"
whole IDLE "${idles[@]}"
whole REPS "$REPS"
whole CONNS "$CONNS"
whole SLOTS "$SLOTS"
whole SERVED "$SERVED"
for r in "${rows[@]}"; do
    case $r in channels|queue|idle) ;; *) log "growth.sh: unknown row $r"; exit 2 ;; esac
done
has_row() { [[ " ${rows[*]} " == *" $1 "* ]]; }
case $QPIN in split|same|none) ;; *) log "growth.sh: QPIN must be split, same or none"; exit 2 ;; esac
if [ "$QPIN" != none ] && { [ "$(nproc)" -lt 2 ] || ! taskset -c 0,1 true 2>/dev/null; }; then
    log "growth.sh: no CPUs 0 and 1 to pin to (taskset): the queue row runs unpinned"
    QPIN=none
fi

WORK=$(mktemp -d /tmp/balance-growth.XXXXXX) || exit 1
pids=()
cleanup() {
    local p
    trap - EXIT INT TERM
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
    if [ "$KEEP" = 1 ]; then log "work directory kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

track() { pids+=("$1"); }
stop() {  # stops a process this script started, by PID
    local p kept=()
    kill "$1" 2>/dev/null
    wait "$1" 2>/dev/null
    for p in "${pids[@]}"; do [ "$p" = "$1" ] || kept+=("$p"); done
    pids=("${kept[@]}")
}

ulimit -n "$(ulimit -Hn)" 2>/dev/null
NOFILE=$(ulimit -n)
case $NOFILE in ''|*[!0-9]*) NOFILE=20000 ;; esac

# A size needing more descriptors than the limit allows (balance holds $1
# per unit, plus a margin) becomes the largest that fits, in hundreds.
fit() {  # $1 = descriptors per unit, then sizes; prints the sizes kept
    local cap=$(( (NOFILE - 200) / $1 / 100 * 100 )) v out=()
    shift
    for v in "$@"; do
        [ "$v" -gt "$cap" ] && v=$cap
        [[ " ${out[*]} " == *" $v "* ]] || out+=("$v")
    done
    echo "${out[*]}"
}
read -ra idles <<<"$(fit 2 "${idles[@]}")"
read -ra waiters <<<"$(fit 1 "${waiters[@]}")"
[ "${idles[*]}" = "$IDLE" ] || log "fd hard limit $NOFILE: idle connections $IDLE -> ${idles[*]}"
[ "${waiters[*]}" = "$WAITERS" ] || log "fd hard limit $NOFILE: waiters $WAITERS -> ${waiters[*]}"

# 100,000 channels on the command line are about 2.4 MB of arguments and
# pointers, over ARG_MAX (a quarter of the stack limit: 2 MiB with the
# default 8 MiB). balance is started with a stack limit that fits the
# largest size's arguments, the same at every size.
maxsize=0
for n in "${sizes[@]}"; do [ "$n" -gt "$maxsize" ] && maxsize=$n; done
STACK_KB=$(ulimit -s)
if [ "$STACK_KB" != unlimited ]; then
    need=$(( maxsize * 24 * 4 / 1024 + 8192 ))
    [ "$need" -gt "$STACK_KB" ] && STACK_KB=$need
fi

# ---------------------------------------------------------------- build

LG=$BENCH/loadgen
if [ ! -x "$LG" ] || [ "$BENCH/loadgen.cpp" -nt "$LG" ] || [ "$ROOT/tests/testnet.hpp" -nt "$LG" ]; then
    log "building loadgen"
    c++ -O2 -std=c++17 -Wall -Wextra -o "$LG" "$BENCH/loadgen.cpp" || { log "loadgen build failed"; exit 1; }
fi
log "building balance (make -C $ROOT balance)"
if ! make -C "$ROOT" balance >"$WORK/build.log" 2>&1 || [ ! -x "$ROOT/balance" ]; then
    log "balance build failed:"
    tail -n 15 "$WORK/build.log" >&2
    exit 1
fi
BAL=$WORK/balance
cp "$ROOT/balance" "$BAL"  # private copy: a rebuild during the run changes nothing

# ---------------------------------------------------------------- back-end

BPORT=$("$LG" freeport)
"$LG" server "$BPORT" 2>"$WORK/backend.log" &
BPID=$!
track $BPID
"$LG" wait "$BPORT" 5 || { log "back-end did not start"; cat "$WORK/backend.log" >&2; exit 1; }

# ---------------------------------------------------------------- balance

SOCK=$WORK/ctl.sock
BALPID=""
PPORT=""
TARGET=$BPORT  # the back-end port the channels point at
PIN_BAL=()     # taskset prefixes for balance and for loadgen
PIN_LG=()
BLOG=$WORK/balance.log
start_balance() {  # $1 = number of channels, $2 = channel suffix (":maxc"), then options
    local n=$1 suffix=$2 ch
    shift 2
    PPORT=$("$LG" freeport)
    mapfile -t ch < <(awk -v n="$n" -v a="127.0.0.1:$TARGET$suffix" 'BEGIN { for (i = 0; i < n; i++) print a }')
    ( ulimit -s "$STACK_KB" && exec "${PIN_BAL[@]}" "$BAL" -f -b 127.0.0.1 -S "$SOCK" "$@" "$PPORT" "${ch[@]}" ) 2>>"$BLOG" &
    BALPID=$!
    track $BALPID
    if ! "$LG" wait "$PPORT" 30 2>>"$BLOG"; then
        log "balance with $n channels did not start listening on $PPORT"
        tail -n 5 "$BLOG" >&2
        stop $BALPID
        return 1
    fi
}

RES=$WORK/results
: >"$RES"
FAILS=$WORK/failures
: >"$FAILS"

# Runs loadgen against the running balance, bounded, and records one
# result line: ROW SIZE REP OK|FAIL key=value...
measure() {  # $1 = row, $2 = size, $3 = rep, then loadgen's arguments
    local row=$1 size=$2 rep=$3 out rc st
    shift 3
    out=$(timeout 300 "${PIN_LG[@]}" "$LG" "$@" --port "$PPORT" --pid "$BALPID" 2>>"$WORK/loadgen.err")
    rc=$?
    out=${out//$'\n'/ }
    if ! kill -0 "$BALPID" 2>/dev/null; then rc=99; out="$out error=balance_exited"; fi
    if [ $rc -eq 0 ]; then st=OK; else st=FAIL; fi
    echo "$row $size $rep $st $out" >>"$RES"
    log "rep $rep $row $size: $st ${out:0:140}"
    if [ $st = FAIL ]; then
        {
            echo "$row $size rep $rep (exit $rc): $out"
            echo "   loadgen $* --port $PPORT --pid $BALPID"
            tail -n 3 "$BLOG" | sed 's/^/   balance: /'
            tail -n 3 "$WORK/loadgen.err" | sed 's/^/   loadgen: /'
        } >>"$FAILS"
    fi
    [ $st = OK ]
}

warm() { timeout 60 "$LG" short --conns 1000 --conc 32 --size 64 --port "$PPORT" >/dev/null 2>>"$WORK/loadgen.err"; }

# Disables every channel but each tenth (0, 10, 20, ...) through the
# control socket: one balance -i session reading the commands from a pipe.
disable_90() {  # $1 = channels
    local want=$(( $1 - ($1 + 9) / 10 )) t0=$SECONDS got rc
    awk -v n="$1" 'BEGIN { for (i = 0; i < n; i++) if (i % 10) print "disable " i }' |
        timeout 300 "$BAL" -S "$SOCK" -i "$PPORT" >"$WORK/disable.out" 2>"$WORK/disable.err"
    rc=$?
    got=$(grep -c ' disabled$' "$WORK/disable.out")
    log "disabled $got of $1 channels over the control socket in about $((SECONDS - t0)) s"
    if [ $rc -ne 0 ] || [ "$got" -ne "$want" ] || [ -s "$WORK/disable.err" ]; then
        echo "disabling $want of $1 channels: $got replies, exit $rc; $(head -c 300 "$WORK/disable.err")" >>"$FAILS"
        return 1
    fi
}

rotated() {  # $1 = offset, then a list: prints it rotated left by offset
    local k=$1
    shift
    k=$(( k % $# ))
    set -- "${@:k+1}" "${@:1:k}"
    echo "$*"
}

# ---------------------------------------------------------------- rows

# Short connections at N channels, all pointing at the one back-end: first
# all available, then with 90 % disabled (none is down, so nothing fails
# over: this is the steady state). Each measurement follows a warm-up of
# 1,000 connections; balance's RSS is read after the first.
row_channels() {  # $1 = rep
    local n
    for n in $(rotated $(($1 - 1)) "${sizes[@]}"); do
        if ! start_balance "$n" ""; then
            echo "channels-all $n $1 FAIL error=no_start" >>"$RES"
            continue
        fi
        warm
        measure channels-all "$n" "$1" short --conns "$CONNS" --conc 32 --size 64 &&
            echo "channels-rss $n $1 OK rss_kb=$("$LG" rss "$BALPID")" >>"$RES"
        if disable_90 "$n"; then
            warm
            measure channels-dis "$n" "$1" short --conns "$CONNS" --conc 32 --size 64
        else
            echo "channels-dis $n $1 FAIL error=disable_failed" >>"$RES"
        fi
        stop $BALPID
    done
}

# W clients wait on one channel with SLOTS slots, all of them held; then
# the slots free one at a time (loadgen queue); again until SERVED have
# been served.
#
# Pinned (QPIN): serving a waiter is a chain of wake-ups between balance,
# the client and the back-end, and a wake-up across CPUs costs about 90 µs
# more per served waiter on a 2-CPU VM than one on the same CPU. Unpinned,
# the scheduler chooses by recent load, which the size of the queue
# changes (a long enqueue keeps balance on one CPU): the row then measured
# the placement, 1.4x from 100 to 1,000 waiters while balance made the
# same 21 system calls per waiter (accepted, queued and served), and flat
# at either placement pinned.
QBPID=""
QBPORT=""
row_queue() {  # $1 = rep
    local w
    case $QPIN in
        split) PIN_BAL=(taskset -c 0); PIN_LG=(taskset -c 1) ;;
        same) PIN_BAL=(taskset -c 0); PIN_LG=(taskset -c 0) ;;
    esac
    if [ -z "$QBPID" ]; then  # its own back-end, placed with the clients
        QBPORT=$("$LG" freeport)
        "${PIN_LG[@]}" "$LG" server "$QBPORT" 2>>"$WORK/backend.log" &
        QBPID=$!
        track $QBPID
        "$LG" wait "$QBPORT" 5 || { log "queue back-end did not start"; exit 1; }
    fi
    TARGET=$QBPORT
    for w in $(rotated $(($1 - 1)) "${waiters[@]}"); do
        if ! start_balance 1 ":$SLOTS" -q $((w + 64)) -w 0; then
            echo "queue $w $1 FAIL error=no_start" >>"$RES"
            continue
        fi
        measure queue "$w" "$1" queue --waiters "$w" --holders "$SLOTS" --size 64 \
            --rounds $(( (SERVED + w - 1) / w ))
        stop $BALPID
    done
    TARGET=$BPORT
    PIN_BAL=()
    PIN_LG=()
}

# N idle relayed connections (each has relayed one echo) beside one 64 B
# ping-pong connection (loadgen pingpong --idle).
row_idle() {  # $1 = rep
    local n
    for n in $(rotated $(($1 - 1)) "${idles[@]}"); do
        if ! start_balance 1 ""; then
            echo "idle $n $1 FAIL error=no_start" >>"$RES"
            continue
        fi
        measure idle "$n" "$1" pingpong --conns 1 --size 64 --secs "$SECS" --idle "$n"
        stop $BALPID
    done
}

log "growth: channels ${sizes[*]}; waiters ${waiters[*]}; idle ${idles[*]}; $REPS repetition(s); fd limit $NOFILE; stack $STACK_KB KiB"
START=$SECONDS
for ((rep = 1; rep <= REPS; rep++)); do
    has_row channels && row_channels $rep
    has_row queue && row_queue $rep
    has_row idle && row_idle $rep
    if ! kill -0 $BPID 2>/dev/null || { [ -n "$QBPID" ] && ! kill -0 "$QBPID" 2>/dev/null; }; then log "back-end died"; cat "$WORK/backend.log" >&2; exit 1; fi
done
ELAPSED=$((SECONDS - START))

# ---------------------------------------------------------------- tables

echo
echo "command: SIZES=\"$SIZES\" WAITERS=\"$WAITERS\" IDLE=\"$IDLE\" REPS=$REPS CONNS=$CONNS SECS=$SECS SLOTS=$SLOTS SERVED=$SERVED ROWS=\"$ROWS\" QPIN=$QPIN bash bench/growth.sh"
echo "$(nproc) CPUs, kernel $(uname -r), fd limit $NOFILE; took ${ELAPSED}s. balance -f -b 127.0.0.1 -S SOCK PORT 127.0.0.1:BPORT ... (N channels);"
echo "90 % disabled: all but each tenth, 'disable C' lines piped into balance -S SOCK -i PORT; queue: balance -q W+64 -w 0 PORT 127.0.0.1:BPORT:$SLOTS, filled and served until $SERVED are served, CPUs $QPIN"
echo "cell = median of $REPS (median of the per-repetition ratios to the smallest size); CPU is balance's, from /proc schedstat"
awk -v sizes="${sizes[*]}" -v waiters="${waiters[*]}" -v idle="${idles[*]}" -v conns="$CONNS" -v slots="$SLOTS" '
function sorted(list, a,   n, i, j, x) {  # fills a[1..n] in order, returns n
    n = split(list, a, " ")
    for (i = 2; i <= n; i++) { x = a[i] + 0; for (j = i - 1; j >= 1 && a[j] + 0 > x; j--) a[j + 1] = a[j]; a[j + 1] = x }
    return n
}
function median(list,   a, n) {
    n = sorted(list, a)
    if (n == 0) return ""
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
function thousands(v,   s) {  # 100000 -> 100,000
    s = sprintf("%d", v)
    while (s ~ /[0-9][0-9][0-9][0-9]/) sub(/[0-9][0-9][0-9]($|,)/, ",&", s)
    return s
}
function fmt(v, unit) {
    if (v == "") return "-"
    v += 0
    if (unit == "kib") return v >= 10240 ? sprintf("%.1f MiB", v / 1024) : sprintf("%.0f KiB", v)
    if (unit == "us") return (v >= 100 ? sprintf("%.0f", v) : sprintf("%.1f", v)) " µs"
    if (unit == "B") return sprintf("%.0f B", v)
    return v >= 100 ? sprintf("%.0f", v) : sprintf("%.1f", v)
}
{
    if ($1 ~ /^channels/) sizes_ran = 1
    if ($1 == "queue") queue_ran = 1
    if ($1 == "idle") idle_ran = 1
    if ($4 != "OK") { fail[$1, $2]++; next }
    for (i = 5; i <= NF; i++) {
        k = substr($i, 1, index($i, "=") - 1); v = substr($i, index($i, "=") + 1)
        if (k == "" || k == "error") continue
        vals[$1, $2, k] = vals[$1, $2, k] " " v
        per[$1, $2, $3, k] = v
    }
    if ($3 > nreps) nreps = $3
}
# value(size) / value(smallest size) in each repetition, then their median.
function ratios(row, size, first, k,   r, a, b, list) {
    list = ""
    for (r = 1; r <= nreps; r++) {
        a = per[row, size, r, k]; b = per[row, first, r, k]
        if (a != "" && b != "" && b + 0 > 0) list = list " " a / b
    }
    return list
}
function ratio(row, size, first, k) { return median(ratios(row, size, first, k)) }
function row(label, rowname, k, unit, showratio, list,   n, s, i, line, v, c, q) {
    n = split(list, s, " ")
    line = "| " label
    for (i = 1; i <= n; i++) {
        v = median(vals[rowname, s[i], k])
        c = fmt(v, unit)
        if (v != "" && showratio && i > 1) { q = ratio(rowname, s[i], s[1], k); if (q != "") c = c sprintf(" (%.2f)", q) }
        if (fail[rowname, s[i]]) c = c " !" fail[rowname, s[i]] "fail"
        line = line " | " c
    }
    print line " |"
}
function header(label, list,   n, s, i, line, rule) {
    n = split(list, s, " ")
    line = "| " label; rule = "|---"
    for (i = 1; i <= n; i++) { line = line " | " thousands(s[i]); rule = rule "|---" }
    print ""
    print line " |"
    print rule "|"
}
# Memory per unit from medians of RSS: (RSS(N) - RSS(smallest)) / (N - smallest).
function perunit(label, rowname, k, list,   n, s, i, line, a, b) {
    n = split(list, s, " ")
    line = "| " label " | –"
    b = median(vals[rowname, s[1], k])
    for (i = 2; i <= n; i++) {
        a = median(vals[rowname, s[i], k])
        line = line " | " (a == "" || b == "" ? "-" : sprintf("%.0f B", (a - b) * 1024 / (s[i] - s[1])))
    }
    print line " |"
}
# Largest size against the smallest: "met" when the median ratio is at
# most 10 % worse; the range of the ratios in brackets; high < 0 reports
# the ratio without judging it.
function verdict(label, rowname, k, high, list,   n, s, q, a, m) {
    n = split(list, s, " ")
    if (n < 2) return ""
    m = sorted(ratios(rowname, s[n], s[1], k), a)
    if (m == 0) return label " -"
    q = median(ratios(rowname, s[n], s[1], k))
    if (high < 0) return sprintf("%s %.2f [%.2f-%.2f]", label, q, a[1], a[m])  # reported, not judged
    return sprintf("%s %.2f [%.2f-%.2f] %s", label, q, a[1], a[m], (high ? q >= 0.9 : q <= 1.1) ? "met" : "NOT MET")
}
END {
    if (sizes_ran) {
        header("channels", sizes)
        row(sprintf("short conns/s (%s, 32 at once), all available", thousands(conns)), "channels-all", "rate", "", 1, sizes)
        row("balance CPU per connection, all available", "channels-all", "cpu_per_unit", "us", 1, sizes)
        row("short conns/s, 90 % disabled", "channels-dis", "rate", "", 1, sizes)
        row("balance CPU per connection, 90 % disabled", "channels-dis", "cpu_per_unit", "us", 1, sizes)
        row("balance RSS after the all-available run", "channels-rss", "rss_kb", "kib", 0, sizes)
        perunit("memory per channel", "channels-rss", "rss_kb", sizes)
    }
    if (queue_ran) {
        header(sprintf("clients waiting (1 channel, maxc %d)", slots), waiters)
        row("waiters served/s, slots freed one at a time", "queue", "rate", "", 1, waiters)
        row("balance CPU per served waiter", "queue", "cpu_per_unit", "us", 1, waiters)
        row("balance CPU per queued client (accept, read 64 B)", "queue", "enqueue_cpu_per_unit", "us", 1, waiters)
        row("balance RSS with all waiting, requests read", "queue", "rss2_kb", "kib", 0, waiters)
        row("memory per waiting client", "queue", "wait_bytes_per_client", "B", 1, waiters)
        row("  + its 64 B request, held in its buffer", "queue", "request_bytes_per_client", "B", 1, waiters)
    }
    if (idle_ran) {
        header("idle relayed connections", idle)
        row("64 B ping-pong rt/s beside them", "idle", "rate", "", 1, idle)
        row("balance CPU per round trip", "idle", "cpu_per_unit", "us", 1, idle)
        row("balance RSS with them open", "idle", "rss1_kb", "kib", 0, idle)
        row("memory per idle relayed connection", "idle", "idle_bytes_per_conn", "B", 1, idle)
    }
    print ""
    print "targets: the largest size against the smallest, median ratio [range over the repetitions], met when at most 10 % worse:"
    if (sizes_ran) {
        print "  channels, all available:" verdict(" conns/s", "channels-all", "rate", 1, sizes) ";" \
            verdict(" CPU/conn", "channels-all", "cpu_per_unit", 0, sizes)
        print "  channels, 90 % disabled:" verdict(" conns/s", "channels-dis", "rate", 1, sizes) ";" \
            verdict(" CPU/conn", "channels-dis", "cpu_per_unit", 0, sizes)
    }
    if (queue_ran)
        print "  queue:" verdict(" CPU per served waiter", "queue", "cpu_per_unit", 0, waiters) ";" \
            verdict(" memory per waiting client", "queue", "wait_bytes_per_client", 0, waiters) \
            "; not a target:" verdict(" CPU per queued client", "queue", "enqueue_cpu_per_unit", -1, waiters) \
            " (a client queued in a round after the first reuses freed buffers; the largest queue, one round, touches fresh pages)"
    if (idle_ran)
        print "  idle:" verdict(" ping-pong rt/s", "idle", "rate", 1, idle) ";" \
            verdict(" CPU/rt", "idle", "cpu_per_unit", 0, idle) ";" \
            verdict(" memory per connection", "idle", "idle_bytes_per_conn", 0, idle)
}' "$RES"
if [ -s "$FAILS" ]; then
    echo
    echo "FAILURES:"
    cat "$FAILS"
    exit 1
fi
