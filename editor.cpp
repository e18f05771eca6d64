// The line editor of `balance -i` (see editor.hpp): the pure LineEditor,
// then the terminal layer (raw mode, repainting, LineReader).
#include "editor.hpp"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <utility>

namespace {

// More parameter bytes than any sequence we know has; a longer sequence
// is still read to its end, then ignored.
constexpr size_t kMaxParams = 16;

bool printable(unsigned char byte) { return byte >= 0x20 && byte < 0x7f; }

}  // namespace

LineEditor::LineEditor(std::vector<std::string> candidates, size_t history_limit)
    : candidates_(std::move(candidates)), history_limit_(history_limit) {
  // Sorted, the longest common prefix of the matches is that of the
  // first and the last.
  std::sort(candidates_.begin(), candidates_.end());
  candidates_.erase(std::unique(candidates_.begin(), candidates_.end()), candidates_.end());
}

void LineEditor::begin_line() {
  line_.clear();
  cursor_ = 0;
  ended_ = false;
  history_index_ = history_.size();
  draft_.clear();
  escape_ = Escape::None;
  tab_ambiguous_ = false;
  matches_.clear();
}

void LineEditor::add_history(const std::string& line) {
  if (line.find_first_not_of(' ') == std::string::npos) return;
  if (history_.empty() || history_.back() != line) history_.push_back(line);
  while (history_.size() > history_limit_) history_.pop_front();
  // Entries may have moved: whatever is on the line is the draft now.
  history_index_ = history_.size();
}

LineEditor::Event LineEditor::feed(unsigned char byte) {
  if (ended_) begin_line();
  if (escape_ != Escape::None) {
    if (printable(byte)) {
      tab_ambiguous_ = false;
      escape_byte(byte);
      return Event::Edited;
    }
    // A control byte ends the sequence and then acts as itself (a
    // terminal runs control bytes found inside a sequence), so Enter or
    // Ctrl-C is never lost to a stray ESC.
    escape_ = Escape::None;
  }
  if (byte == '\t') return complete();
  tab_ambiguous_ = false;
  if (printable(byte)) {
    insert(char(byte));
    return Event::Edited;
  }
  return control(byte);
}

LineEditor::Event LineEditor::control(unsigned char byte) {
  switch (byte) {
    case '\r':
    case '\n':
      ended_ = true;
      add_history(line_);
      return Event::Accepted;
    case 0x03:  // Ctrl-C
      ended_ = true;
      return Event::Interrupted;
    case 0x04:  // Ctrl-D: end of input on an empty line, else Delete
      if (line_.empty()) {
        ended_ = true;
        return Event::EndOfInput;
      }
      key(Key::Delete);
      break;
    case 0x01:  // Ctrl-A
      key(Key::Home);
      break;
    case 0x05:  // Ctrl-E
      key(Key::End);
      break;
    case 0x0b:  // Ctrl-K
      erase(cursor_, line_.size());
      break;
    case 0x15:  // Ctrl-U
      erase(0, cursor_);
      break;
    case 0x17: {  // Ctrl-W: blanks before the cursor, then the word
      size_t from = cursor_;
      while (from > 0 && line_[from - 1] == ' ') --from;
      while (from > 0 && line_[from - 1] != ' ') --from;
      erase(from, cursor_);
      break;
    }
    case 0x08:  // Ctrl-H
    case 0x7f:  // the Backspace key of most terminals
      if (cursor_ > 0) erase(cursor_ - 1, cursor_);
      break;
    case 0x1b: escape_ = Escape::Esc; break;
    default:  // other control bytes and bytes >= 0x80: not ours
      break;
  }
  return Event::Edited;
}

void LineEditor::escape_byte(unsigned char byte) {
  switch (escape_) {
    case Escape::Esc:
      if (byte == '[') {
        escape_ = Escape::Csi;
        params_.clear();
      } else {
        // ESC O x, or ESC x (Alt-x), which is ignored whole.
        escape_ = byte == 'O' ? Escape::Ss3 : Escape::None;
      }
      break;
    case Escape::Ss3:
      escape_ = Escape::None;
      letter_key(byte);
      break;
    case Escape::Csi:
      if (byte < 0x40) {  // parameter and intermediate bytes
        if (params_.size() <= kMaxParams) params_ += char(byte);
        break;
      }
      escape_ = Escape::None;
      csi_final(byte);
      break;
    case Escape::None: break;
  }
}

void LineEditor::csi_final(unsigned char final_byte) {
  if (final_byte != '~') {
    // Modified keys (ESC [ 1 ; 5 C) and the rest are not ours.
    if (params_.empty()) letter_key(final_byte);
    return;
  }
  if (params_ == "1" || params_ == "7") key(Key::Home);
  if (params_ == "4" || params_ == "8") key(Key::End);
  if (params_ == "3") key(Key::Delete);
}

void LineEditor::letter_key(unsigned char letter) {
  switch (letter) {
    case 'A': key(Key::Up); break;
    case 'B': key(Key::Down); break;
    case 'C': key(Key::Right); break;
    case 'D': key(Key::Left); break;
    case 'H': key(Key::Home); break;
    case 'F': key(Key::End); break;
    default: break;
  }
}

void LineEditor::key(Key key) {
  switch (key) {
    case Key::Up: history_step(true); break;
    case Key::Down: history_step(false); break;
    case Key::Right:
      if (cursor_ < line_.size()) ++cursor_;
      break;
    case Key::Left:
      if (cursor_ > 0) --cursor_;
      break;
    case Key::Home: cursor_ = 0; break;
    case Key::End: cursor_ = line_.size(); break;
    case Key::Delete:
      if (cursor_ < line_.size()) erase(cursor_, cursor_ + 1);
      break;
  }
}

