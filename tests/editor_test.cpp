// The line editor on plain byte strings: keys, escape sequences, history
// and completion; then the terminal layer on a pipe and on a
// pseudo-terminal.
#include <fcntl.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>

#include "control.hpp"
#include "editor.hpp"
#include "test.h"

namespace {

using Event = LineEditor::Event;

const std::vector<std::string> kWords = {"show",       "help", "hash", "mrtg-bytes",
                                         "mrtg-conns", "maxc", "group"};

std::string name(Event event) {
  switch (event) {
    case Event::Edited: return "Edited";
    case Event::Accepted: return "Accepted";
    case Event::EndOfInput: return "EndOfInput";
    case Event::Interrupted: return "Interrupted";
    case Event::ListMatches: return "ListMatches";
  }
  return "?";
}

// Feeds every byte and returns the name of the last event.
std::string type(LineEditor& editor, const std::string& bytes) {
  Event event = Event::Edited;
  for (char c : bytes) event = editor.feed(static_cast<unsigned char>(c));
  return name(event);
}

// The line with a '|' where the cursor is.
std::string shown(const LineEditor& editor) {
  std::string line = editor.line();
  return line.insert(editor.cursor(), "|");
}

// The history, oldest first, joined by commas.
std::string history(const LineEditor& editor) {
  std::string all;
  for (const std::string& entry : editor.history()) all += (all.empty() ? "" : ",") + entry;
  return all;
}

const std::string kLeft = "\x1b[D", kRight = "\x1b[C", kUp = "\x1b[A", kDown = "\x1b[B";

// Bytes as C escapes, for failure messages.
std::string escaped(const std::string& bytes) {
  std::string out;
  for (unsigned char c : bytes) {
    char hex[8];
    std::snprintf(hex, sizeof hex, "\\x%02x", c);
    out += c >= 0x20 && c < 0x7f ? std::string(1, char(c)) : hex;
  }
  return out;
}

// One step of a key test: the bytes typed, then the line that must show,
// with a '|' where the cursor is.
struct Step {
  std::string keys;
  std::string want;
};

void check_steps(LineEditor& editor, const std::vector<Step>& steps, const char* file, int line) {
  for (const Step& step : steps) {
    type(editor, step.keys);
    if (shown(editor) != step.want) {
      testing::fail(file, line,
                    "after \"" + escaped(step.keys) + "\": " + testing::show(shown(editor)) +
                        " vs " + testing::show(step.want));
      return;
    }
  }
}

#define EXPECT_STEPS(editor, ...) check_steps(editor, __VA_ARGS__, __FILE__, __LINE__)

}  // namespace

TEST(printable_bytes_insert_at_the_cursor) {
  LineEditor e(kWords);
  EXPECT_EQ(type(e, "s"), "Edited");
  EXPECT_STEPS(e, {{"hw", "shw|"}, {kLeft + "o", "sho|w"}, {"\x01~", "~|show"}});
}

TEST(backspace_both_codes_and_delete) {
  LineEditor e(kWords);
  EXPECT_STEPS(e, {
                      {"abcd" + kLeft + "\x7f", "ab|d"},
                      {"\x08\x08\x08", "|d"},  // Ctrl-H; more than there is
                      {"xyz\x01\x1b[3~", "|yzd"},
                      {"\x05\x1b[3~", "yzd|"},  // Delete at the end: nothing
                  });
}

TEST(left_and_right_stop_at_the_ends) {
  LineEditor e(kWords);
  EXPECT_STEPS(e, {
                      {"ab" + kRight + kLeft + kLeft + kLeft, "|ab"},
                      {kRight, "a|b"},
                      {"\x1bOD", "|ab"},  // the application-mode form
                      {"\x1bOC\x1bOC\x1bOC", "ab|"},
                  });
}

