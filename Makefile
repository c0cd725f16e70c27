# membership: a multi-tenant membership-benefits and loyalty platform that
# runs inside PostgreSQL.  Built with PGXS.

EXTENSION = membership

# Every release, oldest first.  src/sql/<release>/ holds the pieces that the
# release added, applied in file-name order.  A released directory never
# changes: the install script of a release is every piece up to it, and the
# upgrade script from the previous release is exactly that release's pieces,
# so both routes run the same statements (test/integration/upgrade.sh).
RELEASES = 0.1 0.2 0.3

LATEST = $(lastword $(RELEASES))
UPGRADE_FROM = $(filter-out $(LATEST),$(RELEASES))
UPGRADE_TO = $(wordlist 2,$(words $(RELEASES)),$(RELEASES))
INSTALL_SCRIPTS = $(addprefix $(EXTENSION)--,$(addsuffix .sql,$(RELEASES)))
UPGRADE_SCRIPTS = $(addprefix $(EXTENSION)--,$(addsuffix .sql,$(join $(addsuffix --,$(UPGRADE_FROM)),$(UPGRADE_TO))))
SQL_PIECES = $(sort $(wildcard src/sql/*/*.sql))

MODULE_big = membership
OBJS = $(patsubst %.c,%.o,$(sort $(wildcard src/*.c)))
DATA_built = $(INSTALL_SCRIPTS) $(UPGRADE_SCRIPTS)

PG_CPPFLAGS = -I$(srcdir)/src
SHLIB_LINK = -lcrypto -lcurl
# -Wunused-parameter is off: every V1 function takes fcinfo, used or not.
PG_CFLAGS = -Wall -Wextra -Werror -Wno-unused-parameter

# pg_regress suites, one per capability, in dependency order.
REGRESS = install email organisations api_keys identity members sync dependents consents \
	verify jobs benefits scoring benefits_articles benefits_reports notify notify_slots push ledger loyalty_notices privacy
REGRESS_OPTS = --dbname=membership_regress

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

$(EXTENSION)--%.sql: src/sql/assemble.sh $(SQL_PIECES) Makefile
	$(SHELL) src/sql/assemble.sh "$(RELEASES)" $* > $@

.PHONY: sql
sql: $(DATA_built)

# Record the checksums of every released piece (all releases but the
# latest); test/integration/upgrade.sh fails if one changes afterwards.
.PHONY: freeze
freeze:
	sha256sum $(foreach r,$(UPGRADE_FROM),$(sort $(wildcard src/sql/$(r)/*.sql))) > src/sql/RELEASED

# The extension's own type names, for pgindent (with PostgreSQL's list:
# pgindent --typedefs=typedefs.list src/*.c src/*.h).
.PHONY: typedefs
typedefs:
	grep -hoE '^\} *[A-Z][A-Za-z0-9_]*;|^typedef [^;]*\b[A-Z][A-Za-z0-9_]*;' src/*.c src/*.h \
		| grep -oE '[A-Z][A-Za-z0-9_]*;$$' | tr -d ';' | LC_ALL=C sort -u > typedefs.list
