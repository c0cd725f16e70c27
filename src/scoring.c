/*-------------------------------------------------------------------------
 *
 * scoring.c
 *	  The personalised benefit feed: every active member scored against
 *	  every active benefit their organisation offers, in one pass.
 *
 * For a member m and a benefit b of category c (DESIGN.md 4.5):
 *
 *	 score = base(b) + 0.4 category_match + 0.3 usage_history
 *			 + 0.2 org_weight + 0.1 recency
 *
 *	 category_match	 1 when m bookmarked c, else the relevance of m's
 *					 profession to c (membership.category_relevance), else 0
 *	 usage_history	 m's uses of benefits of category c over the last 365
 *					 days, as a share of all m's uses in that window
 *	 org_weight		 the promotion weight m's organisation gives b
 *	 recency		 1 when b was added in the 7 days up to the scoring date
 *
 * Categories m has hidden are left out.  Without the "personalisation"
 * consent category_match and usage_history are 0; usage_history also needs
 * "usage_tracking" (without it no usage of m's is kept anyway).  The 20
 * best benefits are kept, ties going to the lower benefit id; terms are
 * added in the order written above, in double precision, so that the plain
 * SQL form of the formula gives the very same scores.
 *
 * The nightly pass (membership.score_feeds) reads each organisation's
 * members, preferences, usage and offers with one query each (no query per
 * member), scores in memory, compares with the organisation's stored feeds
 * and writes only what changed, with set-based statements that read the new
 * feeds back through membership.scored_feeds().  Everything happens in the
 * one transaction, so a reader sees the previous night's feeds until the
 * pass commits and the new ones after: never a mix.
 *
 * A member who changes a preference or a consent gets a fresh feed at once
 * (membership.refresh_feed, with membership.score_member).  A refresh that
 * happens while a nightly pass runs must not be overwritten by the pass's
 * older view of that member, so the pass notes when it started, under a
 * lock that waits for refreshes in flight, and leaves alone every feed
 * refreshed after that moment; while it writes an organisation's feeds it
 * holds that lock, so no refresh writes in between.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "storage/lock.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/date.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "membership.h"

PG_FUNCTION_INFO_V1(membership_score_feeds);
PG_FUNCTION_INFO_V1(membership_scored_feeds);
PG_FUNCTION_INFO_V1(membership_score_member);

#define FEED_SIZE			20
#define RECENCY_DAYS		7

/*
 * Advisory locks (pg_locks: locktype "advisory", classid SCORING_LOCK_KEY,
 * objid the second key).  RUN is held by a nightly pass for its whole
 * transaction, so two passes cannot overlap.  FENCE is held in share mode
 * by every refresh (membership.refresh_feed) until it commits, and taken
 * exclusively by a pass for an instant when it notes its starting time and
 * while it writes each organisation's feeds.
 */
#define SCORING_LOCK_KEY	0x6D656D62	/* "memb" */
#define SCORING_LOCK_RUN	1
#define SCORING_LOCK_FENCE	2

/* Professions in the relevance matrix are at most 200 characters. */
#define PROFESSION_KEY_LEN	(200 * MAX_MULTIBYTE_CHAR_LEN + 1)

/* The benefit catalogue, shared by every organisation of a pass. */
typedef struct Catalogue
{
	int			ncategories;
	char	  **categories;		/* in byte order, for bsearch */
	int			nbenefits;		/* every benefit, by ascending id */
	int32	   *benefit_id;
	int		   *benefit_category;
	bool	   *benefit_active;
	double	   *benefit_base;
	double	   *benefit_recency;
	HTAB	   *relevance;		/* profession -> RelevanceEntry */
} Catalogue;

typedef struct RelevanceEntry
{
	char		profession[PROFESSION_KEY_LEN];
	double	   *relevance;		/* one per category */
} RelevanceEntry;

/* What scoring one member needs to know about them. */
typedef struct MemberInput
{
	pg_uuid_t	id;
	const double *relevance;	/* NULL when the profession is not known */
	bool		personalised;
	bool		tracking;
	int			first_pref;
	int			npref;
	int			first_usage;
	int			nusage;
} MemberInput;

/* One organisation's inputs and, once scored, its feeds. */
typedef struct OrgBatch
{
	pg_uuid_t	org;
	int			noffers;
	int		   *offer_benefit;	/* catalogue index, by ascending id */
	double	   *offer_weight;
	int			nmembers;
	MemberInput *members;		/* by ascending id */
	int			nprefs;
	int		   *pref_category;
	bool	   *pref_hidden;
	int			nusage;
	int		   *usage_category;
	int64	   *usage_count;
	/* results: FEED_SIZE entries per member, feed_len of them used */
	int		   *feed_len;
	int32	   *feed_ids;
	double	   *feed_scores;
	/* the members whose feeds membership.scored_feeds() returns now */
	int			nwrite;
	int		   *write_members;
	/* how many members have a feed, once written */
	int			with_feed;
} OrgBatch;

/* Per-category work space for scoring one member. */
typedef struct Scratch
{
	bool	   *hidden;
	double	   *match;
	int64	   *uses;
	double	   *usage;
} Scratch;

/* The batch whose feeds membership.scored_feeds() returns, while a pass writes. */
static OrgBatch *writing_batch = NULL;

