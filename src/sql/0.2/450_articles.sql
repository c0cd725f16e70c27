-- Articles: organisations publish news and editorial for their members.
--
--   draft -> published -> archived -> draft ...
--
-- A draft may also be archived directly.  Members see the published
-- articles of their own organisation only.  published_at is set by the
-- first publication and kept, so republishing an archived article does
-- not move it to the top.

CREATE TABLE membership.articles (
    id              uuid PRIMARY KEY DEFAULT pg_catalog.gen_random_uuid(),
    organisation_id uuid NOT NULL REFERENCES membership.organisations (id),
    title           text NOT NULL CHECK (pg_catalog.btrim(title) <> '' AND pg_catalog.length(title) <= 200),
    summary         text CHECK (pg_catalog.length(summary) <= 1000),
    body            text NOT NULL CHECK (pg_catalog.length(body) <= 100000),
    status          text NOT NULL DEFAULT 'draft' CHECK (status IN ('draft', 'published', 'archived')),
    created_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    updated_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    published_at    timestamptz,
    CHECK (status <> 'published' OR published_at IS NOT NULL)
);
CREATE INDEX articles_organisation_idx ON membership.articles (organisation_id, updated_at);
CREATE INDEX articles_published_idx ON membership.articles (organisation_id, published_at DESC, id)
    WHERE status = 'published';
COMMENT ON TABLE membership.articles IS
    'tenant: articles an organisation writes for its members (draft, published, archived)';
SELECT membership.isolate_table('membership.articles');

-- Raise an error unless an article's texts fit.
CREATE FUNCTION membership.check_article(title text, body text, summary text) RETURNS void
    LANGUAGE plpgsql IMMUTABLE
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
BEGIN
    IF title IS NULL OR body IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'null_value_not_allowed',
            MESSAGE = 'article title and body must not be null';
    END IF;
    IF btrim(title) = '' OR length(title) > 200 THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'article title must be 1 to 200 characters';
    END IF;
    IF length(body) > 100000 THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('article body must be at most 100000 characters, not %s', length(body));
    END IF;
    IF length(summary) > 1000 THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'article summary must be at most 1000 characters';
    END IF;
END
$$;

-- Write a new draft (article NULL) or change an article that is not
-- archived.  Returns the article's id.
CREATE FUNCTION membership_api.save_article(title text, body text, summary text DEFAULT NULL,
                                            article uuid DEFAULT NULL, api_key text DEFAULT NULL)
    RETURNS uuid
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
DECLARE
    v_caller membership.caller := membership.authenticate(api_key, 'org_admin', 'organisation');
    v_status text;
    v_id uuid;
BEGIN
    PERFORM membership.check_article(title, body, summary);
    IF article IS NULL THEN
        INSERT INTO membership.articles (organisation_id, title, body, summary)
        VALUES (v_caller.organisation_id, btrim(save_article.title), save_article.body,
                nullif(btrim(save_article.summary), ''))
        RETURNING id INTO v_id;
        RETURN v_id;
    END IF;

    SELECT a.status INTO v_status FROM membership.articles a
    WHERE a.id = article AND a.organisation_id = v_caller.organisation_id
    FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'PT404', MESSAGE = format('article %s does not exist', article);
    END IF;
    IF v_status = 'archived' THEN
        RAISE EXCEPTION USING ERRCODE = 'PT409',
            MESSAGE = format('article %s is archived', article),
            HINT = 'Move it back to draft with membership_api.set_article_status() to change it.';
    END IF;
    UPDATE membership.articles a
    SET title = btrim(save_article.title), body = save_article.body,
        summary = nullif(btrim(save_article.summary), ''), updated_at = now()
    WHERE a.id = article;
    RETURN article;
END
$$;
GRANT EXECUTE ON FUNCTION membership_api.save_article(text, text, text, uuid, text)
    TO membership_org_admin, membership_provider;
COMMENT ON FUNCTION membership_api.save_article(text, text, text, uuid, text) IS
    'organisations: write a draft article, or change one that is not archived; returns its id';

-- Publish, archive, or move back to draft.
CREATE FUNCTION membership_api.set_article_status(article uuid, status text, api_key text DEFAULT NULL)
    RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
DECLARE
    v_caller membership.caller := membership.authenticate(api_key, 'org_admin', 'organisation');
    v_article membership.articles;
