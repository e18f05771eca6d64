// Statistics rendering against fixed pool states, without sockets: the
// field table in every form, escaping for any host, and streaming in
// bounded pieces while the pool changes.
#include <sstream>

#include "stats.hpp"
#include "balance.hpp"
#include "test.h"

namespace {

// A strict JSON checker (RFC 8259 grammar, no extensions): enough to
// prove that a rendering parses.
class JsonChecker {
 public:
  explicit JsonChecker(const std::string& text) : s_(text) {}
  bool valid() {
    skip();
    if (!value()) return false;
    skip();
    return i_ == s_.size();
  }

 private:
  void skip() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\n' || s_[i_] == '\t' || s_[i_] == '\r')) ++i_;
  }
  bool eat(char ch) {
    skip();
    if (i_ < s_.size() && s_[i_] == ch) {
      ++i_;
      return true;
    }
    return false;
  }
  bool value() {
    skip();
    if (i_ >= s_.size()) return false;
    char ch = s_[i_];
    if (ch == '{') return object();
    if (ch == '[') return array();
    if (ch == '"') return string();
    if (s_.compare(i_, 4, "true") == 0 || s_.compare(i_, 4, "null") == 0) return i_ += 4, true;
    if (s_.compare(i_, 5, "false") == 0) return i_ += 5, true;
    return number();
  }
  bool object() {
    ++i_;
    if (eat('}')) return true;
    do {
      skip();
      if (!string() || !eat(':') || !value()) return false;
    } while (eat(','));
    return eat('}');
  }
  bool array() {
    ++i_;
    if (eat(']')) return true;
    do {
      if (!value()) return false;
    } while (eat(','));
    return eat(']');
  }
  bool string() {
    if (i_ >= s_.size() || s_[i_] != '"') return false;
    for (++i_; i_ < s_.size(); ++i_) {
      unsigned char ch = static_cast<unsigned char>(s_[i_]);
      if (ch == '"') return ++i_, true;
      if (ch < 32 || ch >= 128) return false;  // we promise ASCII
      if (ch == '\\') {
        ++i_;
        if (i_ >= s_.size()) return false;
        if (s_[i_] == 'u') {
          for (int k = 0; k < 4; ++k)
            if (++i_ >= s_.size() || !std::isxdigit(static_cast<unsigned char>(s_[i_]))) return false;
        } else if (std::string("\"\\/bfnrt").find(s_[i_]) == std::string::npos) {
          return false;
        }
      }
    }
    return false;
  }
  bool number() {
    size_t start = i_;
    if (i_ < s_.size() && s_[i_] == '-') ++i_;
    size_t digits = i_;
    while (i_ < s_.size() && std::isdigit(static_cast<unsigned char>(s_[i_]))) ++i_;
    if (i_ == digits) return false;
    if (s_[digits] == '0' && i_ - digits > 1) return false;
    if (i_ < s_.size() && s_[i_] == '.') {
      size_t fraction = ++i_;
      while (i_ < s_.size() && std::isdigit(static_cast<unsigned char>(s_[i_]))) ++i_;
      if (i_ == fraction) return false;
    }
    return i_ > start;
  }
  const std::string& s_;
  size_t i_ = 0;
};

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

std::vector<std::string> words_of(const std::string& line) {
  std::vector<std::string> words;
  std::istringstream in(line);
  for (std::string word; in >> word;) words.push_back(word);
  return words;
}

// CSV fields of one row, RFC 4180 quoting.
size_t csv_fields(const std::string& row) {
  size_t fields = 1;
  bool quoted = false;
  for (char ch : row) {
    if (ch == '"') quoted = !quoted;
    if (ch == ',' && !quoted) ++fields;
  }
  return fields;
}

struct Farm {
  State state;
  explicit Farm(std::vector<std::string> hosts = {"127.0.0.1", "127.0.0.1"}) {
    state.pool.add_group(GroupType::RoundRobin);
    unsigned port = 9001;
    for (const std::string& host : hosts) {
      ChannelConfig config;
      std::string err;
      resolve_address("127.0.0.1", std::to_string(port++), 0, false, &config.address, &err);
      config.host = host;
      config.maxc = 4;
      config.weight = 2;
      state.pool.add_channel(0, config);
    }
  }
  std::string show(ShowForm form) { return render_all(*make_show(state, form)); }
};

}  // namespace

TEST(show_keeps_balance3_columns_in_balance3_positions) {
  Farm farm;
  Pool& pool = farm.state.pool;
  Channel& c = *pool.find(0, 1);
  pool.count_sent(c, 1234);
  pool.count_received(c, 5678);
  std::vector<std::string> lines = lines_of(farm.show(ShowForm::Table));
  std::vector<std::string> head = words_of(lines[0]);
  std::vector<std::string> want = {"GRP", "Type", "#",    "S",    "ip-address", "port",
                                   "c",   "totalc", "maxc", "sent", "rcvd"};
  for (size_t i = 0; i < want.size(); ++i) EXPECT_EQ(head[i], want[i]);
  std::vector<std::string> row = words_of(lines[2]);
  EXPECT_EQ(row[9], "1234");  // awk '{print $10}': sent
  EXPECT_EQ(row[10], "5678");  // $11: rcvd
  EXPECT_EQ(row[3], "ENA");
  EXPECT_EQ(row.back(), "127.0.0.1");  // the host as given, last
}

