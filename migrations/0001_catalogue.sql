-- The catalogue, in SQL both SQLite and PostgreSQL accept.
CREATE TABLE categories (
    id INTEGER PRIMARY KEY,
    slug TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL
);

CREATE TABLE products (
    id INTEGER PRIMARY KEY,
    category_id INTEGER NOT NULL REFERENCES categories (id),
    name TEXT NOT NULL,
    origin TEXT NOT NULL,
    process TEXT NOT NULL,
    grams INTEGER NOT NULL,
    price_cents INTEGER NOT NULL,
    stock INTEGER NOT NULL
);
CREATE INDEX products_by_name ON products (name, id);
CREATE INDEX products_by_category ON products (category_id, name, id);
CREATE INDEX products_by_origin ON products (origin, process, category_id);
