-- Seed data shared by both backends: 5 categories and 5,000 products
-- (25 origins x 8 processes x 5 roasts x 5 bag sizes), and 2,000 guestbook
-- entries, generated with portable SQL (VALUES lists and a recursive CTE).
INSERT INTO categories (id, slug, name) VALUES
    (1, 'light', 'Light roast'),
    (2, 'medium', 'Medium roast'),
    (3, 'medium-dark', 'Medium-dark roast'),
    (4, 'dark', 'Dark roast'),
    (5, 'espresso', 'Espresso roast');

INSERT INTO products (id, category_id, name, origin, process, grams, price_cents, stock)
SELECT
    1 + o.column2 * 200 + p.column2 * 25 + c.column2 * 5 + s.column2,
    c.column2 + 1,
    o.column1 || ' ' || p.column1 || ', ' || c.column1 || ' roast (' || s.column1 || ' g)',
    o.column1,
    p.column1,
    s.column1,
    (900 + o.column2 * 37 + p.column2 * 55 + c.column2 * 20) * s.column1 / 250,
    (o.column2 * 7 + p.column2 * 13 + s.column2 * 3) % 40
FROM (VALUES ('Ethiopia Yirgacheffe', 0), ('Ethiopia Guji', 1), ('Kenya Nyeri', 2), ('Kenya Kirinyaga', 3), ('Rwanda Huye', 4), ('Burundi Kayanza', 5), ('Tanzania Mbeya', 6), ('Uganda Bugisu', 7), ('Colombia Huila', 8), ('Colombia Nariño', 9), ('Peru Cajamarca', 10), ('Bolivia Caranavi', 11), ('Brazil Cerrado', 12), ('Brazil Sul de Minas', 13), ('Guatemala Huehuetenango', 14), ('Guatemala Antigua', 15), ('Honduras Marcala', 16), ('El Salvador Santa Ana', 17), ('Costa Rica Tarrazú', 18), ('Panama Boquete', 19), ('Mexico Chiapas', 20), ('Sumatra Aceh', 21), ('Java Ijen', 22), ('Papua New Guinea Jiwaka', 23), ('Yemen Haraz', 24)) AS o
CROSS JOIN (VALUES ('Washed', 0), ('Natural', 1), ('Honey', 2), ('Anaerobic', 3), ('Wet-hulled', 4), ('Carbonic', 5), ('Black Honey', 6), ('Double Washed', 7)) AS p
CROSS JOIN (VALUES ('light', 0), ('medium', 1), ('medium-dark', 2), ('dark', 3), ('espresso', 4)) AS c
CROSS JOIN (VALUES (250, 0), (500, 1), (1000, 2), (2000, 3), (5000, 4)) AS s;

INSERT INTO guestbook (name, message)
WITH RECURSIVE n (i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000)
SELECT
    'Visitor ' || i,
    'Cup number ' || i || ': ' || CASE i % 4
        WHEN 0 THEN 'the washed Kenya tasted of blackcurrant and tomato leaf.'
        WHEN 1 THEN 'loved the honey process, sweet as caramel.'
        WHEN 2 THEN 'the espresso roast pulls beautifully at 1:2 in 28 seconds.'
        ELSE 'shipping to Mars took a while, worth it.'
    END
FROM n;
