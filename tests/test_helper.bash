# Shared set-up for balance's end-to-end tests.
#
# Everything a test starts runs in the background with fd 3 closed (so bats
# does not wait for it), logs under $BATS_TEST_TMPDIR, and is recorded by PID;
# teardown kills exactly those PIDs. Every wait here is bounded.
#
# BALANCE, HELPER and CTLTOOL may be set by the caller (make check does); by
# default they are the balance binary at the top of the repo and
# tests/build/helper (every fake back-end and client, see tests/helper.cpp)
# and tests/build/ctltool.

bats_require_minimum_version 1.5.0

TESTS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
: "${BALANCE:=$TESTS_DIR/../balance}"
: "${HELPER:=$TESTS_DIR/build/helper}"
: "${CTLTOOL:=$TESTS_DIR/build/ctltool}"

setup() {
  T=$BATS_TEST_TMPDIR
  BAL_ADDR=127.0.0.1
  BAL_PORT=
  [ -x "$BALANCE" ] || { echo "no balance binary at $BALANCE (run make)" >&2; return 1; }
  [ -x "$HELPER" ] || { echo "no helper at $HELPER (build tests/)" >&2; return 1; }
}

teardown() {
  local pid dir
  if [ -f "$T/pids" ]; then
    while read -r pid; do kill -TERM "$pid" 2>/dev/null || true; done <"$T/pids"
    while read -r pid; do
      wait_for 3 not_running "$pid" || kill -KILL "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    done <"$T/pids"
    # Shown by bats only when the test failed.
    if [ -s "$T/balance.err" ]; then
      echo "# balance stderr:"
      sed 's/^/#   /' "$T/balance.err"
    fi
  fi
  # Directories a test made outside $T, listed one a line in $T/rmdirs.
  if [ -f "$T/rmdirs" ]; then
    while read -r dir; do rm -rf "$dir"; done <"$T/rmdirs"
  fi
}

# not_running PID: gone, or a zombie waiting to be reaped.
not_running() {
  local st
  st=$(ps -o stat= -p "$1" 2>/dev/null) || return 0
  [[ $st == Z* ]]
}

running() { ! not_running "$1"; }

# wait_for SECONDS COMMAND...: retry COMMAND until it succeeds; fail after SECONDS.
wait_for() {
  local limit=$1 i
  shift
  for ((i = 0; i < limit * 20; i++)); do
    "$@" && return 0
    sleep 0.05
  done
  echo "gave up after ${limit}s waiting for: $*" >&2
  return 1
}

# spawn NAME COMMAND...: run COMMAND in the background; its output goes to
# $T/NAME.out and $T/NAME.err and its PID to $T/NAME.pid.
spawn() {
  local name=$1
  shift
  "$@" >"$T/$name.out" 2>"$T/$name.err" 3>&- &
  echo $! >"$T/$name.pid"
  echo $! >>"$T/pids"
}

pid_of() { cat "$T/$1.pid"; }

# finish NAME: wait for a spawned process (they all have their own deadline)
# and return its exit status.
finish() { wait "$(pid_of "$1")"; }

# start_server NAME MODE [OPTIONS]: a helper server named NAME on an
# ephemeral port of $SERVER_ADDR (default 127.0.0.1), or -p PORT; port_of
# NAME gives the port.
start_server() {
  local name=$1 mode=$2
  shift 2
  spawn "$name" "$HELPER" "$mode" -N "$name" -b "${SERVER_ADDR:-127.0.0.1}" -P "$T/$name.port" -L 120 "$@"
  wait_for 5 test -s "$T/$name.port" || { cat "$T/$name.err" >&2; return 1; }
}

port_of() { cat "$T/$1.port"; }

# start_hold NAME [OPTIONS]: a hold server whose state ("CUR MAX TOTAL") is in
# $T/NAME.state and whose log of client ids is $T/NAME.log.
start_hold() {
  local name=$1
  shift
  start_server "$name" hold -m "$T/$name.state" -o "$T/$name.log" "$@"
}

# cur_of / max_of / total_of NAME: fields of a hold server's state.
cur_of() { awk '{print $1}' "$T/$1.state"; }
max_of() { awk '{print $2}' "$T/$1.state"; }
total_of() { awk '{print $3}' "$T/$1.state"; }
cur_is() { [ "$(cur_of "$1")" = "$2" ]; }

# lines_in FILE: its number of lines, 0 when it does not exist.
lines_in() { if [ -f "$1" ]; then wc -l <"$1" | tr -d ' '; else echo 0; fi; }
lines_are() { [ "$(lines_in "$1")" = "$2" ]; }

