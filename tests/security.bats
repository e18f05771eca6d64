#!/usr/bin/env bats
# The control socket's defences (SPEC §4, §7): a private directory and
# socket, nothing followed or overwritten at the socket path, stale sockets
# replaced and live ones kept, peers of another uid refused; and hostile
# control clients (garbage, a 1 MiB line, partial lines, idle crowds, clients
# that never read, thousands of fuzzed commands) never stop the proxy.
#
# The tests of the default socket directory set TMPDIR; as root (whose
# sockets live in /run/balance) they run balance as nobody, in a directory
# of their own under /tmp that teardown removes.

load test_helper

# mode_of PATH: the permission string ls shows, e.g. drwx------.
mode_of() { ls -ld "$1" | cut -c1-10; }

# open_dir: a fresh directory under /tmp that other users may enter, in W.
open_dir() {
  W=$(mktemp -d /tmp/balance-sec.XXXXXX)
  echo "$W" >>"$T/rmdirs"
  chmod 755 "$W"
}

# mkdir_user DIR MODE: a directory owned by that user.
mkdir_user() {
  mkdir -m "$2" "$1"
  if [ "$(id -u)" -eq 0 ]; then chown nobody "$1"; fi
}

# refused_start LINE: balance on the default path, as that user, must fail
# at once with status 1 and LINE alone on stderr.
refused_start() {
  run -1 --separate-stderr timeout 5 "${AS_USER[@]}" env TMPDIR="$U" \
    "$BALANCE" -f -b 127.0.0.1 "$(free_port)" 127.0.0.1:9
  [ "$stderr" = "$1" ]
  [ -z "$output" ]
}

# relays: a client through balance gets its bytes back.
relays() { client -n 100000 -x -t 10; }

# show_answers: a well-formed show, with channel 0 of group 0 in service.
show_answers() {
  run -0 ctl show
  [[ ${lines[0]} == "GRP Type "* ]]
  [[ ${lines[1]} == "  0 RR     0 ENA  127.0.0.1 "* ]]
}

# ---------------------------------------------------------------- the socket's place

@test "the socket directory is created 0700 and the socket 0600, whatever the umask" {
  as_user
  start_server echo echo
  port=$(free_port)
  spawn balance "${AS_USER[@]}" env TMPDIR="$U" sh -c 'umask 0; exec "$@"' sh \
    "$BALANCE" -f -b 127.0.0.1 "$port" "127.0.0.1:$(port_of echo)"
  wait_for 5 test -S "$D/127.0.0.1_$port.sock"
  [ "$(mode_of "$D")" = "drwx------" ]
  [ "$(mode_of "$D/127.0.0.1_$port.sock")" = "srw-------" ]
  [ "$(ls -nd "$D" | awk '{print $3}')" = "$UID_U" ]
}

@test "a socket given with -S is 0600 too" {
  start_server echo echo
  up -- "127.0.0.1:$(port_of echo)"
  [ "$(mode_of "$T/ctl.sock")" = "srw-------" ]
}

@test "a symbolic link in place of the socket directory is refused, not followed" {
  as_user
  mkdir_user "$U/elsewhere" 700
  ln -s "$U/elsewhere" "$D"
  refused_start "balance: $D: not a directory (a symbolic link or file is in the way); refusing to use it (remove it, or give -S a socket path in a directory of your own)"
  [ -z "$(ls -A "$U/elsewhere")" ]
}

@test "a file in place of the socket directory is refused" {
  as_user
  echo keep >"$D"
  refused_start "balance: $D: not a directory (a symbolic link or file is in the way); refusing to use it (remove it, or give -S a socket path in a directory of your own)"
  [ "$(cat "$D")" = keep ]
}

@test "a socket directory owned by another user is refused" {
  [ "$(id -u)" -eq 0 ] || skip "needs root to make a directory owned by another user"
  as_user
  mkdir -m 700 "$D" # root's
  refused_start "balance: $D: owned by uid 0, not by you; refusing to use it (remove it, or give -S a socket path in a directory of your own)"
  [ -z "$(ls -A "$D")" ]
}

@test "a socket directory writable by group or others is refused" {
  as_user
  for mode in 770 707 777 1777; do
    mkdir_user "$D" 700
    chmod "$mode" "$D"
    refused_start "balance: $D: writable by others; refusing to use it (chmod 700 it, or give -S a socket path in a directory of your own)"
    [ -z "$(ls -A "$D")" ]
    rmdir "$D"
  done
}