/* Statements, prepared once per backend and kept. */
enum
{
	STMT_CATEGORIES,
	STMT_BENEFITS,
	STMT_RELEVANCE,
	STMT_OFFERS,
	STMT_COUNT_MEMBERS,
	STMT_MEMBERS,
	STMT_CONSENTS,
	STMT_PREFS,
	STMT_USAGE,
	STMT_MEMBER,
	STMT_MEMBER_PREFS,
	STMT_MEMBER_USAGE,
	STMT_STORED_FEEDS,
	STMT_UPDATE_FEEDS,
	STMT_INSERT_FEEDS,
	STMT_DELETE_FEEDS,
	STMT_COUNT
};

typedef struct Statement
{
	const char *sql;
	int			nargs;
	Oid			argtypes[3];
} Statement;

/*
 * The usage window: used_at in [scoring date - 365 days, scoring date + 1
 * day), midnights in the server's time zone.
 */
static const Statement statements[STMT_COUNT] = {
	[STMT_CATEGORIES] = {
		"SELECT c.category FROM membership.benefit_categories c ORDER BY c.category COLLATE \"C\"",
		0, {InvalidOid}
	},
	[STMT_BENEFITS] = {
		"SELECT b.id, b.category, b.base_score, b.added_on, b.active FROM membership.benefits b"
		" ORDER BY b.id",
		0, {InvalidOid}
	},
	[STMT_RELEVANCE] = {
		"SELECT r.profession, r.category, r.relevance FROM membership.category_relevance r",
		0, {InvalidOid}
	},
	[STMT_OFFERS] = {
		"SELECT o.benefit_id, o.promotion_weight FROM membership.benefit_offers o"
		" WHERE o.organisation_id = $1 ORDER BY o.benefit_id",
		1, {UUIDOID}
	},
	[STMT_COUNT_MEMBERS] = {
		"SELECT count(*) FROM membership.members m"
		" WHERE m.organisation_id = $1 AND m.status = 'active' AND m.removed_at IS NULL",
		1, {UUIDOID}
	},
	[STMT_MEMBERS] = {
		"SELECT m.id, lower(m.profession) FROM membership.members m"
		" WHERE m.organisation_id = $1 AND m.status = 'active' AND m.removed_at IS NULL"
		" ORDER BY m.id",
		1, {UUIDOID}
	},
	[STMT_CONSENTS] = {
		"SELECT c.member_id, c.consent = 'personalisation' FROM membership.consents c"
		" WHERE c.organisation_id = $1 AND c.granted"
		" AND c.consent IN ('personalisation', 'usage_tracking') ORDER BY c.member_id",
		1, {UUIDOID}
	},
	[STMT_PREFS] = {
		"SELECT p.member_id, p.category, p.preference = 'hidden' FROM membership.category_preferences p"
		" WHERE p.organisation_id = $1 ORDER BY p.member_id",
		1, {UUIDOID}
	},
	[STMT_USAGE] = {
		"SELECT u.member_id, u.benefit_id, count(*) FROM membership.benefit_usage u"
		" WHERE u.organisation_id = $1 AND u.member_id IS NOT NULL"
		" AND u.used_at >= $2 - 365 AND u.used_at < $2 + 1"
		" GROUP BY u.member_id, u.benefit_id ORDER BY u.member_id",
		2, {UUIDOID, DATEOID}
	},
	[STMT_MEMBER] = {
		"SELECT m.id, lower(m.profession),"
		" coalesce((SELECT c.granted FROM membership.consents c"
		"           WHERE c.member_id = m.id AND c.consent = 'personalisation'), false),"
		" coalesce((SELECT c.granted FROM membership.consents c"
		"           WHERE c.member_id = m.id AND c.consent = 'usage_tracking'), false),"
		" m.organisation_id"
		" FROM membership.members m"
		" WHERE m.id = $1 AND m.status = 'active' AND m.removed_at IS NULL",
		1, {UUIDOID}
	},
	[STMT_MEMBER_PREFS] = {
		"SELECT p.member_id, p.category, p.preference = 'hidden' FROM membership.category_preferences p"
		" WHERE p.member_id = $1",
		1, {UUIDOID}
	},
	[STMT_MEMBER_USAGE] = {
		"SELECT u.member_id, u.benefit_id, count(*) FROM membership.benefit_usage u"
		" WHERE u.organisation_id = $3 AND u.member_id = $1"
		" AND u.used_at >= $2 - 365 AND u.used_at < $2 + 1"
		" GROUP BY u.member_id, u.benefit_id",
		3, {UUIDOID, DATEOID, UUIDOID}
	},
	/* an organisation's stored feeds, with whether refreshed since the pass started */
	[STMT_STORED_FEEDS] = {
		"SELECT f.member_id, f.benefit_ids, f.scores, f.scored_at >= $2 FROM membership.feeds f"
		" WHERE f.organisation_id = $1 ORDER BY f.member_id",
		2, {UUIDOID, TIMESTAMPTZOID}
	},
	[STMT_UPDATE_FEEDS] = {
		"UPDATE membership.feeds f SET benefit_ids = s.benefit_ids, scores = s.scores, scored_at = $2"
		" FROM membership.scored_feeds() s WHERE f.organisation_id = $1 AND f.member_id = s.member_id",
		2, {UUIDOID, TIMESTAMPTZOID}
	},
	[STMT_INSERT_FEEDS] = {
		"INSERT INTO membership.feeds (organisation_id, member_id, benefit_ids, scores, scored_at)"
		" SELECT $1, s.member_id, s.benefit_ids, s.scores, $2 FROM membership.scored_feeds() s",
		2, {UUIDOID, TIMESTAMPTZOID}
	},
	[STMT_DELETE_FEEDS] = {
		"DELETE FROM membership.feeds f WHERE f.organisation_id = $1 AND f.member_id = ANY ($2)",
		2, {UUIDOID, UUIDARRAYOID}
	},
};

