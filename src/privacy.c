/*-------------------------------------------------------------------------
 *
 * privacy.c
 *	  Settings of the privacy subsystem: how long an offboarded
 *	  organisation's data and the members' notification history are kept.
 *
 * Offboarding, purging, erasure and export are SQL (src/sql/0.3/5xx);
 * they read these settings with current_setting(), so the values are
 * defined here, with their units and bounds, even when the library is
 * not preloaded.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/guc.h"

#include "membership.h"

#define MINUTES_PER_DAY (24 * 60)

static int	offboard_retention = 30 * MINUTES_PER_DAY;
static int	notification_retention = 90 * MINUTES_PER_DAY;

void
PrivacyInit(void)
{
	DefineCustomIntVariable("membership.offboard_retention",
							"How long an offboarded organisation's data is kept before it is purged.",
							"membership.purge_offboarded() deletes every row of an organisation offboarded longer ago than this.",
							&offboard_retention,
							30 * MINUTES_PER_DAY, 60, 3650 * MINUTES_PER_DAY,
							PGC_SUSET,
							GUC_UNIT_MIN,
							NULL, NULL, NULL);
	DefineCustomIntVariable("membership.notification_retention",
							"How long sent, dropped and failed notifications are kept.",
							"membership.expire_notifications() deletes older ones, with their per-device delivery records.",
							&notification_retention,
							90 * MINUTES_PER_DAY, 60, 3650 * MINUTES_PER_DAY,
							PGC_SUSET,
							GUC_UNIT_MIN,
							NULL, NULL, NULL);
}