@test "a symbolic link planted at the socket path is refused, neither followed nor replaced" {
  echo precious >"$T/victim"
  for target in "$T/victim" "$T/nowhere"; do
    ln -sfn "$target" "$T/ctl.sock"
    run -1 --separate-stderr timeout 5 "$BALANCE" -f -S "$T/ctl.sock" -b 127.0.0.1 "$(free_port)" 127.0.0.1:9
    [ "$stderr" = "balance: $T/ctl.sock: exists and is not a socket; refusing to replace it" ]
    [ -L "$T/ctl.sock" ]
  done
  [ "$(cat "$T/victim")" = precious ]
  [ ! -e "$T/nowhere" ]
}

@test "a symbolic link planted at the default socket path is refused too" {
  as_user
  mkdir_user "$D" 700
  echo precious >"$U/victim"
  port=$(free_port)
  ln -s "$U/victim" "$D/127.0.0.1_$port.sock"
  run -1 --separate-stderr timeout 5 "${AS_USER[@]}" env TMPDIR="$U" \
    "$BALANCE" -f -b 127.0.0.1 "$port" 127.0.0.1:9
  [ "$stderr" = "balance: $D/127.0.0.1_$port.sock: exists and is not a socket; refusing to replace it" ]
  [ -L "$D/127.0.0.1_$port.sock" ]
  [ "$(cat "$U/victim")" = precious ]
}

@test "a regular file at the socket path is refused and left alone" {
  echo precious >"$T/ctl.sock"
  run -1 --separate-stderr timeout 5 "$BALANCE" -f -S "$T/ctl.sock" -b 127.0.0.1 "$(free_port)" 127.0.0.1:9
  [ "$stderr" = "balance: $T/ctl.sock: exists and is not a socket; refusing to replace it" ]
  [ "$(cat "$T/ctl.sock")" = precious ]
}

@test "a stale socket left by a balance killed with SIGKILL is replaced" {
  start_server echo echo
  up -- "127.0.0.1:$(port_of echo)"
  kill -KILL "$(pid_of balance)"
  wait_for 5 not_running "$(pid_of balance)"
  [ -S "$T/ctl.sock" ]
  run -1 ctl version # nobody answers on it
  up -- "127.0.0.1:$(port_of echo)"
  run -0 ctl version
  relays
}

@test "a second balance on a live socket fails with already running and leaves the first alone" {
  start_server echo echo
  up -- "127.0.0.1:$(port_of echo)"
  other=$(free_port)
  run -1 --separate-stderr timeout 5 "$BALANCE" -f -S "$T/ctl.sock" -b 127.0.0.1 "$other" "127.0.0.1:$(port_of echo)"
  [[ $stderr == "balance: already running "*"(socket $T/ctl.sock)" ]]
  [ -S "$T/ctl.sock" ]
  show_answers
  relays
}

@test "a second balance on the same port and default socket fails with already running" {
  as_user
  start_server echo echo
  port=$(free_port)
  spawn balance "${AS_USER[@]}" env TMPDIR="$U" "$BALANCE" -f -b 127.0.0.1 "$port" "127.0.0.1:$(port_of echo)"
  wait_for 5 test -S "$D/127.0.0.1_$port.sock"
  run -1 --separate-stderr timeout 5 "${AS_USER[@]}" env TMPDIR="$U" \
    "$BALANCE" -f -b 127.0.0.1 "$port" "127.0.0.1:$(port_of echo)"
  [[ $stderr == *"already running"* ]]
  run -0 "${AS_USER[@]}" env TMPDIR="$U" "$BALANCE" -b 127.0.0.1 -c version "$port"
}

# ---------------------------------------------------------------- peers

@test "a peer with another uid is refused even when the socket's mode would let it in" {
  [ "$(id -u)" -eq 0 ] || skip "needs root to connect as another user"
  command -v setpriv >/dev/null || skip "no setpriv to become nobody"
  open_dir
  start_server echo echo
  BAL_PORT=$(free_port)
  spawn balance "$BALANCE" -f -S "$W/ctl.sock" -b 127.0.0.1 "$BAL_PORT" "127.0.0.1:$(port_of echo)"
  wait_for 5 test -S "$W/ctl.sock"
  chmod 666 "$W/ctl.sock" # only the uid check stands in the way now
  nobody=(setpriv --reuid=nobody --regid=nogroup --clear-groups)
  tools_for_others
  run -0 "${nobody[@]}" "$CTLTOOL" send -t 3 -a 'kill\n' "$W/ctl.sock"
  [ "$output" = "error: permission denied" ]
  run -1 "${nobody[@]}" "$BALANCE" -S "$W/ctl.sock" -c kill "$BAL_PORT"
  running "$(pid_of balance)"
  grep -q "control: refused a connection from uid $(id -u nobody)" "$T/balance.err"
  run -0 "$BALANCE" -S "$W/ctl.sock" -c version "$BAL_PORT"
}

