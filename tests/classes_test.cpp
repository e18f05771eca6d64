// Networks, access rules and priority networks, with numeric addresses
// only (inet_pton, no resolver).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/un.h>

#include "classes.hpp"
#include "test.h"

namespace {

// A client address from a numeric IPv4 or IPv6 literal.
Address client(const char* text) {
  Address address;
  auto* in = reinterpret_cast<sockaddr_in*>(&address.storage);
  auto* in6 = reinterpret_cast<sockaddr_in6*>(&address.storage);
  if (inet_pton(AF_INET, text, &in->sin_addr) == 1) {
    in->sin_family = AF_INET;
    address.length = sizeof(sockaddr_in);
  } else if (inet_pton(AF_INET6, text, &in6->sin6_addr) == 1) {
    in6->sin6_family = AF_INET6;
    address.length = sizeof(sockaddr_in6);
  }
  address.set_port(40000);
  return address;
}

// The canonical text of a network that must parse.
std::string canonical(const std::string& text) {
  Network network;
  std::string err;
  if (!parse_network(text, &network, &err)) return "error: " + err;
  return to_string(network);
}

// The error for a network that must not parse.
std::string error(const std::string& text) {
  Network network;
  std::string err;
  if (parse_network(text, &network, &err)) return "parsed as " + to_string(network);
  return err;
}

bool contains(const std::string& network_text, const char* host) {
  Network network;
  std::string err;
  return parse_network(network_text, &network, &err) && network.contains(client(host));
}

// The verdict and deciding rule for a client, as "allow 0" / "refuse 2" /
// "refuse default" / "allow none".
std::string verdict(const ClientRules& rules, const char* host) {
  size_t rule = 0;
  bool ok = rules.allowed(client(host), &rule);
  std::string which = rule == ClientRules::kNone          ? "none"
                      : rule == ClientRules::kDefaultDeny ? "default"
                                                          : std::to_string(rule);
  return std::string(ok ? "allow " : "refuse ") + which;
}

bool add(ClientRules& rules, RuleKind kind, const std::string& text) {
  std::string err;
  return rules.add(kind, text, &err);
}

}  // namespace

TEST(networks_parse_in_either_family_with_optional_prefix) {
  EXPECT_EQ(canonical("10.0.0.0/8"), "10.0.0.0/8");
  EXPECT_EQ(canonical("192.0.2.7"), "192.0.2.7/32");
  EXPECT_EQ(canonical("0.0.0.0/0"), "0.0.0.0/0");
  EXPECT_EQ(canonical("2001:db8::/32"), "2001:db8::/32");
  EXPECT_EQ(canonical("2001:DB8:0:0::/48"), "2001:db8::/48");
  EXPECT_EQ(canonical("::1"), "::1/128");
  EXPECT_EQ(canonical("::/0"), "::/0");
  EXPECT_EQ(canonical("[2001:db8::]/32"), "2001:db8::/32");
  EXPECT_EQ(canonical("[::1]"), "::1/128");
  EXPECT_EQ(canonical("10.0.0.0/08"), "10.0.0.0/8");  // decimal, leading zero
  Network network;
  std::string err;
  EXPECT_TRUE(parse_network("192.0.2.0/24", &network, &err));
  EXPECT_EQ(network.family, AF_INET);
  EXPECT_EQ(network.prefix, 24u);
  EXPECT_EQ(int(network.bytes[0]), 192);
  EXPECT_EQ(int(network.bytes[4]), 0);
  EXPECT_TRUE(parse_network("2001:db8::/32", &network, &err));
  EXPECT_EQ(network.family, AF_INET6);
  EXPECT_EQ(network.prefix, 32u);
}

