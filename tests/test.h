// A dependency-free unit-test harness: TEST(name) { EXPECT_...; } and a
// main() that runs every test and exits nonzero if any expectation failed.
#ifndef BALANCE_TEST_H
#define BALANCE_TEST_H

#include <cstdio>
#include <functional>
#include <string>
#include <vector>

namespace testing {

struct Case {
  const char* name;
  std::function<void()> body;
};

inline std::vector<Case>& cases() {
  static std::vector<Case> all;
  return all;
}

inline int& failures() {
  static int count = 0;
  return count;
}

struct Register {
  Register(const char* name, std::function<void()> body) { cases().push_back({name, body}); }
};

inline void fail(const char* file, int line, const std::string& what) {
  std::fprintf(stderr, "%s:%d: FAILED: %s\n", file, line, what.c_str());
  ++failures();
}

inline std::string show(const std::string& s) { return "\"" + s + "\""; }
inline std::string show(const char* s) { return show(std::string(s)); }
template <typename T>
std::string show(const T& value) {
  return std::to_string(value);
}

}  // namespace testing

#define TEST(name)                                                  \
  static void test_##name();                                        \
  static testing::Register register_##name(#name, test_##name);     \
  static void test_##name()

#define EXPECT_TRUE(cond) \
  do {                    \
    if (!(cond)) testing::fail(__FILE__, __LINE__, #cond); \
  } while (0)

#define EXPECT_FALSE(cond) EXPECT_TRUE(!(cond))

#define EXPECT_EQ(a, b)                                                                      \
  do {                                                                                       \
    auto&& va_ = (a);                                                                        \
    auto&& vb_ = (b);                                                                        \
    if (!(va_ == vb_))                                                                       \
      testing::fail(__FILE__, __LINE__,                                                      \
                    std::string(#a " == " #b ": ") + testing::show(va_) + " vs " +          \
                        testing::show(vb_));                                                 \
  } while (0)

#define TEST_MAIN()                                                   \
  int main() {                                                        \
    for (auto& c : testing::cases()) {                                \
      int before = testing::failures();                               \
      c.body();                                                       \
      std::printf("%s %s\n", testing::failures() == before ? "ok  " : "FAIL", c.name); \
    }                                                                 \
    std::printf("%zu tests, %d failures\n", testing::cases().size(), testing::failures()); \
    return testing::failures() ? 1 : 0;                               \
  }

#endif
