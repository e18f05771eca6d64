#!/usr/bin/env bats
# Hostile conditions (SPEC §3, §7 "Reliability"): integrity under load,
# half-close with big payloads, resets and killed back-ends, back-pressure,
# thousands of idle clients, fd exhaustion, dead and black-holed back-ends,
# abusive command lines. Servers and clients come from tests/helper.cpp
# ($HELPER); memory, CPU and descriptors are read from /proc (Linux; the
# tests that need it skip elsewhere). Loopback only; every wait is bounded;
# everything started is killed by PID in teardown (test_helper.bash).
# HOSTILE_NOTES=1 prints the measured numbers (RSS, CPU, times) on fd 3.

load test_helper

# _h PROGRAM ARGS...: a helper client against balance ($BAL_PORT).
_h() { "$HELPER" "$@" "$BAL_ADDR" "$BAL_PORT"; }

_h_need_proc() { [ -r /proc/self/stat ] || skip "needs /proc"; }

# Descriptors, memory (kB) and CPU time (ms, user + system) of a process.
_h_fds() { ls "/proc/$1/fd" | wc -l | tr -d ' '; }
_h_rss_kb() { awk '$1 == "VmRSS:" {print $2}' "/proc/$1/status"; }
_h_peak_kb() { awk '$1 == "VmHWM:" {print $2}' "/proc/$1/status"; }
_h_cpu_ms() {
  local stat
  stat=$(<"/proc/$1/stat")
  stat=${stat##*) } # fields from the 3rd on: utime and stime are the 12th and 13th here
  awk -v hz="$(getconf CLK_TCK)" '{print int(($12 + $13) * 1000 / hz)}' <<<"$stat"
}
# _h_cpu_over PID SECONDS: CPU ms the process used over that many seconds.
_h_cpu_over() {
  local before
  before=$(_h_cpu_ms "$1")
  sleep "$2"
  echo $(($(_h_cpu_ms "$1") - before))
}
_h_fds_at_most() { [ "$(_h_fds "$1")" -le "$2" ]; }
_h_fds_at_least() { [ "$(_h_fds "$1")" -ge "$2" ]; }
_h_note() { if [ -n "${HOSTILE_NOTES:-}" ]; then echo "# $BATS_TEST_DESCRIPTION: $*" >&3; fi; }

# _h_balance [OPTIONS] -- CHANNEL...: start_balance, then remember its PID
# and its descriptor count once idle, to check for leaks at the end.
_h_balance() {
  start_balance "$@"
  BAL_PID=$(pid_of balance)
  BAL_FDS=$(_h_fds "$BAL_PID")
}
# _h_exited PID: the process has exited (gone, or a zombie not yet waited for).
_h_exited() { [ ! -e "/proc/$1" ] || [ "$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null)" = Z ]; }
# _h_no_fd_leak: balance is back to its idle descriptor count (bounded wait).
_h_no_fd_leak() {
  wait_for 10 _h_fds_at_most "$BAL_PID" "$BAL_FDS" ||
    { echo "balance holds $(_h_fds "$BAL_PID") fds, $BAL_FDS when idle" >&2; return 1; }
}

# ---------------------------------------------------------------- 1. integrity

@test "64 parallel connections move random payloads of up to 64 MiB each way, every byte intact" {
  _h_need_proc
  start_server dup duplex -R "$T/dup.report"
  _h_balance -- "127.0.0.1:$(port_of dup)"
  # Sizes are uniform in [0, 64 MiB] each way (plus the edge cases 0, 1 and
  # 64 MiB): about 4 GiB through balance, ~5 s here. -C caps the sum at
  # 4 GiB so that a slower machine stays near 30 s.
  run -0 _h integrity -c 64 -M 64 -C 4096 -t 100
  [[ ${lines[-1]} == "total ok=64 failed=0 "* ]]
  [ "$(grep -c ' ok$' "$T/dup.report")" -eq 64 ]
  _h_note "${lines[-1]}; balance peak RSS $(_h_peak_kb "$BAL_PID") kB"
  [ "$(_h_peak_kb "$BAL_PID")" -lt 65536 ]
  _h_no_fd_leak
}

@test "64 parallel connections through an echo back-end get exactly their own bytes back" {
  start_server echo echo
  _h_balance -- "127.0.0.1:$(port_of echo)"
  run -0 _h integrity -m echo -c 64 -M 16 -t 60
  [[ ${lines[-1]} == "total ok=64 failed=0 "* ]]
}

@test "TCP urgent data in the middle of bulk streams is dropped and every other byte arrives" {
  start_server dup duplex -R "$T/dup.report"
  _h_balance -- "127.0.0.1:$(port_of dup)"
  # -F 4: both ends send one urgent byte (MSG_OOB) halfway through 4 MiB,
  # long after the streams went bulk (spliced on Linux). balance, like
  # recv(), does not relay it; the bytes around it must all arrive.
  run -0 _h integrity -c 8 -z 4194304 -F 4 -t 30
  [[ ${lines[-1]} == "total ok=8 failed=0 "* ]]
  [ "$(grep -c ' ok$' "$T/dup.report")" -eq 8 ]
  _h_no_fd_leak
}

# ---------------------------------------------------------------- 2. half-close

@test "a client that shuts its write side after 8 MiB still receives a 16 MiB reply" {
  start_server dup duplex -R "$T/dup.report"
  _h_balance -- "127.0.0.1:$(port_of dup)"
  # The back-end starts its reply only once it has seen the client's FIN.
  run -0 _h halfclose -w client -u 8388608 -d 16777216 -t 30
  [ "$(cat "$T/dup.report")" = "dup up=8388608/8388608 ok" ]
}

@test "a back-end that closes first after 8 MiB still receives a 16 MiB upload" {
  start_server dup duplex -R "$T/dup.report"
  _h_balance -- "127.0.0.1:$(port_of dup)"
  # The client starts its upload only once it has seen the back-end's FIN.
  run -0 _h halfclose -w server -u 16777216 -d 8388608 -t 30
  wait_for 5 test -s "$T/dup.report"
  [ "$(cat "$T/dup.report")" = "dup up=16777216/16777216 ok" ]
}

# ---------------------------------------------------------------- 3. resets, kills

@test "a back-end reset mid-stream reaches the client as a reset at once, reading or uploading" {
  _h_need_proc
  start_server rst reset-after -n 4194304
  _h_balance -- "127.0.0.1:$(port_of rst)"
  for upload in 0 67108864; do
    run -0 _h end -n "$upload" -t 10
    _h_note "$output"
    # A reset, not EOF: the stream was cut short and must not look complete
    # (SPEC §3). "quiet": from the last byte received to the end.
    [[ $output =~ end=reset\ secs=([0-9.]+)\ quiet=([0-9.]+) ]]
    [ "${BASH_REMATCH[2]%.*}" -lt 1 ]
    [[ $output =~ read=([0-9]+) ]]
    [ "${BASH_REMATCH[1]}" -le 4194304 ]
  done
  _h_no_fd_leak
}

@test "a client reset mid-stream reaches the back-end at once" {
  _h_need_proc
  start_server src source -n 1073741824 -R "$T/src.report"
  _h_balance -- "127.0.0.1:$(port_of src)"
  run -0 _h end -n 1048576 -x -t 10
  wait_for 2 grep -q "error: Connection reset by peer" "$T/src.report"
  _h_no_fd_leak
}

@test "a back-end killed under load fails only its own clients; the others finish intact" {
  _h_need_proc
  start_server a duplex
  start_server b duplex
  _h_balance -- "127.0.0.1:$(port_of a)" "127.0.0.1:$(port_of b)"
  # 16 connections of 32 MiB each way, spread over a and b; a dies once all
  # of them are established.
  spawn load "$HELPER" integrity -a -c 16 -z 33554432 -t 40 -r "$T/load.ready" 127.0.0.1 "$BAL_PORT"
  wait_for 10 test -e "$T/load.ready"
  kill -KILL "$(pid_of a)"
  t0=$(now_ms)
  finish load
  _h_note "$(tr '\n' ';' <"$T/load.out") after the kill: $(($(now_ms) - t0)) ms"
  grep -qx "server b ok=[1-9][0-9]* failed=0" "$T/load.out"
  grep -qx "server a ok=[0-9]* failed=[1-9][0-9]*" "$T/load.out"
  run ! grep -q "^server ?" "$T/load.out"
  _h_no_fd_leak
}

# ---------------------------------------------------------------- 4. back-pressure

@test "a back-end that never reads stalls a 1 GiB upload with bounded memory and an idle CPU" {
  _h_need_proc
  start_server mute mute
  _h_balance -- "127.0.0.1:$(port_of mute)"
  # 8 clients push 1 GiB each; they stop being able to write (stall: no
  # progress for 1 s) long before that, or the test gives up at 10 s.
  spawn push "$HELPER" push -c 8 -n 1073741824 -S 1 -t 10 -H 20 -r "$T/push.ready" 127.0.0.1 "$BAL_PORT"
  wait_for 15 test -e "$T/push.ready"
  written=$(sed 's/written=//' "$T/push.ready")
  cpu=$(_h_cpu_over "$BAL_PID" 2)
  _h_note "written $written bytes of 8 GiB; balance RSS $(_h_rss_kb "$BAL_PID") kB, CPU ${cpu} ms in 2 s"
  [ "$written" -lt $((8 * 1073741824 / 4)) ]
  [ "$(_h_rss_kb "$BAL_PID")" -lt 65536 ]
  [ "$cpu" -le 100 ]
}

@test "a back-end that reads slowly holds back a fast client with bounded memory and little CPU" {
  _h_need_proc
  start_server slow slowread -k 4096 -i 0.1
  _h_balance -- "127.0.0.1:$(port_of slow)"
  spawn push "$HELPER" push -c 8 -n 1073741824 -S 1 -t 10 -H 20 -r "$T/push.ready" 127.0.0.1 "$BAL_PORT"
  wait_for 15 test -e "$T/push.ready"
  cpu=$(_h_cpu_over "$BAL_PID" 2)
  _h_note "$(cat "$T/push.ready"); balance RSS $(_h_rss_kb "$BAL_PID") kB, CPU ${cpu} ms in 2 s"
  [ "$(_h_rss_kb "$BAL_PID")" -lt 65536 ]
  [ "$cpu" -le 200 ]
}

@test "a client that reads slowly from a fast back-end costs bounded memory and little CPU" {
  _h_need_proc
  start_server fast source -n 1073741824 -s 5
  _h_balance -- "127.0.0.1:$(port_of fast)"
  # 8 clients read 4 KiB every 100 ms for 6 s, checking every byte.
  spawn slow "$HELPER" slowread-client -c 8 -k 4096 -i 0.1 -H 6 -s 5 -r "$T/slow.ready" 127.0.0.1 "$BAL_PORT"
  wait_for 5 test -e "$T/slow.ready"
  sleep 1 # the buffers fill up
  cpu=$(_h_cpu_over "$BAL_PID" 2)
  rss=$(_h_rss_kb "$BAL_PID")
  finish slow
  _h_note "$(cat "$T/slow.out"); balance RSS $rss kB, CPU ${cpu} ms in 2 s"
  [ "$rss" -lt 65536 ]
  [ "$cpu" -le 200 ]
}

@test "stopping balance resets a connection whose bytes still wait in it, never a clean end" {
  _h_need_proc
  start_server fast source -n 1073741824 -s 5
  _h_balance -- "127.0.0.1:$(port_of fast)"
  # A slow reader leaves bytes waiting in balance; a FIN after them would
  # pass a truncated stream off as complete.
  spawn slow "$HELPER" slowread-client -c 1 -k 65536 -i 0.005 -H 8 -s 5 -r "$T/slow.ready" 127.0.0.1 "$BAL_PORT"
  wait_for 5 test -e "$T/slow.ready"
  sleep 0.5
  kill -TERM "$BAL_PID"
  wait_for 5 _h_exited "$BAL_PID"
  finish slow || true
  _h_note "$(cat "$T/slow.out")"
  grep -q "wrong=0 ended=reset " "$T/slow.out"
}

# ---------------------------------------------------------------- 5. idle clients

@test "with 3000 idle clients connected another client is served at once" {
  _h_need_proc
  [ "$(ulimit -Hn)" = unlimited ] || [ "$(ulimit -Hn)" -ge 8000 ] || skip "needs ulimit -n 8000"
  start_server echo echo
  _h_balance -- "127.0.0.1:$(port_of echo)"
  rss0=$(_h_rss_kb "$BAL_PID")
  spawn idle "$HELPER" slowloris -n 3000 -H 60 -t 20 -r "$T/idle.ready" 127.0.0.1 "$BAL_PORT"
  wait_for 25 test -e "$T/idle.ready"
  grep -qx "connected=3000 failed=0 pending=0" "$T/idle.ready"
  # Every idle client is relayed: two descriptors each in balance.
  wait_for 10 _h_fds_at_least "$BAL_PID" $((BAL_FDS + 6000))
  t0=$(now_ms)
  run -0 _h integrity -m echo -c 1 -z 1048576 -t 5
  elapsed=$(($(now_ms) - t0))
  rss=$(_h_rss_kb "$BAL_PID")
  _h_note "served in $elapsed ms; balance RSS $rss0 -> $rss kB ($(((rss - rss0) * 1024 / 3000)) B per idle connection)"
  [ "$elapsed" -lt 1000 ]
  [ "$rss" -lt 65536 ]
  kill "$(pid_of idle)"
  _h_no_fd_leak
}

@test "-T 1 closes 3000 idle clients after about a second" {
  _h_need_proc
  [ "$(ulimit -Hn)" = unlimited ] || [ "$(ulimit -Hn)" -ge 8000 ] || skip "needs ulimit -n 8000"
  start_server echo echo
  _h_balance -T 1 -- "127.0.0.1:$(port_of echo)"
  # -e: slowloris exits once the peer has closed all of them (or after 15 s).
  run -0 _h slowloris -n 3000 -H 15 -e -t 20
  _h_note "$output"
  [[ $output =~ connected=3000\ failed=0\ pending=0\ closed=3000\ .*last=([0-9.]+) ]]
  # "last": seconds from the last handshake to the last close.
  [ "${BASH_REMATCH[1]%.*}" -lt 4 ]
  _h_no_fd_leak
}

# ---------------------------------------------------------------- 6. fd exhaustion

# _h_out_of_fds LIMIT: balance under a hard fd limit of LIMIT, 1000 clients.
_h_out_of_fds() {
  _h_need_proc
  start_server echo echo
  BAL_PORT=$(free_port)
  # A hard limit, so balance cannot raise it ($0 of the inner shell is LIMIT).
  spawn balance bash -c 'ulimit -n "$0" && exec "$@"' "$1" "$BALANCE" -f -S "$T/ctl.sock" \
    -b 127.0.0.1 "$BAL_PORT" "127.0.0.1:$(port_of echo)"
  listens balance "$BAL_PORT"
  BAL_PID=$(pid_of balance)
  BAL_FDS=$(_h_fds "$BAL_PID")
  grep -q "^Max open files  *$1  *$1 " "/proc/$BAL_PID/limits"
  spawn flood "$HELPER" flood -n 1000 -H 60 -t 3 -r "$T/flood.ready" -o "$T/flood.status" \
    127.0.0.1 "$BAL_PORT"
  wait_for 10 test -e "$T/flood.ready"
  sleep 1
  cpu=$(_h_cpu_over "$BAL_PID" 2)
  logged=$(grep -c "cannot accept" "$T/balance.err")
  _h_note "$(cat "$T/flood.ready"); balance holds $(_h_fds "$BAL_PID") fds, CPU ${cpu} ms in 2 s; \
\"cannot accept\" logged $logged times; flood clients closed by balance: $(cat "$T/flood.status")"
  [ "$cpu" -le 200 ]
  # One episode, one line (SPEC §3: "logs it once"); the clients that do
  # not fit wait in the backlog: none is closed unserved.
  [ "$logged" -eq 1 ]
  [ "$(cat "$T/flood.status")" = closed=0 ]
  kill "$(pid_of flood)"
  _h_no_fd_leak
  run -0 _h integrity -m echo -c 4 -z 1048576 -t 10
}

# Which of the two limits leaves an odd number of descriptors free depends
# on what balance inherits; both are tried.
@test "out of descriptors (ulimit -n 256, 1000 clients) balance idles, logs once, and recovers" {
  _h_out_of_fds 256
}

@test "out of descriptors (ulimit -n 257, 1000 clients) balance idles, logs once, and recovers" {
  _h_out_of_fds 257
}

# ---------------------------------------------------------------- 7. dead back-ends

@test "black-holed and refusing groups are skipped within -t, and groups are tried in order" {
  start_server hole blackhole
  start_server c duplex
  start_server d duplex
  refused=$(free_port)
  start_balance -t 1 -r 60 -- "127.0.0.1:$(port_of hole)" ! "127.0.0.1:$refused" ! \
    "127.0.0.1:$(port_of c)" ! "127.0.0.1:$(port_of d)"
  t0=$(now_ms)
  run -0 _h whoami -t 5
  elapsed=$(($(now_ms) - t0))
  _h_note "first client served by $output after $elapsed ms"
  [ "$output" = c ]
  [ "$elapsed" -lt 2000 ]
  # Both are down now: the next client goes straight to c.
  t0=$(now_ms)
  run -0 _h whoami -t 5
  [ "$output" = c ]
  [ $(($(now_ms) - t0)) -lt 500 ]
}

@test "a refusing back-end is used again within -r once something listens on its port" {
  start_server c duplex
  port=$(free_port)
  start_balance -t 1 -r 1 -- "127.0.0.1:$port" ! "127.0.0.1:$(port_of c)"
  run -0 _h whoami
  [ "$output" = c ]
  start_server back duplex -p "$port"
  t0=$(now_ms)
  wait_for 4 eval '[ "$(_h whoami)" = back ]'
  _h_note "back in $(($(now_ms) - t0)) ms"
}

@test "with -O, clients waiting while every channel is down are all served when one comes back" {
  one=$(free_port)
  two=$(free_port)
  # -O: wait out the outage; -e: the integrity clients half-close after their upload.
  start_balance -t 1 -r 1 -O 15 -e -- "127.0.0.1:$one" ! "127.0.0.1:$two"
  spawn waiting "$HELPER" integrity -c 5 -z 100000 -t 20 127.0.0.1 "$BAL_PORT"
  sleep 1.5 # both channels are found down; the five clients wait
  running "$(pid_of waiting)"
  start_server back duplex -p "$two"
  t0=$(now_ms)
  finish waiting
  _h_note "served $(($(now_ms) - t0)) ms after the back-end came back"
  grep -qx "total ok=5 failed=0 .*" "$T/waiting.out"
  [ $(($(now_ms) - t0)) -lt 3000 ]
}

# ---------------------------------------------------------------- 8. arguments

# _h_rejected ARGS...: balance must refuse ARGS: status 1 (no crash: not
# >= 128; not started: not 124 from timeout), stderr "balance: ..." then
# the -h pointer. A misfit is noted in $T/misfits so that one run shows
# them all; _h_no_misfits ends the test.
_h_rejected() {
  run --separate-stderr timeout 5 "$BALANCE" -f -S "$T/ctl.sock" "$@"
  if [ "$status" -ne 1 ] || [[ ${stderr_lines[0]:-} != "balance: "?* ]] ||
    [ "${stderr_lines[1]:-}" != "Try 'balance -h' for more information." ] || [ "${#stderr_lines[@]}" -ne 2 ]; then
    echo "balance $(printf '%.60q ' "$@")-> status $status, stderr: ${stderr:0:300}" >>"$T/misfits"
  fi
}
_h_no_misfits() { [ ! -s "$T/misfits" ] || { cat "$T/misfits" >&2; return 1; }; }

# _h_unresolved ARGS...: the same for a name that does not resolve: one
# line, "balance: ...", and no pointer to -h (it is no usage mistake).
_h_unresolved() {
  run --separate-stderr timeout 5 "$BALANCE" -f -S "$T/ctl.sock" "$@"
  if [ "$status" -ne 1 ] || [[ ${stderr_lines[0]:-} != "balance: "?* ]] || [ "${#stderr_lines[@]}" -ne 1 ]; then
    echo "balance $(printf '%.60q ' "$@")-> status $status, stderr: ${stderr:0:300}" >>"$T/misfits"
  fi
}

@test "malformed channels are refused with a clear error, never a crash" {
  p=127.0.0.1
  for ch in "$p:0" "$p:65536" "$p:99999999999999999999" "$p:-1" "$p:80:99999999999999999999" \
    "$p:80:1000001" "$p:80:1:0" "$p:80:1:1000001" "$p:80:1:18446744073709551617" "$p:80:1:1:1" \
    "$p:80:x" "$p:80:1:x" "$p:80:1.5" "$p:80:1:2.5" "$p:80: 1" "[::1" "[::1]x" "[::1]:0" "[]:80" ":80" \
    ":" "" "::1" "$p:$(printf '9%.0s' {1..5000})" "$p:8 0" "$p:-http"; do
    _h_rejected 8000 "$ch"
  done
  for ch in "$p:nosuchservice" "$(printf 'h%.0s' {1..5000}):80"; do
    _h_unresolved 8000 "$ch"
  done
  _h_rejected 8000 ! "$p"
  _h_rejected 8000 "$p" % %
  _h_rejected 8000 "$p" !
  _h_no_misfits
}

@test "bad ports and huge numbers in options are refused with a clear error, never a crash" {
  for bad in 0 65536 99999999999999999999 ""; do
    _h_rejected -- "$bad" 127.0.0.1:9
  done
  for opt in -t -T -w -r; do
    for bad in 99999999999999999999 86401 1e3 inf nan -1 0x10 . "" 1..2 "$(printf '9%.0s' {1..5000})"; do
      _h_rejected "$opt" "$bad" 8000 127.0.0.1:9
    done
  done
  for bad in 99999999999999999999 10000001 -1 1e3 ""; do
    _h_rejected -q "$bad" 8000 127.0.0.1:9
  done
  for bad in 0 65536 99999999999999999999 127.0.0.1:0 127.0.0.1:99999999999999999999 "[::1" ""; do
    _h_rejected -s "$bad" 8000 127.0.0.1:9
  done
  _h_rejected -t
  _h_rejected -4 -6 8000 127.0.0.1:9
  _h_no_misfits
}

@test "a listen port that is no number or name points to -h; names that do not resolve do not" {
  for bad in -1 " 80" "80!" "8 0"; do
    _h_rejected -- "$bad" 127.0.0.1:9
  done
  # Names are looked up only at start-up: one line with the resolver's why.
  for bad in 80x nosuchservice; do
    _h_unresolved -- "$bad" 127.0.0.1:9
  done
  _h_unresolved -b 999.1.1.1 8000 127.0.0.1:9
  _h_unresolved -s nosuchservice 8000 127.0.0.1:9
  _h_no_misfits
}

@test "10,000 channels on the command line start and relay" {
  _h_need_proc
  start_server dup duplex
  # One command builds the list: a shell loop is slow under bats' tracing.
  read -ra chans <<<"$(awk -v p="$(port_of dup)" 'BEGIN { for (i = 0; i < 10000; i++) printf "127.0.0.1:%d:1:%d ", p, i % 7 + 1 }')"
  [ "${#chans[@]}" -eq 10000 ]
  _h_balance -- "${chans[@]}"
  run -0 _h integrity -c 50 -z 100000 -t 20
  [[ ${lines[-1]} == "total ok=50 failed=0 "* ]]
  _h_note "balance RSS $(_h_rss_kb "$BAL_PID") kB"
  _h_no_fd_leak
}

@test "9,999 refusing channels before one that works: the first client still gets through" {
  _h_need_proc
  start_server dup duplex
  read -ra chans <<<"$(awk -v p="$(free_port)" 'BEGIN { for (i = 1; i < 10000; i++) printf "127.0.0.1:%d ", p }')"
  start_balance -t 1 -r 60 -- "${chans[@]}" ! "127.0.0.1:$(port_of dup)"
  t0=$(now_ms)
  run -0 _h whoami -t 20
  _h_note "served after $(($(now_ms) - t0)) ms"
  [ "$output" = dup ]
  run -0 _h integrity -c 8 -z 100000 -t 10
}