static SPIPlanPtr plans[STMT_COUNT];

/*
 * Whether statements run read-only: with the caller's snapshot, as a stable
 * function's must (membership.score_member), or each with a fresh one, as
 * the pass that writes needs.  Set by each entry point.
 */
static bool read_only = false;

/* Run a kept statement, raising an error unless it succeeds. */
static void
execute(int stmt, Datum *args, int expected)
{
	int			rc;

	if (plans[stmt] == NULL)
		plans[stmt] = membership_prepare_kept(statements[stmt].sql, statements[stmt].nargs,
											  unconstify(Oid *, &statements[stmt].argtypes[0]));
	rc = SPI_execute_plan(plans[stmt], args, NULL, read_only, 0);
	if (rc != expected)
		elog(ERROR, "\"%s\" failed: %s", statements[stmt].sql, SPI_result_code_string(rc));
}

static Datum
column(int row, int col, bool *isnull)
{
	return SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col, isnull);
}

static int
compare_category(const void *key, const void *elem)
{
	return strcmp((const char *) key, *(char *const *) elem);
}

/* The index of a category of the catalogue, or -1. */
static int
category_index(const Catalogue *cat, Datum name)
{
	char	   *s = TextDatumGetCString(name);
	char	  **found = bsearch(s, cat->categories, cat->ncategories, sizeof(char *),
								compare_category);

	pfree(s);
	return found ? (int) (found - cat->categories) : -1;
}

/* The index of a benefit of the catalogue, or -1. */
static int
benefit_index(const Catalogue *cat, int32 id)
{
	int			lo = 0;
	int			hi = cat->nbenefits - 1;

	while (lo <= hi)
	{
		int			mid = lo + (hi - lo) / 2;

		if (cat->benefit_id[mid] == id)
			return mid;
		if (cat->benefit_id[mid] < id)
			lo = mid + 1;
		else
			hi = mid - 1;
	}
	return -1;
}

/*
 * Load the categories, the benefits (with their recency on the scoring
 * date) and the relevance matrix into "cxt".
 */
static void
load_catalogue(Catalogue *cat, DateADT as_of, MemoryContext cxt)
{
	MemoryContext old;
	HASHCTL		ctl;

	execute(STMT_CATEGORIES, NULL, SPI_OK_SELECT);
	old = MemoryContextSwitchTo(cxt);
	cat->ncategories = (int) SPI_processed;
	cat->categories = palloc(Max(cat->ncategories, 1) * sizeof(char *));
	for (int i = 0; i < cat->ncategories; i++)
	{
		bool		isnull;

		cat->categories[i] = TextDatumGetCString(column(i, 1, &isnull));
	}
	MemoryContextSwitchTo(old);
	SPI_freetuptable(SPI_tuptable);

	execute(STMT_BENEFITS, NULL, SPI_OK_SELECT);
	old = MemoryContextSwitchTo(cxt);
	cat->nbenefits = (int) SPI_processed;
	cat->benefit_id = palloc(Max(cat->nbenefits, 1) * sizeof(int32));
	cat->benefit_category = palloc(Max(cat->nbenefits, 1) * sizeof(int));
	cat->benefit_active = palloc(Max(cat->nbenefits, 1) * sizeof(bool));
	cat->benefit_base = palloc(Max(cat->nbenefits, 1) * sizeof(double));
	cat->benefit_recency = palloc(Max(cat->nbenefits, 1) * sizeof(double));
	for (int i = 0; i < cat->nbenefits; i++)
	{
		bool		isnull;
		DateADT		added;

		cat->benefit_id[i] = DatumGetInt32(column(i, 1, &isnull));
		cat->benefit_category[i] = category_index(cat, column(i, 2, &isnull));
		if (cat->benefit_category[i] < 0)
			elog(ERROR, "benefit %d has an unknown category", cat->benefit_id[i]);
		cat->benefit_base[i] = DatumGetFloat8(column(i, 3, &isnull));
		cat->benefit_active[i] = DatumGetBool(column(i, 5, &isnull));
		added = DatumGetDateADT(column(i, 4, &isnull));
		cat->benefit_recency[i] =
			(added <= as_of && added > as_of - RECENCY_DAYS) ? 1.0 : 0.0;
	}
	MemoryContextSwitchTo(old);
	SPI_freetuptable(SPI_tuptable);

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = PROFESSION_KEY_LEN;
	ctl.entrysize = sizeof(RelevanceEntry);
	ctl.hcxt = cxt;
	cat->relevance = hash_create("membership category relevance", 64, &ctl,
								 HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);

	execute(STMT_RELEVANCE, NULL, SPI_OK_SELECT);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		char	   *profession = TextDatumGetCString(column(i, 1, &isnull));
		int			c = category_index(cat, column(i, 2, &isnull));
		RelevanceEntry *entry;
		bool		found;

		if (strlen(profession) >= PROFESSION_KEY_LEN || c < 0)
			elog(ERROR, "invalid relevance row for profession \"%s\"", profession);
		entry = hash_search(cat->relevance, profession, HASH_ENTER, &found);
		if (!found)
			entry->relevance = MemoryContextAllocZero(cxt, Max(cat->ncategories, 1) * sizeof(double));
		entry->relevance[c] = DatumGetFloat8(column(i, 3, &isnull));
		pfree(profession);
	}
	SPI_freetuptable(SPI_tuptable);
}