TEST(show_brief_fits_80_columns_for_an_ipv4_farm) {
  Farm farm({"10.0.0.1", "10.0.0.2"});
  for (const std::string& line : lines_of(farm.show(ShowForm::Brief))) {
    if (line.compare(0, 5, "queue") == 0 || line.compare(0, 6, "waited") == 0) continue;
    EXPECT_TRUE(line.size() <= 80);
  }
}

TEST(show_lists_empty_groups_and_tells_autodisabled_from_disabled) {
  Farm farm;
  Pool& pool = farm.state.pool;
  pool.add_group(GroupType::Hash);
  pool.set_admin(*pool.find(0, 0), AdminState::AutoDisabled, 0);
  pool.set_admin(*pool.find(0, 1), AdminState::Disabled, 0);
  std::string table = farm.show(ShowForm::Table);
  EXPECT_TRUE(table.find("  1 Hash   - (no channels)") != std::string::npos);
  EXPECT_TRUE(table.find(" ADIS ") != std::string::npos);
  EXPECT_TRUE(table.find(" DIS ") != std::string::npos);
  EXPECT_TRUE(farm.show(ShowForm::Json).find("{\"group\":1,\"type\":\"hash\",\"channels\":[]}") !=
              std::string::npos);
}

TEST(json_and_csv_hold_any_host_a_user_can_give) {
  std::string long_host = std::string(4000, '0') + "177.0.0.1";
  std::string odd = "a,b\"c\\d\te\x01\xe9";
  Farm farm({long_host, odd, "plain"});
  std::string json = farm.show(ShowForm::Json);
  EXPECT_TRUE(JsonChecker(json).valid());
  EXPECT_TRUE(json.find(long_host) != std::string::npos);
  std::vector<std::string> csv = lines_of(farm.show(ShowForm::Csv));
  size_t header = csv_fields(csv[0]);
  EXPECT_EQ(csv.size(), size_t(4));
  for (const std::string& row : csv) EXPECT_EQ(csv_fields(row), header);
  EXPECT_EQ(csv_field("a,b\"c"), "\"a,b\"\"c\"");
  EXPECT_EQ(json_string("q\"\\\n\x7f"), "\"q\\\"\\\\\\u000a\\u007f\"");
}

TEST(prometheus_has_a_series_per_channel_with_escaped_labels) {
  Farm farm({"x\"y\\z", "plain"});
  std::string metrics = render_all(*make_prometheus(farm.state));
  EXPECT_TRUE(metrics.find("# TYPE balance_channel_connections gauge\n") != std::string::npos);
  EXPECT_TRUE(metrics.find("balance_channel_up{group=\"0\",channel=\"1\",host=\"plain\","
                           "address=\"127.0.0.1\",port=\"9002\"} 1\n") != std::string::npos);
  EXPECT_TRUE(metrics.find("host=\"x\\\"y\\\\z\"") != std::string::npos);
  EXPECT_TRUE(metrics.find("balance_queue_length 0\n") != std::string::npos);
}

TEST(pieces_are_bounded_and_survive_changes_between_them) {
  std::vector<std::string> hosts(500, "127.0.0.1");
  Farm farm(hosts);
  Pool& pool = farm.state.pool;
  auto producer = make_show(farm.state, ShowForm::Csv);
  std::string out;
  EXPECT_TRUE(producer->produce(&out));
  size_t first_piece = out.size();
  EXPECT_TRUE(first_piece < 16 * 1024);  // a few dozen channels, not all 500
  // Channels the cursor has not reached yet are deleted, others added.
  for (unsigned n = 100; n < 200; ++n) pool.remove_channel(*pool.find(0, n));
  ChannelConfig config;
  config.host = "added";
  pool.add_channel(0, config);
  while (producer->produce(&out)) {
  }
  std::vector<std::string> rows = lines_of(out);
  EXPECT_EQ(rows.size(), size_t(1 + 400 + 1));  // header, survivors, the new one
  EXPECT_TRUE(rows.back().find(",added,") != std::string::npos ||
              rows.back().find("added") != std::string::npos);
}

TEST(http_routes) {
  Farm farm;
  HttpAnswer root = http_answer("GET / HTTP/1.1\r\nHost: x\r\n\r\n", farm.state);
  EXPECT_TRUE(root.head.compare(0, 15, "HTTP/1.0 200 OK") == 0);
  EXPECT_TRUE(root.head.find("Content-Length") == std::string::npos);  // streamed
  EXPECT_TRUE(render_all(*root.body).find("GRP Type") != std::string::npos);
  HttpAnswer metrics = http_answer("GET /metrics HTTP/1.1\r\n\r\n", farm.state);
  EXPECT_TRUE(render_all(*metrics.body).find("balance_channel_up{") != std::string::npos);
  EXPECT_TRUE(http_answer("GET /nope HTTP/1.0\r\n\r\n", farm.state).head.compare(0, 12, "HTTP/1.0 404") == 0);
  EXPECT_TRUE(http_answer("POST / HTTP/1.0\r\n\r\n", farm.state).head.compare(0, 12, "HTTP/1.0 405") == 0);
  EXPECT_TRUE(http_answer("garbage\r\n\r\n", farm.state).head.compare(0, 12, "HTTP/1.0 400") == 0);
  HttpAnswer head = http_answer("HEAD / HTTP/1.0\r\n\r\n", farm.state);
  EXPECT_TRUE(head.body == nullptr);
}

TEST_MAIN()
