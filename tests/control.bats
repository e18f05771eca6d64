#!/usr/bin/env bats
# The control channel (SPEC §4) and the statistics it serves (SPEC §5):
# balance -c and -i, the default socket path, every command, the reply
# framing, and the read-only HTTP listener (-s).
#
# Each balance runs in the foreground with its socket at $T/ctl.sock, except
# in the tests of the default path: those set TMPDIR so the socket lands in
# $TMPDIR/balance-UID/ (as root, where that rule is for other users, they run
# balance as nobody in a directory of their own under /tmp).

load test_helper

# field NAME: the value of column NAME for channel 0 of group 0 in show csv.
field() {
  ctl "show csv" | awk -F, -v name="$1" '
    NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
    $1 == 0 && $3 == 0 { print $col[name] }'
}
field_is() { [ "$(field "$1")" = "$2" ]; }

# waiting_is N: show queue reports N waiting clients.
waiting_is() { [[ $(ctl "show queue") == "$1 waiting "* ]]; }

# hold_bg NAME ID SECONDS: a background client that holds its slot.
hold_bg() { client_bg "$1" -m hold -i "$2" -g -H "$3" -x -t 30; }

# state_of N: the S column of channel N of group 0 in show.
state_of() { ctl show | awk -v n="$1" '$1 == 0 && $3 == n { print $4 }'; }

# user_balance NAME [OPTIONS] PORT CHANNEL...: balance without -S, as that
# user, with TMPDIR=$U; returns once PORT listens.
user_balance() {
  local name=$1 port=${*: -2:1}
  shift
  spawn "$name" "${AS_USER[@]}" env TMPDIR="$U" "$BALANCE" -f "$@"
  listens "$name" "$port" "${LISTEN:-127.0.0.1}"
}

# user_ctl [OPTIONS] PORT: balance -c or -i as that user, with TMPDIR=$U.
user_ctl() { "${AS_USER[@]}" env TMPDIR="$U" "$BALANCE" "$@"; }

# ---------------------------------------------------------------- -c and -i

@test "-c runs one command and prints its reply on stdout with status 0" {
  start_server echo echo
  up -- "127.0.0.1:$(port_of echo)"
  run -0 --separate-stderr ctl version
  [[ $output == "This is $("$BALANCE" -V) ("* ]]
  [ -z "$stderr" ]
}

@test "-c runs commands separated by ';' in order, on one session" {
  start_server echo echo
  up -- "127.0.0.1:$(port_of echo)"
  run -0 ctl "group 1; create 127.0.0.1 9; show queue"
  [ "${lines[0]}" = "group 1" ]
  [ "${lines[1]}" = "channel 0 created in group 1, disabled; enable it to use it" ]
  [[ ${lines[2]} == "0 waiting "* ]]
  run -0 ctl show
  [[ $output == *$'\n  1 RR     0 DIS  127.0.0.1 '* ]]
}

@test "-c stops at the first error, prints it on stderr and exits 1" {
  start_server echo echo
  up -- "127.0.0.1:$(port_of echo)"
  run -1 --separate-stderr ctl "version; frobnicate; kill"
  [[ $output == "This is balance "* ]]
  [ "$stderr" = 'error: unknown command "frobnicate"; type help for the list' ]
  running "$(pid_of balance)"
}

@test "-c gives up on a stopped balance after -t seconds, with a clear message" {
  start_server echo echo
  up -- "127.0.0.1:$(port_of echo)"
  kill -STOP "$(pid_of balance)"
  t0=$(now_ms)
  run -1 --separate-stderr timeout 10 "$BALANCE" -S "$T/ctl.sock" -t 1 -c show "$BAL_PORT"
  elapsed=$(($(now_ms) - t0))
  kill -CONT "$(pid_of balance)"
  [ "$stderr" = "balance: no answer from $T/ctl.sock within 1.000 s (see -t)" ]
  [ "$elapsed" -lt 5000 ]
  run -0 ctl version  # and it runs on
}

