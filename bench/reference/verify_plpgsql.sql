-- Reference for the verification benchmark: the same lookup written the
-- plain way, in PL/pgSQL: find the key by its hash, then the member by
-- the hash of the normalised address (or a dependent of an active member),
-- and build the answer with jsonb_build_object.  No caches, no limits, no
-- metering, and it runs as a superuser, so row-level security costs it
-- nothing.
CREATE SCHEMA IF NOT EXISTS bench;
CREATE OR REPLACE FUNCTION bench.verify_member_plpgsql(email text DEFAULT NULL, user_id text DEFAULT NULL,
                                                       api_key text DEFAULT NULL)
    RETURNS jsonb
    LANGUAGE plpgsql AS $$
DECLARE
    v_key membership.api_keys;
    v_member membership.members;
    v_dependent membership.dependents;
BEGIN
    SELECT * INTO v_key FROM membership.api_keys k WHERE k.key_hash = sha256(convert_to(api_key, 'UTF8'));
    IF NOT FOUND OR v_key.revoked_at IS NOT NULL OR v_key.provider_id IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'PT401', MESSAGE = 'invalid API key';
    END IF;
    IF email IS NOT NULL THEN
        SELECT * INTO v_member FROM membership.members m
        WHERE m.organisation_id = v_key.organisation_id
          AND m.email_hash = sha256(convert_to(lower(btrim(verify_member_plpgsql.email)), 'UTF8')) AND m.removed_at IS NULL;
        IF NOT FOUND THEN
            SELECT d.* INTO v_dependent FROM membership.dependents d
            JOIN membership.members m ON m.id = d.member_id
            WHERE d.organisation_id = v_key.organisation_id
              AND d.email_hash = sha256(convert_to(lower(btrim(verify_member_plpgsql.email)), 'UTF8')) AND d.removed_at IS NULL
              AND m.status = 'active' AND m.removed_at IS NULL
            LIMIT 1;
            IF FOUND THEN
                RETURN jsonb_build_object('verified', true, 'member_since', v_dependent.created_at::date,
                                          'tier', 'dependent');
            END IF;
            RETURN '{"verified": false}';
        END IF;
    ELSE
        SELECT * INTO v_member FROM membership.members m
        WHERE m.organisation_id = v_key.organisation_id AND m.external_id = verify_member_plpgsql.user_id;
    END IF;
    IF v_member.id IS NULL OR v_member.status <> 'active' OR v_member.removed_at IS NOT NULL THEN
        RETURN '{"verified": false}';
    END IF;
    RETURN jsonb_build_object('verified', true, 'member_since', v_member.member_since,
                              'tier', v_member.membership_tier);
END
$$;
