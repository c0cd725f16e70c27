-- E-mail normalisation, validation and hashing, shared by sync and
-- verification.
SELECT e AS input, membership.normalize_email(e) AS normalised, membership.is_valid_email(e) AS valid
FROM (VALUES (' Ola.Nordmann@Example.COM '), (E'\tkari@legeforeningen.no\n'),
             ('a@b.no'), ('first.last+tag@sub.example.co.uk'), ('ÆØÅ@Example.no'),
             ('no-at-sign'), ('two@@example.com'), ('a@b@example.com'), ('a@b'),
             ('a@.example.com'), ('a@example.com.'), ('a@exa..mple.com'),
             ('a@-example.com'), ('sp ace@example.com'), ('"quoted"@example.com'),
             ('<a@example.com>'), ('@example.com'), ('a@'), (''), ('   ')) AS t(e);

-- Local parts of at most 64 characters, addresses of at most 254.
SELECT membership.is_valid_email(repeat('a', 64) || '@example.com') AS local_64,
       membership.is_valid_email(repeat('a', 65) || '@example.com') AS local_65,
       membership.is_valid_email('a@' || repeat('b', 247) || '.no') AS total_252,
       membership.is_valid_email('a@' || repeat('b', 250) || '.no') AS total_255;

-- The hash is SHA-256 of the normalised address, whatever the spelling.
SELECT membership.email_hash(' Ola@Example.COM') = sha256('ola@example.com'::bytea) AS same_hash,
       membership.email_hash('ola@example.com') = membership.email_hash('OLA@EXAMPLE.COM ') AS case_blind,
       length(membership.email_hash('x@y.no')) AS bytes;

-- NULL in, NULL out.
SELECT membership.normalize_email(NULL) IS NULL AS n1, membership.is_valid_email(NULL) IS NULL AS n2,
       membership.email_hash(NULL) IS NULL AS n3;
