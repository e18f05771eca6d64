#!/usr/bin/env bats
# Choosing a back-end (SPEC §2): maxc, fastest free slot, FIFO waiting, -q 0,
# failover on refusal and on -t, recovery after -r, groups in order.
# Hold servers log each client's id and count their connections; clients hold
# their slot until told (-H) and print "SERVER ID".

load test_helper

# Starts a slow (maxc 2, weight 1) and a fast (maxc 2, weight 3) channel,
# the slow one first so that neither order nor round robin explains a pass.
fast_and_slow() {
  start_hold slow
  start_hold fast
  start_balance -- "127.0.0.1:$(port_of slow):2:1" "127.0.0.1:$(port_of fast):2:3"
}

# hold_bg NAME ID SECONDS: a background client that holds its slot.
hold_bg() { client_bg "$1" -m hold -i "$2" -g -H "$3" -x -t 30; }

@test "maxc is never exceeded under a burst of 40 clients, and all 40 are served" {
  start_hold a
  start_hold b
  start_balance -- "127.0.0.1:$(port_of a):2" "127.0.0.1:$(port_of b):3"
  run -0 client -c 40 -m hold -i 0 -g -H 0.2 -x -t 30
  [ "${#lines[@]}" -eq 40 ]
  [ "$(max_of a)" -eq 2 ]
  [ "$(max_of b)" -eq 3 ]
  [ "$(sort -n "$T/a.log" "$T/b.log" | tr '\n' ' ')" = "$(seq 0 39 | tr '\n' ' ')" ]
}

@test "the fastest free slot wins: two clients go to the fast channel, the third to the slow" {
  fast_and_slow
  for id in 1 2 3; do
    hold_bg "c$id" "$id" 20
    wait_for 5 served "$id" fast slow
  done
  [ "$(log_of fast)" = "1 2" ]
  [ "$(log_of slow)" = "3" ]
}

@test "a freed fast slot is preferred to a free slow one" {
  fast_and_slow
  hold_bg c1 1 1
  wait_for 5 served 1 fast slow
  hold_bg c2 2 20
  wait_for 5 served 2 fast slow
  hold_bg c3 3 20
  wait_for 5 served 3 fast slow
  finish c1
  sleep 0.2 # let balance see the end of c1's back-end connection
  hold_bg c4 4 20
  wait_for 5 served 4 fast slow
  [ "$(log_of fast)" = "1 2 4" ]
}

@test "waiting clients are served in the order they arrived" {
  start_hold one
  start_balance -- "127.0.0.1:$(port_of one):1"
  hold_bg c0 0 2
  wait_for 5 served 1 one
  for id in 1 2 3 4 5; do
    client_bg "c$id" -m hold -i "$id" -g -x -t 30 -r "$T/c$id.ready"
    wait_for 5 test -e "$T/c$id.ready"
  done
  for id in 0 1 2 3 4 5; do finish "c$id"; done
  [ "$(log_of one)" = "0 1 2 3 4 5" ]
}

@test "-q 0 closes a new client at once when the only slot is busy" {
  start_hold one
  start_balance -q 0 -- "127.0.0.1:$(port_of one):1"
  hold_bg c1 1 20
  wait_for 5 served 1 one
  run -0 probe -t 3
  [[ "$output" == closed || "$output" == reset ]]
}

@test "a refused channel is skipped and its clients are served by the next one" {
  start_server echo echo
  start_balance -- "127.0.0.1:$(free_port)" "127.0.0.1:$(port_of echo)"
  for seed in 1 2 3 4; do
    run -0 client -n 1000 -s "$seed" -x -t 5
  done
}

@test "a refused channel in group 0 falls through to group 1" {
  start_server echo echo
  start_balance -- "127.0.0.1:$(free_port)" ! "127.0.0.1:$(port_of echo)"
  run -0 client -n 1000 -x -t 5
}

@test "a down channel is probed every -r seconds and its waiting client served when it is back" {
  port=$(free_port)
  # -O: wait out the outage; -e: the client's FIN after its request keeps it waiting.
  start_balance -r 0.5 -O 15 -e -- "127.0.0.1:$port"
  client_bg c1 -n 1000 -x -t 15
  sleep 1 # c1 finds the only channel down and waits
  running "$(pid_of c1)"
  start_server echo echo -p "$port"
  finish c1
}

@test "-t gives up on a back-end that never answers and the next channel serves the client" {
  start_server hole blackhole
  start_server echo echo
  start_balance -t 0.5 -- "127.0.0.1:$(port_of hole)" "127.0.0.1:$(port_of echo)"
  for seed in 1 2; do
    run -0 client -n 1000 -s "$seed" -x -t 3
  done
}

@test "group 1 is used only when group 0 has no free slot" {
  start_hold g0
  start_hold g1
  start_balance -- "127.0.0.1:$(port_of g0):1" ! "127.0.0.1:$(port_of g1):1"
  hold_bg c1 1 20
  wait_for 5 served 1 g0 g1
  hold_bg c2 2 20
  wait_for 5 served 2 g0 g1
  [ "$(log_of g0)" = 1 ]
  [ "$(log_of g1)" = 2 ]
}

