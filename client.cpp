// The control client: `balance -i port` and `balance -c command port`.
//
// It never waits without bound: connecting and every piece of a reply
// have a deadline (-t, 5 s by default), and a reply larger than kMaxReply
// is an error. It talks only to a balance it can trust: the socket's
// directory passes the server's own checks (a real directory owned by
// this user or root, writable by nobody else) and the process at the other
// end runs as this user or root. Replies are printed piece by piece as
// they arrive, so a reply of any size costs the client little memory.
#include <dirent.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <memory>

#include "control.hpp"
#include "editor.hpp"

namespace {

// Far above any real reply (`show json` of 100,000 channels is 19 MB),
// far below what would hurt: a peer that streams forever is cut off.
constexpr uint64_t kMaxReply = uint64_t(1) << 30;
constexpr int64_t kDefaultWaitMs = 5000;

struct Link {
  Fd fd;
  std::string path;  // where it is connected
  int64_t wait_ms = kDefaultWaitMs;
};

// Connects without blocking: a stopped balance whose backlog is full
// makes connect() fail with EAGAIN, tried again until the deadline.
Fd connect_with_deadline(const std::string& path, int64_t wait_ms, int* error) {
  sockaddr_un address;
  std::string err;
  if (!fill_unix_address(path, &address, &err)) {
    *error = ENAMETOOLONG;
    return Fd();
  }
  int64_t deadline = monotonic_ms() + wait_ms;
  for (;;) {
    Fd fd(socket(AF_UNIX, SOCK_STREAM, 0));
    if (!fd) {
      *error = errno;
      return Fd();
    }
    set_cloexec(fd.get());
    set_nonblocking(fd.get());
    if (connect(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) == 0) return fd;
    *error = errno;
    if (errno == EINPROGRESS) {
      pollfd p{fd.get(), POLLOUT, 0};
      int left = int(std::max<int64_t>(deadline - monotonic_ms(), 0));
      if (poll(&p, 1, left) == 1 && socket_error(fd.get()) == 0) return fd;
      *error = ETIMEDOUT;
      return Fd();
    }
    if (errno != EAGAIN || monotonic_ms() >= deadline) return Fd();
    poll(nullptr, 0, 20);  // the backlog is full: a moment, then again
  }
}

// The peer must be this user or root: anyone else could have made the
// socket to collect our commands and forge replies.
bool peer_trusted(int fd, std::string* why) {
  uid_t uid = uid_t(-1);
  gid_t gid = gid_t(-1);
  if (!peer_credentials(fd, &uid, &gid)) {
    *why = std::string("cannot tell who listens there: ") + std::strerror(errno);
    return false;
  }
  if (uid == geteuid() || uid == 0) return true;
  *why = "it is run by uid " + std::to_string(uid) + ", neither you nor root; not talking to it";
  return false;
}

// Waits until fd has something to read, at most the link's wait.
bool readable_in_time(const Link& link) {
  pollfd p{link.fd.get(), POLLIN, 0};
  for (;;) {
    int n = poll(&p, 1, int(link.wait_ms));
    if (n < 0 && errno == EINTR) continue;
    return n == 1;
  }
}

bool send_line(const Link& link, const std::string& line) {
  std::string data = line + "\n";
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = send(link.fd.get(), data.data() + done, data.size() - done, MSG_NOSIGNAL);
    if (n < 0 && (errno == EINTR)) continue;
    if (n < 0 && would_block(errno)) {
      pollfd p{link.fd.get(), POLLOUT, 0};
      if (poll(&p, 1, int(link.wait_ms)) != 1) return false;
      continue;
    }
    if (n <= 0) return false;
    done += size_t(n);
  }
  return true;
}

enum class ReplyEnd { Complete, Closed, TimedOut, TooLong };

