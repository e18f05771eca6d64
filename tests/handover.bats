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
