#!/usr/bin/env bats
# Restart and upgrade without losing a connection (balance.1, RESTARTING
# AND UPGRADING): balance -x and SIGUSR2 hand the listener, the waiting
# clients and the channels to a new process; the old one relays what it
# has to the end and exits. Sizes are small and every wait is bounded.

load test_helper

# pid_on_socket: the pid of the balance that answers on $T/ctl.sock.
pid_on_socket() { ctl version | sed -n 's/.*pid \([0-9]*\)).*/\1/p'; }
answers_with_pid_other_than() {
  local pid
  pid=$(pid_on_socket 2>/dev/null) && [ -n "$pid" ] && [ "$pid" != "$1" ]
}
waiting_is() { ctl "show queue" | head -1 | grep -q "^$1 waiting"; }

# take_over [OPTIONS] -- CHANNEL...: a second balance with -x and the same
# options start_balance gives, spawned as NAME (default balance2).
take_over() {
  local name=${NAME:-balance2} opts=()
  while [ $# -gt 0 ] && [ "$1" != -- ]; do opts+=("$1"); shift; done
  shift
  spawn "$name" "$BALANCE" -f -x -S "$T/ctl.sock" -b "$BAL_ADDR" "${opts[@]}" "$BAL_PORT" "$@"
}

# sent_of: the bytes sent to back-ends, as the running balance counts them.
sent_of() { ctl "show csv" | awk -F, 'NR > 1 { s += $10 } END { print s + 0 }'; }

@test "-x takes over mid-stream: every byte intact, waiting clients served, the old one exits 0" {
  start_server e echo
  up -- "127.0.0.1:$(port_of e):4"
  # 8 clients, 4 relayed and 4 waiting, each a checked stream of 30 paced
  # chunks (1.5 s at least), so the hand-over falls in their middle.
  client_bg c -c 8 -t 40 -x -n 600000 -k 20000 -I 0.05
  wait_for 10 waiting_is 4
  old=$(pid_of balance)
  take_over -- "127.0.0.1:$(port_of e):4"
  wait_for 10 answers_with_pid_other_than "$old"
  finish c || { cat "$T/c.err"; cat "$T/balance2.err"; false; }
  wait_for 10 not_running "$old"
  wait "$old"
  grep -q "took over from pid $old: 4 waiting clients, 4 connections it still relays, its channels" "$T/balance2.err"
  grep -q "hand-over: the last connection has ended; exiting" "$T/balance.err"
  # The old one's traffic after the hand-over is counted by the new one.
  [ "$(sent_of)" -eq $((8 * 600000)) ]
  # One control socket, in its place; no temporary left.
  [ -S "$T/ctl.sock" ]
  [ ! -e "$T/ctl.sock.new" ]
}

@test "slots stay within maxc across a hand-over, and the queue is served from the new process" {
  start_hold h
  up -- "127.0.0.1:$(port_of h):2"
  client_bg c -c 6 -t 30 -i 1 -m hold -H 1 -g -x
  wait_for 10 waiting_is 4
  old=$(pid_of balance)
  take_over -- "127.0.0.1:$(port_of h):2"
  wait_for 10 answers_with_pid_other_than "$old"
  ctl show | grep -q "hand-over: the previous balance still relays 2 connections"
  finish c || { cat "$T/c.err"; cat "$T/balance2.err"; false; }
  [ "$(total_of h)" -eq 6 ]
  [ "$(max_of h)" -le 2 ]
  wait_for 10 not_running "$old"
  ! ctl show | grep -q "still relays"
}

@test "run-time changes survive -x with the same arguments; other arguments take the new command line" {
  start_hold h1
  start_hold h2
  up -- "127.0.0.1:$(port_of h1):1"
  ctl "create 127.0.0.1 $(port_of h2) 3 2; enable 1; disable 0"
  ctl "rule priority 127.0.0.9/32"
  before=$(ctl "show config")
  take_over -- "127.0.0.1:$(port_of h1):1"
  wait_for 10 not_running "$(pid_of balance)"
  [ "$(ctl "show config")" = "$before" ]
  ctl "show rules" | grep -q "priority 127.0.0.9/32"
  client -m hold -i 9 -x -t 10
  [ "$(total_of h2)" -eq 1 ]
  # Now with another command line: its channels, not the old ones'.
  NAME=balance3 take_over -- "127.0.0.1:$(port_of h1):2"
  wait_for 10 not_running "$(pid_of balance2)"
  grep -q "the channels of this command line" "$T/balance3.err"
  run ctl show
  [ "$(grep -c "^  0 RR" <<<"$output")" -eq 1 ]
  client -m hold -i 9 -x -t 10
  [ "$(total_of h1)" -eq 1 ]
}

@test "a balance that took over can be taken over again while the first still relays" {
  start_hold h
  up -- "127.0.0.1:$(port_of h):3"
  # Two long connections stay with the first process; later clients wait.
  client_bg long -c 2 -t 30 -i 1 -m hold -H 3 -g -x
  wait_for 10 cur_is h 2
  first=$(pid_of balance)
  take_over -- "127.0.0.1:$(port_of h):3"
  wait_for 10 answers_with_pid_other_than "$first"
  second=$(pid_of balance2)
  ctl show | grep -q "the previous balance still relays 2 connections"
  client_bg mid -c 2 -t 30 -i 11 -m hold -H 1 -g -x
  wait_for 10 waiting_is 1
  NAME=balance3 take_over -- "127.0.0.1:$(port_of h):3"
  wait_for 10 answers_with_pid_other_than "$second"
  # The third counts the first's two and the second's one: one waits on.
  ctl show | grep -q "the previous balance still relays 3 connections"
  running "$first"
  finish mid
  finish long
  [ "$(total_of h)" -eq 4 ]
  [ "$(max_of h)" -le 3 ]
  wait_for 10 not_running "$first"
  wait_for 10 not_running "$second"
  ! ctl show | grep -q "still relays"
  grep -q "took over from pid $second: 1 waiting clients, 3 connections it still relays" "$T/balance3.err"
  client -m hold -i 20 -x -t 10
  [ "$(total_of h)" -eq 5 ]
}

@test "SIGUSR2 starts the binary on disk to take over, three times in a row under traffic" {
  mkdir "$T/bin"
  cp "$BALANCE" "$T/bin/balance"
  BALANCE=$T/bin/balance
  start_server e echo
  up -- "127.0.0.1:$(port_of e):8"
  client_bg long -c 4 -t 60 -x -n 1500000 -k 20000 -I 0.04
  # Short connections all along, about 20 a second.
  (
    for ((i = 0; i < 120; i++)); do
      "$HELPER" client -t 10 -x -n 2000 -s $((i + 1)) "$BAL_ADDR" "$BAL_PORT" || echo "short $i failed"
      sleep 0.03
    done
  ) >"$T/short.out" 2>&1 3>&- &
  short=$!
  echo "$short" >>"$T/pids"
  pid=$(pid_of balance)
  for round in 1 2 3; do
    kill -USR2 "$pid"
    wait_for 10 answers_with_pid_other_than "$pid"
    next=$(pid_on_socket)
    echo "$next" >>"$T/pids"
    wait_for 30 not_running "$pid"
    pid=$next
  done
  wait "$short"
  run cat "$T/short.out"
  echo "$output"
  [ -z "$output" ]
  finish long
  [ "$(grep -c "SIGUSR2: started $T/bin/balance" "$T/balance.err")" -eq 3 ]
  [ "$(grep -c "took over from pid" "$T/balance.err")" -eq 3 ]
}

@test "a hand-over that fails leaves the old balance serving as before" {
  start_hold h
  up -- "127.0.0.1:$(port_of h):1"
  client_bg first -m hold -H 1.5 -g -x -t 20 -i 1
  wait_for 5 cur_is h 1
  client_bg second -m hold -H 0.2 -g -x -t 20 -i 2
  wait_for 5 waiting_is 1
  # A taker that reads the offer and goes away without taking it.
  run ctltool send -a 'handover\n' -q 1 -t 5 "$T/ctl.sock"
  [[ $output == *"handover 1 $(pid_of balance)"* ]]
  [[ $output == *"end"* ]]
  wait_for 5 grep -q "hand-over failed (the other balance closed the connection); carrying on" "$T/balance.err"
  client -m hold -H 0.2 -g -x -t 20 -i 3
  finish first
  finish second
  [ "$(total_of h)" -eq 3 ]
  [ "$(max_of h)" -eq 1 ]
  [ "$(log_of h)" = "1 2 3" ]
}

# cpu_ticks PID: user + system CPU time of PID, in clock ticks (1/100 s).
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# fake_taker NAME MODE: a stand-in for a new balance (python3), spawned as
# NAME. It connects to the control socket (touching $T/session), asks for
# the hand-over (in accept mode once $T/ask exists), reads the offer with
# its descriptors, prints its channel lines and touches $T/offered; then:
#   release  once $T/go exists, says "taken" and prints every line the old
#            balance sends until it closes (its releases, then "done")
#   accept   accepts on the offered listener for 3 s, prints "accepted N",
#            and goes away without "taken" (the hand-over fails)
fake_taker() {
  spawn "$1" python3 -c '
import array, os, socket, sys, time
path, tmp, mode = sys.argv[1:4]
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(10)
s.connect(path)
def wait_for(name):
    end = time.time() + 10
    while not os.path.exists(tmp + "/" + name) and time.time() < end:
        time.sleep(0.05)
open(tmp + "/session", "w").close()
if mode == "accept":
    wait_for("ask")
s.sendall(b"handover\n")
data, fds = b"", []
while not data.endswith(b"\nend\n"):
    msg, anc, _, _ = s.recvmsg(65536, socket.CMSG_SPACE(64 * 4))
    if not msg:
        sys.exit("the offer ended early: %r" % data[-200:])
    data += msg
    for level, kind, blob in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds += array.array("i", blob[: len(blob) - len(blob) % 4])
for line in data.decode().splitlines():
    if line.startswith("channel "):
        print(line, flush=True)
open(tmp + "/offered", "w").close()
if mode == "accept":
    listener = socket.socket(fileno=fds[0])  # "listener proxy" comes first
    listener.settimeout(3)
    accepted = 0
    try:
        while True:
            listener.accept()
            accepted += 1
    except socket.timeout:
        pass
    print("accepted", accepted)
    sys.exit(0)
wait_for("go")
s.sendall(b"taken\n")
rest = b""
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    rest += chunk
sys.stdout.write(rest.decode())
' "$T/ctl.sock" "$T" "$2"
}

@test "a connection that ends while the offer is out is reported to the taker, its bytes too" {
  command -v python3 >/dev/null || skip "python3 plays the taker"
  start_server e echo
  up -- "127.0.0.1:$(port_of e):4"
  # Five chunks a fifth of a second apart: it is still relaying at the offer.
  client_bg c -x -n 100000 -k 20000 -I 0.2 -t 20 -r "$T/connected"
  wait_for 5 test -e "$T/connected"
  fake_taker taker release
  wait_for 5 test -e "$T/offered"
  finish c  # ends between the offer and "taken"
  touch "$T/go"
  finish taker
  wait_for 10 not_running "$(pid_of balance)"
  cat "$T/taker.out"
  # The offer counted its slot and the bytes so far; the release the rest.
  read -r _ _ _ _ _ held _ _ _ _ _ sent received _ < <(grep "^channel " "$T/taker.out")
  [ "$held" -eq 1 ]
  read -r _ address _ conns fails sent2 received2 < <(grep "^release " "$T/taker.out")
  [ "$address $conns $fails" = "127.0.0.1:$(port_of e) 0 0" ]
  [ $((sent + sent2)) -eq 100000 ]
  [ $((received + received2)) -eq 100000 ]
  [ "$(tail -n 1 "$T/taker.out")" = "done" ]
}

@test "a client that connects as the offer goes out is left to the taker, and balance idles meanwhile" {
  command -v python3 >/dev/null || skip "python3 plays the taker"
  start_server e echo
  up -- "127.0.0.1:$(port_of e):4"
  pid=$(pid_of balance)
  fake_taker taker accept
  wait_for 5 test -e "$T/session"
  sleep 0.3  # balance accepts the session
  # Stopped, balance finds the request for the offer and then the client
  # in one pass, in that order.
  kill -STOP "$pid"
  touch "$T/ask"
  sleep 0.3
  client_bg c -x -n 1000 -t 10
  sleep 0.3
  kill -CONT "$pid"
  wait_for 5 test -e "$T/offered"
  before=$(cpu_ticks "$pid")
  finish taker  # 3 s accepting on the offered listener
  cat "$T/taker.out"
  [ "$(tail -n 1 "$T/taker.out")" = "accepted 1" ]
  # Frozen, with that client's event in hand: no busy loop (a spinning
  # balance burns about 300 ticks in those 3 s).
  if [ -r "/proc/$pid/stat" ]; then
    echo "CPU ticks while offered: $(($(cpu_ticks "$pid") - before))"
    [ $(($(cpu_ticks "$pid") - before)) -lt 30 ]
  fi
  # The taker went away: the old balance carries on and serves.
  wait_for 5 grep -q "hand-over failed" "$T/balance.err"
  client -x -n 1000 -t 10
}

@test "a client whose connect fails while the offer is out goes to the taker, not to a slot it does not count" {
  command -v python3 >/dev/null || skip "python3 plays the taker"
  start_server b blackhole
  start_server e echo
  # The faster channel never answers: its connect times out after 1 s.
  up -t 1 -- "127.0.0.1:$(port_of b):1:5" "127.0.0.1:$(port_of e):1:1"
  client_bg c -x -n 1000 -t 20 -r "$T/connected"
  wait_for 5 test -e "$T/connected"
  fake_taker taker release
  wait_for 5 test -e "$T/offered"
  wait_for 5 grep -q "channel 0:0 .* down: " "$T/balance.err"
  touch "$T/go"
  finish taker
  cat "$T/taker.out"
  # Passed on once taken (before, the old balance connected it to the
  # echo channel behind the taker's back).
  grep -q "^waiter " "$T/taker.out"
  grep -q "^release 127.0.0.1:$(port_of b) -1 " "$T/taker.out"
  ! grep -q "^release 127.0.0.1:$(port_of e) " "$T/taker.out"
}

@test "SIGUSR2 with a broken binary on disk logs it and changes nothing" {
  mkdir "$T/bin"
  cp "$BALANCE" "$T/bin/balance"
  real=$BALANCE
  BALANCE=$T/bin/balance
  start_hold h
  up -- "127.0.0.1:$(port_of h):1"
  BALANCE=$real  # for ctl: the copy is about to break
  printf '#!/bin/sh\nexit 3\n' >"$T/bin/balance.tmp"
  chmod 755 "$T/bin/balance.tmp"
  mv "$T/bin/balance.tmp" "$T/bin/balance"
  kill -USR2 "$(pid_of balance)"
  wait_for 5 grep -q "SIGUSR2: the new balance (pid [0-9]*) failed (exit status 3); still serving" "$T/balance.err"
  [ "$(pid_on_socket)" = "$(pid_of balance)" ]
  client -m hold -i 9 -x -t 10
  [ "$(total_of h)" -eq 1 ]
}

@test "-x refuses what it cannot take over, with the reason" {
  start_hold h
  run "$BALANCE" -f -x -S "$T/none.sock" 4 "127.0.0.1:$(port_of h)"
  [ "$status" -eq 1 ]
  [[ $output == "balance: -x: no balance to take over on port 4 (socket $T/none.sock: "* ]]
  up -- "127.0.0.1:$(port_of h)"
  other=$(free_port)
  run "$BALANCE" -f -x -S "$T/ctl.sock" -b "$BAL_ADDR" "$other" "127.0.0.1:$(port_of h)"
  [ "$status" -eq 1 ]
  [[ $output == *"-x: the running balance listens on 127.0.0.1:$BAL_PORT, this command line on 127.0.0.1:$other"* ]]
  # The refused taker changed nothing: the old one answers and relays.
  [ "$(pid_on_socket)" = "$(pid_of balance)" ]
  client -m hold -i 9 -x -t 10
  [ "$(total_of h)" -eq 1 ]
}

@test "show config prints a command line that rebuilds the running pool" {
  start_hold h
  up -q 50 -- "127.0.0.1:$(port_of h):2:3" ! "127.0.0.1:$(port_of h)"
  ctl "group 1; create 127.0.0.1 $(port_of h) 5 2; disable 0; rule deny 192.0.2.0/24"
  run ctl "show config"
  [ "${#lines[@]}" -eq 2 ]
  [[ ${lines[0]} == "balance -f -D 192.0.2.0/24 "* ]]
  # Run what it printed, on another port and socket, and compare the pools.
  port2=$(free_port)
  rebuilt() {
    local a
    eval "set -- ${1#balance }"
    args=()
    for a in "$@"; do
      [ "$a" = "$BAL_PORT" ] && a=$port2
      [ "$a" = "$T/ctl.sock" ] && a=$T/ctl2.sock
      args+=("$a")
    done
  }
  rebuilt "${lines[0]}"
  spawn other "$BALANCE" "${args[@]}"
  listens other "$port2"
  wait_for 5 test -S "$T/ctl2.sock"
  rebuilt "${lines[1]}"
  "$BALANCE" "${args[@]}"
  columns() { sed 's/  */ /g' | cut -d' ' -f1-6,9,12 | head -4; }
  [ "$(ctl show | columns)" = "$("$BALANCE" -S "$T/ctl2.sock" -c show "$port2" | columns)" ]
  [ "$("$BALANCE" -S "$T/ctl2.sock" -c "show rules" "$port2")" = "$(ctl "show rules")" ]
}

@test "under systemd (Type=notify) the unit follows the new process: READY=1, MAINPID=, STOPPING=1" {
  command -v python3 >/dev/null || skip "python3 is needed to play systemd's notify socket"
  spawn notify python3 -c '
import socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
s.settimeout(0.5)
end = time.time() + 60
with open(sys.argv[2], "a") as log:
    while time.time() < end:
        try:
            data = s.recv(4096)
        except socket.timeout:
            continue
        log.write(data.decode().replace("\n", " ") + "\n")
        log.flush()
' "$T/notify.sock" "$T/notify.log"
  wait_for 5 test -S "$T/notify.sock"
  start_hold h
  NOTIFY_SOCKET=$T/notify.sock up -- "127.0.0.1:$(port_of h)"
  old=$(pid_of balance)
  wait_for 5 grep -q "^READY=1 MAINPID=$old " "$T/notify.log"
  kill -USR2 "$old"
  wait_for 10 answers_with_pid_other_than "$old"
  new=$(pid_on_socket)
  echo "$new" >>"$T/pids"
  wait_for 5 grep -q "^READY=1 MAINPID=$new " "$T/notify.log"
  wait_for 10 not_running "$old"
  ! grep -q STOPPING "$T/notify.log"
  kill "$new"
  wait_for 5 grep -q "^STOPPING=1" "$T/notify.log"
}
