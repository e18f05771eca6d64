#!/bin/sh
# Benchmark balance against no proxy, HAProxy (mode tcp, nbthread 1) and pen
# on loopback. Called as `sh bench/run.sh` from the repository root (make bench).
#
# usage: sh bench/run.sh [--quick] [--reps N] [--secs S] [--targets "none balance ..."]
#                        [--scenarios "short pp1 ..."] [--syscalls] [--keep]
#   --quick     small sizes, 1 repetition (smoke test, ~1 min)
#   --reps N    repetitions (default 5; medians are reported)
#   --secs S    duration of each ping-pong measurement (default 2)
#   --targets   subset of: none balance balance-poll haproxy pen
#               (balance-poll is the fully portable build: POLLER=poll
#               PORTABLE=1, i.e. poll() and the copying relay)
#   --scenarios subset of: short pp1 pp32 idle up down (default all); with
#               many --reps this settles one close row, e.g.
#               --reps 40 --secs 1 --scenarios pp1 --targets "balance haproxy pen"
#   --syscalls  also count proxy syscalls per 64 B round trip with strace -c
#   --keep      keep the work directory (logs, configs) and print its path
#
# Every process this script starts is killed by PID on exit.

set -u

BENCH=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$BENCH")
QUICK=0
REPS=5
SECS=2
SYSCALLS=0
KEEP=0
TARGETS="none balance balance-poll haproxy pen"
ALL_SCENARIOS="short pp1 pp32 idle up down"
SCENARIOS=$ALL_SCENARIOS
while [ $# -gt 0 ]; do
    case $1 in
    --quick) QUICK=1 ;;
    --reps) REPS=$2; shift ;;
    --secs) SECS=$2; shift ;;
    --targets) TARGETS=$2; shift ;;
    --scenarios) SCENARIOS=$2; shift ;;
    --syscalls) SYSCALLS=1 ;;
    --keep) KEEP=1 ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done

for sc in $SCENARIOS; do
    case " $ALL_SCENARIOS " in *" $sc "*) ;; *) echo "run.sh: unknown scenario $sc" >&2; exit 2 ;; esac
done

if [ $QUICK = 1 ]; then
    REPS=1
    SHORT_CONNS=2000
    SECS=0.5
    BULK_BYTES=32M
    BULK_LABEL=32MiB
else
    SHORT_CONNS=20000
    BULK_BYTES=512M
    BULK_LABEL=512MiB
fi
IDLE=5000

WORK=$(mktemp -d /tmp/balance-bench.XXXXXX)
PIDS=""
cleanup() {
    trap - EXIT INT TERM
    for p in $PIDS; do kill "$p" 2>/dev/null; done
    for p in $PIDS; do wait "$p" 2>/dev/null; done
    if [ $KEEP = 1 ]; then echo "work directory kept: $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

track() { PIDS="$PIDS $1"; }
untrack() {
    n=""
    for p in $PIDS; do [ "$p" = "$1" ] || n="$n $p"; done
    PIDS=$n
}
stop() {  # stop a process we started, by PID
    kill "$1" 2>/dev/null
    wait "$1" 2>/dev/null
    untrack "$1"
}
log() { echo "$*" >&2; }

ulimit -n "$(ulimit -Hn)" 2>/dev/null
NOFILE=$(ulimit -n)
case $NOFILE in ''|*[!0-9]*) NOFILE=40000 ;; esac

# ---------------------------------------------------------------- build

LG=$BENCH/loadgen
if [ ! -x "$LG" ] || [ "$BENCH/loadgen.cpp" -nt "$LG" ] || [ "$ROOT/tests/testnet.hpp" -nt "$LG" ]; then
    log "building loadgen"
    c++ -O2 -std=c++17 -Wall -Wextra -o "$LG" "$BENCH/loadgen.cpp" || { log "loadgen build failed"; exit 1; }
fi

have() { command -v "$1" >/dev/null 2>&1; }

BAL=""
BALPOLL=""
case " $TARGETS " in *" balance "*|*" balance-poll "*)
    log "building balance (make -C $ROOT balance)"
    if make -C "$ROOT" balance >"$WORK/build.log" 2>&1 && [ -x "$ROOT/balance" ]; then
        BAL=$WORK/balance
        cp "$ROOT/balance" "$BAL"  # private copy: a rebuild during the run changes nothing
    else
        log "balance build failed (see below); balance columns skipped"
        tail -n 15 "$WORK/build.log" >&2
    fi