/* The relevance row of a profession, or NULL. */
static const double *
profession_relevance(const Catalogue *cat, Datum profession, bool isnull)
{
	char	   *s;
	RelevanceEntry *entry = NULL;

	if (isnull)
		return NULL;
	s = TextDatumGetCString(profession);
	if (strlen(s) < PROFESSION_KEY_LEN)
		entry = hash_search(cat->relevance, s, HASH_FIND, NULL);
	pfree(s);
	return entry ? entry->relevance : NULL;
}

/* Load an organisation's active offers of active benefits. */
static void
load_offers(OrgBatch *batch, const Catalogue *cat, MemoryContext cxt)
{
	Datum		args[1] = {UUIDPGetDatum(&batch->org)};
	MemoryContext old;

	execute(STMT_OFFERS, args, SPI_OK_SELECT);
	old = MemoryContextSwitchTo(cxt);
	batch->offer_benefit = palloc(Max(SPI_processed, 1) * sizeof(int));
	batch->offer_weight = palloc(Max(SPI_processed, 1) * sizeof(double));
	batch->noffers = 0;
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		int			b = benefit_index(cat, DatumGetInt32(column(i, 1, &isnull)));

		if (b < 0 || !cat->benefit_active[b])
			continue;
		batch->offer_benefit[batch->noffers] = b;
		batch->offer_weight[batch->noffers] = DatumGetFloat8(column(i, 2, &isnull));
		batch->noffers++;
	}
	MemoryContextSwitchTo(old);
	SPI_freetuptable(SPI_tuptable);
}

/*
 * Fill batch->members from the rows of a members statement: id and
 * profession, and for one member also the two consents (for a whole
 * organisation they come from take_consents()).
 */
static void
take_members(OrgBatch *batch, const Catalogue *cat, MemoryContext cxt)
{
	MemoryContext old = MemoryContextSwitchTo(cxt);

	batch->nmembers = (int) SPI_processed;
	batch->members = palloc0(Max(batch->nmembers, 1) * sizeof(MemberInput));
	for (int i = 0; i < batch->nmembers; i++)
	{
		MemberInput *m = &batch->members[i];
		bool		isnull;
		Datum		profession;

		memcpy(&m->id, DatumGetUUIDP(column(i, 1, &isnull)), sizeof(pg_uuid_t));
		profession = column(i, 2, &isnull);
		m->relevance = profession_relevance(cat, profession, isnull);
		if (SPI_tuptable->tupdesc->natts >= 4)
		{
			m->personalised = DatumGetBool(column(i, 3, &isnull));
			m->tracking = DatumGetBool(column(i, 4, &isnull));
		}
	}
	MemoryContextSwitchTo(old);
}

/*
 * Set the consents of the batch's members from the rows (member,
 * personalisation?) of the consents statement, both in member order.
 */
static void
take_consents(OrgBatch *batch)
{
	int			m = 0;

	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		pg_uuid_t  *member = DatumGetUUIDP(column(i, 1, &isnull));
		int			cmp = -1;

		while (m < batch->nmembers &&
			   (cmp = memcmp(batch->members[m].id.data, member->data, UUID_LEN)) < 0)
			m++;
		if (m == batch->nmembers)
			break;
		if (cmp != 0)
			continue;
		if (DatumGetBool(column(i, 2, &isnull)))
			batch->members[m].personalised = true;
		else
			batch->members[m].tracking = true;
	}
}

/*
 * Attach the rows of a preferences (usage == false: member, category,
 * hidden) or usage statement (member, benefit, uses), ordered by member, to
 * the batch's members, also in member order: one merge.  Rows of members
 * that are not in the batch are skipped; uses are kept by category.
 */
static void
take_member_rows(OrgBatch *batch, const Catalogue *cat, bool usage, MemoryContext cxt)
{
	MemoryContext old = MemoryContextSwitchTo(cxt);
	int			n = 0;
	int			m = 0;
	int		   *categories = palloc(Max(SPI_processed, 1) * sizeof(int));
	bool	   *hidden = usage ? NULL : palloc(Max(SPI_processed, 1) * sizeof(bool));
	int64	   *counts = usage ? palloc(Max(SPI_processed, 1) * sizeof(int64)) : NULL;

	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		pg_uuid_t  *member = DatumGetUUIDP(column(i, 1, &isnull));
		int			c;
		int			cmp = -1;

		while (m < batch->nmembers &&
			   (cmp = memcmp(batch->members[m].id.data, member->data, UUID_LEN)) < 0)
			m++;
		if (m == batch->nmembers || cmp != 0)
			continue;
		if (usage)
		{
			int			b = benefit_index(cat, DatumGetInt32(column(i, 2, &isnull)));

			c = b < 0 ? -1 : cat->benefit_category[b];
		}
		else
			c = category_index(cat, column(i, 2, &isnull));
		if (c < 0)
			continue;

		if (usage)
		{
			if (batch->members[m].nusage++ == 0)
				batch->members[m].first_usage = n;
			counts[n] = DatumGetInt64(column(i, 3, &isnull));
		}
		else
		{
			if (batch->members[m].npref++ == 0)
				batch->members[m].first_pref = n;
			hidden[n] = DatumGetBool(column(i, 3, &isnull));
		}
		categories[n++] = c;
	}
	if (usage)
	{
		batch->nusage = n;
		batch->usage_category = categories;
		batch->usage_count = counts;
	}
	else
	{
		batch->nprefs = n;
		batch->pref_category = categories;
		batch->pref_hidden = hidden;
	}
	MemoryContextSwitchTo(old);
}