TEST(home_and_end_in_every_form) {
  const char* homes[] = {"\x01", "\x1b[H", "\x1bOH", "\x1b[1~", "\x1b[7~"};
  const char* ends[] = {"\x05", "\x1b[F", "\x1bOF", "\x1b[4~", "\x1b[8~"};
  for (const char* home : homes) {
    LineEditor e(kWords);
    EXPECT_STEPS(e, {{std::string("abc") + home, "|abc"}});
  }
  for (const char* end : ends) {
    LineEditor e(kWords);
    EXPECT_STEPS(e, {{std::string("abc\x01") + end, "abc|"}});
  }
}

TEST(ctrl_k_and_ctrl_u_kill_to_the_end_and_to_the_start) {
  LineEditor e(kWords);
  EXPECT_STEPS(e, {
                      {"maxc 1 4" + kLeft + kLeft + "\x0b", "maxc 1|"},
                      {kLeft + "\x15", "|1"},
                      {"\x0b", "|"},
                  });
}

TEST(ctrl_w_deletes_the_word_before_the_cursor) {
  LineEditor e(kWords);
  EXPECT_STEPS(e, {
                      {"create host 80  \x17", "create host |"},
                      {"\x17", "create |"},
                      {"host" + kLeft + kLeft + "\x17", "create |st"},
                      {"\x17\x17", "|st"},
                  });
}

TEST(enter_accepts_with_cr_or_lf_and_the_next_byte_starts_a_new_line) {
  LineEditor e(kWords);
  EXPECT_EQ(type(e, "show" + kLeft + "\r"), "Accepted");
  EXPECT_EQ(e.line(), "show");  // the whole line, wherever the cursor was
  EXPECT_EQ(type(e, "help\n"), "Accepted");
  EXPECT_EQ(e.line(), "help");
  EXPECT_EQ(type(e, "\r"), "Accepted");
  EXPECT_EQ(e.line(), "");
  EXPECT_STEPS(e, {{"x", "x|"}, {"\r", "x|"}});
  e.begin_line();
  EXPECT_EQ(shown(e), "|");
  EXPECT_EQ(history(e), "show,help,x");
}

TEST(ctrl_d_ends_input_on_an_empty_line_and_deletes_otherwise) {
  LineEditor e(kWords);
  EXPECT_STEPS(e, {{"ab\x01\x04", "|b"}});
  EXPECT_EQ(type(e, "\x04"), "Edited");
  EXPECT_EQ(shown(e), "|");
  EXPECT_EQ(type(e, "\x04"), "EndOfInput");
}

TEST(ctrl_c_gives_up_the_line) {
  LineEditor e(kWords);
  type(e, "show\rdis" + kUp);
  EXPECT_EQ(type(e, " 1\x03"), "Interrupted");
  EXPECT_EQ(e.line(), "show 1");  // still there to be shown
  // A new line, with no walk or draft left over from before.
  EXPECT_STEPS(e, {{"a", "a|"}, {kDown, "a|"}, {kUp + kDown, "a|"}});
  EXPECT_EQ(history(e), "show");
}

TEST(unknown_sequences_control_bytes_and_high_bytes_are_ignored) {
  const char* ignored[] = {
      "\x1b[1;5C", "\x1b[2~",  "\x1b[Z",  "\x1bx",
      "\x1bOx",    "\x1b[15~", "\x1b[0D", "\x1b[123456789012345678901234567890~",
      "\x02",      "\x07",     "\x0e",    "\x10",
      "\x1a",      "\xc3\xa9", "\x80",    "\xff",
  };
  for (const char* bytes : ignored) {
    LineEditor e(kWords);
    type(e, "ab" + kLeft);
    EXPECT_EQ(type(e, bytes), "Edited");
    EXPECT_EQ(shown(e), "a|b");
  }
  LineEditor e(kWords);
  EXPECT_STEPS(e, {{std::string("a\0b", 3), "ab|"}});
}

