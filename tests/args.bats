#!/usr/bin/env bats
# The command line (CLI contract): bad arguments give status 1 and exactly
# "balance: <argument>: <why>" plus a pointer to -h on stderr, and start
# nothing; a name that does not resolve gives the first line only (it is
# not a usage mistake); -h and -V; signals.

load test_helper

# refused LINE ARGS...: balance must reject ARGS with status 1, nothing on
# stdout, no control socket, and stderr exactly LINE then the -h pointer.
# (timeout: a balance that wrongly starts fails the test instead of hanging it.)
refused() {
  local want=$1
  shift
  run -1 --separate-stderr timeout 5 "$BALANCE" -S "$T/ctl.sock" "$@"
  [ "${#stderr_lines[@]}" -eq 2 ]
  [ "${stderr_lines[0]}" = "$want" ]
  [ "${stderr_lines[1]}" = "Try 'balance -h' for more information." ]
  [ -z "$output" ]
  [ ! -e "$T/ctl.sock" ]
}

# unresolved LINE ARGS...: the same for a name that does not resolve, but
# with no pointer to -h.
unresolved() {
  local want=$1
  shift
  run -1 --separate-stderr timeout 5 "$BALANCE" -S "$T/ctl.sock" "$@"
  [ "${#stderr_lines[@]}" -eq 1 ]
  [[ ${stderr_lines[0]} == $want ]]
  [ -z "$output" ]
  [ ! -e "$T/ctl.sock" ]
}

@test "listen port 0 is refused" {
  refused "balance: 0: port must be a number from 1 to 65535 or a service name" -f 0 127.0.0.1:9
}

@test "listen port 65536 is refused" {
  refused "balance: 65536: port must be a number from 1 to 65535 or a service name" -f 65536 127.0.0.1
}

@test "an unknown service name in a channel is refused, without a pointer to -h" {
  unresolved 'balance: 127.0.0.1:x: unknown service "x"' -f 8000 127.0.0.1:x
}

@test "a port that is neither a number nor a service name is a usage error" {
  refused "balance: 127.0.0.1:80x!: port must be a number from 1 to 65535 or a service name" -f 8000 127.0.0.1:80x!
  refused "balance:  80: port must be a number from 1 to 65535 or a service name" -f " 80" 127.0.0.1
}

@test "a negative maxc is refused" {
  refused "balance: 127.0.0.1:80:-1: maxc must be an integer from 0 to 1000000" -f 8000 127.0.0.1:80:-1
}

@test "weight 0 is refused" {
  refused "balance: 127.0.0.1:80:1:0: weight must be an integer from 1 to 1000000" -f 8000 127.0.0.1:80:1:0
}

@test "an unknown option is refused" {
  refused "balance: -z: unknown option" -z 8000 127.0.0.1
}

@test "a missing channel is refused" {
  refused "balance: 8000: missing channel" -f 8000
}

@test "an unresolvable host is refused with the resolver's message and no pointer to -h" {
  unresolved "balance: nosuchhost.invalid: ?*" -f 8000 nosuchhost.invalid
  unresolved "balance: -b nosuchhost.invalid: ?*" -f -b nosuchhost.invalid 8000 127.0.0.1
}

@test "-F is -f, as in balance 3.42" {
  start_server echo echo
  start_balance -F -- "127.0.0.1:$(port_of echo)"
  run -0 client -n 100 -x -t 5
}

@test "a trailing ! (an empty last group) is refused like a leading one" {
  refused "balance: !: empty group" -f 8000 127.0.0.1 !
  refused "balance: !: empty group" -f 8000 ! 127.0.0.1
}

@test "a channel that is balance's own listening address is refused" {
  port=$(free_port)
  refused_loop() {
    run -1 --separate-stderr timeout 5 "$BALANCE" -S "$T/ctl.sock" -f -b 127.0.0.1 "$port" "$@"
    [[ ${stderr_lines[0]} == *"127.0.0.1:$port is balance's own listening address; the channel would loop back to balance"* ]]
  }
  refused_loop 127.0.0.1        # the port defaults to the listening port
  refused_loop "127.0.0.1:$port"
  run -1 --separate-stderr timeout 5 "$BALANCE" -S "$T/ctl.sock" -f "$port" "localhost:$port"
  [[ $stderr == *"own listening address"* ]]  # the wildcard listener: any local address
  [ ! -e "$T/ctl.sock" ]
}

