-- Reference for the member-sync benchmark: the straightforward way, one
-- INSERT ... ON CONFLICT per element in a PL/pgSQL loop, then one UPDATE
-- for the absent members of a full sync.  It does less than
-- membership_api.sync_members (no payload validation beyond the e-mail, no
-- dependents, no counts of what changed) and runs as a superuser, so row
-- level security costs it nothing: a conservative reference.
CREATE SCHEMA IF NOT EXISTS bench;
CREATE OR REPLACE FUNCTION bench.sync_row_by_row(p_org uuid, p_members jsonb) RETURNS bigint
    LANGUAGE plpgsql AS $$
DECLARE
    e jsonb;
    n bigint := 0;
BEGIN
    FOR e IN SELECT * FROM jsonb_array_elements(p_members) LOOP
        IF e->>'email' IS NOT NULL AND NOT membership.is_valid_email(e->>'email') THEN
            RAISE EXCEPTION 'invalid email address "%"', e->>'email';
        END IF;
        INSERT INTO membership.members AS m
            (organisation_id, external_id, email, status, membership_tier, member_since, profession)
        VALUES (p_org, e->>'external_id', membership.normalize_email(e->>'email'),
                coalesce(e->>'status', 'active'), coalesce(e->>'membership_tier', 'full'),
                coalesce((e->>'member_since')::date, current_date), e->>'profession')
        ON CONFLICT (organisation_id, external_id) DO UPDATE
        SET email = EXCLUDED.email, status = EXCLUDED.status, membership_tier = EXCLUDED.membership_tier,
            member_since = EXCLUDED.member_since, profession = EXCLUDED.profession,
            removed_at = NULL, updated_at = now();
        n := n + 1;
    END LOOP;
    UPDATE membership.members m SET removed_at = now()
    WHERE m.organisation_id = p_org AND m.removed_at IS NULL
      AND m.external_id NOT IN (SELECT x->>'external_id' FROM jsonb_array_elements(p_members) x);
    RETURN n;
END
$$;