TEST(a_control_byte_ends_a_sequence_and_still_acts) {
  LineEditor e(kWords);
  EXPECT_EQ(type(e, "ab\x1b[\r"), "Accepted");
  EXPECT_EQ(e.line(), "ab");
  EXPECT_EQ(type(e, "ab\x1bO\x03"), "Interrupted");
  EXPECT_STEPS(e, {
                      {"ab\x1b\x1b[D", "a|b"},  // ESC again starts a new sequence
                      {"\x1b[1\x7f", "|b"},     // Backspace
                      {"c", "c|b"},             // not swallowed by the sequence
                      {"\x1b[\t", "c|b"},       // Tab too
                      {"D", "cD|b"},
                  });
}

TEST(escape_sequences_split_across_calls) {
  LineEditor e(kWords);
  EXPECT_STEPS(e, {
                      {"abc\x1b", "abc|"},
                      {"[", "abc|"},
                      {"D", "ab|c"},
                      {"\x1b", "ab|c"},
                      {"O", "ab|c"},
                      {"H", "|abc"},
                      {"\x1b[", "|abc"},
                      {"3", "|abc"},
                      {"~", "|bc"},
                  });
}

TEST(history_is_bounded_skips_blanks_and_repeats) {
  LineEditor e(kWords, 3);
  type(e, "a\rb\rb\r   \r\rc\rb\r");
  EXPECT_EQ(history(e), "b,c,b");  // "a" fell off; the repeat and blanks never came in
  e.add_history("d");
  EXPECT_EQ(history(e), "c,b,d");
  EXPECT_EQ(LineEditor::kHistoryLimit, size_t(500));
  LineEditor full(kWords);
  for (int i = 0; i < 600; ++i) type(full, std::to_string(i) + "\r");
  EXPECT_EQ(full.history().size(), size_t(500));
  EXPECT_EQ(full.history().front(), "100");
}

TEST(up_and_down_walk_the_history_and_keep_the_draft) {
  LineEditor e(kWords);
  type(e, "show\rgroup 1\rhelp\r");
  EXPECT_STEPS(e, {
                      {"dra" + kLeft, "dr|a"},
                      {kUp, "help|"},
                      {kUp + kUp, "show|"},
                      {kUp, "show|"},  // the oldest stays
                      {"\x1bOB", "group 1|"},
                      {"0", "group 10|"},       // edits last until the walk moves on
                      {kDown + kDown, "dra|"},  // the draft, cursor at its end
                      {kDown, "dra|"},
                      {"\x1bOA" + kDown + "ft" + kUp + kDown, "draft|"},
                  });
  // A recalled line is run again; a repeat of the newest is not kept.
  type(e, "\x15" + kUp + kUp + "\r");
  EXPECT_EQ(e.line(), "group 1");
  type(e, kUp + "\r");
  EXPECT_EQ(history(e), "show,group 1,help,group 1");
  LineEditor empty(kWords);
  EXPECT_STEPS(empty, {{"x" + kUp + kDown, "x|"}});
}

TEST(tab_completes_a_unique_first_word_and_adds_a_space) {
  const Step cases[] = {
      {"sh\t", "show |"},
      {"  he\t", "  help |"},                    // leading blanks
      {"s" + kLeft + "\t", "show |"},            // the cursor anywhere in the word
      {"gr 1\x01" + kRight + "\t", "group |1"},  // a blank already follows
      {"show\t", "show |"},                      // complete already
  };
  for (const Step& step : cases) {
    LineEditor e(kWords);
    EXPECT_STEPS(e, {step});
  }
}

