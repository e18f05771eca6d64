// Addresses and name resolution, with loopback literals only.
#include <arpa/inet.h>
#include <netinet/in.h>

#include "address.hpp"
#include "test.h"

TEST(ports_resolve_by_number_or_service) {
  int port = 0;
  std::string err;
  EXPECT_TRUE(resolve_port("3632", &port, &err));
  EXPECT_EQ(port, 3632);
  EXPECT_FALSE(resolve_port("0", &port, &err));
  EXPECT_FALSE(resolve_port("no-such-service-here", &port, &err));
  EXPECT_EQ(err, "unknown service \"no-such-service-here\"");
  Address address;
  EXPECT_TRUE(resolve_address("127.0.0.1", "80", 0, false, &address, &err));
  EXPECT_EQ(address.host_text(), "127.0.0.1");
  EXPECT_EQ(address.port(), 80);
  EXPECT_TRUE(resolve_address("::1", "81", 0, false, &address, &err));
  EXPECT_EQ(address.host_text(), "::1");
}

TEST(address_keys_unify_v4_mapped) {
  Address v4, mapped;
  auto* in = reinterpret_cast<sockaddr_in*>(&v4.storage);
  in->sin_family = AF_INET;
  in->sin_addr.s_addr = htonl(0x7f000001);
  v4.length = sizeof(sockaddr_in);
  auto* in6 = reinterpret_cast<sockaddr_in6*>(&mapped.storage);
  in6->sin6_family = AF_INET6;
  in6->sin6_addr.s6_addr[10] = 0xff;
  in6->sin6_addr.s6_addr[11] = 0xff;
  in6->sin6_addr.s6_addr[12] = 127;
  in6->sin6_addr.s6_addr[15] = 1;
  mapped.length = sizeof(sockaddr_in6);
  EXPECT_EQ(v4.host_key(), mapped.host_key());
  EXPECT_EQ(mapped.host_text(), "127.0.0.1");
}

TEST(text_brackets_ipv6_and_bracketed_hosts_resolve) {
  Address address;
  std::string err;
  EXPECT_TRUE(resolve_address("[::1]", "82", 0, false, &address, &err));
  EXPECT_EQ(address.text(), "[::1]:82");
  EXPECT_TRUE(resolve_address("127.0.0.1", "83", 0, false, &address, &err));
  EXPECT_EQ(address.text(), "127.0.0.1:83");
  address.set_port(84);
  EXPECT_EQ(address.port(), 84);
  EXPECT_FALSE(resolve_address("no.such.host.invalid", "80", 0, false, &address, &err));
  EXPECT_FALSE(err.empty());
}

TEST_MAIN()
