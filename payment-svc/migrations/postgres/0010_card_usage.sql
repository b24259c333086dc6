-- Auth-free usage is counted per card at each merchant, not per binding:
-- the same card bound under several user ids, or unbound and bound again,
-- shares one daily limit. `bindings.usage_day` / `usage_amount` are no
-- longer written; a binding's usage is read from its card's row.
--
-- The hot path's lock is now the card's usage row (a binding row is no
-- longer locked by Pay at all): every writer that locks several of them
-- takes them in (merchant_id, card_fingerprint) order, after the batch's
-- idempotency keys in hash order, so there is no deadlock. Usage counted before this migration carries over per card;
-- fingerprints re-keyed per merchant at the next start begin a fresh row.
CREATE TABLE card_usage (
    merchant_id       TEXT NOT NULL,
    card_fingerprint  TEXT NOT NULL,
    usage_day         BIGINT NOT NULL,
    usage_amount      BIGINT NOT NULL CHECK (usage_amount >= 0),
    PRIMARY KEY (merchant_id, card_fingerprint)
) WITH (fillfactor = 30);  -- room for the per-payment update to stay HOT
INSERT INTO card_usage (merchant_id, card_fingerprint, usage_day, usage_amount)
    SELECT merchant_id, card_fingerprint, usage_day, SUM(usage_amount)
    FROM (SELECT merchant_id, card_fingerprint, usage_day, usage_amount,
                 MAX(usage_day) OVER (PARTITION BY merchant_id, card_fingerprint) AS last_day
          FROM bindings) b
    WHERE usage_day = last_day
    GROUP BY merchant_id, card_fingerprint, usage_day;

-- One payment: every check and both writes, serialised on the card's usage
-- row (the first request on a card makes it). The binding is read again
-- after that lock, so a revocation committed meanwhile is seen. It also
-- answers the card's fingerprint: the sealed number is bound to (merchant,
-- user, card) and opens only as that binding's.
DROP FUNCTION reserve_payment(TEXT, TEXT, TEXT, TEXT, TEXT, BIGINT, TEXT, TEXT, TEXT, TEXT, BIGINT, BIGINT, BIGINT);
CREATE FUNCTION reserve_payment(
    p_payment_id    TEXT,
    p_merchant_id   TEXT,
    p_binding_id    TEXT,
    p_user_id       TEXT,
    p_order_id      TEXT,
    p_amount        BIGINT,
    p_currency      TEXT,
    p_description   TEXT,
    p_key           TEXT,
    p_request_hash  TEXT,
    p_day           BIGINT,
    p_now           BIGINT,
    p_owner         BIGINT
) RETURNS TABLE (
    o_outcome           TEXT,
    o_per_payment_limit BIGINT,
    o_remaining_today   BIGINT,
    o_pan_ct            BYTEA,
    o_pan_key_id        TEXT,
    o_exp_month         BIGINT,
    o_exp_year          BIGINT,
    o_card_fingerprint  TEXT
)
LANGUAGE plpgsql AS $$
DECLARE
    b    bindings%ROWTYPE;
    u    card_usage%ROWTYPE;
    used BIGINT;