TEST(host_bits_beyond_the_prefix_are_masked) {
  EXPECT_EQ(canonical("10.1.2.3/8"), "10.0.0.0/8");
  EXPECT_EQ(canonical("192.0.2.255/25"), "192.0.2.128/25");
  EXPECT_EQ(canonical("10.0.0.255/31"), "10.0.0.254/31");
  EXPECT_EQ(canonical("255.255.255.255/0"), "0.0.0.0/0");
  EXPECT_EQ(canonical("2001:db8:ffff::1/33"), "2001:db8:8000::/33");
  EXPECT_EQ(canonical("2001:db8::ffff/127"), "2001:db8::fffe/127");
  EXPECT_EQ(canonical("ffff::1/0"), "::/0");
  Network a, b;
  std::string err;
  EXPECT_TRUE(parse_network("10.1.2.3/8", &a, &err));
  EXPECT_TRUE(parse_network("10.0.0.0/8", &b, &err));
  EXPECT_TRUE(a == b);
  EXPECT_TRUE(parse_network("10.0.0.0/9", &b, &err));
  EXPECT_TRUE(a != b);
}

TEST(ipv6_spelling_of_ipv4_networks_is_ipv4) {
  EXPECT_EQ(canonical("::ffff:10.0.0.0/104"), "10.0.0.0/8");
  EXPECT_EQ(canonical("::ffff:0:0/96"), "0.0.0.0/0");
  EXPECT_EQ(canonical("[::ffff:192.0.2.7]"), "192.0.2.7/32");
  EXPECT_EQ(canonical("::ffff:c000:0207/120"), "192.0.2.0/24");
  // Shorter prefixes cover more than the mapped range: plain IPv6.
  EXPECT_EQ(canonical("::ffff:0:0/95"), "::fffe:0:0/95");
  EXPECT_EQ(canonical("::ffff:0:0/80"), "::/80");
  // The NAT64 prefix is plain IPv6.
  EXPECT_EQ(canonical("64:ff9b::/96"), "64:ff9b::/96");
  EXPECT_FALSE(contains("64:ff9b::/96", "10.0.0.1"));
}

TEST(malformed_networks_are_refused_with_the_reason) {
  EXPECT_EQ(error(""), "empty network");
  EXPECT_EQ(error("10.0.0/8"), "10.0.0/8: not an IPv4 or IPv6 address");
  EXPECT_EQ(error("10.0.0.256"), "10.0.0.256: not an IPv4 or IPv6 address");
  EXPECT_EQ(error("1.2.3.4.5/8"), "1.2.3.4.5/8: not an IPv4 or IPv6 address");
  EXPECT_EQ(error("example.com/8"), "example.com/8: not an IPv4 or IPv6 address");
  EXPECT_EQ(error("/8"), "/8: not an IPv4 or IPv6 address");
  EXPECT_EQ(error("10.0.0.0 "), "10.0.0.0 : not an IPv4 or IPv6 address");
  EXPECT_EQ(error(" 10.0.0.0"), " 10.0.0.0: not an IPv4 or IPv6 address");
  EXPECT_EQ(error("2001:db8:::/32"), "2001:db8:::/32: not an IPv4 or IPv6 address");
  EXPECT_EQ(error("fe80::1%eth0"), "fe80::1%eth0: not an IPv4 or IPv6 address");
  EXPECT_EQ(error("10.0.0.0/33"), "10.0.0.0/33: prefix longer than 32 bits for IPv4");
  EXPECT_EQ(error("::/129"), "::/129: prefix longer than 128 bits for IPv6");
  EXPECT_EQ(error("[::]/129"), "[::]/129: prefix longer than 128 bits for IPv6");
  EXPECT_EQ(error("10.0.0.0/99999999999999999999999"),
            "10.0.0.0/99999999999999999999999: prefix longer than 32 bits for IPv4");
  EXPECT_EQ(error("10.0.0.0/8x"), "10.0.0.0/8x: prefix is not a decimal number");
  EXPECT_EQ(error("10.0.0.0/x"), "10.0.0.0/x: prefix is not a decimal number");
  EXPECT_EQ(error("10.0.0.0/-1"), "10.0.0.0/-1: prefix is not a decimal number");
  EXPECT_EQ(error("10.0.0.0/+8"), "10.0.0.0/+8: prefix is not a decimal number");
  EXPECT_EQ(error("10.0.0.0/ 8"), "10.0.0.0/ 8: prefix is not a decimal number");
  EXPECT_EQ(error("10.0.0.0/8/8"), "10.0.0.0/8/8: prefix is not a decimal number");
  EXPECT_EQ(error("10.0.0.0/0x8"), "10.0.0.0/0x8: prefix is not a decimal number");
  EXPECT_EQ(error("10.0.0.0/"), "10.0.0.0/: missing prefix length after '/'");
  EXPECT_EQ(error("[10.0.0.0]/8"), "[10.0.0.0]/8: not an IPv6 address");
  EXPECT_EQ(error("[]"), "[]: not an IPv6 address");
  EXPECT_EQ(error("[::1"), "[::1: missing ']' after the IPv6 address");
  EXPECT_EQ(error("[::1]x"), "[::1]x: unexpected text after ']'");
  EXPECT_EQ(error("[::1]8"), "[::1]8: unexpected text after ']'");
  EXPECT_EQ(error("[::1]/"), "[::1]/: missing prefix length after '/'");
  EXPECT_EQ(error("::1]/8"), "::1]/8: not an IPv4 or IPv6 address");
  // A NUL would end the address for inet_pton and hide what follows.
  EXPECT_EQ(error(std::string("10.0.0.1\0junk", 13)).substr(0, 8), "10.0.0.1");
  // A refused text leaves the output alone.
  Network network;
  std::string err;
  EXPECT_TRUE(parse_network("10.0.0.0/8", &network, &err));
  EXPECT_FALSE(parse_network("10.0.0.0/33", &network, &err));
  EXPECT_EQ(to_string(network), "10.0.0.0/8");
}

