// The line editor of `balance -i` on a terminal, in two layers.
//
// LineEditor is pure: it takes input bytes one at a time (escape
// sequences arrive byte by byte and may be split anywhere) and keeps the
// line, the cursor, the history and the completion state. It does no I/O,
// so it is tested on plain byte strings. Invariants: the line holds only
// printable ASCII (0x20-0x7e), cursor() <= line().size(), the history has
// at most its limit of entries, none blank and no two neighbours equal.
//
// LineReader is the thin terminal layer: raw mode for the time one line
// is read (restored on every way out), the bytes read fed to a
// LineEditor, and the line repainted after each read with nothing but
// "\r", the prompt and line, "\x1b[K" and "\x1b[<n>D".
#ifndef BALANCE_EDITOR_HPP
#define BALANCE_EDITOR_HPP

#include <termios.h>

#include <cstddef>
#include <deque>
#include <string>
#include <vector>

// Keys: printable ASCII inserts at the cursor; Backspace (0x7f, Ctrl-H),
// Delete (ESC [ 3 ~) and Ctrl-D on a non-empty line delete a character;
// Left/Right move; Home/End (ESC [ H / F, ESC O H / F, ESC [ 1 7 4 8 ~)
// and Ctrl-A/Ctrl-E go to the ends; Ctrl-K kills to the end, Ctrl-U to
// the start, Ctrl-W the word before the cursor; Up/Down walk the history
// (the draft being typed comes back after the newest entry; edits to a
// recalled entry last until the walk moves on). Tab completes the first
// word when the cursor is in it or at its end: one match is completed
// with a space after it, several to their longest common prefix, and a
// second Tab in a row lists them. Every other byte (unknown sequences,
// other control bytes, bytes >= 0x80) is ignored. A control byte in the
// middle of a sequence ends it and then acts as itself.
class LineEditor {
 public:
  enum class Event {
    Edited,       // anything else, including bytes that changed nothing
    Accepted,     // Enter (CR or LF): line() is the line, now in the history
    EndOfInput,   // Ctrl-D on an empty line
    Interrupted,  // Ctrl-C: line() is the line given up
    ListMatches,  // a second Tab in a row with several matches: see matches()
  };

  static constexpr size_t kHistoryLimit = 500;

  // `candidates` are the words Tab completes the first word to.
  explicit LineEditor(std::vector<std::string> candidates, size_t history_limit = kHistoryLimit);

  // Takes one input byte. After Accepted, EndOfInput or Interrupted,
  // line() and cursor() still show the line as it ended, until
  // begin_line() or the next byte starts a new, empty one.
  Event feed(unsigned char byte);
  void begin_line();

  const std::string& line() const { return line_; }
  size_t cursor() const { return cursor_; }
  // The candidates that match the first word, after ListMatches.
  const std::vector<std::string>& matches() const { return matches_; }

  // Oldest first. add_history() skips blank lines and a repeat of the
  // newest entry, and forgets the oldest entry beyond the limit.
  const std::deque<std::string>& history() const { return history_; }
  void add_history(const std::string& line);

 private:
  // Where the bytes of an escape sequence have brought us.
  enum class Escape {
    None,  // not in a sequence
    Esc,   // after ESC
    Csi,   // after ESC [, collecting parameters until the final byte
    Ss3,   // after ESC O, waiting for the one final byte
  };

  // The keys that escape sequences name.
  enum class Key { Up, Down, Right, Left, Home, End, Delete };

  Event control(unsigned char byte);
  void escape_byte(unsigned char byte);
  void csi_final(unsigned char final_byte);
  void letter_key(unsigned char letter);  // the final byte of ESC [ x or ESC O x
  void key(Key key);
  void insert(char c);
  void erase(size_t from, size_t to);  // [from, to), cursor kept consistent
  void history_step(bool older);
  Event complete();

  std::vector<std::string> candidates_;  // sorted, no duplicates
  size_t history_limit_;
  std::deque<std::string> history_;
  std::string line_;
  size_t cursor_ = 0;
  bool ended_ = false;  // the last event ended the line
  // history_.size() while on the line being typed (the draft); otherwise
  // the history entry shown.
  size_t history_index_ = 0;
  std::string draft_;
  Escape escape_ = Escape::None;
  std::string params_;          // CSI parameter bytes so far
  bool tab_ambiguous_ = false;  // the last key was a Tab with several matches
  std::vector<std::string> matches_;
};

// The bytes that repaint `prompt` and `line` on the current row with the
// cursor after line[cursor - 1]: "\r", prompt, line, "\x1b[K", and
// "\x1b[<n>D" when the cursor is n characters before the end.
std::string redraw(const std::string& prompt, const std::string& line, size_t cursor);

// Puts a terminal in raw mode for the life of the object: no canonical
// mode, echo or signal keys (Ctrl-C arrives as a byte), output processing
// kept so "\n" still starts a new line. The settings found are put back
// when the object is destroyed. On a file that is not a terminal it does
// nothing and active() is false.
class RawMode {
 public:
  explicit RawMode(int fd);
  ~RawMode();
  RawMode(const RawMode&) = delete;
  RawMode& operator=(const RawMode&) = delete;
  bool active() const { return active_; }

 private:
  int fd_;
  bool active_ = false;
  termios saved_{};
};

// Reads lines from a terminal with editing, history and completion. The
// terminal is raw only inside read_line(), so replies printed between
// lines, and Ctrl-C while they are, behave as they do without it.
class LineReader {
 public:
  LineReader(int in_fd, int out_fd, std::vector<std::string> candidates);

  // Shows `prompt` and reads one line into *line (without its end).
  // Returns false at end of input (Ctrl-D on an empty line, the terminal
  // gone, a read error); the cursor is then at the start of a new row.
  // Ctrl-C gives up the line being typed and prompts again. Write
  // pending output (fflush(stdout)) before calling it.
  bool read_line(const std::string& prompt, std::string* line);

  const LineEditor& editor() const { return editor_; }

 private:
  void write_all(const std::string& data);

  int in_fd_;
  int out_fd_;
  LineEditor editor_;
  std::string pending_;  // bytes read after the end of the last line
};

#endif