esac
case " $TARGETS " in *" balance-poll "*)
    if [ -n "$BAL" ]; then
        # Build the poll() back-end in a private copy of the tree so that the
        # working tree's objects and ./balance are left alone.
        log "building balance with POLLER=poll PORTABLE=1 -> bench/balance-poll"
        mkdir -p "$WORK/pollsrc"
        (cd "$ROOT" && tar -cf - --exclude=./.git --exclude=./bench --exclude=./tests .) |
            (cd "$WORK/pollsrc" && tar -xf -)
        if make -C "$WORK/pollsrc" clean >"$WORK/build-poll.log" 2>&1 &&
            make -C "$WORK/pollsrc" POLLER=poll PORTABLE=1 balance >>"$WORK/build-poll.log" 2>&1; then
            cp "$WORK/pollsrc/balance" "$BENCH/balance-poll"
            BALPOLL=$BENCH/balance-poll
            if nm -D "$BALPOLL" 2>/dev/null | grep -q epoll_wait; then
                log "warning: balance-poll still links epoll_wait: POLLER=poll may be ignored"
            fi
            if nm -D "$BALPOLL" 2>/dev/null | grep -q splice; then
                log "warning: balance-poll still links splice: PORTABLE=1 may be ignored"
            fi
        else
            log "POLLER=poll PORTABLE=1 build failed; balance-poll column skipped"
            tail -n 15 "$WORK/build-poll.log" >&2
        fi
    fi
esac

T=""
for t in $TARGETS; do
    case $t in
    none) T="$T none" ;;
    balance) [ -n "$BAL" ] && T="$T balance" ;;
    balance-poll) [ -n "$BALPOLL" ] && T="$T balance-poll" ;;
    haproxy) if have haproxy; then T="$T haproxy"; else log "haproxy not installed: skipped"; fi ;;
    pen) if have pen; then T="$T pen"; else log "pen not installed: skipped"; fi ;;
    *) log "unknown target $t"; exit 2 ;;
    esac
done
TARGETS=$T
NT=$(echo $TARGETS | wc -w)

# ---------------------------------------------------------------- back-end

BPORT=$("$LG" freeport)
"$LG" server "$BPORT" 2>"$WORK/backend.log" &
BPID=$!
track $BPID
"$LG" wait "$BPORT" 5 || { log "back-end did not start"; cat "$WORK/backend.log" >&2; exit 1; }

# ---------------------------------------------------------------- proxies

PPID_=""   # PID of the running proxy ("" for none)
PPORT=""   # port the load generator connects to
PLOG=""
start_proxy() {  # $1 = target; sets PPID_, PPORT, PLOG
    PPID_=""
    PLOG=$WORK/$1.log
    : >"$PLOG"
    PCMD="(no proxy)"
    if [ "$1" = none ]; then PPORT=$BPORT; return 0; fi
    PPORT=$("$LG" freeport)
    case $1 in
    balance)
        PCMD="$ROOT/balance -f -b 127.0.0.1 -S /tmp/ctl.sock $PPORT 127.0.0.1:$BPORT"
        "$BAL" -f -b 127.0.0.1 -S "$WORK/ctl.$PPORT.sock" "$PPORT" "127.0.0.1:$BPORT" 2>>"$PLOG" &
        ;;
    balance-poll)
        PCMD="$BALPOLL -f -b 127.0.0.1 -S /tmp/ctl.sock $PPORT 127.0.0.1:$BPORT"
        "$BALPOLL" -f -b 127.0.0.1 -S "$WORK/ctl.$PPORT.sock" "$PPORT" "127.0.0.1:$BPORT" 2>>"$PLOG" &
        ;;
    haproxy)
        # HAProxy refuses to start when 2*maxconn does not fit the fd limit
        # (20000 here), so maxconn is the largest that fits (> 2 * 5000 idle).
        mc=$(( (NOFILE - 200) / 2 )); [ $mc -gt 20000 ] && mc=20000
        cat >"$WORK/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn $mc
defaults
    mode tcp
    maxconn $mc
    timeout connect 5s
    timeout client 1h
    timeout server 1h
listen bench
    bind 127.0.0.1:$PPORT
    server s1 127.0.0.1:$BPORT