TEST(ipv4_networks_match_ipv4_and_mapped_clients) {
  EXPECT_TRUE(contains("10.0.0.0/8", "10.1.2.3"));
  EXPECT_TRUE(contains("10.0.0.0/8", "::ffff:10.1.2.3"));
  EXPECT_FALSE(contains("10.0.0.0/8", "11.0.0.1"));
  EXPECT_FALSE(contains("10.0.0.0/8", "::ffff:11.0.0.1"));
  EXPECT_FALSE(contains("10.0.0.0/8", "2001:db8::1"));
  EXPECT_FALSE(contains("10.0.0.0/8", "::a01:203"));  // IPv4-compatible: IPv6
  EXPECT_TRUE(contains("192.0.2.128/25", "192.0.2.200"));
  EXPECT_FALSE(contains("192.0.2.128/25", "192.0.2.127"));
  EXPECT_TRUE(contains("192.0.2.7", "192.0.2.7"));
  EXPECT_FALSE(contains("192.0.2.7", "192.0.2.6"));
  EXPECT_TRUE(contains("0.0.0.0/0", "203.0.113.9"));
  EXPECT_TRUE(contains("0.0.0.0/0", "::ffff:203.0.113.9"));
  EXPECT_FALSE(contains("0.0.0.0/0", "::1"));
  EXPECT_FALSE(contains("0.0.0.0/0", "2001:db8::1"));
  // The IPv6 spelling of the whole IPv4 space takes both reports alike.
  EXPECT_TRUE(contains("::ffff:0:0/96", "::ffff:198.51.100.1"));
  EXPECT_TRUE(contains("::ffff:0:0/96", "198.51.100.1"));
  EXPECT_TRUE(contains("::ffff:10.0.0.0/104", "10.9.9.9"));
}

TEST(ipv6_networks_match_ipv6_clients_only) {
  EXPECT_TRUE(contains("2001:db8::/32", "2001:db8:1::5"));
  EXPECT_FALSE(contains("2001:db8::/32", "2001:db9::"));
  EXPECT_TRUE(contains("::/0", "2001:db8::1"));
  EXPECT_TRUE(contains("::/0", "::1"));
  EXPECT_FALSE(contains("::/0", "10.0.0.1"));
  EXPECT_FALSE(contains("::/0", "::ffff:10.0.0.1"));
  EXPECT_FALSE(contains("::ffff:0:0/80", "::ffff:10.0.0.1"));
  EXPECT_TRUE(contains("::1", "::1"));
  EXPECT_FALSE(contains("::1", "::2"));
  // Prefixes ending inside a byte, and across the middle of the address.
  EXPECT_TRUE(contains("2001:db8:8000::/33", "2001:db8:ffff::1"));
  EXPECT_FALSE(contains("2001:db8:8000::/33", "2001:db8:7fff::1"));
  EXPECT_TRUE(contains("2001:db8::8000:0:0:0/65", "2001:db8::8000:0:0:1"));
  EXPECT_FALSE(contains("2001:db8::8000:0:0:0/65", "2001:db8::7fff:ffff:ffff:ffff"));
  EXPECT_TRUE(contains("2001:db8::fffe/127", "2001:db8::ffff"));
  EXPECT_FALSE(contains("2001:db8::fffe/127", "2001:db8::fffd"));
}