TEST(tab_completes_the_common_prefix_then_lists_on_the_second_tab) {
  LineEditor e(kWords);
  EXPECT_EQ(type(e, "m\t"), "Edited");
  EXPECT_EQ(shown(e), "m|");  // maxc, mrtg-bytes, mrtg-conns share only "m"
  EXPECT_EQ(type(e, "\t"), "ListMatches");
  EXPECT_EQ(e.matches().size(), size_t(3));
  EXPECT_STEPS(e, {{"", "m|"}, {"r\t", "mrtg-|"}});
  EXPECT_EQ(type(e, "\t"), "ListMatches");
  EXPECT_EQ(e.matches().size(), size_t(2));
  EXPECT_EQ(e.matches()[0], "mrtg-bytes");
  EXPECT_EQ(e.matches()[1], "mrtg-conns");
  EXPECT_EQ(type(e, "\t"), "ListMatches");  // and again
  // Not in a row: another key between the Tabs.
  type(e, "x\x7f");
  EXPECT_EQ(type(e, "\t"), "Edited");
  EXPECT_EQ(type(e, "c\t"), "Edited");
  EXPECT_EQ(shown(e), "mrtg-conns |");
  // On an empty line, Tab Tab lists every command.
  LineEditor empty(kWords);
  EXPECT_EQ(type(empty, "\t\t"), "ListMatches");
  EXPECT_EQ(empty.matches().size(), kWords.size());
  EXPECT_EQ(shown(empty), "|");
}

TEST(tab_does_nothing_outside_the_first_word) {
  LineEditor e(kWords);
  EXPECT_STEPS(e, {
                      {"show h\t\t", "show h|"},
                      {"\x01\t", "show |h"},  // at the start of the first word: in it
                  });
  LineEditor blanks(kWords);
  EXPECT_STEPS(blanks, {
                           {"  sh\x01\t", "|  sh"},    // in the leading blanks
                           {"\x05zz\t\t", "  shzz|"},  // no match
                       });
  EXPECT_EQ(type(blanks, " \t"), "Edited");  // no Tab is ever inserted
  EXPECT_EQ(shown(blanks), "  shzz |");
}

TEST(random_bytes_keep_the_invariants) {
  // Bytes drawn mostly from the ones that mean something, so sequences,
  // history walks and completions happen often.
  static const char kMeaningful[] =
      "\x1b[O~0123456789;ABCDFHZ \t\r\x01\x03\x04\x05\x08\x0b\x15\x17\x7f\x80\xff";
  const std::string alphabet = std::string(kMeaningful, sizeof kMeaningful - 1) + "shmrtg-";
  std::mt19937 random(7);
  LineEditor e(kWords, 20);
  for (int i = 0; i < 200000; ++i) {
    e.feed(static_cast<unsigned char>(alphabet[random() % alphabet.size()]));
    bool ok = e.cursor() <= e.line().size();
    for (char c : e.line()) ok = ok && c >= 0x20 && c < 0x7f;
    ok = ok && e.history().size() <= 20;
    for (size_t k = 0; k < e.history().size(); ++k)
      ok = ok && !blank_line(e.history()[k]) && (k == 0 || e.history()[k] != e.history()[k - 1]);
    EXPECT_TRUE(ok);
    if (!ok) break;
  }
}

TEST(redraw_repaints_with_the_cursor_in_place) {
  EXPECT_EQ(redraw("balance[0] ", "show", 4), "\rbalance[0] show\x1b[K");
  EXPECT_EQ(redraw("p> ", "abcdef", 2), "\rp> abcdef\x1b[K\x1b[4D");
  EXPECT_EQ(redraw("p> ", "", 0), "\rp> \x1b[K");
}

TEST(raw_mode_does_nothing_off_a_terminal) {
  int fds[2];
  EXPECT_EQ(pipe(fds), 0);
  {
    RawMode raw(fds[0]);
    EXPECT_FALSE(raw.active());
  }
  close(fds[0]);
  close(fds[1]);
}

// Off a terminal the reader still reads lines, prompting only.
TEST(line_reader_on_a_pipe) {
  int in[2], out[2];
  EXPECT_EQ(pipe(in), 0);
  EXPECT_EQ(pipe(out), 0);
  const std::string input = "show\nab\x1b[Dc\n";
  EXPECT_EQ(write(in[1], input.data(), input.size()), ssize_t(input.size()));
  close(in[1]);
  LineReader reader(in[0], out[1], kWords);
  std::string line;
  EXPECT_TRUE(reader.read_line("p> ", &line));
  EXPECT_EQ(line, "show");
  EXPECT_TRUE(reader.read_line("p> ", &line));
  EXPECT_EQ(line, "acb");
  EXPECT_FALSE(reader.read_line("p> ", &line));
  EXPECT_EQ(history(reader.editor()), "show,acb");
  close(out[1]);
  char buffer[64];
  ssize_t n = read(out[0], buffer, sizeof buffer);
  EXPECT_EQ(std::string(buffer, size_t(n > 0 ? n : 0)), "p> p> p> \n");
  close(in[0]);
  close(out[0]);
}

