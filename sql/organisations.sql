-- Organisations and their white-label app configuration.
SELECT membership.create_organisation('org-alpha', 'Alpha Association',
    '{"app_name": "Alpha+", "theme": {"primary": "#1a5f7a", "accent": "#FFCC00"},
      "logo_url": "https://alpha.example/logo.png", "apns_topic": "no.alpha.app",
      "fcm_project": "alpha-app", "support_email": "help@alpha.example"}') IS NOT NULL AS created;
SELECT slug, name, app_config->>'app_name' AS app_name, app_config->'theme'->>'accent' AS accent
FROM membership.organisations WHERE slug = 'org-alpha';

-- The name is trimmed; app_config defaults to an empty object.
SELECT membership.create_organisation('org-beta', '  Beta Society  ') IS NOT NULL AS created;
SELECT name, app_config FROM membership.organisations WHERE slug = 'org-beta';

-- Bad input: a clear error with a SQLSTATE, and nothing created.
SELECT fixture.try($$SELECT membership.create_organisation(NULL, 'x')$$);
SELECT fixture.try($$SELECT membership.create_organisation('org-x', NULL)$$);
SELECT fixture.try($$SELECT membership.create_organisation('Org X', 'x')$$);
SELECT fixture.try($$SELECT membership.create_organisation('-org', 'x')$$);
SELECT fixture.try($$SELECT membership.create_organisation('x', 'x')$$);
SELECT fixture.try($$SELECT membership.create_organisation('org-x', '   ')$$);
SELECT fixture.try($$SELECT membership.create_organisation('org-x', repeat('n', 201))$$);
SELECT fixture.try($$SELECT membership.create_organisation('org-alpha', 'Again')$$);
SELECT fixture.try($$SELECT membership.create_organisation('org-x', 'x', NULL)$$);
SELECT fixture.try($$SELECT membership.create_organisation('org-x', 'x', '[]')$$);
SELECT fixture.try($$SELECT membership.create_organisation('org-x', 'x', '{"colour": "red"}')$$);
SELECT fixture.try($$SELECT membership.create_organisation('org-x', 'x', '{"app_name": 7}')$$);
SELECT fixture.try($$SELECT membership.create_organisation('org-x', 'x', '{"app_name": ""}')$$);
SELECT fixture.try($$SELECT membership.create_organisation('org-x', 'x', '{"theme": "dark"}')$$);
SELECT fixture.try($$SELECT membership.create_organisation('org-x', 'x', '{"theme": {"primary": "blue"}}')$$);
SELECT fixture.try($$SELECT membership.create_organisation('org-x', 'x', '{"logo_url": "http://x.example/l.png"}')$$);
SELECT fixture.try($$SELECT membership.create_organisation('org-x', 'x', '{"support_email": "nobody"}')$$);
SELECT fixture.try($$SELECT membership.create_organisation('org-x', 'x', '{"app_name": "x"')$$);
SELECT count(*) AS org_x_rows FROM membership.organisations WHERE slug = 'org-x';

-- The table's CHECK holds even for writes that bypass the function.
SELECT fixture.try($$INSERT INTO membership.organisations (slug, name, app_config) VALUES ('org-y', 'y', '{"theme": 1}')$$);

-- set_app_config replaces the configuration, with the same checks.
SELECT membership.set_app_config(fixture.org('org-beta'), '{"app_name": "Beta"}');
SELECT app_config FROM membership.organisations WHERE slug = 'org-beta';
SELECT fixture.try($$SELECT membership.set_app_config(fixture.org('org-beta'), '{"theme": {"x": "#12345"}}')$$);
SELECT fixture.try($$SELECT membership.set_app_config('00000000-0000-0000-0000-000000000000', '{}')$$);
SELECT fixture.try($$SELECT membership.set_app_config(NULL, '{}')$$);
SELECT app_config FROM membership.organisations WHERE slug = 'org-beta';

-- Only platform administrators may create organisations.
SET ROLE membership_org_admin;
SELECT fixture.try($$SELECT membership.create_organisation('org-z', 'z')$$);
RESET ROLE;
SET ROLE membership_platform_admin;
SELECT membership.create_organisation('org-gamma', 'Gamma') IS NOT NULL AS created_by_platform_admin;
RESET ROLE;