/* Load everything the pass needs about one organisation's members. */
static void
load_organisation(OrgBatch *batch, const Catalogue *cat, DateADT as_of, MemoryContext cxt)
{
	Datum		args[2] = {UUIDPGetDatum(&batch->org), DateADTGetDatum(as_of)};

	load_offers(batch, cat, cxt);

	execute(STMT_MEMBERS, args, SPI_OK_SELECT);
	take_members(batch, cat, cxt);
	SPI_freetuptable(SPI_tuptable);

	execute(STMT_CONSENTS, args, SPI_OK_SELECT);
	take_consents(batch);
	SPI_freetuptable(SPI_tuptable);

	execute(STMT_PREFS, args, SPI_OK_SELECT);
	take_member_rows(batch, cat, false, cxt);
	SPI_freetuptable(SPI_tuptable);

	execute(STMT_USAGE, args, SPI_OK_SELECT);
	take_member_rows(batch, cat, true, cxt);
	SPI_freetuptable(SPI_tuptable);
}

/* Does (score a, id a) rank before (score b, id b)? */
static inline bool
ranks_before(double score_a, int32 id_a, double score_b, int32 id_b)
{
	return score_a > score_b || (score_a == score_b && id_a < id_b);
}

/*
 * Score one member against the organisation's offers and keep the best
 * FEED_SIZE in ids/scores, best first.  Returns how many were kept.
 */
static int
score_member_feed(const Catalogue *cat, const OrgBatch *batch, const MemberInput *m,
				  Scratch *s, int32 *ids, double *scores)
{
	int			n = 0;

	for (int c = 0; c < cat->ncategories; c++)
	{
		s->hidden[c] = false;
		s->match[c] = (m->personalised && m->relevance) ? m->relevance[c] : 0.0;
		s->uses[c] = 0;
		s->usage[c] = 0.0;
	}
	for (int i = m->first_pref; i < m->first_pref + m->npref; i++)
	{
		int			c = batch->pref_category[i];

		if (batch->pref_hidden[i])
			s->hidden[c] = true;
		else if (m->personalised)
			s->match[c] = 1.0;
	}
	if (m->personalised && m->tracking && m->nusage > 0)
	{
		int64		total = 0;

		for (int i = m->first_usage; i < m->first_usage + m->nusage; i++)
		{
			s->uses[batch->usage_category[i]] += batch->usage_count[i];
			total += batch->usage_count[i];
		}
		for (int c = 0; c < cat->ncategories; c++)
			s->usage[c] = (double) s->uses[c] / (double) total;
	}

	for (int j = 0; j < batch->noffers; j++)
	{
		int			b = batch->offer_benefit[j];
		int			c = cat->benefit_category[b];
		int32		id = cat->benefit_id[b];
		double		score;
		int			pos;

		if (s->hidden[c])
			continue;
		score = cat->benefit_base[b] + 0.4 * s->match[c] + 0.3 * s->usage[c] +
			0.2 * batch->offer_weight[j] + 0.1 * cat->benefit_recency[b];

		if (n == FEED_SIZE && !ranks_before(score, id, scores[n - 1], ids[n - 1]))
			continue;
		pos = (n < FEED_SIZE) ? n++ : FEED_SIZE - 1;
		while (pos > 0 && ranks_before(score, id, scores[pos - 1], ids[pos - 1]))
		{
			ids[pos] = ids[pos - 1];
			scores[pos] = scores[pos - 1];
			pos--;
		}
		ids[pos] = id;
		scores[pos] = score;
	}
	return n;
}

/*
 * Score every member of a batch.
 *
 * A member with no preferences and no usage that counts has the feed of
 * every such member with the same profession (without the personalisation
 * consent, the profession does not count either): such feeds are computed
 * once per organisation and copied.  Most members are like that.
 */
static void
score_batch(const Catalogue *cat, OrgBatch *batch, MemoryContext cxt)
{
	MemoryContext old = MemoryContextSwitchTo(cxt);
	Scratch		s;
	int			ncat = Max(cat->ncategories, 1);
	int			nshared = 0;
	int			maxshared = 16;
	int		   *shared = palloc(maxshared * sizeof(int));

	s.hidden = palloc(ncat * sizeof(bool));
	s.match = palloc(ncat * sizeof(double));
	s.uses = palloc(ncat * sizeof(int64));
	s.usage = palloc(ncat * sizeof(double));
	batch->feed_len = palloc(Max(batch->nmembers, 1) * sizeof(int));
	batch->feed_ids = palloc(Max(batch->nmembers, 1) * FEED_SIZE * sizeof(int32));
	batch->feed_scores = palloc(Max(batch->nmembers, 1) * FEED_SIZE * sizeof(double));
	MemoryContextSwitchTo(old);

	for (int i = 0; i < batch->nmembers; i++)
	{
		const MemberInput *m = &batch->members[i];
		int			same = -1;

		if ((i & 1023) == 0)
			CHECK_FOR_INTERRUPTS();

		if (m->npref == 0 && !(m->personalised && m->tracking && m->nusage > 0))
		{
			for (int k = 0; k < nshared && same < 0; k++)
			{
				const MemberInput *o = &batch->members[shared[k]];

				if (o->personalised == m->personalised &&
					(!m->personalised || o->relevance == m->relevance))
					same = shared[k];
			}
			if (same < 0)
			{
				if (nshared == maxshared)
				{
					maxshared *= 2;
					shared = repalloc(shared, maxshared * sizeof(int));
				}
				shared[nshared++] = i;
			}
		}

		if (same >= 0)
		{
			batch->feed_len[i] = batch->feed_len[same];
			memcpy(&batch->feed_ids[i * FEED_SIZE], &batch->feed_ids[same * FEED_SIZE],
				   FEED_SIZE * sizeof(int32));
			memcpy(&batch->feed_scores[i * FEED_SIZE], &batch->feed_scores[same * FEED_SIZE],
				   FEED_SIZE * sizeof(double));
		}
		else
			batch->feed_len[i] = score_member_feed(cat, batch, m, &s,
												   &batch->feed_ids[i * FEED_SIZE],
												   &batch->feed_scores[i * FEED_SIZE]);
	}
	pfree(shared);
}

