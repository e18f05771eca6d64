#!/usr/bin/env bash
# Hand-over under load (balance.1, RESTARTING AND UPGRADING): ROUNDS
# hand-overs in a row of two balances under steady traffic, alternating
# balance -x and SIGUSR2, one balance in the foreground (-f) and one
# detached, then a failed hand-over of each kind. It checks, rather than
# times: no client refused or reset, every byte intact, the queue served
# in arrival order, no back-end ever over its maxc, every old process gone,
# and no descriptor or socket file left behind.
#
#   A  balance -f, one echo channel (maxc 24): 8 long checksummed streams
#      both ways (paced, they span every round) and short connections at
#      about 40 a second, each checked
#   B  balance detached, one hold channel (maxc 1): a client every 0.25 s
#      that holds the slot 0.25 s, so a few always wait in the queue
#
# Run as `bash bench/handover.sh` from the repository root after make and
# make check (it uses balance and tests/build/helper). Environment:
# ROUNDS (10), KEEP=1 (keep the work directory and print its path).
# Exit status 0 only if every check passed. Every process it starts is
# killed by PID on exit.

set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
ROUNDS=${ROUNDS:-10}
HELPER=${HELPER:-$ROOT/tests/build/helper}
[ -x "$ROOT/balance" ] || { echo "handover.sh: no $ROOT/balance (run make)" >&2; exit 2; }
[ -x "$HELPER" ] || { echo "handover.sh: no $HELPER (run make check)" >&2; exit 2; }

W=$(mktemp -d)
PIDS=()  # everything started here, killed on exit
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  sleep 0.3
  for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null; done
  if [ "${KEEP:-0}" = 1 ]; then echo "work directory: $W"; else rm -rf "$W"; fi
}
trap cleanup EXIT
trap 'exit 2' INT TERM

FAILED=0
check() {  # check WHAT COMMAND...: run COMMAND, report, remember a failure
  local what=$1
  shift
  if "$@"; then echo "  ok    $what"; else echo "  FAIL  $what"; FAILED=1; fi
}
wait_until() {  # wait_until SECONDS COMMAND...
  local i
  for ((i = 0; i < $1 * 20; i++)); do "${@:2}" && return 0; sleep 0.05; done
  return 1
}
gone() { ! kill -0 "$1" 2>/dev/null || [[ $(ps -o stat= -p "$1") == Z* ]]; }
pid_on() { "$BIN" -S "$W/$1.sock" -c version "$2" 2>/dev/null | sed -n 's/.*pid \([0-9]*\)).*/\1/p'; }
answers_other_than() { local p; p=$(pid_on "$1" "$2") && [ -n "$p" ] && [ "$p" != "$3" ]; }
fds_of() { find "/proc/$1/fd" -mindepth 1 2>/dev/null | wc -l; }

# The binary SIGUSR2 starts is the one on disk: a copy of our own.
mkdir "$W/bin"
cp "$ROOT/balance" "$W/bin/balance"
BIN=$W/bin/balance
PA=$("$HELPER" freeport 127.0.0.1)
PB=$("$HELPER" freeport 127.0.0.1)
[ "$PA" != "$PB" ] || PB=$("$HELPER" freeport 127.0.0.1)

"$HELPER" echo -N e -P "$W/e.port" -L 600 >"$W/e.out" 2>&1 &
PIDS+=($!)
"$HELPER" hold -N h -P "$W/h.port" -L 600 -m "$W/h.state" -o "$W/h.log" >"$W/h.out" 2>&1 &
PIDS+=($!)
wait_until 5 test -s "$W/e.port" && wait_until 5 test -s "$W/h.port" || { echo "servers did not start" >&2; exit 2; }
CHA="127.0.0.1:$(cat "$W/e.port"):24"
CHB="127.0.0.1:$(cat "$W/h.port"):1"

