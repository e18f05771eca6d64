# balance: POSIX make (GNU make and bmake alike). Overridable: CXX,
# CXXFLAGS, LDFLAGS, STRIP, PREFIX, MANPREFIX, DESTDIR; POLLER=poll forces the
# portable poll() loop, PORTABLE=1 switches the Linux-only calls off.
.POSIX:

VERSION = 1.1.0
PREFIX = /usr/local
MANPREFIX = $(PREFIX)/share/man
CXX = c++
CXXFLAGS = -O2 -g -Wall -Wextra
LDFLAGS =
STRIP = strip
POLLER = auto
PORTABLE = 0
BALANCE_CPPFLAGS = -std=c++17 -DBALANCE_VERSION=\"$(VERSION)\" \
	-DBALANCE_POLLER_$(POLLER) -DBALANCE_PORTABLE_$(PORTABLE)

OBJS = address.o balance.o classes.o client.o control.o editor.o handover.o log.o net.o \
	options.o poller.o pool.o relay.o server.o speed.o stats.o
HEADERS = address.hpp balance.hpp classes.hpp control.hpp editor.hpp handover.hpp net.hpp \
	options.hpp poller.hpp pool.hpp relay.hpp server.hpp speed.hpp stats.hpp
SOURCES = address.cpp balance.cpp classes.cpp client.cpp control.cpp editor.cpp handover.cpp \
	log.cpp net.cpp options.cpp poller.cpp pool.cpp relay.cpp server.cpp speed.cpp stats.cpp
DISTFILES = Makefile README.md LICENSE balance.1 $(SOURCES) $(HEADERS) .ci/run \
	tests/CMakeLists.txt tests/test.h tests/testnet.hpp tests/*_test.cpp tests/*.bats \
	tests/test_helper.bash tests/helper.hpp tests/helper*.cpp tests/ctltool.cpp \
	tests/fuzz_parsers.cpp bench/*.cpp bench/*.sh
DISTNAME = balance-$(VERSION)

all: balance

balance: $(OBJS)
	$(CXX) $(CXXFLAGS) $(LDFLAGS) -o balance $(OBJS)

$(OBJS): $(HEADERS) Makefile

.SUFFIXES: .cpp .o
.cpp.o:
	$(CXX) $(BALANCE_CPPFLAGS) $(CXXFLAGS) -c $<

tests/build/Makefile: tests/CMakeLists.txt
	cmake -S tests -B tests/build -DCMAKE_CXX_COMPILER=$(CXX) >/dev/null

# A cd runs in a subshell: bmake -j runs a target's lines in one shell.
check: balance tests/build/Makefile
	cmake --build tests/build -j 2
	(cd tests/build && ctest --output-on-failure)
	BALANCE=`pwd`/balance HELPER=`pwd`/tests/build/helper \
	CTLTOOL=`pwd`/tests/build/ctltool bats --print-output-on-failure tests

# Not part of check: speed against HAProxy and pen, costs as the farm
# grows, scheduling on a simulated farm of unequal hosts, then ten
# hand-overs under load (with the helper that make check builds).
bench: balance
	sh bench/run.sh
	bash bench/growth.sh
	bash bench/farm.sh
	bash bench/handover.sh

install: balance
	mkdir -p $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(MANPREFIX)/man1
	cp balance $(DESTDIR)$(PREFIX)/bin/balance
	$(STRIP) $(DESTDIR)$(PREFIX)/bin/balance
	chmod 755 $(DESTDIR)$(PREFIX)/bin/balance
	cp balance.1 $(DESTDIR)$(MANPREFIX)/man1/balance.1
	chmod 644 $(DESTDIR)$(MANPREFIX)/man1/balance.1

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/balance $(DESTDIR)$(MANPREFIX)/man1/balance.1

clean:
	rm -f balance $(OBJS) $(DISTNAME).tar.gz
	rm -rf tests/build distcheck.tmp $(DISTNAME)

# The tarball holds what a user needs to build, test and install.
dist:
	rm -rf $(DISTNAME) $(DISTNAME).tar.gz
	mkdir $(DISTNAME)
	tar cf - $(DISTFILES) | (cd $(DISTNAME) && tar xf -)
	tar cf - $(DISTNAME) | gzip -9 > $(DISTNAME).tar.gz
	rm -rf $(DISTNAME)

# Unpack the tarball elsewhere, build, test, install to a staging
# directory and lint the installed man page.
distcheck: dist
	rm -rf distcheck.tmp
	mkdir distcheck.tmp
	gzip -dc $(DISTNAME).tar.gz | (cd distcheck.tmp && tar xf -)
	(cd distcheck.tmp/$(DISTNAME) && $(MAKE) && $(MAKE) check && \
	    $(MAKE) install DESTDIR=`pwd`/../stage && \
	    test -x ../stage$(PREFIX)/bin/balance && \
	    test `wc -c < ../stage$(PREFIX)/bin/balance` -lt `wc -c < balance` && \
	    mandoc -Tlint -W warning ../stage$(MANPREFIX)/man1/balance.1 && \
	    $(MAKE) uninstall DESTDIR=`pwd`/../stage && \
	    test ! -e ../stage$(PREFIX)/bin/balance)
	rm -rf distcheck.tmp
	@echo "$(DISTNAME).tar.gz is ready"

.PHONY: all check bench dist distcheck install uninstall clean