@test "a client that finds no channel in service is closed at once and counted as refused" {
  port=$(free_port)
  start_hold a
  start_balance -r 60 -- "127.0.0.1:$port" ! "127.0.0.1:$(port_of a)"
  run -0 "$BALANCE" -S "$T/ctl.sock" -c "group 1; disable 0" "$BAL_PORT"
  t0=$(now_ms)
  run -0 "$HELPER" end -t 5 "$BAL_ADDR" "$BAL_PORT"  # its connect fails over to nothing
  [[ $output == *"end=eof"* ]]
  [ $(($(now_ms) - t0)) -lt 2000 ]
  run -0 "$BALANCE" -S "$T/ctl.sock" -c "show" "$BAL_PORT"
  [[ $output == *"; 0 dropped, 1 refused"* ]]
  [ "$(lines_in "$T/a.log")" -eq 0 ]
}

@test "clients already waiting stay when every channel goes out of service, and are served when one is enabled" {
  start_hold a
  start_balance -- "127.0.0.1:$(port_of a):1"
  hold_bg c1 1 20
  wait_for 5 served 1 a
  hold_bg c2 2 1
  wait_for 5 eval '[[ $("$BALANCE" -S "$T/ctl.sock" -c "show queue" "$BAL_PORT") == "1 waiting "* ]]'
  run -0 "$BALANCE" -S "$T/ctl.sock" -c "disable 0" "$BAL_PORT"
  kill "$(pid_of c1)"  # c1's slot frees; the channel stays disabled
  sleep 0.3
  running "$(pid_of c2)"
  run -0 "$BALANCE" -S "$T/ctl.sock" -c "enable 0" "$BAL_PORT"
  wait_for 5 served 2 a
  finish c2
}

@test "a waiting client that sends its request and closes leaves the queue; nothing reaches a back-end" {
  start_hold a
  start_balance -- "127.0.0.1:$(port_of a):1"
  hold_bg c1 1 20
  wait_for 5 served 1 a
  run -0 client -m print -i 2 -x -t 2  # sends "2\n", half-closes while it waits
  [ -z "$output" ]
  [[ $("$BALANCE" -S "$T/ctl.sock" -c "show queue" "$BAL_PORT") == "0 waiting "* ]]
  kill "$(pid_of c1)"
  sleep 0.5
  [ "$(log_of a)" = 1 ]  # client 2 never reached the back-end
}

@test "-e keeps a half-closed waiting client in the queue and delivers its request" {
  start_hold a
  start_balance -e -- "127.0.0.1:$(port_of a):1"
  hold_bg c1 1 20
  wait_for 5 served 1 a
  client_bg c2 -m hold -i 2 -x -t 20
  wait_for 5 eval '[[ $("$BALANCE" -S "$T/ctl.sock" -c "show queue" "$BAL_PORT") == "1 waiting "* ]]'
  kill "$(pid_of c1)"
  wait_for 5 served 2 a
  [ "$(log_of a)" = "1 2" ]
}

# sized_job NAME ID BYTES SECONDS: a background client whose request, framed
# as distcc's, tells balance -j its size; it holds its slot SECONDS.
sized_job() { client_bg "$1" -D -m hold -i "$2" -n "$3" -g -H "$4" -x -t 30; }

@test "-j: a big job waits for a faster slot that frees soon; a small one takes the free slow slot" {
  start_hold slow
  start_hold fast
  up -j 1 -- "127.0.0.1:$(port_of slow):1:1" "127.0.0.1:$(port_of fast):1:3"
  # Jobs of 300 KB in about 0.1 s on a weight-3 slot set balance's scale:
  # about 3 MB/s a slot on fast, 1 MB/s on slow.
  for id in 1 2 3 4; do
    run -0 client -D -m hold -i "$id" -n 300000 -g -H 0.1 -x -t 30
  done
  [ "$(log_of fast)" = "1 2 3 4" ]
  # fast runs a job expected to take about 1 s (3 MB); it ends after 1.5 s.
  sized_job c5 5 3000000 1.5
  wait_for 5 served 5 fast slow
  # 300 KB: 0.3 s on slow now, over 1 s on fast: slow, at once.
  run -0 client -D -m hold -i 6 -n 300000 -g -H 0.1 -x -t 30
  [ "$(log_of slow)" = 6 ]
  cur_is fast 1  # c5 still runs, or the next step would prove nothing
  # 6 MB: 6 s on slow, about 2 s on fast once it frees: it waits for fast.
  sized_job c7 7 6000000 0.1
  finish c5
  wait_for 5 served 7 fast slow
  finish c7
  [ "$(log_of fast)" = "1 2 3 4 5 7" ]
  [ "$(log_of slow)" = 6 ]
}
