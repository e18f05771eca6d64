// The control client: `balance -i port` and `balance -c command port`.
// Replies are printed line by line as they arrive, so a reply of any
// size costs the client one line of memory.
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <iostream>

#include "control.hpp"

namespace {

// Far above any real reply (`show json` of 100,000 channels is 19 MB),
// far below what would hurt: a peer that streams forever is cut off.
constexpr uint64_t kMaxReply = uint64_t(1) << 30;

bool send_line(int fd, const std::string& line) {
  std::string data = line + "\n";
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += size_t(n);
  }
  return true;
}

// Reads one reply and prints it: to stderr when it is an error. *error
// tells which; false when the connection ended first.
bool print_reply(int fd, ReplyReader* reader, bool* error) {
  *error = false;
  for (;;) {
    std::string text;
    switch (reader->next(&text)) {
      case ReplyReader::Event::Text:
        *error = reader->error();
        std::fwrite(text.data(), 1, text.size(), *error ? stderr : stdout);
        continue;
      case ReplyReader::Event::End:
        std::fflush(stdout);
        return true;
      case ReplyReader::Event::TooLong:
        std::fprintf(stderr, "balance: a reply longer than %llu bytes; giving up\n",
                     (unsigned long long)kMaxReply);
        return false;
      case ReplyReader::Event::None:
        break;
    }
    char buffer[65536];
    ssize_t n = read(fd, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    reader->feed(buffer, size_t(n));
  }
}

// Sends one command and prints its reply; false when it was an error.
// The group shown in the prompt follows successful `group` commands.
bool run_one(int fd, const std::string& line, ReplyReader* reader, size_t* group, bool* ended) {
  *ended = false;
  if (!send_line(fd, line)) {
    std::fprintf(stderr, "balance: the control connection was closed\n");
    *ended = true;
    return false;
  }
  Command command;
  bool empty = false;
  std::string ignored;
  bool parsed = parse_command(line, &command, &empty, &ignored);
  if (parsed && empty) return true;  // the server sends nothing back
  bool error = false;
  if (!print_reply(fd, reader, &error)) {
    std::fprintf(stderr, "balance: the control connection was closed\n");
    *ended = true;
    return false;
  }
  if (!error && parsed && command.verb == Verb::Group) *group = command.group;
  if (parsed && (command.verb == Verb::Quit || command.verb == Verb::Kill)) *ended = true;
  return !error;
}

}  // namespace

void ReplyReader::feed(const char* data, size_t length) {
  // Consumed bytes leave the buffer once per read, not once per piece.
  buffer_.erase(0, start_);
  start_ = 0;
  buffer_.append(data, length);
}

ReplyReader::Event ReplyReader::next(std::string* text) {
  size_t available = buffer_.size() - start_;
  if (available == 0) return Event::None;
  if (line_start_ && buffer_[start_] == '\n') {
    ++start_;
    line_start_ = reply_start_ = true;
    reply_bytes_ = 0;
    return Event::End;
  }
  if (reply_start_) {
    // Hold the first bytes back until it is clear whether they say
    // "error: " (or the first line ends sooner).
    static const char kError[] = "error: ";
    size_t newline = buffer_.find('\n', start_);
    if (available < sizeof kError - 1 && newline == std::string::npos) return Event::None;
    error_ = buffer_.compare(start_, sizeof kError - 1, kError) == 0;
    reply_start_ = false;
  }
  size_t newline = buffer_.find('\n', start_);
  size_t end = newline == std::string::npos ? buffer_.size() : newline + 1;
  if (reply_bytes_ + (end - start_) > max_reply_) return Event::TooLong;
  text->assign(buffer_, start_, end - start_);
  reply_bytes_ += end - start_;
  start_ = end;
  line_start_ = newline != std::string::npos;
  return Event::Text;
}

int run_control_client(const Options& options) {
  std::string path, directory, err;
  if (!control_socket_path(options, &path, &directory, &err)) {
    std::fprintf(stderr, "balance: %s\n", err.c_str());
    return 1;
  }
  signal(SIGPIPE, SIG_IGN);
  Fd fd = connect_unix(path);
  if (!fd) {
    if (errno == ENOENT || errno == ECONNREFUSED)
      std::fprintf(stderr, "balance: no balance running on port %s (socket %s)\n",
                   options.port.c_str(), path.c_str());
    else
      std::fprintf(stderr, "balance: %s: %s\n", path.c_str(), std::strerror(errno));
    return 1;
  }
  ReplyReader reader(kMaxReply);
  size_t group = 0;
  bool ended = false;
  if (options.mode == Mode::Command) {
    // Several commands may be given, separated by ';' or newlines; the
    // first error stops the run.
    size_t start = 0;
    while (start <= options.command.size() && !ended) {
      size_t end = options.command.find_first_of(";\n", start);
      if (end == std::string::npos) end = options.command.size();
      std::string line = options.command.substr(start, end - start);
      start = end + 1;
      if (line.find_first_not_of(" \t") == std::string::npos) continue;
      if (!run_one(fd.get(), line, &reader, &group, &ended)) return 1;
    }
    return 0;
  }
  bool tty = isatty(STDIN_FILENO);
  bool failed = false;
  std::string line;
  for (;;) {
    if (tty) {
      std::printf("balance[%zu] ", group);
      std::fflush(stdout);
    }
    if (!std::getline(std::cin, line)) break;
    if (!run_one(fd.get(), line, &reader, &group, &ended)) failed = true;
    if (ended) break;
  }
  if (tty && std::cin.eof()) std::printf("\n");
  // Piped commands report failure in the exit status; a person at the
  // prompt has seen the errors already.
  return failed && !tty ? 1 : 0;
}