EOF
        PCMD="haproxy -db -f haproxy.cfg (mode tcp, nbthread 1, maxconn $mc, bind $PPORT, server 127.0.0.1:$BPORT)"
        haproxy -db -f "$WORK/haproxy.cfg" >>"$PLOG" 2>&1 &
        ;;
    pen)
        # -r: plain round robin (no client tracking), -x/-c: room for 20000 connections
        PCMD="pen -f -r -x 20000 -c 20000 127.0.0.1:$PPORT 127.0.0.1:$BPORT"
        pen -f -r -x 20000 -c 20000 "127.0.0.1:$PPORT" "127.0.0.1:$BPORT" >>"$PLOG" 2>&1 &
        ;;
    esac
    PPID_=$!
    track $PPID_
    if ! "$LG" wait "$PPORT" 5 2>>"$PLOG"; then
        log "$1 did not start listening on $PPORT"
        tail -n 5 "$PLOG" >&2
        stop $PPID_
        PPID_=""
        return 1
    fi
    return 0
}

# ---------------------------------------------------------------- scenarios

scenario_args() {
    case $1 in
    short) echo "short --conns $SHORT_CONNS --conc 32 --size 64" ;;
    pp1) echo "pingpong --conns 1 --size 64 --secs $SECS" ;;
    pp32) echo "pingpong --conns 32 --size 1024 --secs $SECS" ;;
    idle) echo "pingpong --conns 1 --size 64 --secs $SECS --idle $IDLE" ;;
    up) echo "bulk --dir up --conns 4 --bytes $BULK_BYTES" ;;
    down) echo "bulk --dir down --conns 4 --bytes $BULK_BYTES" ;;
    esac
}

RES=$WORK/results
: >"$RES"
FAILS=$WORK/failures
: >"$FAILS"

rotate() {  # print targets rotated by $1
    set -- $1 $TARGETS
    k=$(( $1 % NT )); shift
    i=0; a=""; b=""
    for t in "$@"; do
        if [ $i -lt $k ]; then b="$b $t"; else a="$a $t"; fi
        i=$((i + 1))
    done
    echo $a $b
}

log "targets:$TARGETS; $REPS repetition(s); back-end port $BPORT; fd limit $NOFILE"
START=$(date +%s)
rep=1
while [ $rep -le "$REPS" ]; do
    for sc in $SCENARIOS; do
        for t in $(rotate $((rep - 1))); do
            if ! start_proxy "$t"; then
                echo "$sc $t $rep FAIL error=proxy_did_not_start" >>"$RES"
                echo "$t $sc rep $rep: proxy did not start" >>"$FAILS"
                continue
            fi
            args=$(scenario_args $sc)
            pidarg=""
            [ -n "$PPID_" ] && pidarg="--pid $PPID_"
            out=$(timeout 180 "$LG" $args --port "$PPORT" $pidarg 2>>"$WORK/loadgen.err")
            rc=$?
            if [ -n "$PPID_" ] && ! kill -0 "$PPID_" 2>/dev/null; then
                rc=99
                out="$out error=proxy_exited"
            fi
            if [ $rc -eq 0 ]; then st=OK; else st=FAIL; fi
            echo "$sc $t $rep $st $(echo $out)" >>"$RES"
            log "rep $rep $sc $t: $st $(echo $out | cut -c1-150)"
            if [ $st = FAIL ]; then
                {
                    echo "$t $sc rep $rep (exit $rc): $(echo $out)"
                    echo "   reproduce: $LG server $BPORT &"
                    echo "              $PCMD &"
                    echo "              $LG $args --port $PPORT"
                    [ -s "$PLOG" ] && tail -n 5 "$PLOG" | sed 's/^/   proxy: /'
                } >>"$FAILS"
            fi
            [ -n "$PPID_" ] && stop $PPID_
            if ! kill -0 $BPID 2>/dev/null; then log "back-end died"; cat "$WORK/backend.log" >&2; exit 1; fi
        done
    done
    rep=$((rep + 1))
done

# ---------------------------------------------------------------- syscalls per round trip

SYS=$WORK/syscalls
: >"$SYS"
if [ $SYSCALLS = 1 ]; then
    if ! have strace; then
        log "strace not installed: --syscalls skipped"
    else
        for t in $TARGETS; do
            [ $t = none ] && continue
            start_proxy $t || continue
            strace -c -f -p $PPID_ -o "$WORK/strace.$t" 2>/dev/null &
            SPID=$!
            track $SPID
            sleep 1
            out=$("$LG" pingpong --conns 1 --size 64 --secs 2 --port "$PPORT" 2>/dev/null)
            kill -INT $SPID 2>/dev/null
            wait $SPID 2>/dev/null
            untrack $SPID
            stop $PPID_
            n=$(echo "$out" | sed -n 's/.*rts_total=\([0-9]*\).*/\1/p')
            [ -n "$n" ] && [ -s "$WORK/strace.$t" ] || continue
            awk -v t=$t -v n=$n '
                $NF == "total" { tot = $4; next }
                $1 ~ /^[0-9.]+$/ && NF >= 5 {
                    c = $4; name = $NF
                    if (n > 0 && c / n >= 0.05) s = s sprintf(" %s %.2f", name, c / n)
                }
                END { if (n > 0) printf "%-13s %5.2f syscalls/rt:%s\n", t, tot / n, s }
            ' "$WORK/strace.$t" >>"$SYS"
        done
    fi
