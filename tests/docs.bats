#!/usr/bin/env bats
# The documentation matches the program: usage is the man page's
# SYNOPSIS, -V is the Makefile's version, every option is documented.

load test_helper

ROOT="$BATS_TEST_DIRNAME/.."

# The rendered SYNOPSIS, overstrike removed, whitespace collapsed.
man_synopsis() {
  mandoc -Tascii "$ROOT/balance.1" | sed 's/.\x08//g' |
    sed -n '/^SYNOPSIS/,/^DESCRIPTION/p' | sed '1d;$d' | tr -s ' \t\n' ' ' | sed 's/^ //;s/ $//'
}

@test "balance -h prints the man page's SYNOPSIS, then a line per option" {
  command -v mandoc >/dev/null || skip "mandoc not installed"
  run -0 "$BALANCE" -h
  # The synopsis is everything before the first empty line.
  usage=$(printf '%s\n' "$output" | sed '/^$/,$d' | sed 's/^usage://' | tr -s ' \t\n' ' ' | sed 's/^ //;s/ $//')
  [ "$usage" = "$(man_synopsis)" ]
  # Every option of the synopsis has its own line after it, as in balance 3.x.
  letters=$(printf '%s\n' "$output" | sed '/^$/,$d' | grep -o '\[-[0-9A-Za-z]*\]\|-[0-9A-Za-z]' | tr -d '[]-' | fold -w1 | sort -u)
  for letter in $letters; do
    printf '%s\n' "$output" | sed '1,/^$/d' | grep -Eq "^  (-[0-9A-Za-z], )?-$letter( |,)" ||
      { echo "-$letter has no line of its own in balance -h"; return 1; }
  done
}

@test "balance -V prints the version the Makefile holds" {
  version=$(sed -n 's/^VERSION = //p' "$ROOT/Makefile")
  run -0 "$BALANCE" -V
  [ "$output" = "balance $version" ]
}

@test "every option in the usage is described in the man page" {
  run -0 "$BALANCE" -h
  letters=$(printf '%s\n' "$output" | sed '/^$/,$d' | grep -o '\[-[0-9A-Za-z]*\]\|-[0-9A-Za-z]' | tr -d '[]-' | fold -w1 | sort -u)
  [ -n "$letters" ]
  for letter in $letters; do
    grep -q "^\.It Fl $letter\b" "$ROOT/balance.1" || { echo "-$letter is not in balance.1"; return 1; }
  done
}

@test "every control command in help is described in the man page" {
  start_server echo echo
  start_balance -- "127.0.0.1:$(port_of echo)"
  run -0 "$BALANCE" -S "$BATS_TEST_TMPDIR/ctl.sock" -c help 1
  for command in $(printf '%s\n' "$output" | sed -n 's/^  \([a-z?-]*\).*/\1/p'); do
    grep -q "^\.It .*Cm $command\b" "$ROOT/balance.1" || { echo "$command is not in balance.1"; return 1; }
  done
}