TEST(without_rules_every_client_is_allowed) {
  ClientRules rules;
  EXPECT_EQ(verdict(rules, "192.0.2.1"), "allow none");
  EXPECT_EQ(verdict(rules, "2001:db8::1"), "allow none");
  size_t rule = 0;
  EXPECT_FALSE(rules.priority(client("192.0.2.1"), &rule));
  EXPECT_EQ(rule, ClientRules::kNone);
  rules.count(ClientRules::kNone);  // counts nothing
  EXPECT_TRUE(rules.listing().empty());
  EXPECT_FALSE(rules.default_deny());
}

TEST(first_matching_access_rule_decides) {
  ClientRules rules;
  EXPECT_TRUE(add(rules, RuleKind::Deny, "10.1.0.0/16"));
  EXPECT_TRUE(add(rules, RuleKind::Allow, "10.0.0.0/8"));
  EXPECT_EQ(verdict(rules, "10.1.2.3"), "refuse 0");
  EXPECT_EQ(verdict(rules, "::ffff:10.1.2.3"), "refuse 0");
  EXPECT_EQ(verdict(rules, "10.2.0.1"), "allow 1");
  EXPECT_EQ(verdict(rules, "192.0.2.1"), "refuse default");
  EXPECT_EQ(verdict(rules, "2001:db8::1"), "refuse default");

  ClientRules reversed;
  EXPECT_TRUE(add(reversed, RuleKind::Allow, "10.0.0.0/8"));
  EXPECT_TRUE(add(reversed, RuleKind::Deny, "10.1.0.0/16"));
  EXPECT_EQ(verdict(reversed, "10.1.2.3"), "allow 0");
}

TEST(deny_rules_alone_keep_the_default_allow) {
  ClientRules rules;
  EXPECT_TRUE(add(rules, RuleKind::Deny, "10.0.0.0/8"));
  EXPECT_TRUE(add(rules, RuleKind::Deny, "2001:db8::/32"));
  EXPECT_EQ(verdict(rules, "10.0.0.1"), "refuse 0");
  EXPECT_EQ(verdict(rules, "2001:db8::1"), "refuse 1");
  EXPECT_EQ(verdict(rules, "192.0.2.1"), "allow none");
  EXPECT_EQ(verdict(rules, "2001:db9::1"), "allow none");
  EXPECT_FALSE(rules.default_deny());
}

TEST(rules_of_both_families_keep_their_order) {
  ClientRules rules;
  EXPECT_TRUE(add(rules, RuleKind::Deny, "::/0"));
  EXPECT_TRUE(add(rules, RuleKind::Allow, "2001:db8::/32"));  // shadowed
  EXPECT_TRUE(add(rules, RuleKind::Allow, "0.0.0.0/0"));
  EXPECT_TRUE(add(rules, RuleKind::Deny, "10.0.0.0/8"));  // shadowed
  EXPECT_EQ(verdict(rules, "2001:db8::1"), "refuse 0");
  EXPECT_EQ(verdict(rules, "10.0.0.1"), "allow 2");
  EXPECT_EQ(verdict(rules, "::ffff:10.0.0.1"), "allow 2");
}

TEST(clients_of_other_families_match_no_rule) {
  Address local;
  local.storage.ss_family = AF_UNIX;
  local.length = sizeof(sockaddr_un);
  ClientRules rules;
  EXPECT_TRUE(add(rules, RuleKind::Deny, "0.0.0.0/0"));
  EXPECT_TRUE(add(rules, RuleKind::Deny, "::/0"));
  size_t rule = 0;
  EXPECT_TRUE(rules.allowed(local, &rule));
  EXPECT_EQ(rule, ClientRules::kNone);
  EXPECT_TRUE(add(rules, RuleKind::Allow, "192.0.2.0/24"));
  EXPECT_FALSE(rules.allowed(local, &rule));
  EXPECT_EQ(rule, ClientRules::kDefaultDeny);
  Network any;
  std::string err;
  EXPECT_TRUE(parse_network("::/0", &any, &err));
  EXPECT_FALSE(any.contains(local));
}