// A child plays the person at the terminal: it waits for the prompt
// (written once raw mode is on), checks the mode, and types "sh", Tab,
// Enter, whatever it found, so that the reader never waits in vain.
// Exit status 0 when all was as it should be.
static int type_at_terminal(int master, int slave) {
  int status = 0;
  std::string seen;
  while (status == 0 && seen.find("balance[0] ") == std::string::npos) {
    pollfd p = {master, POLLIN, 0};
    char buffer[256];
    ssize_t n = poll(&p, 1, 10000) == 1 ? read(master, buffer, sizeof buffer) : -1;
    if (n <= 0)
      status = 2;
    else
      seen.append(buffer, size_t(n));
  }
  termios now{};
  if (status == 0 && tcgetattr(slave, &now) != 0) status = 3;
  if (status == 0 && (now.c_lflag & (ICANON | ECHO | ISIG))) status = 4;
  if (status == 0 && !(now.c_oflag & OPOST)) status = 5;
  if (write(master, "sh\t\r", 4) != 4) status = 6;
  return status;
}

TEST(line_reader_on_a_pseudo_terminal_completes_and_restores_the_settings) {
  int master = posix_openpt(O_RDWR | O_NOCTTY);
  EXPECT_TRUE(master >= 0);
  if (master < 0) return;
  EXPECT_EQ(grantpt(master), 0);
  EXPECT_EQ(unlockpt(master), 0);
  const char* path = ptsname(master);
  EXPECT_TRUE(path != nullptr);
  int slave = path ? open(path, O_RDWR | O_NOCTTY) : -1;
  EXPECT_TRUE(slave >= 0);
  if (slave < 0) return;
  termios before;
  EXPECT_EQ(tcgetattr(slave, &before), 0);
  EXPECT_TRUE(before.c_lflag & ICANON);  // a fresh terminal is cooked
  pid_t child = fork();
  if (child == 0) _exit(type_at_terminal(master, slave));
  alarm(30);  // a failure must not hang the suite
  LineReader reader(slave, slave, command_names());
  std::string line;
  EXPECT_TRUE(reader.read_line("balance[0] ", &line));
  EXPECT_EQ(line, "show ");
  alarm(0);
  int status = -1;
  EXPECT_EQ(waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  termios after;
  EXPECT_EQ(tcgetattr(slave, &after), 0);
  EXPECT_EQ(after.c_lflag, before.c_lflag);
  EXPECT_EQ(after.c_iflag, before.c_iflag);
  EXPECT_EQ(after.c_oflag, before.c_oflag);
  EXPECT_EQ(after.c_cflag, before.c_cflag);
  EXPECT_TRUE(std::memcmp(after.c_cc, before.c_cc, sizeof before.c_cc) == 0);
  // What the terminal showed after the prompt ends with the completed
  // line and a new row ("\n" through OPOST/ONLCR).
  std::string output;
  while (output.find("\r\n") == std::string::npos) {
    pollfd p = {master, POLLIN, 0};
    if (poll(&p, 1, 5000) != 1) break;
    char buffer[256];
    ssize_t n = read(master, buffer, sizeof buffer);
    if (n <= 0) break;
    output.append(buffer, size_t(n));
  }
  const std::string tail = "\rbalance[0] show \x1b[K\r\n";
  EXPECT_TRUE(output.size() >= tail.size() &&
              output.compare(output.size() - tail.size(), tail.size(), tail) == 0);
  close(slave);
  close(master);
}

TEST_MAIN()
