// Client classes by source network (see classes.hpp).
#include "classes.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstring>

#include "options.hpp"

namespace {

// The first 12 bytes of an IPv4-mapped IPv6 address (::ffff:0:0/96).
const unsigned char kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

// The mask of a prefix, as 16 bytes (an IPv4 prefix covers the first 4).
void mask_bytes(unsigned prefix, unsigned char mask[16]) {
  std::memset(mask, 0, 16);
  std::memset(mask, 0xff, prefix / 8);
  if (prefix % 8) mask[prefix / 8] = static_cast<unsigned char>(0xff << (8 - prefix % 8));
}

MaskedIPv4 masked_ipv4(const Network& network) {
  unsigned char mask[16];
  mask_bytes(network.prefix, mask);
  MaskedIPv4 masked;
  std::memcpy(&masked.net, network.bytes, 4);
  std::memcpy(&masked.mask, mask, 4);
  return masked;
}

MaskedIPv6 masked_ipv6(const Network& network) {
  unsigned char mask[16];
  mask_bytes(network.prefix, mask);
  MaskedIPv6 masked;
  std::memcpy(masked.net, network.bytes, 16);
  std::memcpy(masked.mask, mask, 16);
  return masked;
}

// A client's host, read once per check: an IPv4 or IPv4-mapped address
// as IPv4, any other IPv6 address as IPv6, anything else as neither.
struct Host {
  int family = AF_UNSPEC;  // AF_INET, AF_INET6 or AF_UNSPEC
  uint32_t v4 = 0;
  uint64_t v6[2] = {0, 0};
};

Host host_of(const Address& client) {
  Host host;
  if (client.family() == AF_INET) {
    host.family = AF_INET;
    std::memcpy(&host.v4, &reinterpret_cast<const sockaddr_in*>(&client.storage)->sin_addr, 4);
  } else if (client.family() == AF_INET6) {
    const in6_addr& in6 = reinterpret_cast<const sockaddr_in6*>(&client.storage)->sin6_addr;
    if (IN6_IS_ADDR_V4MAPPED(&in6)) {
      host.family = AF_INET;
      std::memcpy(&host.v4, &in6.s6_addr[12], 4);
    } else {
      host.family = AF_INET6;
      std::memcpy(host.v6, in6.s6_addr, 16);
    }
  }
  return host;
}

bool inside(uint32_t host, const MaskedIPv4& network) {
  return (host & network.mask) == network.net;
}

// Branch-free: both words are compared whatever the prefix.
bool inside(const uint64_t host[2], const MaskedIPv6& network) {
  return (((host[0] & network.mask[0]) ^ network.net[0]) |
          ((host[1] & network.mask[1]) ^ network.net[1])) == 0;
}

}  // namespace

bool Network::contains(const Address& client) const {
  Host host = host_of(client);
  if (host.family != family) return false;
  return family == AF_INET ? inside(host.v4, masked_ipv4(*this))
                           : inside(host.v6, masked_ipv6(*this));
}

bool Network::operator==(const Network& other) const {
  return family == other.family && prefix == other.prefix &&
         std::memcmp(bytes, other.bytes, sizeof bytes) == 0;
}

bool parse_network(const std::string& text, Network* network, std::string* err) {
  auto fail = [&](const std::string& why) {
    *err = text + ": " + why;
    return false;
  };
  if (text.empty()) {
    *err = "empty network";
    return false;
  }
  // An embedded NUL would end the address early for inet_pton and hide
  // whatever follows it.
  if (text.find('\0') != std::string::npos) return fail("not an IPv4 or IPv6 address");
  bool bracketed = text[0] == '[';
  std::string host;
  size_t slash;  // where "/prefix" starts, or npos
  if (bracketed) {
    size_t close = text.find(']');
    if (close == std::string::npos) return fail("missing ']' after the IPv6 address");
    host = text.substr(1, close - 1);
    slash = close + 1 < text.size() ? close + 1 : std::string::npos;
    if (slash != std::string::npos && text[slash] != '/') return fail("unexpected text after ']'");
  } else {
    slash = text.find('/');
    host = text.substr(0, slash);
  }
  Network parsed;
  if (!bracketed && inet_pton(AF_INET, host.c_str(), parsed.bytes) == 1) {
    parsed.family = AF_INET;
    parsed.prefix = 32;
  } else if (inet_pton(AF_INET6, host.c_str(), parsed.bytes) == 1) {
    parsed.family = AF_INET6;
    parsed.prefix = 128;
  } else {
    return fail(bracketed ? "not an IPv6 address" : "not an IPv4 or IPv6 address");
  }
  if (slash != std::string::npos) {
    std::string digits = text.substr(slash + 1);
    const char* family = parsed.family == AF_INET ? "IPv4" : "IPv6";
    uint64_t value;
    if (digits.empty()) return fail("missing prefix length after '/'");
    if (!parse_unsigned(digits, 0, parsed.prefix, &value)) {
      if (digits.find_first_not_of("0123456789") != std::string::npos)
        return fail("prefix is not a decimal number");
      return fail("prefix longer than " + std::to_string(parsed.prefix) + " bits for " + family);
    }
    parsed.prefix = unsigned(value);
  }
  // An IPv6 network inside ::ffff:0:0/96 is an IPv4 network in IPv6
  // spelling; it is kept as one (see Network in classes.hpp).
  if (parsed.family == AF_INET6 && parsed.prefix >= 96 &&
      std::memcmp(parsed.bytes, kMapped, sizeof kMapped) == 0) {
    std::memmove(parsed.bytes, parsed.bytes + 12, 4);
    std::memset(parsed.bytes + 4, 0, 12);
    parsed.family = AF_INET;
    parsed.prefix -= 96;
  }
  // Host bits beyond the prefix are accepted and cleared: 10.1.2.3/8 is
  // 10.0.0.0/8, as an address copied with its prefix from `ip addr` is
  // meant. The canonical text then shows the network actually matched.
  unsigned char mask[16];
  mask_bytes(parsed.prefix, mask);
  for (size_t i = 0; i < sizeof parsed.bytes; ++i) parsed.bytes[i] &= mask[i];
  *network = parsed;
  return true;
}

