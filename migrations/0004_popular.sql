-- "Selling fast" on the catalogue: the products with the least stock left
-- (sold-out ones aside), refreshed every minute by the scheduled job
-- `popular` (build.toml) and computed once here so the list is there from
-- the first start.
CREATE TABLE popular_products (
    rank INTEGER PRIMARY KEY,
    product_id INTEGER NOT NULL REFERENCES products (id),
    refreshed_at TEXT NOT NULL
);

INSERT INTO popular_products (rank, product_id, refreshed_at)
SELECT ROW_NUMBER() OVER (ORDER BY stock, id), id, CAST(CURRENT_TIMESTAMP AS TEXT)
FROM products
WHERE stock > 0
ORDER BY stock, id
LIMIT 4;