TEST(counters_and_listing_follow_evaluation_order) {
  ClientRules rules;
  EXPECT_TRUE(add(rules, RuleKind::Priority, "10.2.0.0/24"));
  EXPECT_TRUE(add(rules, RuleKind::Allow, "10.0.0.0/8"));
  EXPECT_TRUE(add(rules, RuleKind::Deny, "10.1.0.0/16"));
  // Access rules come first whatever the order they were added in.
  EXPECT_EQ(rules.rules().size(), size_t(3));
  EXPECT_TRUE(rules.rules()[0].kind == RuleKind::Allow);
  EXPECT_TRUE(rules.rules()[2].kind == RuleKind::Priority);
  for (const char* host : {"10.1.0.1", "192.0.2.1", "192.0.2.2", "10.2.0.9", "::1", "::ffff:10.2.0.1"}) {
    size_t rule;
    rules.allowed(client(host), &rule);
    rules.count(rule);
    if (rules.priority(client(host), &rule)) rules.count(rule);
  }
  std::vector<std::string> expected = {
      "allow 10.0.0.0/8 allowed 3",
      "deny 10.1.0.0/16 refused 0",
      "default deny refused 3",
      "priority 10.2.0.0/24 matched 2",
  };
  EXPECT_TRUE(rules.listing() == expected);
  EXPECT_EQ(rules.default_refusals(), uint64_t(3));
  EXPECT_EQ(rules.rules()[0].count, uint64_t(3));
  EXPECT_EQ(rules.describe(1), "deny 10.1.0.0/16");
  EXPECT_EQ(rules.describe(ClientRules::kDefaultDeny), "default deny");
  EXPECT_EQ(rules.describe(ClientRules::kNone), "no rule");
  EXPECT_EQ(std::string(counter_name(RuleKind::Deny)), "refused");
  EXPECT_EQ(std::string(to_string(RuleKind::Priority)), "priority");

  // First match: 10.1.0.1 is inside the allow rule, so the deny rule,
  // listed after it, never counts.
  size_t rule;
  EXPECT_TRUE(rules.allowed(client("10.1.0.1"), &rule));
  EXPECT_EQ(rule, size_t(0));
}

TEST(a_rule_already_there_is_refused) {
  ClientRules rules;
  std::string err;
  EXPECT_TRUE(rules.add(RuleKind::Allow, "10.0.0.0/8", &err));
  EXPECT_FALSE(rules.add(RuleKind::Allow, "10.1.2.3/8", &err));
  EXPECT_EQ(err, "10.1.2.3/8: already a rule (allow 10.0.0.0/8)");
  EXPECT_FALSE(rules.add(RuleKind::Deny, "::ffff:10.0.0.0/104", &err));
  EXPECT_EQ(err, "::ffff:10.0.0.0/104: already a rule (allow 10.0.0.0/8)");
  // The same network may be a priority network and an access rule.
  EXPECT_TRUE(rules.add(RuleKind::Priority, "10.0.0.0/8", &err));
  EXPECT_FALSE(rules.add(RuleKind::Priority, "10.0.0.0/8", &err));
  EXPECT_EQ(err, "10.0.0.0/8: already a rule (priority 10.0.0.0/8)");
  EXPECT_FALSE(rules.add(RuleKind::Deny, "10.0.0.0/33", &err));
  EXPECT_EQ(err, "10.0.0.0/33: prefix longer than 32 bits for IPv4");
  EXPECT_EQ(rules.rules().size(), size_t(2));
}