/* A member's feed as the two arrays that membership.feeds stores. */
static void
feed_arrays(const OrgBatch *batch, int i, Datum *ids, Datum *scores)
{
	int			n = batch->feed_len[i];
	Datum		id_datums[FEED_SIZE];
	Datum		score_datums[FEED_SIZE];

	for (int k = 0; k < n; k++)
	{
		id_datums[k] = Int32GetDatum(batch->feed_ids[i * FEED_SIZE + k]);
		score_datums[k] = Float4GetDatum((float4) batch->feed_scores[i * FEED_SIZE + k]);
	}
	*ids = PointerGetDatum(construct_array(id_datums, n, INT4OID, sizeof(int32), true, TYPALIGN_INT));
	*scores = PointerGetDatum(construct_array(score_datums, n, FLOAT4OID, sizeof(float4),
											  true, TYPALIGN_INT));
}

/*
 * membership.scored_feeds() RETURNS TABLE (member_id uuid, benefit_ids
 * integer[], scores real[])
 *
 * Feeds that the nightly pass has just computed, for its own set-based
 * statements: those it is inserting or updating now.  Only the pass itself
 * can call it usefully.
 */
Datum
membership_scored_feeds(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	MemoryContext rowcxt;

	if (writing_batch == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("no feeds are being written"),
				 errdetail("Only membership.score_feeds() reads scored feeds.")));

	InitMaterializedSRF(fcinfo, 0);
	rowcxt = AllocSetContextCreate(CurrentMemoryContext, "membership scored feeds",
								   ALLOCSET_SMALL_SIZES);
	for (int k = 0; k < writing_batch->nwrite; k++)
	{
		int			i = writing_batch->write_members[k];
		Datum		values[3];
		bool		nulls[3] = {false, false, false};
		MemoryContext old;

		old = MemoryContextSwitchTo(rowcxt);
		values[0] = UUIDPGetDatum(&writing_batch->members[i].id);
		feed_arrays(writing_batch, i, &values[1], &values[2]);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		MemoryContextSwitchTo(old);
		MemoryContextReset(rowcxt);
	}
	MemoryContextDelete(rowcxt);
	return (Datum) 0;
}

/* Forget the batch being written when the pass's memory goes away. */
static void
forget_writing_batch(void *arg)
{
	writing_batch = NULL;
}

/* Is a computed feed the same as a stored one? */
static bool
same_feed(const OrgBatch *batch, int i, Datum ids, Datum scores)
{
	ArrayType  *id_array = DatumGetArrayTypeP(ids);
	ArrayType  *score_array = DatumGetArrayTypeP(scores);
	int			n = batch->feed_len[i];
	int32	   *stored_ids;
	float4	   *stored_scores;

	if (ARR_NDIM(id_array) != 1 || ARR_NDIM(score_array) != 1 ||
		ARR_HASNULL(id_array) || ARR_HASNULL(score_array) ||
		ARR_DIMS(id_array)[0] != n || ARR_DIMS(score_array)[0] != n)
		return false;
	/* one dimension, no nulls: the elements follow the fixed header */
	stored_ids = (int32 *) ((char *) id_array + ARR_OVERHEAD_NONULLS(1));
	stored_scores = (float4 *) ((char *) score_array + ARR_OVERHEAD_NONULLS(1));
	for (int k = 0; k < n; k++)
	{
		if (stored_ids[k] != batch->feed_ids[i * FEED_SIZE + k] ||
			stored_scores[k] != (float4) batch->feed_scores[i * FEED_SIZE + k])
			return false;
	}
	return true;
}

/* Run a feed-writing statement over the batch members listed in "members". */
static void
write_members(OrgBatch *batch, int stmt, int *members, int n, Datum *args, int expected)
{
	if (n == 0)
		return;
	batch->write_members = members;
	batch->nwrite = n;
	writing_batch = batch;
	execute(stmt, args, expected);
	writing_batch = NULL;
}

/*
 * Bring an organisation's stored feeds in line with the batch: insert the
 * new ones, update those that changed, delete those of members who no
 * longer get one, and leave alone the rest and any refreshed since the
 * pass started (newer than what the pass read).  Returns how many members
 * of the batch have a feed.
 */