BEGIN
    IF article IS NULL OR status IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'null_value_not_allowed',
            MESSAGE = 'article and status must not be null';
    END IF;
    IF status NOT IN ('draft', 'published', 'archived') THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('unknown article status "%s"', status),
            HINT = 'Use draft, published or archived.';
    END IF;
    SELECT * INTO v_article FROM membership.articles a
    WHERE a.id = article AND a.organisation_id = v_caller.organisation_id
    FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'PT404', MESSAGE = format('article %s does not exist', article);
    END IF;
    IF v_article.status <> set_article_status.status THEN
        IF (v_article.status, set_article_status.status) NOT IN
               (('draft', 'published'), ('draft', 'archived'), ('published', 'archived'), ('archived', 'draft')) THEN
            RAISE EXCEPTION USING ERRCODE = 'PT409',
                MESSAGE = format('an article cannot go from %s to %s', v_article.status, set_article_status.status),
                HINT = 'Articles go from draft to published to archived, and from archived back to draft.';
        END IF;
        UPDATE membership.articles a
        SET status = set_article_status.status, updated_at = now(),
            published_at = CASE WHEN set_article_status.status = 'published'
                                THEN coalesce(a.published_at, now()) ELSE a.published_at END
        WHERE a.id = article
        RETURNING * INTO v_article;
    END IF;
    RETURN jsonb_build_object('article', v_article.id, 'status', v_article.status,
                              'published_at', v_article.published_at);
END
$$;
GRANT EXECUTE ON FUNCTION membership_api.set_article_status(uuid, text, text)
    TO membership_org_admin, membership_provider;
COMMENT ON FUNCTION membership_api.set_article_status(uuid, text, text) IS
    'organisations: publish, archive, or move an article back to draft';

-- The published articles of the caller's organisation, newest first;
-- "published_before" pages through older ones.
CREATE FUNCTION membership_api.articles(max_results integer DEFAULT 20, published_before timestamptz DEFAULT NULL)
    RETURNS TABLE (id uuid, title text, summary text, body text, published_at timestamptz)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
DECLARE
    v_caller membership.caller := membership.authenticate(NULL, 'member', 'org_admin');
BEGIN
    IF max_results IS NULL OR max_results NOT BETWEEN 1 AND 100 THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('max_results must be between 1 and 100, not %s', coalesce(max_results::text, 'null'));
    END IF;
    RETURN QUERY
        SELECT a.id, a.title, a.summary, a.body, a.published_at
        FROM membership.articles a
        WHERE a.organisation_id = v_caller.organisation_id AND a.status = 'published'
          AND (published_before IS NULL OR a.published_at < published_before)
        ORDER BY a.published_at DESC, a.id
        LIMIT max_results;
END
$$;
GRANT EXECUTE ON FUNCTION membership_api.articles(integer, timestamptz) TO membership_member, membership_org_admin;
COMMENT ON FUNCTION membership_api.articles(integer, timestamptz) IS
    'members: the published articles of your organisation, newest first';

-- Every article of the caller's organisation, optionally of one status,
-- most recently changed first: the organisation's editorial desk.
CREATE FUNCTION membership_api.org_articles(of_status text DEFAULT NULL, api_key text DEFAULT NULL)
    RETURNS TABLE (id uuid, title text, summary text, status text, created_at timestamptz,
                   updated_at timestamptz, published_at timestamptz)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
DECLARE
    v_caller membership.caller := membership.authenticate(api_key, 'org_admin', 'organisation');
BEGIN
    IF of_status IS NOT NULL AND of_status NOT IN ('draft', 'published', 'archived') THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('unknown article status "%s"', of_status),
            HINT = 'Use draft, published or archived.';
    END IF;
    RETURN QUERY
        SELECT a.id, a.title, a.summary, a.status, a.created_at, a.updated_at, a.published_at
        FROM membership.articles a
        WHERE a.organisation_id = v_caller.organisation_id AND (of_status IS NULL OR a.status = of_status)
        ORDER BY a.updated_at DESC, a.id;
END
$$;
GRANT EXECUTE ON FUNCTION membership_api.org_articles(text, text) TO membership_org_admin, membership_provider;
COMMENT ON FUNCTION membership_api.org_articles(text, text) IS
    'organisations: all your articles, optionally of one status, most recently changed first';
