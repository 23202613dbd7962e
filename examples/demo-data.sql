-- Sample data for `make demo`: a small shop, with the awkward values backups must carry intact
-- (unicode, NULLs, bytea, JSONB, numerics).
CREATE TABLE customers (
  id serial PRIMARY KEY,
  name text NOT NULL,
  email text,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE orders (
  id bigserial PRIMARY KEY,
  customer_id int REFERENCES customers(id),
  amount numeric(10,2),
  note text,
  attachment bytea,
  details jsonb
);
INSERT INTO customers (name, email) VALUES
  ('Zoë Ångström', 'zoe@example.org'),
  ('Łukasz Żółć', NULL),
  ('渡辺 さくら', 'sakura@example.jp'),
  ('O''Brien "the quote"', 'obrien@example.com');
INSERT INTO customers (name, email)
SELECT 'customer ' || g, 'c' || g || '@example.com' FROM generate_series(1, 2000) g;
INSERT INTO orders (customer_id, amount, note, attachment, details)
SELECT 1 + (g % 2004), round((g * 7.31)::numeric % 1000, 2),
       CASE WHEN g % 5 = 0 THEN NULL ELSE 'order ' || g || ' ✓' END,
       CASE WHEN g % 3 = 0 THEN decode(md5(g::text), 'hex') ELSE NULL END,
       jsonb_build_object('n', g, 'tags', jsonb_build_array('a', 'ü', g % 7))
FROM generate_series(1, 50000) g;
