#!/usr/bin/env bats
# The command line (CLI contract): bad arguments give status 1 and exactly
# "balance: <argument>: <why>" plus a pointer to -h on stderr, and start
# nothing; -h and -V; a clean exit on SIGTERM.

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

@test "listen port 0 is refused" {
  refused "balance: 0: port must be a number from 1 to 65535 or a service name" -f 0 127.0.0.1:9
}

@test "listen port 65536 is refused" {
  refused "balance: 65536: port must be a number from 1 to 65535 or a service name" -f 65536 127.0.0.1
}

@test "an unknown service name in a channel is refused" {
  refused 'balance: 127.0.0.1:x: unknown service "x"' -f 8000 127.0.0.1:x
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

@test "an unresolvable host is refused with the resolver's message" {
  run -1 --separate-stderr timeout 5 "$BALANCE" -S "$T/ctl.sock" -f 8000 nosuchhost.invalid
  [ "${#stderr_lines[@]}" -eq 2 ]
  [[ "${stderr_lines[0]}" == "balance: nosuchhost.invalid: "?* ]]
  [ "${stderr_lines[1]}" = "Try 'balance -h' for more information." ]
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
