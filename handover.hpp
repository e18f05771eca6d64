// Restart and upgrade without losing a connection (balance.1, RESTARTING
// AND UPGRADING). A new balance takes over a running one over the old
// one's control socket:
//
//   new -> old  "handover\n"
//   old -> new  the offer: text lines, some carrying one descriptor each
//               (SCM_RIGHTS): the listeners, the waiting clients in the
//               order they are to be served, the groups, the channels
//               (with state, counters and the connections the old one
//               still holds), the rules and the old one's arguments; "end"
//   new -> old  "taken\n" once it listens on everything
//   old -> new  "release ADDRESS\n" as each of its connections ends, and
//               "done\n" when its last one has; then it exits 0
//
// From the offer to "taken" the old one neither accepts nor serves its
// queue, and it carries on as if nothing happened when the new one fails,
// goes away or takes longer than kTakeoverMs.
#ifndef BALANCE_HANDOVER_HPP
#define BALANCE_HANDOVER_HPP

#include <sys/types.h>

#include <map>
#include <string>
#include <vector>

#include "balance.hpp"
#include "net.hpp"

class Proxy;
struct WaiterView;
class StatsServer;
class ControlServer;

// A waiting client as it travels from the old process to the new one.
struct HandedWaiter {
  Fd fd;
  bool priority = false;
  int64_t waited_ms = 0;
  uint64_t cost = 0;
  std::string bytes;  // read from the client, not yet relayed
  bool eof = false;   // it has shut down its sending side (-e)
};

// A channel as the old process has it.
struct HandedChannel {
  size_t group = 0;
  unsigned number = 0;
  ChannelConfig config;  // host, port, maxc, weight (the address is resolved anew)
  AdminState admin = AdminState::Enabled;
  Health health = Health::Up;
  ChannelCounters counters;
  bool learned = false;
  unsigned held = 0;    // connections the old process still relays on it
  std::string address;  // its address as text: the key of "release"
};

struct Offer {
  long pid = 0;
  std::vector<std::string> args;  // the old process's arguments
  Fd proxy_listener, stats_listener;
  std::vector<HandedWaiter> waiters;
  std::vector<std::pair<GroupType, unsigned>> groups;  // type, next channel number
  std::vector<HandedChannel> channels;
  std::vector<std::pair<RuleKind, std::string>> rules;
};

// New side, before anything else: connects to the balance these options
// name, checks it, asks for the hand-over and reads the offer; the
// connection comes back in *link. False with *err (the old one goes on).
bool receive_offer(const Options& options, Offer* offer, Fd* link, std::string* err);

// New side, on the empty pool: when the old process ran with the same
// arguments, its groups, channels (numbers, state, counters, learning)
// and rules are restored (*restored); otherwise the command line builds
// the pool as usual. False with *err.
bool restore_offer(State& state, const Offer& offer, bool* restored, std::string* err);
// New side, once the pool is built: the connections the old process
// still relays count against the channels of the same address.
void adopt_slots(State& state, const Offer& offer);

// Pure, tested: the offer's text lines, and back.
std::string offer_line(const HandedChannel& channel);
bool parse_offer_line(const std::string& line, HandedChannel* channel);

// A process may be both sides at once: a balance that took over (its
// upstream still relays connections) can be taken over in turn (then its
// downstream hears of the upstream's releases through it, and it exits
// only once both it and its upstream are done).
class Handover final : public Watcher {
 public:
  static constexpr int64_t kTakeoverMs = 10000;

  Handover(State& state, Proxy& proxy, StatsServer& stats, ControlServer& control);
  ~Handover();

  // Old side: the `handover` control command, on the session's connection.
  bool offer(Fd connection, std::string* err);
  // New side: the connection to the old one, once the offer is applied.
  bool taken(Fd connection, long old_pid, std::string* err);

  // From the offer to "taken": nothing is accepted, the queue not served.
  bool frozen() const { return giving_ == Giving::Offering || giving_ == Giving::Taken; }
  // Old side: the new process has taken over.
  bool gave_away() const { return giving_ == Giving::Draining; }
  // Old side, from the offer on: a connection on the channel ended after
  // relayed_ms (-1: a failed connect); the new one counts its slot free
  // again and adds what this one counted on the channel since the offer
  // or the last release (held back until "taken", dropped with a failed
  // offer).
  void released(uint64_t channel_id, int64_t relayed_ms);
  // Old side, after "taken": a client to place anew (its connect failed)
  // goes to the new process, which alone knows the free slots. False when
  // the link is gone.
  bool pass_on(const WaiterView& client);

  void on_ready(int fd, unsigned events) override;
  void tick();
  int64_t next_deadline_ms() const;

  // SIGUSR2: starts the binary on disk with this process's arguments and
  // -x, to take over; its failure is logged and changes nothing.
  void upgrade();

 private:
  enum class Giving { None, Offering, Taken, Draining };
  // What this process last told its downstream of a channel.
  struct Reported {
    std::string address;
    ChannelCounters counters;
  };
  // One end of a hand-over connection: lines, and descriptors with them.
  struct Link {
    Fd fd;
    std::string in;
    std::vector<Fd> fds;  // received with the lines in `in`, in order
  };
  void downstream_line(const std::string& text);
  void upstream_line(const std::string& text);
  void drop_downstream(const std::string& why);
  void drop_upstream(const std::string& why);
  void send_down(const std::string& text);
  // Reads what `link` has; calls `on_line` per line; false at its end.
  template <typename OnLine>
  bool read_lines(Link& link, OnLine on_line, std::string* why);

  State& state_;
  Proxy& proxy_;
  StatsServer& stats_;
  ControlServer& control_;
  Giving giving_ = Giving::None;
  Link down_;  // to the process this one offered to, or handed over to
  Link up_;    // to the process this one took over, until it is done
  std::map<uint64_t, Reported> reported_;
  std::string pending_;  // releases between the offer and "taken"
  int64_t deadline_ms_ = 0;
  long old_pid_ = 0;
  pid_t child_ = -1;  // the binary SIGUSR2 started, until it is reaped
};

#endif