@test "the client talks only to a server run by its own user or root" {
  [ "$(id -u)" -eq 0 ] || skip "needs root"
  as_user
  start_server echo echo
  BAL_PORT=$(free_port)
  # Another user's process at the socket: root's client will not send it
  # a command, nor believe its reply.
  spawn balance "${AS_USER[@]}" "$BALANCE" -f -S "$U/ctl.sock" -b 127.0.0.1 "$BAL_PORT" "127.0.0.1:$(port_of echo)"
  wait_for 5 test -S "$U/ctl.sock"
  run -1 --separate-stderr "$BALANCE" -S "$U/ctl.sock" -c "disable 0" "$BAL_PORT"
  [ "$stderr" = "balance: $U/ctl.sock: it is run by uid $UID_U, neither you nor root; not talking to it" ]
  run -0 "${AS_USER[@]}" "$BALANCE" -S "$U/ctl.sock" -c "show csv" "$BAL_PORT"
  [[ ${lines[1]} == "0,rr,0,ENA,"* ]]  # nothing was disabled
}

@test "members of the -G group may look but not change anything" {
  [ "$(id -u)" -eq 0 ] || skip "needs root to run balance for a group"
  as_user
  group=$(id -gn nobody)
  start_server echo echo
  start_balance -G "$group" -S "$U/root.sock" -- "127.0.0.1:$(port_of echo)"
  wait_for 5 test -S "$U/root.sock"
  [ "$(stat -c '%a %G' "$U/root.sock")" = "660 $group" ]
  run -0 "${AS_USER[@]}" "$BALANCE" -S "$U/root.sock" -c "show csv; show json; mrtg-bytes 0 0; version; help; group 0" "$BAL_PORT"
  run -1 --separate-stderr "${AS_USER[@]}" "$BALANCE" -S "$U/root.sock" -c "disable 0" "$BAL_PORT"
  [ "$stderr" = "error: permission denied: disable changes balance, and this session is read-only (-G)" ]
  run -1 --separate-stderr "${AS_USER[@]}" "$BALANCE" -S "$U/root.sock" -c "group 1" "$BAL_PORT"
  [ "$stderr" = "error: permission denied: read-only access cannot add a group" ]
  run -0 "$BALANCE" -S "$U/root.sock" -c "show csv" "$BAL_PORT"
  [[ ${lines[1]} == "0,rr,0,ENA,"* ]]
  [ "$(awk -F, 'NR > 1' <<<"$output" | wc -l)" -eq 1 ]  # no group was added
}

@test "a client refuses a socket directory squatted by another user" {
  [ "$(id -u)" -eq 0 ] || skip "needs root to act as two users"
  id daemon >/dev/null 2>&1 || skip "no daemon user"
  as_user
  # nobody made daemon's socket directory first; daemon's client must not use it.
  daemon_uid=$(id -u daemon)
  mkdir_user "$U/balance-$daemon_uid" 700
  run -1 --separate-stderr setpriv --reuid=daemon --regid=daemon --clear-groups env TMPDIR="$U" \
    "$BALANCE" -c show 3632
  [ "$stderr" = "balance: $U/balance-$daemon_uid: owned by uid $UID_U, not by you; refusing to use it (remove it, or give -S a socket path in a directory of your own)" ]
}

# ---------------------------------------------------------------- hostile clients

@test "binary garbage gets error replies only; the proxy relays and show answers after" {
  start_server echo echo
  up -- "127.0.0.1:$(port_of echo)"
  for seed in 1 2 3; do
    run -0 ctltool send -S -c -q 1 -t 10 -g 300000 -z "$seed" "$T/ctl.sock"
    read -r replies errors end <<<"$(sed 's/[a-z]*=//g' <<<"$output")"
    [ "$replies" -gt 0 ]
    [ "$errors" = "$replies" ]
  done
  relays
  show_answers
}

@test "NULs, control bytes and UTF-8 in a line get an error and the session goes on" {
  start_server echo echo
  up -- "127.0.0.1:$(port_of echo)"
  run -0 ctltool send -c -n 5 -a 'show\0json\nver\x01sion\nenable \xc3\xa9\nmaxc 0 \xef\xbc\x91\nversion\n' "$T/ctl.sock"
  [ "${lines[0]}" = "error: the line holds bytes that are not printable text" ]
  [ "${lines[1]}" = "${lines[0]}" ]
  [ "${lines[2]}" = "${lines[0]}" ]
  [ "${lines[3]}" = "${lines[0]}" ]
  [[ ${lines[4]} == "This is balance "* ]]
}

