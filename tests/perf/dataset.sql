-- Copied unchanged (every line below this one) from the design notes' shared/bench/dataset.sql, which is not in this repository.
-- Reference data set for easybackup benchmarks and large round-trip tests.
-- Mixed, realistic rows: timestamps, ints, short enums, numerics, hex text, JSONB.
-- Size: about 250 bytes a row on disk; rows=4000000 gives a ~1 GB database whose
-- custom-format dump (-Fc -Z0) is ~1 GB and compresses ~4x with gzip -6.
--
--   createdb bench
--   psql -d bench -v rows=4000000 -f dataset.sql
--
DROP TABLE IF EXISTS bench_events;
DROP TABLE IF EXISTS bench_users;

CREATE TABLE bench_users (
  id int PRIMARY KEY,
  email text NOT NULL UNIQUE,
  created_at timestamptz NOT NULL,
  profile jsonb
);

INSERT INTO bench_users (id, email, created_at, profile)
SELECT g,
       'user' || g || '@example.' || (ARRAY['com','org','net'])[1 + (g % 3)],
       now() - (g || ' minutes')::interval,
       jsonb_build_object('plan', (ARRAY['free','pro','team'])[1 + (g % 3)], 'score', g % 97)
FROM generate_series(0, 100000) g;

CREATE TABLE bench_events (
  id bigserial PRIMARY KEY,
  created_at timestamptz NOT NULL,
  user_id int NOT NULL REFERENCES bench_users(id),
  kind text NOT NULL,
  amount numeric(12,2),
  note text,
  payload jsonb
);

INSERT INTO bench_events (created_at, user_id, kind, amount, note, payload)
SELECT now() - (g || ' seconds')::interval,
       (random()*100000)::int,
       (ARRAY['login','logout','purchase','refund','view','click'])[1 + (g % 6)],
       round((random()*1000)::numeric, 2),
       md5(g::text) || ' ' || substr(md5(random()::text), 1, (random()*32)::int),
       jsonb_build_object('ip', '10.' || (g % 255) || '.' || ((g/255) % 255) || '.1',
                          'ua', (ARRAY['Mozilla/5.0 (X11; Linux x86_64)','curl/8.1','okhttp/4.9'])[1 + (g % 3)],
                          'session', md5((g/7)::text), 'n', g)
FROM generate_series(1, :rows) g;

CREATE INDEX bench_events_user_idx ON bench_events (user_id, created_at);
ANALYZE;
