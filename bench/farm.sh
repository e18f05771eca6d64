#!/usr/bin/env bash
# Scheduling benchmark (SPEC §7): a simulated farm of unequal build hosts
# (bench/farm.cpp), a seeded batch of jobs run through each proxy by K
# concurrent clients, makespan compared with a perfect scheduler's.
#
#   bench/farm.sh                    # balance, haproxy (2 configs), pen
#   BALANCE=/path/balance JOBS=200 KS="16 6" RUNS=1 UNIT_MS=30 ORDER=desc \
#     TARGETS="balance haproxy pen" bench/farm.sh
#
# Farm: host A 4 slots x speed 3, host B 2 x 2, host C 2 x 1 (HOSTS=4x3,2x2,2x1).
# A job of w work units takes w*UNIT_MS/speed ms on a slot; a host running
# more jobs than slots slows all of them down proportionally.  Each proxy is
# told the slots (maxc) and, where it can use it, the speed of every host.
# Targets: balance "fastest free slot"; haproxy 'balance leastconn' with
# maxconn = slots, weight = speed and a long queue; haproxy 'balance first'
# with the servers sorted by speed (equivalent to fastest free slot here);
# pen -r with soft = hard limit = slots (pen has no queue: it refuses excess
# clients, so it drops jobs whenever K > total slots).
# Verdict column: SLOW = makespan over 1.05 x ideal, OVER-MAXC = a host had
# more connections than slots, DROPPED = a job failed.
# Everything started here is killed by PID on exit.  Runs about a minute.
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
TARGETS=${TARGETS:-balance haproxy pen}   # desc: biggest jobs first (stable); random: see farm.cpp
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
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

FARM=${FARM:-}
if [ -z "$FARM" ]; then
    FARM=$tmp/farm
    $CXX -std=c++17 -O2 -Wall -Wextra -pthread -o "$FARM" "$here/farm.cpp" ||
        { echo "farm.sh: cannot build farm.cpp" >&2; exit 1; }
fi

# Hosts: one process, prints "CTL PA PB PC" once it listens.
"$FARM" hosts -H "$HOSTS" -u "$UNIT_MS" >"$tmp/hosts.out" 2>"$tmp/hosts.err" &
hosts_pid=$!
pids+=("$hosts_pid")
for _ in $(seq 1 50); do [ -s "$tmp/hosts.out" ] && break; sleep 0.1; done
read -r CTL HP <"$tmp/hosts.out" || { echo "farm.sh: hosts did not start: $(cat "$tmp/hosts.err")" >&2; exit 1; }
read -r -a HPORTS <<<"$HP"
IFS=, read -r -a SPECS <<<"$HOSTS"
nh=${#SPECS[@]}

proxy_pid=
start_proxy() { # name, command...: starts it, waits (5 s at most) until it listens on $LP
    local name=$1; shift
    "$@" >"$tmp/$name.out" 2>"$tmp/$name.err" &
    proxy_pid=$!
    pids+=("$proxy_pid")
    "$FARM" wait "$LP" 5 "$proxy_pid" 2>"$tmp/$name.wait" && return 0
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

run_batches() { # label
    local k
    for k in $KS; do
        for _ in $(seq 1 "$RUNS"); do
            timeout 300 "$FARM" run -c "$CTL" -p "$LP" -k "$k" -n "$JOBS" -s "$SEED" -o "$ORDER" -l "$1" -t 120 ||
                echo "$1: farm run failed (status $?)"
        done
    done
}

# Channel lists, in the farm's host order (sorted by speed by default).
balance_channels=()
haproxy_servers() { # leastconn|first
    local i s sl sp
    for i in $(seq 0 $((nh - 1))); do
        s=${SPECS[$i]}; sl=${s%x*}; sp=${s#*x}
        echo "    server h$i 127.0.0.1:${HPORTS[$i]} maxconn $sl weight $sp"
    done
}
pen_servers=()
for i in $(seq 0 $((nh - 1))); do
    s=${SPECS[$i]}; sl=${s%x*}; sp=${s#*x}
    balance_channels+=("127.0.0.1:${HPORTS[$i]}:$sl:$sp")
    pen_servers+=("127.0.0.1:${HPORTS[$i]}:$sl:$sl:$sp")
done

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
$(haproxy_servers)
EOF
}

echo "farm: hosts $HOSTS (slots x speed), $JOBS jobs (seed $SEED, order $ORDER), unit ${UNIT_MS} ms, K = $KS"
"$FARM" header

LP=$("$FARM" freeport)
want() { case " $TARGETS " in *" $1 "*) return 0;; esac; return 1; }

if ! want balance; then :
elif [ -x "$BALANCE" ]; then
    if start_proxy balance "$BALANCE" -f -b 127.0.0.1 -S "$tmp/ctl.sock" "$LP" "${balance_channels[@]}"; then
        sleep 0.2
        run_batches balance
    fi
    stop_proxy
else
    echo "balance            (not built: $BALANCE)"
fi

if ! want haproxy; then :
elif command -v haproxy >/dev/null 2>&1; then
    for algo in leastconn first; do
        LP=$("$FARM" freeport)
        haproxy_cfg "$algo" >"$tmp/haproxy-$algo.cfg"
        if start_proxy "haproxy-$algo" haproxy -db -f "$tmp/haproxy-$algo.cfg"; then
            sleep 0.2
            run_batches "haproxy $algo"
        fi
        stop_proxy
    done
else
    echo "haproxy            (not installed)"
fi

if ! want pen; then :
elif command -v pen >/dev/null 2>&1; then
    LP=$("$FARM" freeport)
    if start_proxy pen pen -f -r -x 1000 "127.0.0.1:$LP" "${pen_servers[@]}"; then
        sleep 0.2
        run_batches "pen -r"
    fi
    stop_proxy
else
    echo "pen                (not installed)"
fi
