#!/usr/bin/env bats
# Client classes by source network (balance.1, CLIENT CLASSES): access rules
# (-A, -D; first match wins; an allow rule refuses everyone else), priority
# networks (-P) served first with relief (-R), and the same at run time with
# `rule`. Loopback has many addresses: clients connect from 127.0.0.2,
# 127.0.0.3 ... and ::1 (helper client -B).

load test_helper

# from ADDR [OPTIONS]: a client of balance, connecting from ADDR.
from() {
  local addr=$1
  shift
  "$HELPER" client -B "$addr" "$@" "$BAL_ADDR" "$BAL_PORT"
}

# rules_line PATTERN: show rules has a line matching PATTERN.
rules_line() { ctl "show rules" | grep -qx "$1"; }

has_ipv6() { "$HELPER" freeport ::1 >/dev/null 2>&1; }

@test "access rules apply in order, first match wins, and an allow rule refuses the rest" {
  start_hold a
  up -D 127.0.0.2 -A 127.0.0.0/24 -- "127.0.0.1:$(port_of a)"
  run -0 from 127.0.0.3 -m hold -i 3 -x -t 5
  [ "$output" = "a 3" ]
  run -1 from 127.0.0.2 -m hold -i 2 -x -t 5   # denied before the allow rule is seen
  run -1 from 127.0.1.4 -m hold -i 4 -x -t 5   # in no rule: the default denies
  [ "$(log_of a)" = 3 ]                          # no refused client reached the back-end
  rules_line "deny 127.0.0.2/32 refused 1"
  rules_line "allow 127.0.0.0/24 allowed 1"
  rules_line "default deny refused 1"
}

@test "with no rules every client is allowed; a deny rule alone refuses only its network" {
  start_hold a
  up -- "127.0.0.1:$(port_of a)"
  run -0 from 127.0.0.5 -m hold -i 5 -x -t 5
  run -0 ctl "rule deny 127.0.0.5"
  [ "$output" = "rule deny 127.0.0.5/32 added" ]
  run -1 from 127.0.0.5 -m hold -i 6 -x -t 5
  run -0 from 127.0.0.6 -m hold -i 7 -x -t 5
  [ "$(log_of a)" = "5 7" ]
  grep -q "control (uid $(id -u)): rule deny 127.0.0.5/32 added" "$T/balance.err"
  grep -q "refused by the access rules: 1 client(s) closed, the last 127.0.0.5 (deny 127.0.0.5/32)" "$T/balance.err"
}

@test "IPv6 clients match IPv6 rules, and an IPv4-mapped client matches its IPv4 rule" {
  has_ipv6 || skip "no IPv6 loopback"
  start_hold a
  BAL_ADDR=::1
  up -b :: -A ::1 -A 127.0.0.7 -- "127.0.0.1:$(port_of a)"
  run -0 from ::1 -m hold -i 1 -x -t 5
  # The dual-stack listener sees 127.0.0.7 as ::ffff:127.0.0.7: the IPv4 rule holds.
  BAL_ADDR=127.0.0.1
  run -0 from 127.0.0.7 -m hold -i 7 -x -t 5
  run -1 from 127.0.0.8 -m hold -i 8 -x -t 5
  [ "$(log_of a)" = "1 7" ]
}

