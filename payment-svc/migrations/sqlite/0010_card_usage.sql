-- Auth-free usage is counted per card at each merchant, not per binding:
-- the same card bound under several user ids, or unbound and bound again,
-- shares one daily limit. `bindings.usage_day` / `usage_amount` are no
-- longer written; a binding's usage is read from its card's row. Usage
-- counted before this migration carries over per card; fingerprints
-- re-keyed per merchant at the next start begin a fresh row.
CREATE TABLE card_usage (
    merchant_id       TEXT NOT NULL,
    card_fingerprint  TEXT NOT NULL,
    usage_day         BIGINT NOT NULL,
    usage_amount      BIGINT NOT NULL CHECK (usage_amount >= 0),
    PRIMARY KEY (merchant_id, card_fingerprint)
);
INSERT INTO card_usage (merchant_id, card_fingerprint, usage_day, usage_amount)
    SELECT b.merchant_id, b.card_fingerprint, b.usage_day, SUM(b.usage_amount)
    FROM bindings b
    WHERE b.usage_day = (SELECT MAX(o.usage_day) FROM bindings o
                         WHERE o.merchant_id = b.merchant_id
                           AND o.card_fingerprint = b.card_fingerprint)
    GROUP BY b.merchant_id, b.card_fingerprint, b.usage_day;