BEGIN
    SELECT * INTO b FROM bindings
     WHERE bindings.id = p_binding_id AND bindings.merchant_id = p_merchant_id;
    IF b.id IS NOT NULL THEN
        INSERT INTO card_usage (merchant_id, card_fingerprint, usage_day, usage_amount)
            VALUES (b.merchant_id, b.card_fingerprint, p_day, 0)
            ON CONFLICT (merchant_id, card_fingerprint) DO NOTHING;
        SELECT * INTO u FROM card_usage
         WHERE card_usage.merchant_id = b.merchant_id
           AND card_usage.card_fingerprint = b.card_fingerprint
           FOR UPDATE;
        SELECT * INTO b FROM bindings WHERE bindings.id = p_binding_id;
    END IF;

    -- Checked after the lock: a duplicate that waited sees the first request.
    PERFORM 1 FROM payments
      WHERE payments.merchant_id = p_merchant_id AND payments.idempotency_key = p_key;
    IF FOUND THEN
        RETURN QUERY SELECT 'EXISTING'::TEXT, 0::BIGINT, 0::BIGINT, NULL::BYTEA, NULL::TEXT, 0::BIGINT, 0::BIGINT, NULL::TEXT;
        RETURN;
    END IF;

    IF b.id IS NULL OR b.merchant_user_id <> p_user_id THEN
        RETURN QUERY SELECT 'NOT_FOUND'::TEXT, 0::BIGINT, 0::BIGINT, NULL::BYTEA, NULL::TEXT, 0::BIGINT, 0::BIGINT, NULL::TEXT;
        RETURN;
    END IF;
    IF b.status <> 'ACTIVE' THEN
        RETURN QUERY SELECT 'REVOKED'::TEXT, 0::BIGINT, 0::BIGINT, NULL::BYTEA, NULL::TEXT, 0::BIGINT, 0::BIGINT, NULL::TEXT;
        RETURN;
    END IF;
    IF b.currency <> p_currency THEN
        RETURN QUERY SELECT 'CURRENCY_MISMATCH'::TEXT, 0::BIGINT, 0::BIGINT, NULL::BYTEA, NULL::TEXT, 0::BIGINT, 0::BIGINT, NULL::TEXT;
        RETURN;
    END IF;

    used := CASE WHEN u.usage_day = p_day THEN u.usage_amount ELSE 0 END;
    IF p_amount > b.per_payment_limit OR used + p_amount > b.daily_limit THEN
        RETURN QUERY SELECT 'LIMIT_EXCEEDED'::TEXT, b.per_payment_limit, GREATEST(b.daily_limit - used, 0),
                            NULL::BYTEA, NULL::TEXT, 0::BIGINT, 0::BIGINT, NULL::TEXT;
        RETURN;
    END IF;

    INSERT INTO payments (id, merchant_id, merchant_user_id, binding_id, order_id, amount_minor,
                          currency, description, status, counted_day, refunded_minor,
                          shopper_authenticated, idempotency_key, request_hash, created_ms, updated_ms)
    VALUES (p_payment_id, p_merchant_id, p_user_id, p_binding_id, p_order_id, p_amount,
            p_currency, p_description, 'PENDING', p_day, 0, FALSE, p_key, p_request_hash, p_now, p_now)
    ON CONFLICT (merchant_id, idempotency_key) DO NOTHING;
    IF NOT FOUND THEN
        -- The same key was claimed concurrently through another card.
        RETURN QUERY SELECT 'EXISTING'::TEXT, 0::BIGINT, 0::BIGINT, NULL::BYTEA, NULL::TEXT, 0::BIGINT, 0::BIGINT, NULL::TEXT;
        RETURN;
    END IF;

    INSERT INTO pending_charges (payment_id, owner, created_ms) VALUES (p_payment_id, p_owner, p_now);
    UPDATE card_usage SET usage_day = p_day, usage_amount = used + p_amount
     WHERE card_usage.merchant_id = b.merchant_id AND card_usage.card_fingerprint = b.card_fingerprint;
    RETURN QUERY SELECT 'RESERVED'::TEXT, b.per_payment_limit, b.daily_limit - used - p_amount,
                        b.pan_ct, b.pan_key_id, b.exp_month, b.exp_year, b.card_fingerprint;
END;
$$;

-- A batch of reservations in one statement. Locks are taken in one global
-- order, so concurrent batches cannot deadlock: first the batch's
-- idempotency keys (advisory locks, sorted: one key sent at once through
-- two cards waits here, not on the other's uncommitted payment), then the
-- cards' usage rows, the requests taken in (merchant, card) order whatever
-- order they came in. Each row says which request (`ord`, from 1) it
-- answers.
CREATE FUNCTION reserve_payments(
    p_payment_ids     TEXT[],
    p_merchant_ids    TEXT[],
    p_binding_ids     TEXT[],
    p_user_ids        TEXT[],
    p_order_ids       TEXT[],
    p_amounts         BIGINT[],
    p_currencies      TEXT[],
    p_descriptions    TEXT[],
    p_keys            TEXT[],
    p_request_hashes  TEXT[],
    p_days            BIGINT[],
    p_nows            BIGINT[],
    p_owner           BIGINT
) RETURNS TABLE (
    ord                 BIGINT,
    o_outcome           TEXT,
    o_per_payment_limit BIGINT,
    o_remaining_today   BIGINT,
    o_pan_ct            BYTEA,
    o_pan_key_id        TEXT,
    o_exp_month         BIGINT,
    o_exp_year          BIGINT,
    o_card_fingerprint  TEXT
)
LANGUAGE plpgsql AS $$
DECLARE
    i INT;
    k INT;
BEGIN
    FOR k IN
        SELECT DISTINCT hashtext(p_merchant_ids[g.n] || '/' || p_keys[g.n])
          FROM generate_subscripts(p_keys, 1) AS g(n)
         ORDER BY 1
    LOOP
        PERFORM pg_advisory_xact_lock(4, k);
    END LOOP;
    FOR i IN
        SELECT a.n FROM generate_subscripts(p_binding_ids, 1) AS a(n)
          LEFT JOIN bindings b
            ON b.id = p_binding_ids[a.n] AND b.merchant_id = p_merchant_ids[a.n]
         ORDER BY b.merchant_id, b.card_fingerprint, a.n
    LOOP
        RETURN QUERY SELECT i::BIGINT, r.* FROM reserve_payment(
            p_payment_ids[i], p_merchant_ids[i], p_binding_ids[i], p_user_ids[i],
            p_order_ids[i], p_amounts[i], p_currencies[i], p_descriptions[i], p_keys[i],
            p_request_hashes[i], p_days[i], p_nows[i], p_owner) r;
    END LOOP;
END;
$$;