@test "waiting priority clients are served first, in order, with one in N from the others" {
  start_hold a
  up -P 127.0.0.9 -R 3 -- "127.0.0.1:$(port_of a):1"
  client_bg c0 -m hold -i 0 -g -H 20 -x -t 30
  wait_for 5 served 1 a
  # Three normal clients from 127.0.0.1, then four priority ones from .9.
  for i in 1 2 3; do
    spawn "n$i" "$HELPER" client -B 127.0.0.1 -m hold -i "n$i" -g -H 0.2 -x -t 30 "$BAL_ADDR" "$BAL_PORT"
    wait_for 5 eval '[[ $(ctl "show queue") == "'"$i"' waiting "* ]]'
  done
  for i in 1 2 3 4; do
    spawn "p$i" "$HELPER" client -B 127.0.0.9 -m hold -i "p$i" -g -H 0.2 -x -t 30 "$BAL_ADDR" "$BAL_PORT"
    wait_for 5 eval '[[ $(ctl "show queue") == "'"$((i + 3))"' waiting "* ]]'
  done
  run -0 ctl "show queue"
  [[ ${lines[1]} == *" priority 127.0.0.9:"* ]]
  [[ ${lines[5]} == *" normal 127.0.0.1:"* ]]
  kill "$(pid_of c0)"
  wait_for 20 served 8 a
  # Relief every third: p p n p p n n.
  [ "$(log_of a)" = "0 p1 p2 n1 p3 p4 n2 n3" ]
  run -0 ctl "show"
  [[ $output == *"waited by class: priority 4 clients,"*"; normal 3 clients,"* ]]
}

@test "rules changed at run time apply to new clients; waiting ones keep their class" {
  start_hold a
  up -- "127.0.0.1:$(port_of a):1"
  client_bg c0 -m hold -i 0 -g -H 20 -x -t 30
  wait_for 5 served 1 a
  spawn n1 "$HELPER" client -B 127.0.0.10 -m hold -i n1 -g -H 0.2 -x -t 30 "$BAL_ADDR" "$BAL_PORT"
  wait_for 5 eval '[[ $(ctl "show queue") == "1 waiting "* ]]'
  run -0 ctl "rule priority 127.0.0.10; rule deny 127.0.0.11"
  spawn p1 "$HELPER" client -B 127.0.0.10 -m hold -i p1 -g -H 0.2 -x -t 30 "$BAL_ADDR" "$BAL_PORT"
  wait_for 5 eval '[[ $(ctl "show queue") == "2 waiting "* ]]'
  run -1 from 127.0.0.11 -m hold -i d1 -x -t 5
  kill "$(pid_of c0)"
  wait_for 10 served 3 a
  [ "$(log_of a)" = "0 p1 n1" ]  # the newcomer from the priority network went first
  run -0 ctl "rule remove priority 127.0.0.10; show rules"
  [ "${lines[0]}" = "rule priority 127.0.0.10/32 removed" ]
  [[ ${lines[1]} == "1 rules;"* ]]
}

@test "malformed networks and unknown kinds are refused at start-up and at run time, changing nothing" {
  run -1 --separate-stderr timeout 5 "$BALANCE" -f -S "$T/x.sock" -A 10.0.0.0/33 8000 127.0.0.1
  [ "${stderr_lines[0]}" = "balance: -A 10.0.0.0/33: prefix longer than 32 bits for IPv4" ]
  run -1 --separate-stderr timeout 5 "$BALANCE" -f -S "$T/x.sock" -P ::1/129 8000 127.0.0.1
  [ "${stderr_lines[0]}" = "balance: -P ::1/129: prefix longer than 128 bits for IPv6" ]
  run -1 --separate-stderr timeout 5 "$BALANCE" -f -S "$T/x.sock" -D 10.0.0 8000 127.0.0.1
  [ "${stderr_lines[0]}" = "balance: -D 10.0.0: not an IPv4 or IPv6 address" ]
  [ ! -e "$T/x.sock" ]
  start_server echo echo
  up -D 127.0.0.20 -- "127.0.0.1:$(port_of echo)"
  for bad in "rule allow 10.0.0.0/33" "rule deny 300.1.1.1" "rule block 10.0.0.0/8" "rule allow" \
    "rule remove deny 10.9.9.9" "rule deny 127.0.0.20"; do
    run -1 --separate-stderr ctl "$bad"
    [[ $stderr == "error: "* ]]
  done
  [ "$(ctl "show rules" | sed -n 2p)" = "deny 127.0.0.20/32 refused 0" ]
  [ "$(ctl "show rules" | wc -l)" -eq 2 ]
  run -0 client -n 100 -x -t 5
}