@test "hostile numbers get an error reply and change nothing" {
  start_server echo echo
  up -- "127.0.0.1:$(port_of echo):4:2"
  for cmd in "maxc 0 -1" "maxc 0 1000001" "maxc 0 18446744073709551617" "maxc 0 4294967296" \
    "weight 0 0" "weight 0 99999999999999999999" "weight 0 1e3" "weight 0 +1" "enable -0" \
    "enable 4294967296" "group -1" "group 1000001" "mrtg-bytes 0 0x0"; do
    run -1 --separate-stderr ctl "$cmd"
    [[ $stderr == "error: "* ]]
  done
  [ "$(ctl "show csv" | awk -F, 'NR == 2 { print $4, $9, $12 }')" = "ENA 4 2" ]
  [ "$(ctl "show csv" | wc -l)" -eq 2 ]
}

@test "a 1 MiB line gets one error reply and a hang-up; balance runs on" {
  start_server echo echo
  up -- "127.0.0.1:$(port_of echo)"
  run -0 ctltool send -S -l 1048576 -a 'version\n' "$T/ctl.sock"
  [ "$output" = "replies=1 errors=1 end=eof" ]
  run -0 ctltool send -l 1048576 "$T/ctl.sock"
  [ "$output" = "error: line too long (at most 4096 bytes)" ]
  relays
  show_answers
}

@test "a line of 5000 bytes gets an error reply and the session goes on" {
  start_server echo echo
  up -- "127.0.0.1:$(port_of echo)"
  run -0 ctltool send -c -n 2 -l 5000 -a 'version\n' "$T/ctl.sock"
  [ "${lines[0]}" = "error: line too long (at most 4096 bytes)" ]
  [[ ${lines[1]} == "This is balance "* ]]
}

@test "a line that arrives in pieces runs once it is complete" {
  start_server echo echo
  up -- "127.0.0.1:$(port_of echo)"
  run -0 ctltool send -n 1 -w 0.3 -a 'ver' -a 'si' -a $'on\n' "$T/ctl.sock"
  [[ $output == "This is balance "* ]]
}

@test "an unfinished line never runs: a partial kill held open, then closed" {
  start_server echo echo
  up -- "127.0.0.1:$(port_of echo)"
  spawn partial "$CTLTOOL" hold -n 1 -H 2 -a 'kill' -r "$T/held" "$T/ctl.sock"
  wait_for 5 test -e "$T/held"
  [[ $(ctl version) == "This is balance "* ]] # the partial line blocks nobody
  relays
  finish partial
  [ "$(cat "$T/partial.out")" = "opened=1 closed=0 data=0" ]
  run -0 ctltool send -S -x -a 'kill' "$T/ctl.sock" # and then EOF
  [ "$output" = "replies=0 errors=0 end=eof" ]
  running "$(pid_of balance)"
  show_answers
}

@test "100 idle control clients: the proxy relays meanwhile and show answers after" {
  start_server echo echo
  up -- "127.0.0.1:$(port_of echo)"
  spawn idle "$CTLTOOL" hold -n 100 -H 3 -r "$T/held" "$T/ctl.sock"
  wait_for 10 test -e "$T/held"
  relays
  finish idle
  read -r opened closed data <<<"$(sed 's/[a-z]*=//g' "$T/idle.out")"
  [ "$opened" -eq 100 ]
  [ "$closed" -eq "$data" ] # whoever was turned away was told so
  show_answers
}

@test "idle control sessions cannot lock the administrator out" {
  start_server echo echo
  up -- "127.0.0.1:$(port_of echo)"
  spawn idle "$CTLTOOL" hold -n 100 -H 5 -r "$T/held" "$T/ctl.sock"
  wait_for 10 test -e "$T/held"
  # Held sessions still open: a new one closes the idlest and is answered.
  [[ $(ctl version) == "This is balance "* ]]
  finish idle
}

@test "a control client that never reads its replies blocks nobody" {
  start_server echo echo
  up -- "127.0.0.1:$(port_of echo)"
  yes help | head -n 200000 >"$T/helps"
  spawn deaf sh -c 'exec "$0" send -N -S -i -t 4 "$1" <"$2"' "$CTLTOOL" "$T/ctl.sock" "$T/helps"
  sleep 1
  [[ $(ctl version) == "This is balance "* ]]
  relays
  finish deaf
  show_answers
}

@test "thousands of fuzzed commands get well-formed replies; the proxy relays and show answers after" {
  start_server echo echo
  up -- "127.0.0.1:$(port_of echo)"
  for seed in 1 2 3; do
    run -0 ctltool fuzz -n "${CTL_FUZZ_LINES:-20000}" -z "$seed" "$T/ctl.sock"
    [[ $output == "lines="*" failures=0" ]]
  done
  relays
  show_answers
  [ "$(ctl "show csv" | awk -F, '$1 == 0' | wc -l)" -eq 1 ]
}
