-- ARI (RFC 9773): find the orders that name a certificate in replaces.
CREATE INDEX orders_replaces ON orders (replaces) WHERE replaces <> '';