fi

# ---------------------------------------------------------------- table

ELAPSED=$(( $(date +%s) - START ))
echo
echo "balance benchmark: loopback, $(nproc) CPUs, $REPS repetition(s), medians; ping-pong ${SECS}s each$( [ $QUICK = 1 ] && echo ', QUICK sizes')"
v=""
have haproxy && v="$v haproxy $(haproxy -v | head -n 1 | awk '{print $3}')"
have pen && v="$v pen $(dpkg-query -W -f '${Version}' pen 2>/dev/null)"
echo "kernel $(uname -r);$v; fd limit $NOFILE"
echo "cell = value (ratio to none) [proxy CPU time per unit of work]; run took ${ELAPSED}s"
awk -v targets="$TARGETS" -v nconns="$SHORT_CONNS" -v bulk="$BULK_LABEL" -v idle="$IDLE" '
function sorted(list, a,   n, i, j, x) {  # fills a[1..n] in order, returns n
    n = split(list, a, " ")
    for (i = 2; i <= n; i++) { x = a[i] + 0; for (j = i - 1; j >= 1 && a[j] + 0 > x; j--) a[j + 1] = a[j]; a[j + 1] = x }
    return n
}
function middle(a, n) {  # the median of a[1..n], already in order
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
function median(list,   a, n) {
    n = sorted(list, a)
    return n ? middle(a, n) : ""
}
# A confidence interval for the median that assumes nothing about the
# noise: the k-th smallest to the k-th largest of n values, with the largest
# k for which the median falls outside with at most 5 % chance
# (P(Binomial(n, 1/2) < k) <= 2.5 %). n = 5 gives k = 1, min-max (94 %).
function ci_rank(n,   k, below, p, i) {
    p = 0.5 ^ n; below = p; k = 1
    for (i = 1; i < n; i++) {
        p = p * (n - i + 1) / i
        if (below + p > 0.025) break
        below += p; k = i + 1
    }
    return k
}
function fmt(v) {
    if (v == "") return "-"
    v += 0
    if (v >= 100000) return sprintf("%.0fk", v / 1000)
    if (v >= 100) return sprintf("%.0f", v)
    if (v >= 10) return sprintf("%.1f", v)
    return sprintf("%.2f", v)
}
{
    sc = $1; t = $2; r = $3
    ran[sc] = 1
    if ($4 != "OK") { fail[sc, t]++; next }
    for (i = 5; i <= NF; i++) {
        k = substr($i, 1, index($i, "=") - 1); v = substr($i, index($i, "=") + 1)
        vals[sc, t, k] = vals[sc, t, k] " " v
        per[sc, t, r, k] = v
    }
    if (r > nreps) nreps = r
}
# balance against the better peer (haproxy, pen) of the same repetition,
# so that slow and fast moments of the machine cancel: "median (95 % CI)",
# above 1 when balance is better. `high` says whether more is better.
function versus(sc, key, high,   r, b, best, p, v, list, n, lo, hi, x, a, k) {
    list = ""; n = 0
    for (r = 1; r <= nreps; r++) {
        b = per[sc, "balance", r, key]
        if (b == "" || b + 0 <= 0) continue
        best = ""
        for (p = 1; p <= 2; p++) {
            v = per[sc, peer[p], r, key]
            if (v == "" || v + 0 <= 0) continue
            if (best == "" || (high ? v + 0 > best + 0 : v + 0 < best + 0)) best = v
        }
        if (best == "") continue
        x = high ? b / best : best / b
        list = list " " x; n++
    }
    if (n == 0) return "-"
    n = sorted(list, a)
    k = ci_rank(n); lo = a[k]; hi = a[n + 1 - k]
    x = middle(a, n)
    if (n < 5) return sprintf("%.2f (%.2f-%.2f)", x, lo, hi)  # too few for a verdict
    return sprintf("%.2f (%.2f-%.2f) %s", x, lo, hi, lo > 1 ? "ahead" : hi < 1 ? "BEHIND" : "within noise")
}
function vrow(label, sc, key, high, cpukey) {
    if (!ran[sc]) return
    printf "%-38s | %-32s | %s\n", label, versus(sc, key, high), cpukey == "" ? "" : versus(sc, cpukey, 0)
}
function cell(sc, t, key, cpukey, cpuunit, ratio,   v, n, c, s) {
    v = median(vals[sc, t, key])
    if (v == "") return (fail[sc, t] ? "FAIL" : "-")
    s = fmt(v)
    n = median(vals[sc, "none", key])
    if (ratio && t != "none" && n != "" && n + 0 > 0) s = s sprintf(" (%.2fx)", v / n)
    if (cpukey != "") { c = median(vals[sc, t, cpukey]); if (c != "") s = s " [" fmt(c) cpuunit "]" }
    if (fail[sc, t]) s = s " !" fail[sc, t] "fail"
    return s
}
function row(label, sc, key, cpukey, cpuunit, ratio,   i, line) {
    if (!ran[sc]) return
    line = sprintf("%-38s", label)
    for (i = 1; i <= nt; i++) line = line sprintf(" | %-27s", cell(sc, tl[i], key, cpukey, cpuunit, ratio))
    print line
}
END {
    nt = split(targets, tl, " ")
    line = sprintf("%-38s", "scenario")
    for (i = 1; i <= nt; i++) line = line sprintf(" | %-27s", tl[i])
    print line
    gsub(/./, "-", line); print line
    row(sprintf("short conns/s (%d, 32 conc) [us/c]", nconns), "short", "rate", "cpu_per_unit", "us", 1)
    row("  short conn latency p50 (us)", "short", "p50_us", "", "", 1)
    row("  short conn latency p99 (us)", "short", "p99_us", "", "", 1)
    row("ping-pong 64B x1 rt/s [us/rt]", "pp1", "rate", "cpu_per_unit", "us", 1)
    row("  64B x1 round-trip time (us)", "pp1", "rt_us", "", "", 1)
    row("ping-pong 1KiB x32 rt/s [us/rt]", "pp32", "rate", "cpu_per_unit", "us", 1)
    row(sprintf("ping-pong 64B x1 +%d idle [us/rt]", idle), "idle", "rate", "cpu_per_unit", "us", 1)
    row(sprintf("bulk up 4x%s MB/s [ms/GB]", bulk), "up", "rate", "cpu_per_unit", "ms", 1)
    row(sprintf("bulk down 4x%s MB/s [ms/GB]", bulk), "down", "rate", "cpu_per_unit", "ms", 1)
    row(sprintf("memory per idle relayed conn (B)"), "idle", "idle_bytes_per_conn", "", "", 0)
    row(sprintf("proxy RSS with %d idle (KiB)", idle), "idle", "rss1_kb", "", "", 0)
    peer[1] = "haproxy"; peer[2] = "pen"
    if (index(" " targets " ", " balance ") && (index(" " targets " ", " haproxy ") || index(" " targets " ", " pen "))) {
        print ""
        print "balance / the better of haproxy and pen, paired per repetition: median (95 % confidence interval), > 1 = balance better"
        printf "%-38s | %-32s | %s\n", "scenario", "figure", "proxy CPU per unit"
        vrow("short conns/s", "short", "rate", 1, "cpu_per_unit")
        vrow("  short conn latency p50", "short", "p50_us", 0, "")
        vrow("  short conn latency p99", "short", "p99_us", 0, "")
        vrow("ping-pong 64B x1 rt/s", "pp1", "rate", 1, "cpu_per_unit")
        vrow("ping-pong 1KiB x32 rt/s", "pp32", "rate", 1, "cpu_per_unit")
        vrow(sprintf("ping-pong 64B x1 +%d idle", idle), "idle", "rate", 1, "cpu_per_unit")
        vrow("bulk up MB/s", "up", "rate", 1, "cpu_per_unit")
        vrow("bulk down MB/s", "down", "rate", 1, "cpu_per_unit")
        vrow(sprintf("proxy RSS with %d idle", idle), "idle", "rss1_kb", 0, "")
    }
}' "$RES"
if [ -s "$SYS" ]; then
    echo
    echo "proxy syscalls per 64 B round trip (strace -c -f, 1 connection; top calls >= 0.05/rt):"
    cat "$SYS"
fi
if [ -s "$FAILS" ]; then
    echo
    echo "FAILURES (data loss, hang, crash or refused connections):"
    cat "$FAILS"
    exit 1
fi
exit 0