// Reads one reply and, if asked, prints it: to stderr when it is an
// error. *error tells which.
ReplyEnd read_reply(const Link& link, ReplyReader* reader, bool print, bool* error) {
  *error = false;
  for (;;) {
    std::string text;
    switch (reader->next(&text)) {
      case ReplyReader::Event::Text:
        *error = reader->error();
        if (print) std::fwrite(text.data(), 1, text.size(), *error ? stderr : stdout);
        continue;
      case ReplyReader::Event::End:
        std::fflush(stdout);
        return ReplyEnd::Complete;
      case ReplyReader::Event::TooLong:
        return ReplyEnd::TooLong;
      case ReplyReader::Event::None:
        break;
    }
    if (!readable_in_time(link)) return ReplyEnd::TimedOut;
    char buffer[65536];
    ssize_t n = recv(link.fd.get(), buffer, sizeof buffer, 0);
    if (n < 0 && (errno == EINTR || would_block(errno))) continue;
    if (n <= 0) return ReplyEnd::Closed;
    reader->feed(buffer, size_t(n));
  }
}

// Sends one command and prints its reply; false when it was an error.
// The group shown in the prompt follows successful `group` commands.
bool run_one(const Link& link, const std::string& line, ReplyReader* reader, size_t* group,
             bool* ended) {
  *ended = false;
  if (!send_line(link, line)) {
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
  switch (read_reply(link, reader, true, &error)) {
    case ReplyEnd::Complete:
      break;
    case ReplyEnd::Closed:
      std::fprintf(stderr, "balance: the control connection was closed\n");
      *ended = true;
      return false;
    case ReplyEnd::TimedOut:
      std::fprintf(stderr, "balance: no answer from %s within %.3f s (see -t)\n", link.path.c_str(),
                   double(link.wait_ms) / 1000);
      *ended = true;
      return false;
    case ReplyEnd::TooLong:
      std::fprintf(stderr, "balance: a reply longer than %llu bytes from %s; giving up\n",
                   (unsigned long long)kMaxReply, link.path.c_str());
      *ended = true;
      return false;
  }
  if (!error && parsed && command.verb == Verb::Group) *group = command.group;
  if (parsed && (command.verb == Verb::Quit || command.verb == Verb::Kill)) *ended = true;
  return !error;
}

// Where a balance for these options may listen: -S alone, else this
// user's directory (under $TMPDIR, then /tmp), then root's.
std::vector<std::string> candidate_paths(const Options& options, int port) {
  if (!options.socket_path.empty()) return {options.socket_path};
  std::vector<std::string> directories = {socket_directory(geteuid(), std::getenv("TMPDIR"))};
  std::string plain = socket_directory(geteuid(), nullptr);
  if (plain != directories[0]) directories.push_back(plain);
  if (geteuid() != 0) directories.push_back(socket_directory(0, nullptr));
  std::vector<std::string> paths;
  for (const std::string& directory : directories)
    paths.push_back(directory + "/" + socket_name(options, port));
  return paths;
}

// "-b ADDR" for sockets of this port that a balance started with -b made
// in the same directory, when the one without -b is missing.
std::string bind_hint(const std::string& path, int port) {
  std::string directory = path.substr(0, path.rfind('/'));
  std::string suffix = "_" + std::to_string(port) + ".sock";
  std::string hint;
  DIR* dir = opendir(directory.c_str());
  if (!dir) return hint;
  while (dirent* entry = readdir(dir)) {
    std::string name = entry->d_name;
    if (name.size() > suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0)
      hint += (hint.empty() ? "" : ", ") + std::string("-b ") + name.substr(0, name.size() - suffix.size());
  }
  closedir(dir);
  return hint;
}

// Finds and connects to the balance for these options; false after
// saying on stderr where it looked and why nothing answered there.
bool open_link(const Options& options, Link* link) {
  int port = 0;
  std::string err;
  if (options.socket_path.empty() && !resolve_port(options.port, &port, &err)) {
    std::fprintf(stderr, "balance: %s: %s\n", options.port.c_str(), err.c_str());
    return false;
  }
  std::vector<std::string> paths = candidate_paths(options, port);
  std::string looked, hint;
  for (const std::string& path : paths) {
    std::string directory = path.substr(0, path.rfind('/'));
    if (options.socket_path.empty()) {
      struct stat st;
      if (lstat(directory.c_str(), &st) != 0) {
        looked += (looked.empty() ? "" : ", ") + path;
        continue;
      }
      if (!check_socket_directory(directory, true, &err)) {
        std::fprintf(stderr, "balance: %s\n", err.c_str());
        return false;
      }
    }
    int error = 0;
    Fd fd = connect_with_deadline(path, link->wait_ms, &error);
    if (!fd) {
      looked += (looked.empty() ? "" : ", ") + path;
      if (error == ETIMEDOUT || error == EAGAIN) {
        std::fprintf(stderr, "balance: %s does not answer within %.3f s (see -t)\n", path.c_str(),
                     double(link->wait_ms) / 1000);
        return false;
      }
      if (error == EACCES && &path != &paths.front()) {
        looked += " (not yours to enter)";  // e.g. root's directory, for another user
        continue;
      }
      if (error != ENOENT && error != ECONNREFUSED) {
        std::fprintf(stderr, "balance: %s: %s\n", path.c_str(), std::strerror(error));
        return false;
      }
      if (hint.empty() && options.bind_address.empty() && options.socket_path.empty())
        hint = bind_hint(path, port);
      continue;
    }
    if (!peer_trusted(fd.get(), &err)) {
      std::fprintf(stderr, "balance: %s: %s\n", path.c_str(), err.c_str());
      return false;
    }
    link->fd = std::move(fd);
    link->path = path;
    return true;
  }
  std::fprintf(stderr, "balance: no balance running on port %s (%s %s)%s\n", options.port.c_str(),
               paths.size() == 1 ? "socket" : "looked at", looked.c_str(),
               hint.empty() ? "" : ("; one was started with -b: repeat it (" + hint + ")").c_str());
  return false;
}

// The server closed the session (idle too long, or evicted to make room,
// with a last word that is shown): nothing more to read but the end.
// Checked before each -i command, so none is sent into a closed session
// and none is sent twice.
bool closed_by_server(const Link& link) {
  for (;;) {
    pollfd p{link.fd.get(), POLLIN, 0};
    if (poll(&p, 1, 0) != 1) return false;
    char buffer[512];
    ssize_t n = recv(link.fd.get(), buffer, sizeof buffer, 0);
    if (n == 0 || (n < 0 && !would_block(errno) && errno != EINTR)) return true;
    if (n > 0) std::fwrite(buffer, 1, size_t(n), stderr);  // unasked for: the server's last word
  }
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
  signal(SIGPIPE, SIG_IGN);
  Link link;
  if (options.timeout_given) link.wait_ms = options.connect_timeout_ms;
  if (!open_link(options, &link)) return 1;
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
      if (!run_one(link, line, &reader, &group, &ended)) return 1;
    }
    return 0;
  }
  // On a terminal: a prompt with the current group, and line editing
  // (editor.hpp); piped commands are read as they come.
  bool tty = isatty(STDIN_FILENO) && isatty(STDOUT_FILENO);
  std::unique_ptr<LineReader> editor;
  if (tty) editor = std::make_unique<LineReader>(STDIN_FILENO, STDOUT_FILENO, command_names());
  bool failed = false;
  std::string line;
  for (;;) {
    std::fflush(stdout);
    if (tty ? !editor->read_line("balance[" + std::to_string(group) + "] ", &line)
            : !std::getline(std::cin, line))
      break;
    if (closed_by_server(link)) {
      // An idle session the server ended: a new one, with the current
      // group chosen again (its reply not shown), before the command.
      if (!open_link(options, &link)) return 1;
      reader = ReplyReader(kMaxReply);
      bool error = false;
      if (group != 0 && (!send_line(link, "group " + std::to_string(group)) ||
                         read_reply(link, &reader, false, &error) != ReplyEnd::Complete || error))
        return 1;
    }
    if (!run_one(link, line, &reader, &group, &ended)) failed = true;
    if (ended) break;
  }
  // Piped commands report failure in the exit status; a person at the
  // prompt has seen the errors already.
  return failed && !tty ? 1 : 0;
}