@test "-i reconnects by itself after the server closed its session" {
  start_server echo echo
  up -- "127.0.0.1:$(port_of echo)"
  # The commands after the first wait for $T/go (at most 10 s).
  spawn ic bash -c '{ echo "group 1"
      for _ in $(seq 200); do [ -e "$1/go" ] && break; sleep 0.05; done
      echo "show queue"; echo "create 127.0.0.1 9"; } | "$2" -S "$1/ctl.sock" -i "$3"' \
    _ "$T" "$BALANCE" "$BAL_PORT"
  wait_for 5 grep -q "^group 1$" "$T/ic.out"
  # 64 newer sessions: the -i session is the idlest and is closed.
  run -0 ctltool hold -n 64 -H 1 -a 'version\n' "$T/ctl.sock"
  touch "$T/go"
  finish ic
  [ "$(sed -n 2p "$T/ic.out")" = "0 waiting (high-water 0, limit 1024)" ]
  # The group chosen before is chosen again: the channel lands in group 1.
  [ "$(sed -n 3p "$T/ic.out")" = "channel 0 created in group 1, disabled; enable it to use it" ]
  grep -q "too many control connections" "$T/ic.err"
}

@test "-c says which port and socket it tried when no balance is running" {
  run -1 --separate-stderr "$BALANCE" -S "$T/none.sock" -c show 4321
  [ "$stderr" = "balance: no balance running on port 4321 (socket $T/none.sock)" ]
  [ -z "$output" ]
}

@test "-i reads piped commands without a prompt until EOF" {
  start_server echo echo
  up -- "127.0.0.1:$(port_of echo)"
  run -0 --separate-stderr "$BALANCE" -S "$T/ctl.sock" -i "$BAL_PORT" \
    < <(printf 'version\ngroup 1\nshow queue\n')
  [ "${#lines[@]}" -eq 3 ]
  [[ ${lines[0]} == "This is balance "* ]]
  [ "${lines[1]}" = "group 1" ]
  [[ ${lines[2]} == "0 waiting "* ]]
  [[ $output != *"balance["* ]]
}

@test "-i stops at quit and leaves the lines after it unsent" {
  start_server echo echo
  up -- "127.0.0.1:$(port_of echo)"
  run -0 "$BALANCE" -S "$T/ctl.sock" -i "$BAL_PORT" < <(printf 'version\nquit\nkill\n')
  [ "${lines[1]}" = "bye" ]
  running "$(pid_of balance)"
}

@test "-i runs on after an error but exits 1 when stdin is not a terminal" {
  start_server echo echo
  up -- "127.0.0.1:$(port_of echo)"
  run -1 --separate-stderr "$BALANCE" -S "$T/ctl.sock" -i "$BAL_PORT" \
    < <(printf 'enable 7\nversion\n')
  [ "$stderr" = "error: no channel 7 in group 0" ]
  [[ $output == "This is balance "* ]]
}

@test "-i keeps replies in step after a blank line too long for the server" {
  start_server echo echo
  up -- "127.0.0.1:$(port_of echo)"
  run --separate-stderr timeout 5 "$BALANCE" -S "$T/ctl.sock" -i "$BAL_PORT" \
    < <(printf '%5000s\nversion\nshow queue\n' '')
  [ "${#lines[@]}" -eq 2 ]
  [[ ${lines[0]} == "This is balance "* ]]
  [[ ${lines[1]} == "0 waiting "* ]]
}

@test "-c with a newline in its argument reports every command it sent" {
  start_server echo echo
  up -- "127.0.0.1:$(port_of echo)"
  run ctl $'version\nkill'
  # Either both replies are shown, or kill was never sent.
  if [[ $output != *"balance stops"* ]]; then
    sleep 0.5
    running "$(pid_of balance)"
  fi
}