std::string to_string(const Network& network) {
  char text[INET6_ADDRSTRLEN] = "?";
  inet_ntop(network.family, network.bytes, text, sizeof text);
  return std::string(text) + "/" + std::to_string(network.prefix);
}

const char* to_string(RuleKind kind) {
  switch (kind) {
    case RuleKind::Allow: return "allow";
    case RuleKind::Deny: return "deny";
    case RuleKind::Priority: return "priority";
  }
  return "?";
}

const char* counter_name(RuleKind kind) {
  switch (kind) {
    case RuleKind::Allow: return "allowed";
    case RuleKind::Deny: return "refused";
    case RuleKind::Priority: return "matched";
  }
  return "?";
}

bool ClientRules::add(RuleKind kind, const std::string& text, std::string* err) {
  ClientRule rule;
  rule.kind = kind;
  if (!parse_network(text, &rule.network, err)) return false;
  // An access rule for a network that already has one, or a priority
  // network listed twice, could never be the first match: refuse it
  // rather than keep a rule that does nothing.
  bool access = kind != RuleKind::Priority;
  size_t begin = access ? 0 : access_rules_;
  size_t end = access ? access_rules_ : rules_.size();
  for (size_t i = begin; i < end; ++i)
    if (rules_[i].network == rule.network) {
      *err = text + ": already a rule (" + describe(i) + ")";
      return false;
    }
  rules_.insert(rules_.begin() + std::ptrdiff_t(end), rule);
  if (access) ++access_rules_;
  if (kind == RuleKind::Allow) ++allow_rules_;
  rebuild();
  return true;
}

bool ClientRules::remove(RuleKind kind, const std::string& text, std::string* err) {
  Network network;
  if (!parse_network(text, &network, err)) return false;
  for (size_t i = 0; i < rules_.size(); ++i)
    if (rules_[i].kind == kind && rules_[i].network == network) {
      rules_.erase(rules_.begin() + std::ptrdiff_t(i));
      if (kind != RuleKind::Priority) --access_rules_;
      if (kind == RuleKind::Allow) --allow_rules_;
      rebuild();
      return true;
    }
  *err = text + ": no such " + to_string(kind) + " rule";
  return false;
}

void ClientRules::clear() {
  rules_.clear();
  access_rules_ = 0;
  allow_rules_ = 0;
  default_refusals_ = 0;
  rebuild();
}

void ClientRules::Matchers::clear() {
  v4.clear();
  v4_rules.clear();
  v6.clear();
  v6_rules.clear();
}

void ClientRules::Matchers::add(const Network& network, size_t rule) {
  if (network.family == AF_INET) {
    v4.push_back(masked_ipv4(network));
    v4_rules.push_back(rule);
  } else {
    v6.push_back(masked_ipv6(network));
    v6_rules.push_back(rule);
  }
}

size_t ClientRules::Matchers::first_match(const Address& client) const {
  Host host = host_of(client);
  if (host.family == AF_INET) {
    for (size_t i = 0; i < v4.size(); ++i)
      if (inside(host.v4, v4[i])) return v4_rules[i];
  } else if (host.family == AF_INET6) {
    for (size_t i = 0; i < v6.size(); ++i)
      if (inside(host.v6, v6[i])) return v6_rules[i];
  }
  return kNone;
}

void ClientRules::rebuild() {
  access_.clear();
  priority_.clear();
  for (size_t i = 0; i < rules_.size(); ++i)
    (i < access_rules_ ? access_ : priority_).add(rules_[i].network, i);
}

bool ClientRules::decide(const Address& client, size_t* rule) const {
  *rule = access_.first_match(client);
  if (*rule != kNone) return rules_[*rule].kind == RuleKind::Allow;
  if (allow_rules_ == 0) return true;
  *rule = kDefaultDeny;
  return false;
}

void ClientRules::count(size_t rule) {
  if (rule < rules_.size())
    ++rules_[rule].count;
  else if (rule == kDefaultDeny)
    ++default_refusals_;
}

std::string ClientRules::describe(size_t rule) const {
  if (rule < rules_.size())
    return std::string(to_string(rules_[rule].kind)) + " " + to_string(rules_[rule].network);
  return rule == kDefaultDeny ? "default deny" : "no rule";
}

std::vector<std::string> ClientRules::listing() const {
  std::vector<std::string> lines;
  for (size_t i = 0; i <= rules_.size(); ++i) {
    if (i == access_rules_ && allow_rules_ > 0)
      lines.push_back("default deny refused " + std::to_string(default_refusals_));
    if (i < rules_.size())
      lines.push_back(describe(i) + " " + counter_name(rules_[i].kind) + " " +
                      std::to_string(rules_[i].count));
  }
  return lines;
}