"$BIN" -f -S "$W/a.sock" -b 127.0.0.1 "$PA" "$CHA" 2>>"$W/a.err" &
PIDS+=($!)
"$BIN" -S "$W/b.sock" -b 127.0.0.1 "$PB" "$CHB" 2>>"$W/b.err" || { echo "balance B did not start" >&2; exit 2; }
wait_until 5 test -S "$W/a.sock" && wait_until 5 test -S "$W/b.sock" || { echo "no control sockets" >&2; exit 2; }
a_pid=$(pid_on a "$PA")
b_pid=$(pid_on b "$PB")
PIDS+=("$b_pid")
a_fds=$(fds_of "$a_pid")
b_fds=$(fds_of "$b_pid")
echo "A: pid $a_pid (foreground), port $PA, $a_fds descriptors idle; B: pid $b_pid (detached), port $PB, $b_fds"

# Load on A: 8 paced streams of STREAM bytes each way, and short connections.
STREAM=$((30000 * 80 * (ROUNDS + 2)))
"$HELPER" client -c 8 -t $((ROUNDS * 10 + 60)) -x -n "$STREAM" -k 30000 -I 0.025 127.0.0.1 "$PA" \
  >"$W/long.out" 2>"$W/long.err" &
long=$!
PIDS+=("$long")
(
  i=0
  while [ ! -e "$W/stop" ]; do
    i=$((i + 1))
    "$HELPER" client -t 10 -x -n 2000 -s "$i" 127.0.0.1 "$PA" 2>&1 || echo "short $i failed"
    echo "$i" >"$W/shorts"
    sleep 0.02
  done
) >"$W/short.out" 2>&1 &
short=$!
PIDS+=("$short")
# Load on B: a hold client every 0.25 s, numbered in arrival order.
(
  i=0
  while [ ! -e "$W/stop" ]; do
    i=$((i + 1))
    "$HELPER" client -m hold -H 0.25 -g -x -i "$i" -t 120 127.0.0.1 "$PB" >/dev/null 2>"$W/q.$i.err" &
    echo "$! $i" >>"$W/queued"
    sleep 0.25
  done
  while read -r pid n; do wait "$pid" || echo "queued client $n failed: $(cat "$W/q.$n.err")"; done <"$W/queued"
) >"$W/queue.out" 2>&1 &
queue=$!
PIDS+=("$queue")
sleep 1.5

waiting_max=0
old_a=()
old_b=()
worst_ms=0
for ((round = 1; round <= ROUNDS; round++)); do
  w=$("$BIN" -S "$W/b.sock" -c "show queue" "$PB" 2>/dev/null | sed -n '1s/^\([0-9]*\) waiting.*/\1/p')
  [ -n "$w" ] && [ "$w" -gt "$waiting_max" ] && waiting_max=$w
  t0=$(date +%s%N)
  if ((round % 2)); then
    how_a="-x"; how_b="SIGUSR2"
    "$BIN" -f -x -S "$W/a.sock" -b 127.0.0.1 "$PA" "$CHA" 2>>"$W/a.err" &
    PIDS+=($!)
    kill -USR2 "$b_pid"
  else
    how_a="SIGUSR2"; how_b="-x"
    kill -USR2 "$a_pid"
    "$BIN" -x -S "$W/b.sock" -b 127.0.0.1 "$PB" "$CHB" 2>>"$W/b.err" ||
      { echo "round $round: balance -x (detached) failed"; FAILED=1; }
  fi
  wait_until 10 answers_other_than a "$PA" "$a_pid" || { echo "round $round: A was not taken over ($how_a)"; FAILED=1; break; }
  wait_until 10 answers_other_than b "$PB" "$b_pid" || { echo "round $round: B was not taken over ($how_b)"; FAILED=1; break; }
  ms=$((($(date +%s%N) - t0) / 1000000))
  ((ms > worst_ms)) && worst_ms=$ms
  old_a+=("$a_pid")
  old_b+=("$b_pid")
  a_pid=$(pid_on a "$PA")
  b_pid=$(pid_on b "$PB")
  PIDS+=("$a_pid" "$b_pid")
  alive=0
  for p in "${old_a[@]}" "${old_b[@]}"; do gone "$p" || alive=$((alive + 1)); done
  echo "round $round: A $how_a -> pid $a_pid, B $how_b -> pid $b_pid, both answering within ${ms} ms; $alive old processes still relay"
  sleep 1.5