static int
store_feeds(OrgBatch *batch, TimestampTz started)
{
	Datum		args[2] = {UUIDPGetDatum(&batch->org), TimestampTzGetDatum(started)};
	int		   *inserts = palloc(Max(batch->nmembers, 1) * sizeof(int));
	int		   *updates = palloc(Max(batch->nmembers, 1) * sizeof(int));
	int			ninserts = 0;
	int			nupdates = 0;
	SPITupleTable *stored_rows;
	Datum	   *deletes;
	int			ndeletes = 0;
	int			m = 0;
	int			with_feed = 0;

	execute(STMT_STORED_FEEDS, args, SPI_OK_SELECT);
	stored_rows = SPI_tuptable;
	deletes = palloc(Max(SPI_processed, 1) * sizeof(Datum));
	for (uint64 r = 0; r <= SPI_processed; r++)
	{
		pg_uuid_t  *stored = NULL;
		bool		isnull;
		int			cmp = 1;

		if (r < SPI_processed)
			stored = DatumGetUUIDP(column(r, 1, &isnull));
		/* members without a stored feed before this one */
		while (m < batch->nmembers &&
			   (stored == NULL ||
				(cmp = memcmp(batch->members[m].id.data, stored->data, UUID_LEN)) < 0))
		{
			if (batch->feed_len[m] > 0)
				inserts[ninserts++] = m;
			m++;
		}
		if (stored == NULL)
			break;
		if (DatumGetBool(column(r, 4, &isnull)))
		{
			/* refreshed since the pass started: newer than the pass */
			if (m < batch->nmembers && cmp == 0)
				m++;
			continue;
		}
		if (m < batch->nmembers && cmp == 0)
		{
			if (batch->feed_len[m] == 0)
				deletes[ndeletes++] = UUIDPGetDatum(stored);
			else if (!same_feed(batch, m, column(r, 2, &isnull), column(r, 3, &isnull)))
				updates[nupdates++] = m;
			m++;
		}
		else
			deletes[ndeletes++] = UUIDPGetDatum(stored);
	}

	write_members(batch, STMT_UPDATE_FEEDS, updates, nupdates, args, SPI_OK_UPDATE);
	write_members(batch, STMT_INSERT_FEEDS, inserts, ninserts, args, SPI_OK_INSERT);
	if (ndeletes > 0)
	{
		args[1] = PointerGetDatum(construct_array(deletes, ndeletes, UUIDOID, UUID_LEN, false,
												  TYPALIGN_CHAR));
		execute(STMT_DELETE_FEEDS, args, SPI_OK_DELETE);
	}
	SPI_freetuptable(stored_rows);

	for (int i = 0; i < batch->nmembers; i++)
		with_feed += batch->feed_len[i] > 0;
	return with_feed;
}

static void
set_scoring_locktag(LOCKTAG *tag, uint32 which)
{
	SET_LOCKTAG_ADVISORY(*tag, MyDatabaseId, SCORING_LOCK_KEY, which, 2);
}

/*
 * Write a scored organisation's feeds; returns how many members have one.
 *
 * Refreshes wait while this runs (the FENCE lock), so nothing else writes
 * the organisation's feeds between reading and writing them: a refresh
 * that committed earlier is seen (and kept, being newer than the pass), a
 * later one waits for the pass to commit and then overwrites the pass's
 * row.  The update joins the scored feeds by hashing, whatever the
 * statistics of membership.feeds say (right after the first night they
 * still say it is empty).
 */
static int
write_batch(OrgBatch *batch, TimestampTz started)
{
	LOCKTAG		tag;

	set_scoring_locktag(&tag, SCORING_LOCK_FENCE);
	LockAcquire(&tag, ExclusiveLock, true, false);
	PG_TRY();
	{
		int			nestlevel = NewGUCNestLevel();

		(void) set_config_option("enable_nestloop", "off", PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
		batch->with_feed = store_feeds(batch, started);
		AtEOXact_GUC(true, nestlevel);
	}
	PG_FINALLY();
	{
		LockRelease(&tag, ExclusiveLock, true);
	}
	PG_END_TRY();
	return batch->with_feed;
}

/* Act for one organisation: the tenant context its rows' policies need. */
static void
enter_organisation(const pg_uuid_t *org)
{
	Caller		caller;

	memset(&caller, 0, sizeof(caller));
	caller.kind = CALLER_SYSTEM;
	caller.has_org = true;
	memcpy(&caller.org_id, org, sizeof(pg_uuid_t));
	tenant_set(&caller);
}

static DateADT
scoring_date(FunctionCallInfo fcinfo, int argno)
{
	DateADT		as_of;

	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("scoring date must not be null")));
	as_of = PG_GETARG_DATEADT(argno);
	if (DATE_NOT_FINITE(as_of))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("scoring date must be finite")));
	return as_of;
}

/*
 * membership.score_feeds(as_of date DEFAULT current_date) RETURNS bigint
 *
 * The nightly pass: score every active member of every organisation and
 * store their feeds, in the calling transaction.  Returns how many members
 * have a feed.  Reports its progress when run as a job.
 */
