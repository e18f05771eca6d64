// Command-line parsing, without sockets.
#include "options.hpp"
#include "test.h"

namespace {

bool parse(std::vector<std::string> args, Options* options, std::string* err) {
  return parse_options(args, options, err);
}

std::string error_of(std::vector<std::string> args) {
  Options options;
  std::string err;
  return parse(args, &options, &err) ? "" : err;
}

}  // namespace

TEST(plain_channels_take_defaults) {
  Options o;
  std::string err;
  EXPECT_TRUE(parse({"-f", "8080", "a", "b:9000", "c::4", "d:::3", "e:1:2:5"}, &o, &err));
  EXPECT_EQ(o.port, "8080");
  EXPECT_TRUE(o.foreground);
  EXPECT_EQ(o.groups.size(), size_t(1));
  const auto& ch = o.groups[0].channels;
  EXPECT_EQ(ch.size(), size_t(5));
  EXPECT_EQ(ch[0].host, "a");
  EXPECT_EQ(ch[0].port, "");
  EXPECT_EQ(ch[0].maxc, 0u);
  EXPECT_EQ(ch[0].weight, 1u);
  EXPECT_EQ(ch[1].port, "9000");
  EXPECT_EQ(ch[2].port, "");
  EXPECT_EQ(ch[2].maxc, 4u);
  EXPECT_EQ(ch[3].weight, 3u);
  EXPECT_EQ(ch[4].port, "1");
  EXPECT_EQ(ch[4].maxc, 2u);
  EXPECT_EQ(ch[4].weight, 5u);
}

TEST(groups_and_hash_groups) {
  Options o;
  std::string err;
  EXPECT_TRUE(parse({"3632", "a", "b", "%", "c", "!", "d"}, &o, &err));
  EXPECT_EQ(o.groups.size(), size_t(3));
  EXPECT_TRUE(o.groups[0].type == GroupType::Hash);
  EXPECT_TRUE(o.groups[1].type == GroupType::RoundRobin);
  EXPECT_EQ(o.groups[2].channels[0].host, "d");
  Options trailing;
  EXPECT_TRUE(parse({"3632", "a", "%"}, &trailing, &err));
  EXPECT_EQ(trailing.groups.size(), size_t(1));
  EXPECT_TRUE(trailing.groups[0].type == GroupType::Hash);
}

TEST(bracketed_ipv6_channels) {
  ChannelSpec spec;
  std::string err;
  EXPECT_TRUE(parse_channel("[2001:db8::1]:25:4:2", &spec, &err));
  EXPECT_EQ(spec.host, "2001:db8::1");
  EXPECT_EQ(spec.port, "25");
  EXPECT_EQ(spec.maxc, 4u);
  EXPECT_EQ(spec.weight, 2u);
  EXPECT_TRUE(parse_channel("[::1]", &spec, &err));
  EXPECT_EQ(spec.host, "::1");
  EXPECT_FALSE(parse_channel("[::1", &spec, &err));
  EXPECT_FALSE(parse_channel("[::1]x", &spec, &err));
}

TEST(options_with_values) {
  Options o;
  std::string err;
  EXPECT_TRUE(parse({"-t", "0.5", "-T30", "-q", "0", "-w", "2.25", "-r", "1", "-b", "::1", "-B",
                     "127.0.0.1", "-S", "/tmp/x.sock", "-s", "9100", "-46", "1", "a"},
                    &o, &err) == false);  // -4 with -6
  EXPECT_EQ(err, "-4: cannot be combined with -6");
  Options p;
  EXPECT_TRUE(parse({"-t", "0.5", "-T30", "-q", "0", "-w", "2.25", "-r", "1", "-b", "::1", "-B",
                     "127.0.0.1", "-S", "/tmp/x.sock", "-s", "[::1]:9100", "-adHMp", "1", "a"},
                    &p, &err));
  EXPECT_EQ(p.connect_timeout_ms, int64_t(500));
  EXPECT_EQ(p.idle_timeout_ms, int64_t(30000));
  EXPECT_EQ(p.pool.queue_limit, size_t(0));
  EXPECT_EQ(p.pool.queue_wait_ms, int64_t(2250));
  EXPECT_EQ(p.pool.retry_ms, int64_t(1000));
  EXPECT_EQ(p.bind_address, "::1");
  EXPECT_EQ(p.source_address, "127.0.0.1");
  EXPECT_EQ(p.socket_path, "/tmp/x.sock");
  EXPECT_EQ(p.stats_address, "::1");
  EXPECT_EQ(p.stats_port, "9100");
  EXPECT_TRUE(p.pool.autodisable && p.debug && p.pool.hash_failover && p.packet_dump);
  Options s;
  EXPECT_TRUE(parse({"-s", "9100", "1", "a"}, &s, &err));
  EXPECT_EQ(s.stats_address, "127.0.0.1");
}

