-- The catalogue and its orders, in SQL both SQLite and PostgreSQL accept.
CREATE TABLE products (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL,
  description TEXT NOT NULL,
  price_cents INTEGER NOT NULL,
  stock INTEGER NOT NULL
);

CREATE TABLE orders (
  id INTEGER PRIMARY KEY,
  product_id INTEGER NOT NULL REFERENCES products (id),
  name TEXT NOT NULL,
  quantity INTEGER NOT NULL
);

INSERT INTO products (id, name, description, price_cents, stock) VALUES
  (1, 'Notebook', 'A5, dotted, 160 pages.', 1200, 40),
  (2, 'Fountain pen', 'Steel nib, medium.', 3400, 12),
  (3, 'Ink, blue-black', '50 ml bottle.', 900, 25);