# served N NAME...: the hold servers NAME... have logged N client ids in all.
served() {
  local want=$1 sum=0 name
  shift
  for name in "$@"; do sum=$((sum + $(lines_in "$T/$name.log"))); done
  [ "$sum" -eq "$want" ]
}

# log_of NAME: a hold server's log of client ids on one line.
log_of() { if [ -f "$T/$1.log" ]; then tr '\n' ' ' <"$T/$1.log" | sed 's/ $//'; fi; }

# free_port [ADDR]: a port that nothing uses on any address, outside the
# kernel's ephemeral range, so that no bind(0) or connect() elsewhere on the
# machine takes it before the test binds it.
free_port() { "$HELPER" freeport "${1:-127.0.0.1}"; }

# listens NAME PORT [ADDR]: wait (5 s at most) until the spawned process NAME
# listens on ADDR (default 127.0.0.1) port PORT, on a socket of its own: a
# listener of another process on that port does not count, and NAME exiting
# first fails at once.
listens() {
  "$HELPER" wait-listen -t "${LISTEN_WAIT:-5}" -b "${3:-127.0.0.1}" -p "$(pid_of "$1")" "$2"
}

# start_balance [OPTIONS] -- CHANNEL...: balance in the foreground (-f) on
# $BAL_ADDR port $BAL_PORT (a free port unless set), with its control socket
# under $T; returns once the port listens.
start_balance() {
  local opts=()
  while [ $# -gt 0 ] && [ "$1" != -- ]; do opts+=("$1"); shift; done
  shift
  [ -n "$BAL_PORT" ] || BAL_PORT=$(free_port "$BAL_ADDR")
  spawn balance "$BALANCE" -f -S "$T/ctl.sock" -b "$BAL_ADDR" "${opts[@]}" "$BAL_PORT" "$@"
  listens balance "$BAL_PORT" "$BAL_ADDR"
}

# up [OPTIONS] -- CHANNEL...: start_balance, then wait for the control socket
# too (it is made just after the port listens).
up() {
  start_balance "$@"
  wait_for 5 test -S "$T/ctl.sock"
}

# ctl COMMANDS: balance -c against the balance under test.
ctl() { "$BALANCE" -S "$T/ctl.sock" -c "$1" "$BAL_PORT"; }

# ctltool ARGS...: the control and HTTP client of tests/ctltool.cpp.
ctltool() {
  [ -x "$CTLTOOL" ] || { echo "no ctltool at $CTLTOOL (build tests/)" >&2; return 1; }
  "$CTLTOOL" "$@"
}

# client [OPTIONS]: a helper client (see helper.cpp) through balance.
client() { "$HELPER" client "$@" "$BAL_ADDR" "$BAL_PORT"; }

# client_bg NAME [OPTIONS]: the same in the background.
client_bg() {
  local name=$1
  shift
  spawn "$name" "$HELPER" client "$@" "$BAL_ADDR" "$BAL_PORT"
}

probe() { "$HELPER" probe "$@" "$BAL_ADDR" "$BAL_PORT"; }

# now_ms: a clock for generous elapsed-time bounds.
now_ms() { echo $(( ${EPOCHREALTIME/./} / 1000 )); }

# tools_for_others: when root, copy balance and ctltool into a directory
# anyone may enter, and use the copies: the build tree may sit in a private
# directory (mktemp -d is 0700) that nobody cannot reach.
tools_for_others() {
  [ "$(id -u)" -eq 0 ] || return 0
  local dir
  dir=$(mktemp -d /tmp/balance-bin.XXXXXX)
  echo "$dir" >>"$T/rmdirs"
  chmod 755 "$dir"
  cp "$BALANCE" "$dir/balance"
  BALANCE=$dir/balance
  if [ -x "$CTLTOOL" ]; then
    cp "$CTLTOOL" "$dir/ctltool"
    CTLTOOL=$dir/ctltool
  fi
  chmod 755 "$dir"/*
}

# as_user: sets AS_USER, the prefix that runs a command as an unprivileged
# user (nobody when we are root, ourselves otherwise); U, a TMPDIR that user
# owns; D, the socket directory balance derives there; UID_U, its uid.
as_user() {
  if [ "$(id -u)" -ne 0 ]; then
    AS_USER=()
    U=$T
    UID_U=$(id -u)
  else
    command -v setpriv >/dev/null || skip "running as root without setpriv to become nobody"
    AS_USER=(setpriv --reuid=nobody --regid=nogroup --clear-groups)
    tools_for_others
    U=$(mktemp -d /tmp/balance-user.XXXXXX)
    echo "$U" >>"$T/rmdirs"
    chmod 755 "$U"
    chown nobody "$U"
    UID_U=$(id -u nobody)
  fi
  D=$U/balance-$UID_U
}