@test "-i on a terminal prompts with the current group" {
  command -v script >/dev/null || skip "no script(1) to make a terminal"
  start_server echo echo
  up -- "127.0.0.1:$(port_of echo)"
  run -0 timeout 10 script -qec "$BALANCE -S $T/ctl.sock -i $BAL_PORT" /dev/null \
    < <(printf 'group 1\n'; sleep 0.5; printf 'quit\n'; sleep 0.5)
  [[ $output == *"balance[0] "* ]]
  [[ $output == *"balance[1] "* ]]
  [[ $output == *bye* ]]
}

@test "-c and -i find balance by its port alone under \$TMPDIR/balance-UID" {
  as_user
  start_server echo echo
  port=$(free_port)
  user_balance balance "$port" "127.0.0.1:$(port_of echo)"
  wait_for 5 test -S "$U/balance-$UID_U/$port.sock"
  run -0 user_ctl -c version "$port"
  [[ $output == "This is balance "* ]]
  run -0 user_ctl -i "$port" < <(echo "show queue")
  [[ $output == "0 waiting "* ]]
}

@test "-b ::1 and no -b are told apart: each name reaches only its own instance" {
  as_user
  "$HELPER" freeport ::1 >/dev/null 2>&1 || skip "no IPv6 loopback"
  start_server e1 echo
  start_server e2 echo
  start_server e3 echo
  p=$(free_port ::1)
  q=$(free_port)
  LISTEN=::1 user_balance b1 -b ::1 "$p" "127.0.0.1:$(port_of e1)"
  LISTEN=127.0.0.1 user_balance b2 -b 127.0.0.1 "$p" "127.0.0.1:$(port_of e2)"
  user_balance b3 "$q" "127.0.0.1:$(port_of e3)"
  wait_for 5 test -S "$U/balance-$UID_U/$q.sock"
  run -0 user_ctl -b ::1 -c "show csv" "$p"
  [[ $output == *",$(port_of e1),"* ]]
  run -0 user_ctl -b 127.0.0.1 -c "show csv" "$p"
  [[ $output == *",$(port_of e2),"* ]]
  run -0 user_ctl -c "show csv" "$q"
  [[ $output == *",$(port_of e3),"* ]]
  run -1 --separate-stderr user_ctl -c show "$p"
  [[ $stderr == "balance: no balance running on port $p (looked at $U/balance-$UID_U/$p.sock, "* ]]
  [[ $stderr == *"; one was started with -b: repeat it ("*"-b ::1"*")" ]]
  [[ $stderr == *"-b 127.0.0.1"* ]]
  run -1 --separate-stderr user_ctl -b ::1 -c show "$q"
  [[ $stderr == "balance: no balance running on port $q (looked at $U/balance-$UID_U/::1_$q.sock, "* ]]
}

# ---------------------------------------------------------------- show