void LineEditor::insert(char c) {
  line_.insert(cursor_, 1, c);
  ++cursor_;
}

void LineEditor::erase(size_t from, size_t to) {
  line_.erase(from, to - from);
  if (cursor_ >= to)
    cursor_ -= to - from;
  else if (cursor_ > from)
    cursor_ = from;
}

// Walks the history; the draft is kept when leaving it and comes back
// after the newest entry. Edits to a recalled entry last until the walk
// moves on.
void LineEditor::history_step(bool older) {
  if (older) {
    if (history_index_ == 0) return;
    if (history_index_ == history_.size()) draft_ = line_;
    line_ = history_[--history_index_];
  } else {
    if (history_index_ == history_.size()) return;
    ++history_index_;
    line_ = history_index_ == history_.size() ? draft_ : history_[history_index_];
  }
  cursor_ = line_.size();
}

// Completes the first word when the cursor is in it (or at its end).
LineEditor::Event LineEditor::complete() {
  bool again = tab_ambiguous_;
  tab_ambiguous_ = false;
  size_t start = std::min(line_.find_first_not_of(' '), line_.size());
  size_t end = std::min(line_.find(' ', start), line_.size());
  if (cursor_ < start || cursor_ > end) return Event::Edited;
  std::string word = line_.substr(start, end - start);
  std::vector<std::string> found;
  for (const std::string& candidate : candidates_)
    if (candidate.compare(0, word.size(), word) == 0) found.push_back(candidate);
  if (found.empty()) return Event::Edited;
  if (found.size() == 1) {
    line_.replace(start, end - start, found[0]);
    cursor_ = start + found[0].size();
    if (cursor_ < line_.size() && line_[cursor_] == ' ')
      ++cursor_;
    else
      insert(' ');
    return Event::Edited;
  }
  tab_ambiguous_ = true;
  if (again) {
    matches_ = std::move(found);
    return Event::ListMatches;
  }
  const std::string& first = found.front();
  const std::string& last = found.back();
  size_t common = 0;
  while (common < first.size() && common < last.size() && first[common] == last[common]) ++common;
  line_.replace(start, end - start, first, 0, common);
  cursor_ = start + common;
  return Event::Edited;
}

// ---------------------------------------------------------------- terminal

std::string redraw(const std::string& prompt, const std::string& line, size_t cursor) {
  std::string out = "\r" + prompt + line + "\x1b[K";
  if (cursor < line.size()) out += "\x1b[" + std::to_string(line.size() - cursor) + "D";
  return out;
}

RawMode::RawMode(int fd) : fd_(fd) {
  if (tcgetattr(fd, &saved_) != 0) return;
  termios raw = saved_;
  // Bytes come as typed: no line discipline, no echo, no signal keys, no
  // flow control; CR stays CR and all eight bits are kept. c_oflag (and
  // OPOST with it) is left alone so "\n" still starts a new row.
  raw.c_lflag &= ~tcflag_t(ICANON | ECHO | ISIG | IEXTEN);
  raw.c_iflag &= ~tcflag_t(BRKINT | ICRNL | IGNCR | INLCR | ISTRIP | IXON);
  raw.c_cc[VMIN] = 1;
  raw.c_cc[VTIME] = 0;
  // TCSANOW, not TCSAFLUSH: input typed ahead is kept for the line.
  active_ = tcsetattr(fd, TCSANOW, &raw) == 0;
}

RawMode::~RawMode() {
  if (!active_) return;
  while (tcsetattr(fd_, TCSANOW, &saved_) != 0 && errno == EINTR) {
  }
}

LineReader::LineReader(int in_fd, int out_fd, std::vector<std::string> candidates)
    : in_fd_(in_fd), out_fd_(out_fd), editor_(std::move(candidates)) {}

void LineReader::write_all(const std::string& data) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = write(out_fd_, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // the terminal is gone; the next read says so
    done += size_t(n);
  }
}

bool LineReader::read_line(const std::string& prompt, std::string* line) {
  RawMode raw(in_fd_);
  editor_.begin_line();
  write_all(prompt);
  for (;;) {
    if (pending_.empty()) {
      char buffer[512];
      ssize_t n = read(in_fd_, buffer, sizeof buffer);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        write_all("\n");
        return false;
      }
      pending_.assign(buffer, size_t(n));
    }
    // A whole read (a paste, an escape sequence) is taken before the line
    // is repainted once; bytes after the end of a line wait for the next.
    size_t used = 0;
    LineEditor::Event event = LineEditor::Event::Edited;
    while (used < pending_.size() && event == LineEditor::Event::Edited)
      event = editor_.feed(static_cast<unsigned char>(pending_[used++]));
    pending_.erase(0, used);
    // Without raw mode the terminal echoes by itself: only the prompt is
    // ours. The end of a line is shown with the cursor after the text.
    std::string out;
    std::string ended = redraw(prompt, editor_.line(), editor_.line().size());
    switch (event) {
      case LineEditor::Event::Edited: out = redraw(prompt, editor_.line(), editor_.cursor()); break;
      case LineEditor::Event::Accepted:
        if (raw.active()) write_all(ended + "\n");
        *line = editor_.line();
        return true;
      case LineEditor::Event::EndOfInput:
        if (raw.active()) write_all(ended + "\n");
        return false;
      case LineEditor::Event::Interrupted:
        out = ended + "^C\n" + prompt;
        editor_.begin_line();
        break;
      case LineEditor::Event::ListMatches:
        out = ended + "\n";
        for (const std::string& match : editor_.matches()) out += match + "  ";
        out.replace(out.size() - 2, 2, "\n");
        out += redraw(prompt, editor_.line(), editor_.cursor());
        break;
    }
    if (raw.active()) write_all(out);
  }
}
