-- Charges in flight, and who is making them. A payment is written PENDING
-- before the card network is asked; until its outcome is recorded it has a
-- row here naming the payment-svc process (`owner`, a random key the
-- process holds a session-level advisory lock on while it lives) that is
-- charging it. The outcome deletes the row in the same statement. A process
-- that finds a row whose owner's lock is free knows the owner is gone and
-- resolves the charge with the card network at once (domain::recovery).
-- Rows for payments left PENDING before this migration have no owner: gone.
CREATE TABLE pending_charges (
    payment_id  TEXT PRIMARY KEY,
    owner       BIGINT,
    created_ms  BIGINT NOT NULL
);
INSERT INTO pending_charges (payment_id, owner, created_ms)
    SELECT id, NULL, created_ms FROM payments WHERE status = 'PENDING';

-- The hot path as in 0002, now also recording who charges the payment.
DROP FUNCTION reserve_payment(TEXT, TEXT, TEXT, TEXT, TEXT, BIGINT, TEXT, TEXT, TEXT, TEXT, BIGINT, BIGINT);
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
    o_exp_year          BIGINT
)
LANGUAGE plpgsql AS $$
DECLARE
    b    bindings%ROWTYPE;
    used BIGINT;
BEGIN
    SELECT * INTO b FROM bindings
     WHERE bindings.id = p_binding_id AND bindings.merchant_id = p_merchant_id
       FOR UPDATE;

    -- Checked after the lock: a duplicate that waited sees the first request.
    PERFORM 1 FROM payments
      WHERE payments.merchant_id = p_merchant_id AND payments.idempotency_key = p_key;
    IF FOUND THEN
        RETURN QUERY SELECT 'EXISTING'::TEXT, 0::BIGINT, 0::BIGINT, NULL::BYTEA, NULL::TEXT, 0::BIGINT, 0::BIGINT;
        RETURN;
    END IF;

    IF b.id IS NULL OR b.merchant_user_id <> p_user_id THEN
        RETURN QUERY SELECT 'NOT_FOUND'::TEXT, 0::BIGINT, 0::BIGINT, NULL::BYTEA, NULL::TEXT, 0::BIGINT, 0::BIGINT;
        RETURN;
    END IF;
    IF b.status <> 'ACTIVE' THEN
        RETURN QUERY SELECT 'REVOKED'::TEXT, 0::BIGINT, 0::BIGINT, NULL::BYTEA, NULL::TEXT, 0::BIGINT, 0::BIGINT;
        RETURN;
    END IF;
    IF b.currency <> p_currency THEN
        RETURN QUERY SELECT 'CURRENCY_MISMATCH'::TEXT, 0::BIGINT, 0::BIGINT, NULL::BYTEA, NULL::TEXT, 0::BIGINT, 0::BIGINT;
        RETURN;
    END IF;

    used := CASE WHEN b.usage_day = p_day THEN b.usage_amount ELSE 0 END;
    IF p_amount > b.per_payment_limit OR used + p_amount > b.daily_limit THEN
        RETURN QUERY SELECT 'LIMIT_EXCEEDED'::TEXT, b.per_payment_limit, b.daily_limit - used,
                            NULL::BYTEA, NULL::TEXT, 0::BIGINT, 0::BIGINT;
        RETURN;
    END IF;

    INSERT INTO payments (id, merchant_id, merchant_user_id, binding_id, order_id, amount_minor,
                          currency, description, status, counted_day, refunded_minor,
                          shopper_authenticated, idempotency_key, request_hash, created_ms, updated_ms)
    VALUES (p_payment_id, p_merchant_id, p_user_id, p_binding_id, p_order_id, p_amount,
            p_currency, p_description, 'PENDING', p_day, 0, FALSE, p_key, p_request_hash, p_now, p_now)
    ON CONFLICT (merchant_id, idempotency_key) DO NOTHING;
    IF NOT FOUND THEN
        -- The same key was claimed concurrently through another binding.
        RETURN QUERY SELECT 'EXISTING'::TEXT, 0::BIGINT, 0::BIGINT, NULL::BYTEA, NULL::TEXT, 0::BIGINT, 0::BIGINT;
        RETURN;
    END IF;

    INSERT INTO pending_charges (payment_id, owner, created_ms) VALUES (p_payment_id, p_owner, p_now);
    UPDATE bindings SET usage_day = p_day, usage_amount = used + p_amount WHERE bindings.id = b.id;
    RETURN QUERY SELECT 'RESERVED'::TEXT, b.per_payment_limit, b.daily_limit - used - p_amount,
                        b.pan_ct, b.pan_key_id, b.exp_month, b.exp_year;
END;
$$;
