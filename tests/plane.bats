#!/usr/bin/env bats
# The control and statistics plane never stalls the relay (README,
# Architecture; balance.1, CONTROL COMMANDS and HTTP): replies of any size
# are rendered as the reader takes them, with bounded memory; slow readers,
# pipelined commands and a descriptor shortage cost the relay nothing; every
# form stays well formed whatever the host names hold. Sizes are bounded
# here to keep make check fast; bench/ and the README give the full ones.
# Memory and CPU come from /proc (Linux; these tests skip elsewhere).

load test_helper

need_proc() { [ -r /proc/self/status ] || skip "needs /proc"; }
rss_kb() { awk '$1 == "VmRSS:" {print $2}' "/proc/$1/status"; }
cpu_ticks() { local stat; stat=$(<"/proc/$1/stat"); stat=${stat##*) }; awk '{print $12 + $13}' <<<"$stat"; }

# many_channels N PORT: N channels on 127.0.0.1:PORT, one word each.
many_channels() { awk -v n="$1" -v p="$2" 'BEGIN { for (i = 0; i < n; i++) printf "127.0.0.1:%d:2:%d ", p, i % 5 + 1 }'; }

@test "show, show json and show csv of 10,000 channels arrive whole through balance -c" {
  start_server echo echo
  read -ra chans <<<"$(many_channels 10000 "$(port_of echo)")"
  up -- "${chans[@]}"
  run -0 ctl show
  [ "${#lines[@]}" -eq 10003 ]
  [[ ${lines[-2]} == "queue: 0 waiting,"* ]]
  run -0 ctl "show csv"
  [ "${#lines[@]}" -eq 10001 ]
  run -0 ctl "show json"
  [ "${#lines[@]}" -eq 1 ]
  if command -v python3 >/dev/null; then
    python3 -c 'import json, sys; d = json.loads(sys.stdin.read()); assert len(d["groups"][0]["channels"]) == 10000' <<<"$output"
  fi
  run -0 client -n 1000 -x -t 5  # and it relays
}

@test "slow /metrics readers cost bounded memory, given back when they leave, and the proxy relays meanwhile" {
  need_proc
  start_server echo echo
  read -ra chans <<<"$(many_channels 5000 "$(port_of echo)")"
  SP=$(free_port)
  up -s "$SP" -- "${chans[@]}"
  pid=$(pid_of balance)
  before=$(rss_kb "$pid")
  spawn readers "$CTLTOOL" readers -n 32 -k 1024 -I 0.05 -H 3 127.0.0.1 "$SP"
  sleep 1
  for seed in 1 2 3; do
    run -0 client -n 2000 -s "$seed" -x -t 5
  done
  during=$(rss_kb "$pid")
  finish readers
  [[ $(cat "$T/readers.out") == "opened=32 read="* ]]
  sleep 0.5
  after=$(rss_kb "$pid")
  echo "RSS before $before kB, during $during kB, after $after kB"
  # The whole metrics text is about 7 MB here; 32 readers hold a window each.
  [ "$during" -lt $((before + 16384)) ]
  [ "$after" -lt $((before + 4096)) ]
}

@test "800 pipelined show lines from a client that does not read cost bounded memory" {
  need_proc
  start_server echo echo
  read -ra chans <<<"$(many_channels 1000 "$(port_of echo)")"
  up -- "${chans[@]}"
  pid=$(pid_of balance)
  before=$(rss_kb "$pid")
  lines=$(printf 'show\\n%.0s' {1..800})
  run -0 ctltool send -N -q 2 -t 5 -a "$lines" "$T/ctl.sock"
  during=$(rss_kb "$pid")
  echo "RSS before $before kB, with 800 shows asked and none read $during kB"
  [ "$during" -lt $((before + 8192)) ]
  run -0 ctl version
  run -0 client -n 1000 -x -t 5
}

@test "show json and show csv stay well formed for any host name balance accepts" {
  start_server echo echo
  up -- "127.0.0.1:$(port_of echo)"
  # The resolver takes 127.0.0.1 with any number of leading zeros: hosts
  # of random length up to what a control line holds.
  cmds=""
  for len in 20 300 1000 2500 4000; do
    host="$(printf '0%.0s' $(seq 1 "$len"))177.0.0.1"
    cmds+="create $host $(port_of echo)"$'\n'
  done
  run -0 ctl "$cmds"
  run -0 ctl "show json"
  if command -v python3 >/dev/null; then
    python3 -c 'import json, sys; d = json.loads(sys.stdin.read()); assert len(d["groups"][0]["channels"]) == 6' <<<"$output"
    run -0 ctl "show csv"
    python3 -c 'import csv, sys; rows = list(csv.reader(sys.stdin)); assert len(rows) == 7 and len(set(map(len, rows))) == 1' <<<"$output"
  fi
  [[ $output == *'"host":"0000000000000000000177.0.0.1"'* || $output == *"0000000000000000000177.0.0.1"* ]]
}

@test "a burst of control clients connecting without blocking finds the backlog open" {
  start_server echo echo
  up -- "127.0.0.1:$(port_of echo)"
  kill -STOP "$(pid_of balance)"  # nothing accepts: the backlog alone takes them
  run ctltool hold -E -n 100 -H 0.1 -t 2 "$T/ctl.sock"
  kill -CONT "$(pid_of balance)"
  [[ $output == "opened=100 "* ]]
  run -0 ctl version
}

@test "out of descriptors with HTTP clients waiting, balance idles and serves them once descriptors free" {
  need_proc
  start_server echo echo
  SP=$(free_port)
  BAL_PORT=$(free_port)
  spawn balance bash -c 'ulimit -n 64 && exec "$@"' _ "$BALANCE" -f -S "$T/ctl.sock" -b 127.0.0.1 \
    -s "$SP" "$BAL_PORT" "127.0.0.1:$(port_of echo)"
  "$HELPER" wait-listen -t 5 -b 127.0.0.1 "$BAL_PORT"
  pid=$(pid_of balance)
  # Idle relayed connections take every descriptor.
  spawn flood "$HELPER" flood -n 60 -H 30 -r "$T/flooded" "$BAL_ADDR" "$BAL_PORT"
  wait_for 10 test -e "$T/flooded"
  wait_for 5 grep -q "cannot accept" "$T/balance.err"
  spawn http "$CTLTOOL" http -t 20 127.0.0.1 "$SP" /
  sleep 0.5
  before=$(cpu_ticks "$pid")
  sleep 2
  used=$(($(cpu_ticks "$pid") - before))
  echo "CPU over 2 s while out of descriptors: $used ticks"
  [ "$used" -le 10 ]
  kill "$(pid_of flood)"
  finish http
  [ "$(head -1 "$T/http.out")" = "HTTP/1.0 200 OK" ]
}
