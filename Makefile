# authx — PGXS build, plus the developer commands (start, stop, test, bench).
#
#   make start   install what is missing, build, install, start PostgreSQL
#                (port 55432) and Redis (port 56379) under ./.authx/
#   make test    build, install and run every suite on throw-away servers
#   make bench   pgbench the hot paths next to SELECT 1 and hand-written SQL
#   make stop    stop the servers started by `make start`

EXTENSION  = authx
EXTVERSION := $(shell sed -n "s/^default_version *= *'\(.*\)'/\1/p" authx.control)

MODULE_big = authx
OBJS       = $(patsubst %.c,%.o,$(sort $(wildcard src/*.c)))
DATA_built = sql/authx--$(EXTVERSION).sql
DATA       = $(filter-out $(DATA_built),$(wildcard sql/authx--*--*.sql))

PG_CPPFLAGS = -I$(srcdir)/src
PG_CFLAGS  += -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers
SHLIB_LINK  = -lhiredis -lsodium

# The Debian server package; override for another installation.
PG_CONFIG ?= /usr/lib/postgresql/15/bin/pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs 2>/dev/null)
ifneq ($(PGXS),)
include $(PGXS)
else
# A fresh machine: start/test/bench/deps install the packages themselves.
all install installcheck clean:
	@echo "PostgreSQL 15 server development files are missing: run 'make deps' as root." >&2; exit 1
endif

# PGXS tracks no header dependencies: every object depends on the shared
# header, or a changed struct layout would link objects that disagree.
$(OBJS): $(wildcard src/*.h)

# The install script is the module fragments in order, one section each.
sql/authx--$(EXTVERSION).sql: $(sort $(wildcard src/sql/*.sql)) authx.control
	cat $(sort $(wildcard src/sql/*.sql)) > $@

.PHONY: start stop test bench deps
deps:
	bash scripts/deps.sh
start:
	bash scripts/start.sh
stop:
	bash scripts/stop.sh
test:
	bash test/run.sh
bench:
	bash bench/run.sh
