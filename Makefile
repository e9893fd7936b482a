# Convenience over the premake build (scripts/setup.sh does the same after installing packages):
#   make [CONFIG=release|debug|asan]      build into bin/
#   make install PREFIX=/usr/local         install binary, libraries, header, Lua module, .pc
#   make uninstall PREFIX=/usr/local
CONFIG ?= release
PREFIX ?= /usr/local
DESTDIR ?=
VERSION := $(shell sed -n 's/^\#define LETTASH_VERSION "\(.*\)"/\1/p' src/lettash.h)
LUA_CMOD := $(PREFIX)/lib/lua/5.4
BIN := $(if $(filter release,$(CONFIG)),bin,bin/$(CONFIG))

.PHONY: all build install uninstall clean
all: build

build:
	premake4 --file=premake5.lua gmake >/dev/null
	lua5.4 src/embed.lua lua build/gen/lh_embedded.c
	$(MAKE) -C build config=$(CONFIG)

install: build
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/include/lettash \
	  $(DESTDIR)$(LUA_CMOD) $(DESTDIR)$(PREFIX)/share/lettash/scripts
	install -m 0755 $(BIN)/lettash $(DESTDIR)$(PREFIX)/bin/lettash
	install -m 0644 $(BIN)/liblettash.a $(DESTDIR)$(PREFIX)/lib/liblettash.a
	install -m 0755 $(BIN)/lib/liblettash.so $(DESTDIR)$(PREFIX)/lib/liblettash.so
	install -m 0755 $(BIN)/letta.so $(DESTDIR)$(LUA_CMOD)/letta.so
	install -m 0644 src/lettash.h $(DESTDIR)$(PREFIX)/include/lettash/lettash.h
	install -m 0644 scripts/*.lua $(DESTDIR)$(PREFIX)/share/lettash/scripts/
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' lettash.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/lettash.pc

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/lettash $(DESTDIR)$(PREFIX)/lib/liblettash.a $(DESTDIR)$(PREFIX)/lib/liblettash.so \
	  $(DESTDIR)$(LUA_CMOD)/letta.so $(DESTDIR)$(PREFIX)/lib/pkgconfig/lettash.pc
	rm -rf $(DESTDIR)$(PREFIX)/include/lettash $(DESTDIR)$(PREFIX)/share/lettash

clean:
	rm -rf bin build
