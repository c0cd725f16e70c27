-- Articles: organisations write, publish and archive; members read the
-- published articles of their own organisation only.
SELECT fixture.new_org('art-a') IS NOT NULL, fixture.new_org('art-b') IS NOT NULL;
SELECT membership_api.sync_members('[{"external_id": "reader"}]', 'delta', fixture.key('art-a:org')) ->> 'inserted';
SELECT membership_api.sync_members('[{"external_id": "reader"}]', 'delta', fixture.key('art-b:org')) ->> 'inserted';
SELECT fixture.claims('member', 'art-a', 'reader') AS reader_a, fixture.claims('member', 'art-b', 'reader') AS reader_b,
       fixture.claims('org_admin', 'art-a') AS admin_a \gset

-- The organisation's own key and its administrators write drafts.
SELECT membership_api.save_article('Annual meeting', 'The annual meeting is on 3 March.', 'Save the date',
                                   api_key => fixture.key('art-a:org')) AS meeting \gset
SET SESSION AUTHORIZATION authenticator;
SET ROLE membership_org_admin;
SELECT set_config('request.jwt.claims', :'admin_a', false) IS NOT NULL;
SELECT membership_api.save_article(' New travel benefits ', 'Three new travel offers.') AS travel \gset
SELECT membership_api.save_article('Draft only', 'Not ready.') AS draft \gset
SELECT title, summary, status, published_at IS NULL AS unpublished FROM membership_api.org_articles() ORDER BY title;

-- Publishing, editing a published article, archiving, back to draft.
SELECT membership_api.set_article_status(:'meeting', 'published') - 'article' - 'published_at' AS meeting;
SELECT membership_api.set_article_status(:'travel', 'published') ->> 'status' AS travel;
SELECT membership_api.save_article('Annual meeting (new room)', 'The annual meeting is on 3 March in room B.',
                                   article => :'meeting') = :'meeting' AS same_article;
SELECT (membership_api.set_article_status(:'travel', 'archived') ->> 'published_at') IS NOT NULL AS keeps_published_at;
SELECT fixture.try(format('SELECT membership_api.save_article(%L, %L, article => %L)', 'x', 'y', :'travel'));
SELECT membership_api.set_article_status(:'travel', 'draft') ->> 'status' AS travel;
SELECT membership_api.set_article_status(:'travel', 'draft') ->> 'status' AS unchanged;
SELECT fixture.try(format('SELECT membership_api.set_article_status(%L, %L)', :'meeting', 'draft'));
SELECT fixture.try(format('SELECT membership_api.set_article_status(%L, %L)', :'meeting', 'deleted'));
SELECT fixture.try(format('SELECT membership_api.set_article_status(%L, NULL)', :'meeting'));
SELECT fixture.try(format('SELECT membership_api.set_article_status(%L, %L)', gen_random_uuid(), 'published'));
SELECT title, status FROM membership_api.org_articles('draft') ORDER BY title;
SELECT count(*) AS published FROM membership_api.org_articles('published');
SELECT fixture.try($$SELECT * FROM membership_api.org_articles('gone')$$);

-- Bad articles are refused.
SELECT fixture.try($$SELECT membership_api.save_article('', 'body')$$);
SELECT fixture.try($$SELECT membership_api.save_article(repeat('t', 201), 'body')$$);
SELECT fixture.try($$SELECT membership_api.save_article('title', NULL)$$);
SELECT fixture.try($$SELECT membership_api.save_article('title', repeat('b', 100001))$$);
SELECT fixture.try($$SELECT membership_api.save_article('title', 'body', repeat('s', 1001))$$);
SELECT fixture.try(format('SELECT membership_api.save_article(%L, %L, article => %L)', 'x', 'y', gen_random_uuid()));
RESET ROLE;

-- Members read their organisation's published articles, newest first.
SET ROLE membership_member;
SELECT set_config('request.jwt.claims', :'reader_a', false) IS NOT NULL;
SELECT title, summary, body FROM membership_api.articles();
SELECT count(*) AS older FROM membership_api.articles(published_before => now() - interval '1 day');
SELECT fixture.try('SELECT * FROM membership_api.articles(0)');
SELECT fixture.try('SELECT * FROM membership_api.articles(101)');
SELECT fixture.try('SELECT * FROM membership_api.org_articles()');
SELECT fixture.try(format('SELECT membership_api.set_article_status(%L, %L)', :'meeting', 'archived'));
SELECT set_config('request.jwt.claims', :'reader_b', false) IS NOT NULL;
SELECT count(*) AS seen_by_b FROM membership_api.articles();
RESET ROLE;
RESET SESSION AUTHORIZATION;
SELECT set_config('request.jwt.claims', '', false) IS NOT NULL;

-- Another organisation's key cannot touch A's articles; a provider key
-- cannot write any.
SELECT fixture.try(format('SELECT membership_api.set_article_status(%L, %L, %L)', :'meeting', 'archived',
                          fixture.key('art-b:org')));
SELECT fixture.try(format('SELECT membership_api.save_article(%L, %L, article => %L, api_key => %L)', 'x', 'y',
                          :'meeting', fixture.key('art-b:org')));
SELECT count(*) AS b_sees FROM membership_api.org_articles(api_key => fixture.key('art-b:org'));
SELECT fixture.try(format('SELECT membership_api.save_article(%L, %L, api_key => %L)', 'x', 'y',
                          fixture.key('art-a:provider')));
SELECT title, status FROM membership.articles WHERE id = :'meeting';
