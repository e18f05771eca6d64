// Client classes by source network: access rules (allow / deny, first
// match wins) and priority networks (waiting clients served first). Pure:
// no sockets, no clock, no I/O; the relay asks, counts and logs.
//
// Invariants:
//  - a Network's bytes beyond its prefix are zero (parse_network masks
//    them), so two rules for the same network compare equal however they
//    were written;
//  - rules() holds the access rules first, in evaluation order, then the
//    priority networks; no two access rules share a network and no two
//    priority networks are equal (add() refuses the second: it could never
//    be the first match, so it is always a mistake);
//  - the per-family matcher lists mirror rules() exactly; every change
//    goes through add(), remove() or clear(), which rebuild them.
#ifndef BALANCE_CLASSES_HPP
#define BALANCE_CLASSES_HPP

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "address.hpp"

// An IPv4 or IPv6 network: "10.0.0.0/8", "2001:db8::/32".
//
// Families are kept apart: an IPv4 network matches IPv4 clients, including
// the IPv4-mapped IPv6 form (::ffff:192.0.2.7) in which a dual-stack
// listener reports them; an IPv6 network matches IPv6 clients only. A
// network written inside ::ffff:0:0/96 is an IPv4 network in IPv6
// spelling, so parse_network stores it as one (::ffff:10.0.0.0/104 is
// 10.0.0.0/8, ::ffff:0:0/96 is 0.0.0.0/0): it then matches every IPv4
// client whether the listener reports it as IPv4 or mapped. A shorter IPv6
// prefix that covers the mapped range (::/0, ::/80) matches no IPv4
// client, so that "deny ::/0" shuts out IPv6 alone and a rule means the
// same on an IPv4, IPv6 or dual-stack listener.
struct Network {
  int family = AF_UNSPEC;        // AF_INET or AF_INET6 once parsed
  unsigned prefix = 0;           // 0..32 for IPv4, 0..128 for IPv6
  unsigned char bytes[16] = {};  // network address, IPv4 in the first 4

  bool contains(const Address& client) const;
  bool operator==(const Network& other) const;
  bool operator!=(const Network& other) const { return !(*this == other); }
};

// Parses "address[/prefix]": IPv4 dotted quad or IPv6 (optionally in
// brackets, "[2001:db8::]/32"); no prefix means the whole address (/32,
// /128). Strict: the prefix is decimal digits within the family's length,
// nothing may follow. False with *err = "<text>: <why>".
bool parse_network(const std::string& text, Network* network, std::string* err);

// The canonical form: the masked network and its prefix, "10.0.0.0/8".
std::string to_string(const Network& network);

enum class RuleKind { Allow, Deny, Priority };

const char* to_string(RuleKind kind);  // "allow", "deny", "priority"
// What a rule's counter counts: "allowed", "refused", "matched".
const char* counter_name(RuleKind kind);

struct ClientRule {
  RuleKind kind = RuleKind::Allow;
  Network network;
  // Clients this rule decided: admitted (allow), refused (deny), queued
  // ahead of others (priority). Counted by ClientRules::count().
  uint64_t count = 0;
};

// A network as words of its masked address and its mask, so that a host
// is inside when (host & mask) == net. The words hold the bytes in memory
// order (filled by memcpy, as the host's are), so byte order plays no
// part. Only ClientRules and Network::contains() use them.
struct MaskedIPv4 {
  uint32_t net;
  uint32_t mask;
};
struct MaskedIPv6 {
  uint64_t net[2];
  uint64_t mask[2];
};

class ClientRules {
 public:
  // Rule indices besides those of rules(): kNone, no rule decided (no
  // access rule matched and none is an allow rule, or no priority network
  // matched); kDefaultDeny, refused because an allow rule exists and none
  // matched.
  static constexpr size_t kNone = SIZE_MAX;
  static constexpr size_t kDefaultDeny = SIZE_MAX - 1;

  // Appends an access rule (after the other access rules) or a priority
  // network. False with *err when the network does not parse or is
  // already there.
  bool add(RuleKind kind, const std::string& network, std::string* err);
  // Removes the rule of that kind and network (written in any form that
  // masks to it). False with *err when there is none.
  bool remove(RuleKind kind, const std::string& network, std::string* err);
  // Removes every rule and zeroes the default deny's counter.
  void clear();

  // The first access rule that matches decides; when none matches, the
  // client is allowed unless an allow rule exists. *rule = the deciding
  // rule's index in rules(), kDefaultDeny or kNone. With no access rule
  // this costs one branch.
  bool allowed(const Address& client, size_t* rule) const {
    *rule = kNone;
    return access_rules_ == 0 || decide(client, rule);
  }
  // True when a priority network contains the client; *rule = its index
  // in rules(), or kNone.
  bool priority(const Address& client, size_t* rule) const {
    *rule = rules_.size() == access_rules_ ? kNone : priority_.first_match(client);
    return *rule != kNone;
  }

  // Counts one client decided by `rule`, as allowed() or priority() gave
  // it (kNone counts nothing), so the caller may pass on any answer.
  // Indices hold until the next add(), remove() or clear().
  void count(size_t rule);
  // "deny 10.1.0.0/16", "default deny", "no rule": for log lines.
  std::string describe(size_t rule) const;

  // Access rules in evaluation order, then priority networks.
  const std::vector<ClientRule>& rules() const { return rules_; }
  bool default_deny() const { return allow_rules_ > 0; }
  uint64_t default_refusals() const { return default_refusals_; }

  // One line a rule for `show`, in evaluation order, the default deny
  // (when in force) after the access rules:
  //   allow 10.0.0.0/8 allowed 0
  //   deny 10.1.0.0/16 refused 12
  //   default deny refused 3
  //   priority 10.2.0.0/24 matched 7
  std::vector<std::string> listing() const;

 private:
  // The networks of the access rules or of the priority networks, split
  // by family, pre-masked, in rules_ order: a client is checked against its own family's list only, with
  // one AND-compare per word (one for IPv4, two for IPv6) whatever the
  // prefix. An IPv4 client cannot match an IPv6 network nor the reverse,
  // so the first match in its list is the first match among all rules.
  struct Matchers {
    std::vector<MaskedIPv4> v4;
    std::vector<size_t> v4_rules;  // v4[i] is rules_[v4_rules[i]]
    std::vector<MaskedIPv6> v6;
    std::vector<size_t> v6_rules;

    void clear();
    void add(const Network& network, size_t rule);
    // The index in rules_ of the first network containing the client, or
    // kNone.
    size_t first_match(const Address& client) const;
  };

  bool decide(const Address& client, size_t* rule) const;
  void rebuild();

  std::vector<ClientRule> rules_;
  size_t access_rules_ = 0;  // rules_[0, access_rules_) are allow / deny
  size_t allow_rules_ = 0;
  uint64_t default_refusals_ = 0;
  Matchers access_;    // of rules_[0, access_rules_)
  Matchers priority_;  // of the rest
};

#endif
