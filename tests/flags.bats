#!/usr/bin/env bats
# Options whose effect is seen from outside: -p, -d, -B, -a, hash groups.

load test_helper

@test "-p shows every relayed chunk with its direction, escaping unprintable bytes" {
  start_server echo echo
  start_balance -p -- "127.0.0.1:$(port_of echo)"
  run -0 client -n 300 -x
  wait_for 5 grep -q "server -> client" "$T/balance.out"
  grep -q '^\[1\] client -> server 300 bytes$' "$T/balance.out"
  grep -q '\\x[0-9a-f][0-9a-f]' "$T/balance.out"
}

@test "-p shows every byte of a bulk transfer: no chunk bypasses the dump" {
  start_server echo echo
  start_balance -p -- "127.0.0.1:$(port_of echo)"
  run -0 client -n 1048576 -x -t 20
  # Every header counts its chunk; both directions add up to the whole.
  total() { awk -v dir="$1" '$0 ~ "^\\[1\\] " dir " [0-9]+ bytes$" { n += $(NF - 1) } END { print n + 0 }' "$T/balance.out"; }
  wait_for 5 test "$(total "server -> client")" = 1048576
  [ "$(total "client -> server")" = 1048576 ]
}

@test "-d logs one line per connection with its channel and bytes" {
  start_server echo echo
  start_balance -d -- "127.0.0.1:$(port_of echo)"
  run -0 client -n 1000 -x
  wait_for 5 grep -Eq "^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9:]{8}\.[0-9]{3} balance: connection 1 from 127.0.0.1:" "$T/balance.err"
  grep -q "to 0:0 127.0.0.1:$(port_of echo): closed; sent 1000, received 1000 bytes" "$T/balance.err"
}

@test "-B makes back-end connections from the given address" {
  start_server echo echo
  # A second balance, with -d, is the back-end: it logs where connections come from.
  inner=$(free_port)
  spawn inner "$BALANCE" -f -d -S "$T/inner.sock" -b 127.0.0.1 "$inner" "127.0.0.1:$(port_of echo)"
  listens inner "$inner"
  start_balance -B 127.0.0.2 -- "127.0.0.1:$inner"
  run -0 client -n 10 -x
  wait_for 5 grep -q "connection 1 from 127.0.0.2:" "$T/inner.err"
}

@test "-a disables a channel that fails, and only enable brings it back" {
  start_server echo echo
  dead=$(free_port)
  start_balance -a -r 0.2 -- "127.0.0.1:$dead" "127.0.0.1:$(port_of echo)"
  run -0 client -n 10 -x
  run -0 client -n 10 -x
  run -0 "$BALANCE" -S "$T/ctl.sock" -c "show csv" "$BAL_PORT"
  [[ $output == *$'\n'"0,rr,0,ADIS,127.0.0.1,$dead,"* ]]
  sleep 0.5  # several -r intervals: a disabled channel is not probed back
  run -0 "$BALANCE" -S "$T/ctl.sock" -c "show csv" "$BAL_PORT"
  [[ $output == *$'\n'"0,rr,0,ADIS,"* ]]
  run -0 "$BALANCE" -S "$T/ctl.sock" -c "enable 0; show csv" "$BAL_PORT"
  [[ $output == *$'\n'"0,rr,0,ENA,"* ]]
}

@test "a hash group keeps a client on one channel" {
  start_hold a
  start_hold b
  start_hold c
  start_balance -- "127.0.0.1:$(port_of a)" "127.0.0.1:$(port_of b)" "127.0.0.1:$(port_of c)" %
  for id in 1 2 3 4 5 6; do
    run -0 client -m hold -i "$id" -x -t 5
  done
  served 6 a b c
  # All six on one back-end: the other two logged nothing.
  [ "$(lines_in "$T/a.log")$(lines_in "$T/b.log")$(lines_in "$T/c.log")" = "600" ] ||
    [ "$(lines_in "$T/a.log")$(lines_in "$T/b.log")$(lines_in "$T/c.log")" = "060" ] ||
    [ "$(lines_in "$T/a.log")$(lines_in "$T/b.log")$(lines_in "$T/c.log")" = "006" ]
}