done

# The failed kinds: a binary that exits at once (SIGUSR2), a taker killed
# mid-way (-x stopped before it can take), and a taker that is not a
# balance at all.
echo "failed hand-overs:"
printf '#!/bin/sh\nexit 3\n' >"$W/bin/balance.new"
chmod 755 "$W/bin/balance.new"
mv "$W/bin/balance" "$W/bin/balance.good"
mv "$W/bin/balance.new" "$W/bin/balance"
kill -USR2 "$a_pid"
check "A: SIGUSR2 with a binary that exits at once is logged, A still serves" \
  wait_until 5 grep -q "failed (exit status 3); still serving" "$W/a.err"
mv "$W/bin/balance.good" "$W/bin/balance"
"$BIN" -f -x -S "$W/b.sock" -b 127.0.0.1 "$PB" "$CHB" 2>>"$W/b.err" &
taker=$!
PIDS+=("$taker")
kill -STOP "$taker"  # mid-way: it may or may not have sent its request yet
sleep 0.3
kill -KILL "$taker"
wait "$taker" 2>/dev/null
check "B: a taker killed mid-way leaves B serving" answers_other_than b "$PB" 0
check "B: still the same process" test "$(pid_on b "$PB")" = "$b_pid"
sleep 1

touch "$W/stop"
wait "$long"
long_rc=$?
wait "$short"
wait "$queue"
shorts=$(cat "$W/shorts")
queued=$(wc -l <"$W/queued")
for p in "${old_a[@]}" "${old_b[@]}"; do wait_until 30 gone "$p"; done
a_left=0
for p in "${old_a[@]}" "${old_b[@]}"; do gone "$p" || a_left=$((a_left + 1)); done
sent=$("$BIN" -S "$W/a.sock" -c "show csv" "$PA" | awk -F, 'NR > 1 { s += $10 } END { print s + 0 }')
a_end=$(grep -c "hand-over: the last connection has ended; exiting" "$W/a.err")

echo "checks:"
check "8 long streams of $STREAM bytes each way intact (helper client exit 0)" test "$long_rc" -eq 0
check "$shorts short connections, none refused, reset or wrong" test ! -s "$W/short.out"
check "$queued queued clients all served (the most waiting at a hand-over: $waiting_max)" test ! -s "$W/queue.out"
check "the hold back-end served them in arrival order" \
  test "$(tr '\n' ' ' <"$W/h.log")" = "$(seq -s ' ' 1 "$queued") "
check "the hold back-end never had more than maxc 1 at once" test "$(awk '{print $2}' "$W/h.state")" -eq 1
check "A counts every byte its processes sent to the back-end ($sent)" \
  test "$sent" -eq $((8 * STREAM + 2000 * shorts))
check "every old process gone ($((${#old_a[@]} + ${#old_b[@]})) of them)" test "$a_left" -eq 0
# B logs to syslog once detached; A on standard error says why each left.
check "each old A logged that its last connection had ended" test "$a_end" -eq "${#old_a[@]}"
check "no descriptor left behind: A $(fds_of "$a_pid") (was $a_fds), B $(fds_of "$b_pid") (was $b_fds)" \
  test "$(fds_of "$a_pid")" -eq "$a_fds" -a "$(fds_of "$b_pid")" -eq "$b_fds"
check "no socket file left behind" test "$(cd "$W" && echo ./*.sock*)" = "./a.sock ./b.sock"
echo "slowest round (trigger to both answering from the new process): ${worst_ms} ms"
exit $FAILED
