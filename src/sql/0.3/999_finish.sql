-- Ownership and privileges of everything this release added.
SELECT membership.finish_release();
