// Socket addresses and name resolution (see address.hpp).
#include "address.hpp"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <unistd.h>

#include <cstring>

#include "options.hpp"

std::string Address::host_text() const {
  char text[INET6_ADDRSTRLEN] = "?";
  if (family() == AF_INET) {
    auto* in = reinterpret_cast<const sockaddr_in*>(&storage);
    inet_ntop(AF_INET, &in->sin_addr, text, sizeof text);
  } else if (family() == AF_INET6) {
    auto* in6 = reinterpret_cast<const sockaddr_in6*>(&storage);
    if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr))
      inet_ntop(AF_INET, &in6->sin6_addr.s6_addr[12], text, sizeof text);
    else
      inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof text);
  }
  return text;
}

int Address::port() const {
  if (family() == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in*>(&storage)->sin_port);
  if (family() == AF_INET6)
    return ntohs(reinterpret_cast<const sockaddr_in6*>(&storage)->sin6_port);
  return 0;
}

std::string Address::text() const {
  std::string host = host_text();
  if (host.find(':') != std::string::npos) host = "[" + host + "]";
  return host + ":" + std::to_string(port());
}

void Address::set_port(int number) {
  if (family() == AF_INET)
    reinterpret_cast<sockaddr_in*>(&storage)->sin_port = htons(uint16_t(number));
  else if (family() == AF_INET6)
    reinterpret_cast<sockaddr_in6*>(&storage)->sin6_port = htons(uint16_t(number));
}

std::string Address::host_key() const {
  if (family() == AF_INET) {
    auto* in = reinterpret_cast<const sockaddr_in*>(&storage);
    return std::string(reinterpret_cast<const char*>(&in->sin_addr), 4);
  }
  if (family() == AF_INET6) {
    auto* in6 = reinterpret_cast<const sockaddr_in6*>(&storage);
    const char* bytes = reinterpret_cast<const char*>(&in6->sin6_addr);
    if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) return std::string(bytes + 12, 4);
    return std::string(bytes, 16);
  }
  return std::string();
}

bool resolve_port(const std::string& port, int* number, std::string* err) {
  uint64_t value;
  if (parse_unsigned(port, 1, 65535, &value)) {
    *number = int(value);
    return true;
  }
  if (port.find_first_not_of("0123456789") == std::string::npos) {
    *err = "port must be a number from 1 to 65535 or a service name";
    return false;
  }
  servent* service = getservbyname(port.c_str(), "tcp");
  if (!service) {
    *err = "unknown service \"" + port + "\"";
    return false;
  }
  *number = ntohs(uint16_t(service->s_port));
  return true;
}

bool resolve_address(const std::string& host_text, const std::string& port, int family,
                     bool passive, Address* address, std::string* err) {
  int number;
  if (!resolve_port(port, &number, err)) return false;
  std::string host = host_text;
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  addrinfo hints{};
  hints.ai_family = family;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = passive ? AI_PASSIVE : 0;
  addrinfo* list = nullptr;
  std::string service = std::to_string(number);
  int rc = getaddrinfo(host.empty() ? nullptr : host.c_str(), service.c_str(), &hints, &list);
  if (rc != 0) {
    *err = gai_strerror(rc);
    return false;
  }
  // The first answer is used, as balance did; with AF_UNSPEC and a
  // passive wildcard, prefer IPv6 so one socket takes both families.
  const addrinfo* chosen = list;
  if (passive && host.empty() && family == AF_UNSPEC)
    for (const addrinfo* ai = list; ai; ai = ai->ai_next)
      if (ai->ai_family == AF_INET6) {
        chosen = ai;
        break;
      }
  std::memcpy(&address->storage, chosen->ai_addr, chosen->ai_addrlen);
  address->length = socklen_t(chosen->ai_addrlen);
  freeaddrinfo(list);
  return true;
}

namespace {

bool is_wildcard(const Address& address) {
  std::string key = address.host_key();
  return key.find_first_not_of('\0') == std::string::npos;
}

bool is_mapped_or_v4(const Address& address) { return address.host_key().size() == 4; }

// An address of this host is one a socket can be bound to.
bool is_local(const Address& address) {
  int fd = socket(address.family(), SOCK_STREAM, 0);
  if (fd < 0) return false;
  Address probe = address;
  probe.set_port(0);
  bool local = bind(fd, probe.sa(), probe.length) == 0;
  close(fd);
  return local;
}

}  // namespace

bool reaches_listener(const Address& to, const Address& listener, bool v6only) {
  if (to.port() != listener.port()) return false;
  if (!is_wildcard(listener)) return to.host_key() == listener.host_key();
  bool v4_client = is_mapped_or_v4(to);
  if (listener.family() == AF_INET && !v4_client) return false;
  if (listener.family() == AF_INET6 && v6only && v4_client) return false;
  return is_local(to);
}