TEST(control_modes) {
  Options i;
  std::string err;
  EXPECT_TRUE(parse({"-i", "3632"}, &i, &err));
  EXPECT_TRUE(i.mode == Mode::Interactive);
  Options c;
  EXPECT_TRUE(parse({"-b", "::1", "-c", "disable 1", "3632"}, &c, &err));
  EXPECT_TRUE(c.mode == Mode::Command);
  EXPECT_EQ(c.command, "disable 1");
  EXPECT_EQ(error_of({"-i", "3632", "extra"}), "extra: unexpected argument after the port");
  EXPECT_EQ(error_of({"-i", "-c", "show", "3632"}), "-i: cannot be combined with -c");
  Options h;
  EXPECT_TRUE(parse({"-h"}, &h, &err));
  EXPECT_TRUE(h.mode == Mode::Help);
  Options v;
  EXPECT_TRUE(parse({"-V"}, &v, &err));
  EXPECT_TRUE(v.mode == Mode::Version);
}

TEST(bad_arguments_name_the_argument) {
  const std::string port_why = "port must be a number from 1 to 65535 or a service name";
  EXPECT_EQ(error_of({"0", "a"}), "0: " + port_why);
  EXPECT_EQ(error_of({"65536", "a"}), "65536: " + port_why);
  EXPECT_EQ(error_of({"80", "a:0"}), "a:0: " + port_why);
  EXPECT_EQ(error_of({"80", "a:99999"}), "a:99999: " + port_why);
  EXPECT_EQ(error_of({"8000", "h:80:-1"}), "h:80:-1: maxc must be an integer from 0 to 1000000");
  EXPECT_EQ(error_of({"8000", "h:80:1000001"}),
            "h:80:1000001: maxc must be an integer from 0 to 1000000");
  EXPECT_EQ(error_of({"8000", "h:80:1:0"}), "h:80:1:0: weight must be an integer from 1 to 1000000");
  EXPECT_EQ(error_of({"8000", "h:80:1:1.5"}),
            "h:80:1:1.5: weight must be an integer from 1 to 1000000");
  EXPECT_EQ(error_of({"8000", "h:80:99999999999999999999999"}),
            "h:80:99999999999999999999999: maxc must be an integer from 0 to 1000000");
  EXPECT_EQ(error_of({"-z", "8000", "h"}), "-z: unknown option");
  EXPECT_EQ(error_of({"8000"}), "8000: missing channel");
  EXPECT_EQ(error_of({}), "missing port");
  EXPECT_EQ(error_of({"-t", "abc", "8000", "h"}),
            "-t abc: must be a number of seconds from 0.001 to 86400");
  EXPECT_EQ(error_of({"-t", "0", "8000", "h"}),
            "-t 0: must be a number of seconds from 0.001 to 86400");
  EXPECT_EQ(error_of({"-T", "-1", "8000", "h"}), "-T -1: must be a number of seconds from 0 to 86400");
  EXPECT_EQ(error_of({"-q", "x", "8000", "h"}), "-q x: must be an integer from 0 to 10000000");
  EXPECT_EQ(error_of({"-t"}), "-t: missing argument");
  EXPECT_EQ(error_of({"8000", "h", "!", "!"}), "!: empty group");
  EXPECT_EQ(error_of({"8000", "!", "h"}), "!: empty group");
  EXPECT_EQ(error_of({"8000", "::1"}), "::1: write an IPv6 address in brackets, as [::1]");
  EXPECT_EQ(error_of({"8000", "2001:db8::1:2:3"}),
            "2001:db8::1:2:3: write an IPv6 address in brackets, as [2001:db8::1:2:3]");
  EXPECT_EQ(error_of({"8000", "h:1:2:3:4"}),
            "h:1:2:3:4: too many fields (host[:port[:maxc[:weight]]]; IPv6 in brackets)");
  EXPECT_EQ(error_of({"8000", ":80"}), ":80: missing host");
  EXPECT_EQ(error_of({"-s", "x:0", "8000", "h"}),
            "-s x:0: port must be a number from 1 to 65535 or a service name");
}

TEST(strict_numbers) {
  uint64_t v = 0;
  EXPECT_TRUE(parse_unsigned("42", 0, 100, &v));
  EXPECT_EQ(v, uint64_t(42));
  EXPECT_FALSE(parse_unsigned("", 0, 100, &v));
  EXPECT_FALSE(parse_unsigned("+1", 0, 100, &v));
  EXPECT_FALSE(parse_unsigned("1 ", 0, 100, &v));
  EXPECT_FALSE(parse_unsigned("101", 0, 100, &v));
  EXPECT_FALSE(parse_unsigned("18446744073709551616", 0, UINT64_MAX, &v));
  int64_t ms = 0;
  EXPECT_TRUE(parse_seconds("1.5", 0, 86400000, &ms));
  EXPECT_EQ(ms, int64_t(1500));
  EXPECT_TRUE(parse_seconds(".25", 0, 86400000, &ms));
  EXPECT_EQ(ms, int64_t(250));
  EXPECT_FALSE(parse_seconds("1.", 0, 86400000, &ms));
  EXPECT_FALSE(parse_seconds("1.0001", 0, 86400000, &ms));
  EXPECT_FALSE(parse_seconds("1e3", 0, 86400000, &ms));
  EXPECT_FALSE(parse_seconds("86401", 0, 86400000, &ms));
}

TEST_MAIN()