Datum
membership_score_feeds(PG_FUNCTION_ARGS)
{
	DateADT		as_of = scoring_date(fcinfo, 0);
	LOCKTAG		tag;
	TimestampTz started;
	MemoryContext passcxt;
	MemoryContext orgcxt;
	MemoryContextCallback *callback;
	Catalogue	cat;
	Caller		saved = *tenant_current();
	pg_uuid_t  *orgs;
	int			norgs;
	int64		total = 0;
	int64		done = 0;
	int64		with_feed = 0;

	set_scoring_locktag(&tag, SCORING_LOCK_RUN);
	if (LockAcquire(&tag, ExclusiveLock, false, true) == LOCKACQUIRE_NOT_AVAIL)
		ereport(ERROR,
				(errcode(ERRCODE_LOCK_NOT_AVAILABLE),
				 errmsg("feed scoring is already running"),
				 errdetail("Another transaction is scoring feeds in this database.")));

	/*
	 * The starting time, taken when no refresh is in flight: refreshes that
	 * began earlier have committed (this pass reads their data), later ones
	 * are stamped later (this pass leaves their feeds alone).
	 */
	set_scoring_locktag(&tag, SCORING_LOCK_FENCE);
	LockAcquire(&tag, ExclusiveLock, true, false);
	started = GetCurrentTimestamp();
	LockRelease(&tag, ExclusiveLock, true);

	passcxt = AllocSetContextCreate(CurrentMemoryContext, "membership scoring",
									ALLOCSET_DEFAULT_SIZES);
	callback = MemoryContextAllocZero(passcxt, sizeof(MemoryContextCallback));
	callback->func = forget_writing_batch;
	MemoryContextRegisterResetCallback(passcxt, callback);

	orgcxt = AllocSetContextCreate(passcxt, "membership scoring of one organisation",
								   ALLOCSET_DEFAULT_SIZES);

	SPI_connect();
	read_only = false;
	jobs_report_progress(0, -1, "counting members");
	load_catalogue(&cat, as_of, passcxt);
	orgs = jobs_organisation_ids(&norgs, false);
	for (int i = 0; i < norgs; i++)
	{
		Datum		args[1] = {UUIDPGetDatum(&orgs[i])};
		bool		isnull;

		enter_organisation(&orgs[i]);
		execute(STMT_COUNT_MEMBERS, args, SPI_OK_SELECT);
		total += DatumGetInt64(column(0, 1, &isnull));
		SPI_freetuptable(SPI_tuptable);
	}

	/* one organisation at a time: memory is bounded by the largest */
	jobs_report_progress(0, total, "scoring");
	for (int i = 0; i < norgs; i++)
	{
		OrgBatch	batch;
		MemoryContext oldcxt;

		CHECK_FOR_INTERRUPTS();
		memset(&batch, 0, sizeof(batch));
		batch.org = orgs[i];
		enter_organisation(&orgs[i]);
		load_organisation(&batch, &cat, as_of, orgcxt);
		score_batch(&cat, &batch, orgcxt);
		oldcxt = MemoryContextSwitchTo(orgcxt);
		with_feed += write_batch(&batch, started);
		MemoryContextSwitchTo(oldcxt);
		done = Min(done + batch.nmembers, total);
		jobs_report_progress(done, total, "scoring");
		MemoryContextReset(orgcxt);
	}

	SPI_finish();
	tenant_set(&saved);
	MemoryContextDelete(passcxt);
	PG_RETURN_INT64(with_feed);
}

/*
 * membership.score_member(member uuid, as_of date DEFAULT current_date)
 *		RETURNS TABLE (rank integer, benefit_id integer, score real)
 *
 * One member's feed, computed now with the nightly pass's code: what
 * membership.refresh_feed() stores, and what membership_api.feed() shows a
 * member who has no stored feed yet.  Reads through row-level security, so
 * the tenant context must be the member's organisation; a member who is
 * not visible or not active gets no feed.
 */
Datum
membership_score_member(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	DateADT		as_of = scoring_date(fcinfo, 1);
	pg_uuid_t  *member;
	MemoryContext cxt;
	Catalogue	cat;
	OrgBatch	batch;
	Datum		args[3];

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("member must not be null")));
	member = PG_GETARG_UUID_P(0);
	InitMaterializedSRF(fcinfo, 0);

	cxt = AllocSetContextCreate(CurrentMemoryContext, "membership member scoring",
								ALLOCSET_DEFAULT_SIZES);
	memset(&batch, 0, sizeof(batch));
	args[0] = UUIDPGetDatum(member);
	args[1] = DateADTGetDatum(as_of);
	args[2] = (Datum) 0;

	SPI_connect();
	read_only = true;
	load_catalogue(&cat, as_of, cxt);
	execute(STMT_MEMBER, args, SPI_OK_SELECT);
	if (SPI_processed == 1)
	{
		bool		isnull;

		memcpy(&batch.org, DatumGetUUIDP(column(0, 5, &isnull)), sizeof(pg_uuid_t));
		args[2] = UUIDPGetDatum(&batch.org);
		take_members(&batch, &cat, cxt);
		SPI_freetuptable(SPI_tuptable);

		load_offers(&batch, &cat, cxt);
		execute(STMT_MEMBER_PREFS, args, SPI_OK_SELECT);
		take_member_rows(&batch, &cat, false, cxt);
		SPI_freetuptable(SPI_tuptable);
		execute(STMT_MEMBER_USAGE, args, SPI_OK_SELECT);
		take_member_rows(&batch, &cat, true, cxt);
		SPI_freetuptable(SPI_tuptable);

		score_batch(&cat, &batch, cxt);
	}
	SPI_finish();

	for (int k = 0; k < (batch.nmembers == 1 ? batch.feed_len[0] : 0); k++)
	{
		Datum		values[3];
		bool		nulls[3] = {false, false, false};

		values[0] = Int32GetDatum(k + 1);
		values[1] = Int32GetDatum(batch.feed_ids[k]);
		values[2] = Float4GetDatum((float4) batch.feed_scores[k]);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	MemoryContextDelete(cxt);
	return (Datum) 0;
}