@test "a bind error names the address and says why a low port fails" {
  as_user
  run -1 --separate-stderr timeout 5 "${AS_USER[@]}" "$BALANCE" -S "$U/ctl.sock" -f -b 127.0.0.1 80 127.0.0.1:9
  [ "$stderr" = "balance: 127.0.0.1:80: bind: Permission denied (ports below 1024 need root or the CAP_NET_BIND_SERVICE capability)" ]
}

@test "a connect timeout that is not a number is refused" {
  refused "balance: -t abc: must be a number of seconds from 0.001 to 86400" -f -t abc 8000 127.0.0.1
}

@test "an empty group is refused" {
  refused "balance: !: empty group" -f 8000 127.0.0.1 ! !
}

@test "an IPv6 channel without brackets is refused" {
  refused "balance: ::1: write an IPv6 address in brackets, as [::1]" -f 8000 ::1
}

@test "a listen port already in use is reported with a nonzero status" {
  start_server echo echo
  run --separate-stderr timeout 5 "$BALANCE" -f -S "$T/ctl.sock" -b 127.0.0.1 "$(port_of echo)" 127.0.0.1:9
  [ "$status" -ne 0 ]
  [ "$status" -ne 124 ]
  [[ "${stderr_lines[0]}" == "balance: "* ]]
}

@test "-h prints the usage on stdout and exits 0" {
  run -0 --separate-stderr "$BALANCE" -h
  [[ "${output,,}" == *usage* ]]
  [[ "$output" == *channel* ]]
  [ -z "$stderr" ]
}

@test "-V prints a version and exits 0" {
  run -0 "$BALANCE" -V
  [[ "$output" =~ [0-9]+\.[0-9]+ ]]
}

@test "SIGTERM stops balance with status 0 and removes its control socket" {
  start_server echo echo
  start_balance -- "127.0.0.1:$(port_of echo)"
  wait_for 5 test -S "$T/ctl.sock"
  kill -TERM "$(pid_of balance)"
  wait_for 5 not_running "$(pid_of balance)"
  finish balance
  [ ! -e "$T/ctl.sock" ]
}

@test "SIGHUP and SIGUSR1 never stop balance; SIGUSR1 logs a status line" {
  # (SIGUSR2 restarts it: handover.bats.)
  start_server echo echo
  start_balance -- "127.0.0.1:$(port_of echo)"
  for sig in HUP USR1 HUP; do kill -"$sig" "$(pid_of balance)"; done
  wait_for 5 grep -q "status: 0 connections, 0 waiting, 1 of 1 channels in service" "$T/balance.err"
  wait_for 5 grep -q "SIGHUP: nothing to reload; still running" "$T/balance.err"
  running "$(pid_of balance)"
  run -0 client -n 100 -x -t 5
}

@test "SIGQUIT stops balance with status 0 and removes its control socket" {
  start_server echo echo
  start_balance -- "127.0.0.1:$(port_of echo)"
  wait_for 5 test -S "$T/ctl.sock"
  kill -QUIT "$(pid_of balance)"
  wait_for 5 not_running "$(pid_of balance)"
  finish balance
  [ ! -e "$T/ctl.sock" ]
}

@test "descriptors inherited from the caller are closed at start-up" {
  [ -d /proc/self/fd ] || skip "needs /proc"
  start_server echo echo
  exec 7>"$T/caller.lock"
  start_balance -- "127.0.0.1:$(port_of echo)"
  exec 7>&-
  ! ls -l "/proc/$(pid_of balance)/fd" | grep -q caller.lock
}

@test "-f log lines start with the local time to the millisecond" {
  start_server echo echo
  start_balance -s "$(free_port)" -- "127.0.0.1:$(port_of echo)"
  wait_for 5 grep -q "started" "$T/balance.err"
  grep -Eq "^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3} balance: .* started on .*, statistics on 127\.0\.0\.1:[0-9]+$" "$T/balance.err"
}