TEST(remove_takes_the_rule_written_in_any_form) {
  ClientRules rules;
  std::string err;
  EXPECT_TRUE(add(rules, RuleKind::Deny, "10.1.0.0/16"));
  EXPECT_TRUE(add(rules, RuleKind::Allow, "10.0.0.0/8"));
  EXPECT_TRUE(add(rules, RuleKind::Priority, "2001:db8::/32"));
  size_t rule;
  rules.allowed(client("192.0.2.1"), &rule);
  rules.count(rule);
  rules.allowed(client("10.1.0.1"), &rule);
  rules.count(rule);

  EXPECT_FALSE(rules.remove(RuleKind::Allow, "10.1.0.0/16", &err));
  EXPECT_EQ(err, "10.1.0.0/16: no such allow rule");
  EXPECT_FALSE(rules.remove(RuleKind::Priority, "192.0.2.0/24", &err));
  EXPECT_EQ(err, "192.0.2.0/24: no such priority rule");
  EXPECT_FALSE(rules.remove(RuleKind::Deny, "10.1/16", &err));
  EXPECT_EQ(err, "10.1/16: not an IPv4 or IPv6 address");

  EXPECT_TRUE(rules.remove(RuleKind::Allow, "10.9.9.9/8", &err));
  EXPECT_FALSE(rules.default_deny());
  EXPECT_EQ(verdict(rules, "192.0.2.1"), "allow none");
  EXPECT_EQ(verdict(rules, "10.1.0.1"), "refuse 0");
  EXPECT_EQ(rules.rules()[0].count, uint64_t(1));  // kept
  std::vector<std::string> expected = {"deny 10.1.0.0/16 refused 1",
                                       "priority 2001:db8::/32 matched 0"};
  EXPECT_TRUE(rules.listing() == expected);
  EXPECT_TRUE(rules.priority(client("2001:db8::7"), &rule));
  EXPECT_EQ(rule, size_t(1));

  EXPECT_TRUE(rules.remove(RuleKind::Priority, "[2001:db8::]/32", &err));
  EXPECT_FALSE(rules.priority(client("2001:db8::7"), &rule));
  EXPECT_FALSE(rules.remove(RuleKind::Priority, "2001:db8::/32", &err));
}

TEST(priority_networks_match_without_touching_access) {
  ClientRules rules;
  EXPECT_TRUE(add(rules, RuleKind::Priority, "10.2.0.0/24"));
  EXPECT_TRUE(add(rules, RuleKind::Priority, "2001:db8::/32"));
  size_t rule;
  EXPECT_TRUE(rules.priority(client("10.2.0.77"), &rule));
  EXPECT_EQ(rule, size_t(0));
  EXPECT_TRUE(rules.priority(client("::ffff:10.2.0.77"), &rule));
  EXPECT_EQ(rule, size_t(0));
  EXPECT_TRUE(rules.priority(client("2001:db8:5::1"), &rule));
  EXPECT_EQ(rule, size_t(1));
  EXPECT_FALSE(rules.priority(client("10.2.1.1"), &rule));
  EXPECT_EQ(rule, ClientRules::kNone);
  EXPECT_FALSE(rules.priority(client("::1"), &rule));
  // Priority networks are not access rules: everyone is still allowed.
  EXPECT_EQ(verdict(rules, "192.0.2.1"), "allow none");
  EXPECT_FALSE(rules.default_deny());
  // An access rule added later goes before them and shifts their index.
  EXPECT_TRUE(add(rules, RuleKind::Allow, "10.0.0.0/8"));
  EXPECT_TRUE(rules.priority(client("10.2.0.77"), &rule));
  EXPECT_EQ(rule, size_t(1));
  EXPECT_EQ(verdict(rules, "192.0.2.1"), "refuse default");
}

TEST(clear_forgets_rules_and_counters) {
  ClientRules rules;
  EXPECT_TRUE(add(rules, RuleKind::Allow, "10.0.0.0/8"));
  EXPECT_TRUE(add(rules, RuleKind::Priority, "10.0.0.0/8"));
  size_t rule;
  rules.allowed(client("192.0.2.1"), &rule);
  rules.count(rule);
  EXPECT_EQ(rules.default_refusals(), uint64_t(1));
  rules.clear();
  EXPECT_TRUE(rules.rules().empty());
  EXPECT_EQ(rules.default_refusals(), uint64_t(0));
  EXPECT_EQ(verdict(rules, "192.0.2.1"), "allow none");
  EXPECT_FALSE(rules.priority(client("10.0.0.1"), &rule));
  EXPECT_TRUE(add(rules, RuleKind::Allow, "10.0.0.0/8"));
  EXPECT_EQ(verdict(rules, "10.0.0.1"), "allow 0");
}

TEST_MAIN()
