// helper.hpp: the entry points of the helper's sub-commands (see helper.cpp
// for the list) and what their files share beyond testnet.hpp.

#ifndef BALANCE_TESTS_HELPER_HPP
#define BALANCE_TESTS_HELPER_HPP

#include <string>

#include "testnet.hpp"

namespace helper {

// Servers (helper_server.cpp): one poll loop, one mode per sub-command.
enum class Mode { Echo, Sink, Source, ResetAfter, Hold, Duplex, Mute, SlowRead, Blackhole };
int server_main(Mode mode, int argc, char** argv);

// Clients of byte streams (helper_client.cpp).
int client_main(int argc, char** argv);
int integrity_main(int argc, char** argv);
int halfclose_main(int argc, char** argv);

// Clients that load or misuse a connection (helper_load.cpp).
int end_main(int argc, char** argv);
int push_main(int argc, char** argv);
int slowread_client_main(int argc, char** argv);
int idle_main(bool flood, int argc, char** argv);

// The integrity protocol's duplex server greets with its name padded with
// spaces to 15 bytes and a newline; the header that follows is 32 bytes.
inline constexpr size_t kGreeting = 16;
inline constexpr size_t kHeader = 32;
inline constexpr size_t kTrailer = 16;

// Flags of the integrity header.
inline constexpr uint32_t kReplyAfterFin = 1;   // the server sends only after the client's FIN
inline constexpr uint32_t kServerFirst = 2;     // the server sends and shuts first, no trailer
inline constexpr uint32_t kUrgentHalfway = 4;   // one MSG_OOB byte halfway through each stream

// The seeds of the two directions of integrity connection `seed`.
inline uint64_t up_seed(uint64_t seed) { return 2 * seed + 1; }
inline uint64_t down_seed(uint64_t seed) { return 2 * seed; }

// Flag 4: one urgent byte once half of total is sent (tried again while the
// socket is full).
inline void urgent_halfway(int fd, uint32_t flags, uint64_t sent, uint64_t total, bool* urgent_sent) {
  if (!(flags & kUrgentHalfway) || *urgent_sent || sent < total / 2) return;
  if (send(fd, "!", 1, MSG_OOB) == 1) *urgent_sent = true;
}

// EAGAIN, EWOULDBLOCK or EINTR: nothing happened, try again later.
inline bool try_again(int err) { return err == EAGAIN || err == EWOULDBLOCK || err == EINTR; }

}  // namespace helper

#endif  // BALANCE_TESTS_HELPER_HPP
