#!/usr/bin/env bats
# Relaying: every byte arrives in order, in both directions and both address
# families; half-close is carried across both ways; -T ends idle connections.

load test_helper

@test "an echo through balance returns every byte, from 0 B to 3 MiB" {
  start_server echo echo
  start_balance -- "127.0.0.1:$(port_of echo)"
  for n in 0 1 1000 65543 3145728; do
    run -0 client -n "$n" -s "$n" -x -t 20
  done
}

@test "a sink behind balance receives every byte: count and content match" {
  start_server sink sink -u 7
  start_balance -- "127.0.0.1:$(port_of sink)"
  for n in 1 100000 4194304; do
    run -0 client -m sink -n "$n" -s 7 -x -t 20
  done
}

@test "an IPv6 client reaches an IPv6 back-end with every byte intact" {
  SERVER_ADDR=::1 start_server echo echo
  BAL_ADDR=::1
  start_balance -- "[::1]:$(port_of echo)"
  run -0 client -n 2097152 -x -t 20
}

@test "an IPv4 client reaches an IPv6 back-end with every byte intact" {
  SERVER_ADDR=::1 start_server echo echo
  start_balance -- "[::1]:$(port_of echo)"
  run -0 client -n 2097152 -x -t 20
}

@test "an IPv6 client reaches an IPv4 back-end with every byte intact" {
  start_server echo echo
  BAL_ADDR=::1
  start_balance -- "127.0.0.1:$(port_of echo)"
  run -0 client -n 2097152 -x -t 20
}

@test "a client that shuts its write side still receives the whole reply" {
  start_server echo echo
  start_balance -- "127.0.0.1:$(port_of echo)"
  run -0 client -n 2097152 -x -t 20
}

@test "a sink that replies only after the client's EOF gets its reply through" {
  start_server sink sink -u 1
  start_balance -- "127.0.0.1:$(port_of sink)"
  run -0 client -m sink -n 300000 -x -t 20
}

@test "a back-end that closes first still delivers all its bytes" {
  start_server source source -n 3145728 -s 5
  start_balance -- "127.0.0.1:$(port_of source)"
  run -0 client -m source:3145728:5 -t 20
}

@test "after the back-end shuts its write side the client can still send to it" {
  start_server source source -h -n 100000 -s 5 -u 9 -R "$T/received"
  start_balance -- "127.0.0.1:$(port_of source)"
  run -0 client -m source:100000:5 -A -n 1000000 -s 9 -x -t 20
  wait_for 5 test -s "$T/received"
  [ "$(cat "$T/received")" = "source sent=100000 received=1000000 intact" ]
}

@test "32 parallel clients each get their own bytes back" {
  start_server echo echo
  start_balance -- "127.0.0.1:$(port_of echo)"
  run -0 client -c 32 -n 200000 -x -t 30
}

@test "-T closes a connection idle for that long, not before" {
  start_server echo echo
  start_balance -T 1 -- "127.0.0.1:$(port_of echo)"
  t0=$(now_ms)
  run -0 client -n 10 -t 6
  [ $(($(now_ms) - t0)) -ge 900 ]
}

@test "-T leaves a connection with steady traffic open" {
  start_server echo echo
  start_balance -T 1 -- "127.0.0.1:$(port_of echo)"
  run -0 client -n 100 -k 10 -I 0.3 -x -t 10
}