@test "show has balance 3.x's columns in 3.x's order, then weight, fail, avgtime, speed and host" {
  start_server echo echo
  up -- "localhost:$(port_of echo):3:2"
  run -0 ctl show
  [[ ${lines[0]} =~ ^GRP\ +Type\ +#\ +S\ +ip-address\ +port\ +c\ +totalc\ +maxc\ +sent\ +rcvd\ +weight\ +fail\ +avgtime\ +speed\ learn\ jobs\ host$ ]]
  read -r grp type num st addr port c totalc maxc sent rcvd weight fail avg speed learn jobs host <<<"${lines[1]}"
  [ "$grp $type $num $st $addr $port" = "0 RR 0 ENA 127.0.0.1 $(port_of echo)" ]
  [ "$c $totalc $maxc $sent $rcvd $weight $fail $avg $host" = "0 0 3 0 0 2 0 0.000 localhost" ]
  [ "$speed $learn $jobs" = "2.000 pin 0" ]
  [ "${lines[2]}" = "queue: 0 waiting, high-water 0, limit 1024, wait limit 60.000 s; 0 dropped, 0 refused" ]
  [ "${#lines[@]}" -eq 4 ]
}

@test "show marks channels ENA, DIS and DOWN" {
  start_server echo echo
  dead=$(free_port)
  up -- "127.0.0.1:$dead" "127.0.0.1:$(port_of echo)" "127.0.0.1:$(port_of echo)"
  run -0 ctl "disable 2"
  for seed in 1 2; do # one of them tries the dead channel, then fails over
    run -0 client -n 100 -s "$seed" -x -t 5
  done
  [ "$(state_of 0)" = DOWN ]
  [ "$(state_of 1)" = ENA ]
  [ "$(state_of 2)" = DIS ]
  [ "$(ctl show | awk '$1 == 0 && $3 == 0 { print $13 }')" -ge 1 ] # fail
}

@test "show json is one line holding the overall and per-channel statistics" {
  start_server echo echo
  up -- "127.0.0.1:$(port_of echo):4:2"
  run -0 client -n 1000 -x -t 5
  wait_for 5 field_is rcvd 1000
  run -0 ctl "show json"
  [ "${#lines[@]}" -eq 1 ]
  [[ $output == '{"version":"'* ]]
  [[ $output == *'"queue":{"length":0,"high_water":0,"limit":1024,'* ]]
  [[ $output == *'"pid":'"$(pid_of balance)"','* ]]
  [[ $output == *'"channel":0,"state":"ENA","address":"127.0.0.1","port":'"$(port_of echo)"',"c":0,"totalc":1,"maxc":4,"sent":1000,"rcvd":1000,"weight":2,"failures":0,'* ]]
  [[ $output == *'"host":"127.0.0.1"}]}]}' ]]
  if command -v python3 >/dev/null; then
    python3 -c 'import json, sys; d = json.loads(sys.argv[1]); assert d["groups"][0]["channels"][0]["sent"] == 1000' "$output"
  fi
}

@test "show csv has a header of field names and one row per channel" {
  start_server echo echo
  up -- "127.0.0.1:$(port_of echo)" ! "127.0.0.1:$(port_of echo):2:5"
  run -0 ctl "show csv"
  [ "${lines[0]}" = "group,type,channel,state,address,port,c,totalc,maxc,sent,rcvd,weight,failures,mean_time_s,speed,learned,speed_jobs,since_change_s,host" ]
  [ "${#lines[@]}" -eq 3 ]
  [[ ${lines[1]} == "0,rr,0,ENA,127.0.0.1,$(port_of echo),0,0,0,0,0,1,0,0.000,1.000,false,0,"*",127.0.0.1" ]]
  [[ ${lines[2]} == "1,rr,0,ENA,127.0.0.1,$(port_of echo),0,0,2,0,0,5,0,0.000,5.000,false,0,"*",127.0.0.1" ]]
}

@test "show queue lists the waiting clients, oldest first" {
  start_hold a
  up -- "127.0.0.1:$(port_of a):1"
  hold_bg c1 1 20
  wait_for 5 served 1 a
  hold_bg c2 2 20
  hold_bg c3 3 20
  wait_for 5 waiting_is 2
  run -0 ctl "show queue"
  [ "${lines[0]}" = "2 waiting (high-water 2, limit 1024)" ]
  [[ ${lines[1]} =~ ^\ +0\ waiting\ [0-9]+\.[0-9]{3}\ s\ normal\ 127\.0\.0\.1:[0-9]+$ ]]
  [[ ${lines[2]} =~ ^\ +1\ waiting\ [0-9]+\.[0-9]{3}\ s\ normal\ 127\.0\.0\.1:[0-9]+$ ]]
  [[ $(ctl show) == *"queue: 2 waiting, high-water 2,"* ]]
}

# ---------------------------------------------------------------- commands

@test "disable drains: an open connection runs to its end, new ones go elsewhere" {
  start_hold a
  start_hold b
  up -- "127.0.0.1:$(port_of a)" "127.0.0.1:$(port_of b)"
  hold_bg c1 1 3
  wait_for 5 served 1 a b
  if [ "$(log_of a)" = 1 ]; then used=0 other=b; else used=1 other=a; fi
  run -0 ctl "disable $used"
  [ "$output" = "channel $used disabled" ]
  [ "$(ctl show | awk -v n="$used" '$1 == 0 && $3 == n { print $4, $7 }')" = "DIS 1" ]
  running "$(pid_of c1)"
  run -0 client -m hold -i 2 -x -t 5
  [ "$(log_of $other)" = 2 ]
  finish c1 # c1 got its "bye 1" through the disabled channel
}

@test "enable serves a waiting client at once" {
  start_hold a
  up -O 10 -- "127.0.0.1:$(port_of a)"  # -O: a client may wait while none is in service
  run -0 ctl "disable 0"
  hold_bg c1 1 1
  wait_for 5 waiting_is 1
  run -0 ctl "enable 0"
  [ "$output" = "channel 0 enabled" ]
  wait_for 3 served 1 a
  finish c1
}

@test "raising maxc serves a waiting client at once" {
  start_hold a
  up -- "127.0.0.1:$(port_of a):1"
  hold_bg c1 1 20
  wait_for 5 served 1 a
  hold_bg c2 2 1
  wait_for 5 waiting_is 1
  run -0 ctl "maxc 0 2"
  [ "$output" = "maxc of channel 0 set to 2" ]
  wait_for 3 served 2 a
  finish c2
  field_is maxc 2
}

@test "create adds a disabled channel and enable puts it to work" {
  start_hold a
  start_hold b
  up -O 10 -- "127.0.0.1:$(port_of a)"
  run -0 ctl "create 127.0.0.1 $(port_of b) 3 2"
  [ "$output" = "channel 1 created in group 0, disabled; enable it to use it" ]
  [ "$(ctl "show csv" | awk -F, '$3 == 1 { print $4, $6, $9, $12 }')" = "DIS $(port_of b) 3 2" ]
  run -0 ctl "disable 0"
  hold_bg c1 1 1
  wait_for 5 waiting_is 1
  run -0 ctl "enable 1"
  wait_for 3 served 1 b
  finish c1
  [ "$(lines_in "$T/a.log")" -eq 0 ]
}

@test "create refuses a host that does not resolve, with the resolver's reason" {
  start_server echo echo
  up -- "127.0.0.1:$(port_of echo)"
  run -1 --separate-stderr ctl "create 127.0.0.1 0"
  [[ $stderr == "error: 127.0.0.1 0: port must be"* ]]
  run -1 --separate-stderr ctl "create 127.0.0.1 80 1000001"
  [ "$stderr" = 'error: maxc "1000001" must be an integer from 0 to 1000000' ]
}

@test "delete removes a channel at once and keeps the others' numbers" {
  start_server echo echo
  e="127.0.0.1:$(port_of echo)"
  up -- "$e" "$e" "$e"
  run -0 ctl "delete 1"
  [ "$(ctl "show csv" | awk -F, 'NR > 1 { printf "%s ", $3 }')" = "0 2 " ]
  run -0 ctl "create 127.0.0.1 $(port_of echo)"
  [[ $output == "channel 3 created"* ]]
  run -1 --separate-stderr ctl "delete 1"
  [ "$stderr" = "error: no channel 1 in group 0" ]
  run -0 ctl "enable 3; delete 0; delete 2"
  run -0 client -n 1000 -x -t 5
}

@test "delete lets the channel's open connection run to its end" {
  start_hold a
  start_hold b
  up -- "127.0.0.1:$(port_of a)" "127.0.0.1:$(port_of b)"
  hold_bg c1 1 2
  wait_for 5 served 1 a b
  if [ "$(log_of a)" = 1 ]; then used=0 other=b; else used=1 other=a; fi
  run -0 ctl "delete $used"
  run -0 client -m hold -i 2 -x -t 5
  [ "$(log_of $other)" = 2 ]
  finish c1
}

@test "weight sets the speed of a channel's slot and refuses 0" {
  start_server echo echo
  up -- "127.0.0.1:$(port_of echo)"
  run -0 ctl "weight 0 7"
  [ "$output" = "weight of channel 0 set to 7" ]
  field_is weight 7
  run -1 --separate-stderr ctl "weight 0 0"
  [ "$stderr" = 'error: weight "0" must be an integer from 1 to 1000000 or auto' ]
  field_is weight 7
}

@test "sent and rcvd count every byte of bulk transfers (the splice path on Linux)" {
  start_server echo echo
  up -- "127.0.0.1:$(port_of echo)"
  run -0 client -n 8388608 -s 1 -x -t 20
  run -0 client -n 3000000 -s 2 -x -t 20
  wait_for 5 field_is rcvd 11388608
  field_is sent 11388608
}

@test "reset clears totalc, sent and rcvd of one channel" {
  start_server echo echo
  up -- "127.0.0.1:$(port_of echo)"
  for seed in 1 2 3; do run -0 client -n 1000 -s "$seed" -x -t 5; done
  wait_for 5 field_is rcvd 3000
  [ "$(field totalc) $(field sent)" = "3 3000" ]
  run -0 ctl "reset 0"
  [ "$(field totalc) $(field sent) $(field rcvd)" = "0 0 0" ]
  field_is state ENA
}

@test "mrtg-bytes and mrtg-conns answer balance's four lines" {
  start_server echo echo
  up -- "127.0.0.1:$(port_of echo)"
  run -0 client -n 1500 -x -t 5
  run -0 client -n 500 -s 2 -x -t 5
  wait_for 5 field_is rcvd 2000
  run -0 ctl "mrtg-bytes 0 0"
  [ "${#lines[@]}" -eq 4 ]
  [ "${lines[0]} ${lines[1]}" = "2000 2000" ]
  [ "${lines[3]}" = "group 0 channel 0" ]
  run -0 ctl "mrtg-conns 0 0"
  [ "${#lines[@]}" -eq 4 ]
  [ "${lines[0]}" = 2 ]
  run -1 --separate-stderr ctl "mrtg-bytes 0 5"
  [ "$stderr" = "error: no channel 5 in group 0" ]
}

@test "version answers balance's version" {
  start_server echo echo
  up -- "127.0.0.1:$(port_of echo)"
  run -0 ctl version
  [[ $output =~ ^This\ is\ balance\ [0-9]+\.[0-9]+\.[0-9]+\ \((epoll|poll|kqueue),\ pid\ $(pid_of balance)\)$ ]]
}

@test "kill stops balance with status 0 and removes its socket" {
  start_server echo echo
  up -- "127.0.0.1:$(port_of echo)"
  run -0 ctl kill
  [ "$output" = "balance stops" ]
  wait_for 5 not_running "$(pid_of balance)"
  finish balance
  [ ! -e "$T/ctl.sock" ]
  run -1 "$HELPER" probe -t 1 "$BAL_ADDR" "$BAL_PORT"
}

@test "quit ends the session: bye, then the connection closes" {
  start_server echo echo
  up -- "127.0.0.1:$(port_of echo)"
  run -0 ctltool send -S -t 3 -a 'quit\nversion\n' "$T/ctl.sock"
  [ "$output" = "replies=1 errors=0 end=eof" ]
  run -0 ctltool send -t 3 -a 'quit\n' "$T/ctl.sock"
  [ "$output" = "bye" ]
  running "$(pid_of balance)"
}

@test "an unambiguous prefix runs its command" {
  start_server echo echo
  up -- "127.0.0.1:$(port_of echo)"
  [[ $(ctl sh) == GRP* ]]
  [[ $(ctl ver) == "This is balance "* ]]
  [ "$(ctl "dis 0")" = "channel 0 disabled" ]
  [ "$(ctl "en 0")" = "channel 0 enabled" ]
  [ "$(ctl "w 0 3")" = "weight of channel 0 set to 3" ]
  [ "$(ctl "mrtg-c 0 0" | wc -l)" -eq 4 ]
  [[ $(ctl "?") == "commands "* ]]
}

@test "balance 3.x's prefixes take 3.x's first match; newer commands need their own" {
  start_server echo echo
  up -- "127.0.0.1:$(port_of echo)"
  [ "$(ctl "d 0")" = "channel 0 disabled" ]
  [ "$(ctl "e 0")" = "channel 0 enabled" ]
  [[ $(ctl h) == "commands "* ]]
  [ "$(ctl "r 0")" = "channel 0 counters reset" ]
  [ "$(ctl "m 0 3")" = "maxc of channel 0 set to 3" ]
  [ "$(ctl "mrtg 0 0" | wc -l)" -eq 4 ]
  [ "$(ctl "de 0")" = "channel 0 deleted" ]
  run -1 --separate-stderr ctl "dx 0"
  [ "$stderr" = 'error: unknown command "dx"; type help for the list' ]
}

@test "help lists every command" {
  start_server echo echo
  up -- "127.0.0.1:$(port_of echo)"
  run -0 ctl help
  for cmd in help show group rr hash enable disable create assign maxc weight delete reset \
    mrtg-bytes mrtg-conns version kill quit; do
    [[ $output == *$'\n  '"$cmd "* ]]
  done
}

@test "every reply on one connection ends with one empty line; errors start with error:" {
  start_server echo echo
  up -- "127.0.0.1:$(port_of echo)"
  run -0 ctltool send -S -c -n 9 -a 'version\nshow\nshow json\nshow csv\nshow queue\nhelp\nbogus\nmaxc 0 -1\n\nmrtg-bytes 0 0\n' "$T/ctl.sock"
  [ "$output" = "replies=9 errors=2 end=count" ]
}

@test "group switches the current group and a new number adds an empty group" {
  start_server echo echo
  up -- "127.0.0.1:$(port_of echo)"
  run -1 --separate-stderr ctl "group 2"
  [ "$stderr" = "error: no group 2 (groups are 0 to 1, the last one new)" ]
  run -0 ctl "group 1; hash; create 127.0.0.1 9; enable 0"
  [ "$(ctl "show csv" | awk -F, '$1 == 1 { print $2, $3, $4 }')" = "hash 0 ENA" ]
  run -0 client -n 100 -x -t 5 # group 0 still serves first
}

@test "assign re-points only a disabled channel" {
  start_server e1 echo
  start_server e2 echo
  up -- "127.0.0.1:$(port_of e1)"
  run -1 --separate-stderr ctl "assign 0 127.0.0.1 $(port_of e2)"
  [ "$stderr" = "error: channel 0 is enabled; disable it first" ]
  run -0 ctl "disable 0; assign 0 127.0.0.1 $(port_of e2); enable 0"
  field_is port "$(port_of e2)"
  run -0 client -n 1000 -x -t 5
}

# ---------------------------------------------------------------- HTTP (-s)

# up_stats CHANNEL...: balance with -s on a free port of 127.0.0.1 (SP).
up_stats() {
  SP=$(free_port)
  up -s "$SP" -- "$@"
}

@test "GET / on -s answers the show table as text" {
  start_server echo echo
  up_stats "127.0.0.1:$(port_of echo)"
  run -0 ctltool http 127.0.0.1 "$SP" /
  [ "${lines[0]}" = "HTTP/1.0 200 OK" ]
  [[ ${lines[1]} == "GRP Type "* ]]
  [[ ${lines[2]} == "  0 RR     0 ENA  127.0.0.1 "* ]]
  [[ ${lines[3]} == "queue: 0 waiting"* ]]
}

@test "GET /metrics on -s answers Prometheus text format" {
  start_server echo echo
  up_stats "127.0.0.1:$(port_of echo)"
  run -0 client -n 1000 -x -t 5
  wait_for 5 field_is rcvd 1000
  run -0 ctltool http -H 127.0.0.1 "$SP" /metrics
  [[ $output == *$'\r\nContent-Type: text/plain; version=0.0.4'* ]]
  run -0 ctltool http 127.0.0.1 "$SP" /metrics
  [ "${lines[0]}" = "HTTP/1.0 200 OK" ]
  [[ $output == *$'\n# TYPE balance_channel_up gauge\n'* ]]
  [[ $output == *$'\nbalance_channel_up{group="0",channel="0",host="127.0.0.1",address="127.0.0.1",port="'"$(port_of echo)"$'"} 1\n'* ]]
  [[ $output == *$'\nbalance_channel_sent_bytes_total{group="0",channel="0",'*$'} 1000\n'* ]]
  # Every line is a comment or "name{labels} value".
  printf '%s\n' "${lines[@]:1}" | while read -r line; do
    [[ $line =~ ^(#\ (HELP|TYPE)\ [a-z_]+\ .+|[a-z_]+(\{[^}]*\})?\ [0-9.e+-]+)$ ]] || {
      echo "bad line: $line"
      exit 1
    }
  done
}

@test "-s answers 404 for an unknown path and 405 for another method" {
  start_server echo echo
  up_stats "127.0.0.1:$(port_of echo)"
  run -0 ctltool http 127.0.0.1 "$SP" /admin
  [ "${lines[0]}" = "HTTP/1.0 404 Not Found" ]
  run -0 ctltool http -H -m POST -d "kill" 127.0.0.1 "$SP" /
  [[ $output == "HTTP/1.0 405 Method Not Allowed"$'\r\n'* ]]
  [[ $output == *$'\r\nAllow: GET, HEAD\r\n'* ]]
  run -0 ctltool http -m DELETE 127.0.0.1 "$SP" /metrics
  [ "${lines[0]}" = "HTTP/1.0 405 Method Not Allowed" ]
  running "$(pid_of balance)"
}

@test "-s answers 431 to an oversized request and runs on" {
  start_server echo echo
  up_stats "127.0.0.1:$(port_of echo)"
  run -0 ctltool http -O 1048576 127.0.0.1 "$SP" /
  [ "${lines[0]}" = "HTTP/1.0 431 Request Header Fields Too Large" ]
  run -0 ctltool http 127.0.0.1 "$SP" /
  [ "${lines[0]}" = "HTTP/1.0 200 OK" ]
}

@test "-s answers binary garbage with a 4xx and runs on" {
  start_server echo echo
  up_stats "127.0.0.1:$(port_of echo)"
  for seed in 1 2 3; do
    run -0 ctltool send -q 2 -g 20000 -z "$seed" 127.0.0.1 "$SP"
    [[ ${lines[0]} == "HTTP/1.0 4"* ]]
  done
  run -0 ctltool http 127.0.0.1 "$SP" /
  [ "${lines[0]}" = "HTTP/1.0 200 OK" ]
}

@test "the proxy relays while HTTP clients hold partial and slow requests" {
  start_server echo echo
  up_stats "127.0.0.1:$(port_of echo)"
  spawn partial "$CTLTOOL" hold -n 80 -H 8 -a 'GET / HT' -r "$T/held" 127.0.0.1 "$SP"
  spawn slow "$CTLTOOL" http -k 1 -I 0.2 -t 10 127.0.0.1 "$SP" /
  wait_for 5 test -e "$T/held"
  run -0 client -n 200000 -x -t 5
  [[ $(ctl version) == "This is balance "* ]]
  finish partial # every partial request is dropped after its deadline
  [ "$(cat "$T/partial.out")" = "opened=80 closed=80 data=0" ]
  run -0 ctltool http 127.0.0.1 "$SP" /
  [ "${lines[0]}" = "HTTP/1.0 200 OK" ]
  run -0 client -n 200000 -x -t 5
}
