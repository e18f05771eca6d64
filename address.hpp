// Socket addresses and name resolution: the one place that turns host and
// port names into addresses and addresses back into text. No sockets.
#ifndef BALANCE_ADDRESS_HPP
#define BALANCE_ADDRESS_HPP

#include <sys/socket.h>

#include <string>

// A resolved socket address (back-end, client or listener), kept as bytes.
struct Address {
  sockaddr_storage storage{};
  socklen_t length = 0;

  const sockaddr* sa() const { return reinterpret_cast<const sockaddr*>(&storage); }
  int family() const { return storage.ss_family; }
  // "192.0.2.1" or "2001:db8::1" (IPv4-mapped IPv6 shown as IPv4).
  std::string host_text() const;
  int port() const;
  // "host:port", an IPv6 host in brackets: "[::1]:80".
  std::string text() const;
  void set_port(int port);
  // Bytes that identify the host (not the port): 4 for IPv4 and for
  // IPv4-mapped IPv6 addresses, so both give the same key, else 16.
  std::string host_key() const;
};

// A port number 1..65535 or a service name; false with *err = why.
bool resolve_port(const std::string& port, int* number, std::string* err);

// Resolves host and port into an address. family is AF_UNSPEC, AF_INET or
// AF_INET6; passive for a listening address (empty host = wildcard, IPv6
// preferred so that one socket takes both families). A host may be an
// IPv6 literal in brackets. False with *err = the resolver's message.
bool resolve_address(const std::string& host, const std::string& port, int family,
                     bool passive, Address* address, std::string* err);

// Whether a connection to `to` would come back to a listener bound to
// `listener` (v6only: an IPv6 listener that takes no IPv4 clients): the
// same port, on the listener's address or, for a wildcard listener, on
// any address of this host. Such a channel would loop through balance.
bool reaches_listener(const Address& to, const Address& listener, bool v6only);

#endif
