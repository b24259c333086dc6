-- A batch of reservations as a handful of set-wise statements instead of
-- `reserve_payment` once per request (eight statements each, every one
-- with its own executor start): the batch's idempotency keys are locked in
-- one statement, its cards' usage rows made where missing and locked in a
-- second, and every check and write of every request done in a third. Profiled under load
-- the per-request function was most of PostgreSQL's time on the `Pay`
-- path, and the reservation batch is the one step the path serialises on.
--
-- The lock order is the one every writer keeps (0010): the batch's
-- idempotency keys (advisory locks, in hash order), then the cards' usage
-- rows in (merchant_id, card_fingerprint) order. The checks run in a
-- statement that starts after those locks are held, so it sees every
-- payment and revocation committed before them, as the per-request
-- function's re-read did.
--
-- Set-wise checks hold only while no two requests of the batch share a
-- card (the second must see the first's usage) or an idempotency key (the
-- second must be answered with the first's payment). A batch where some
-- do is reserved request by request as before, in the same lock order.
CREATE OR REPLACE FUNCTION reserve_payments(
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
LANGUAGE plpgsql
-- Each statement below is planned once per connection and kept (a custom
-- plan per call was a third of the function's time), and kept to the index
-- paths: a plan made while the tables were small must not scan them whole
-- once they have grown (with no ANALYZE since, nothing would replan it).
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
SET enable_bitmapscan = off
SET enable_hashjoin = off
SET enable_mergejoin = off
SET jit = off
AS $$
DECLARE
    v_order          INT[];     -- the requests in (merchant, card) order
    v_card_merchants TEXT[];    -- the batch's cards, in that order
    v_card_prints    TEXT[];
    v_card_days      BIGINT[];
    v_set_wise       BOOLEAN;   -- no card and no key twice in the batch
    i                INT;
BEGIN
    -- The keys, in hash order: the subquery's sorted rows are locked one by
    -- one as the outer query reads them.
    PERFORM pg_advisory_xact_lock(4, k.h)
       FROM (SELECT DISTINCT hashtext(p_merchant_ids[g.n] || '/' || p_keys[g.n]) AS h
               FROM generate_subscripts(p_keys, 1) AS g(n)
              ORDER BY 1) AS k;

    -- Each request's card, looked up by primary key (a LATERAL probe whose
    -- LIMIT keeps the planner from hashing the whole bindings table, 0017).
    -- A merchant id holds no '/', so the joined strings are distinct
    -- exactly when the pairs are; were they ever not, the batch would only
    -- take the request-by-request path.
    SELECT array_agg(a.n ORDER BY b.merchant_id, b.card_fingerprint, a.n),
           array_agg(b.merchant_id ORDER BY b.merchant_id, b.card_fingerprint)
               FILTER (WHERE b.merchant_id IS NOT NULL),
           array_agg(b.card_fingerprint ORDER BY b.merchant_id, b.card_fingerprint)
               FILTER (WHERE b.merchant_id IS NOT NULL),
           array_agg(p_days[a.n] ORDER BY b.merchant_id, b.card_fingerprint)
               FILTER (WHERE b.merchant_id IS NOT NULL),
           count(DISTINCT b.merchant_id || '/' || b.card_fingerprint) = count(b.merchant_id)
               AND count(DISTINCT p_merchant_ids[a.n] || '/' || p_keys[a.n]) = count(*)
      INTO v_order, v_card_merchants, v_card_prints, v_card_days, v_set_wise
      FROM generate_subscripts(p_binding_ids, 1) AS a(n)
      LEFT JOIN LATERAL (
          SELECT b.merchant_id, b.card_fingerprint FROM bindings b
           WHERE b.id = p_binding_ids[a.n] AND b.merchant_id = p_merchant_ids[a.n]
           LIMIT 1
      ) b ON TRUE;

    IF NOT v_set_wise THEN
        FOREACH i IN ARRAY v_order LOOP
            RETURN QUERY SELECT i::BIGINT, r.* FROM reserve_payment(
                p_payment_ids[i], p_merchant_ids[i], p_binding_ids[i], p_user_ids[i],
                p_order_ids[i], p_amounts[i], p_currencies[i], p_descriptions[i], p_keys[i],
                p_request_hashes[i], p_days[i], p_nows[i], p_owner) r;
        END LOOP;
        RETURN;
    END IF;

    -- Every card's usage row made if missing and locked, in one pass in
    -- (merchant, card) order: a row this statement makes is locked by
    -- being made, and a row that exists is locked by the conflict's
    -- DO UPDATE, whose WHERE FALSE writes nothing (PostgreSQL locks the
    -- conflicting row either way). Made first and locked after, the cards
    -- would be taken new ones first, out of order, and could deadlock
    -- with a batch reserved request by request on the same cards.
    INSERT INTO card_usage (merchant_id, card_fingerprint, usage_day, usage_amount)
        SELECT c.m, c.f, c.d, 0
          FROM unnest(v_card_merchants, v_card_prints, v_card_days) WITH ORDINALITY AS c(m, f, d, o)
         ORDER BY c.o
        ON CONFLICT (merchant_id, card_fingerprint)
        DO UPDATE SET usage_day = card_usage.usage_day WHERE FALSE;

    -- Every check and write of every request, in a statement that starts
    -- with the locks held. The checks go in the per-request function's
    -- order: a key already used answers with its payment before anything
    -- else is looked at. A payment whose key is taken meanwhile by a
    -- writer outside this lock order is answered EXISTING, and nothing else
    -- of it is written (its usage and pending charge follow the insert).
    RETURN QUERY
    WITH r AS (
        SELECT a.n, b.id AS binding_id, b.merchant_user_id, b.status, b.currency,
               b.per_payment_limit, b.daily_limit, b.pan_ct, b.pan_key_id,
               b.exp_month, b.exp_year, b.card_fingerprint,
               CASE WHEN u.usage_day = p_days[a.n] THEN u.usage_amount ELSE 0 END AS used,
               k.used_by IS NOT NULL AS key_used
          FROM generate_subscripts(p_payment_ids, 1) AS a(n)
          LEFT JOIN LATERAL (
              SELECT p.id AS used_by FROM payments p
               WHERE p.merchant_id = p_merchant_ids[a.n] AND p.idempotency_key = p_keys[a.n]
               LIMIT 1
          ) k ON TRUE
          LEFT JOIN LATERAL (
              SELECT * FROM bindings b
               WHERE b.id = p_binding_ids[a.n] AND b.merchant_id = p_merchant_ids[a.n]
               LIMIT 1
          ) b ON TRUE
          LEFT JOIN LATERAL (
              SELECT * FROM card_usage u
               WHERE u.merchant_id = b.merchant_id AND u.card_fingerprint = b.card_fingerprint
               LIMIT 1
          ) u ON TRUE
    ),
    checked AS (
        SELECT r.*, CASE
                   WHEN r.key_used THEN 'EXISTING'
                   WHEN r.binding_id IS NULL OR r.merchant_user_id <> p_user_ids[r.n] THEN 'NOT_FOUND'
                   WHEN r.status <> 'ACTIVE' THEN 'REVOKED'
                   WHEN r.currency <> p_currencies[r.n] THEN 'CURRENCY_MISMATCH'
                   WHEN p_amounts[r.n] > r.per_payment_limit
                     OR r.used + p_amounts[r.n] > r.daily_limit THEN 'LIMIT_EXCEEDED'
                   ELSE 'RESERVED'
               END AS outcome
          FROM r
    ),
    inserted AS (
        INSERT INTO payments (id, merchant_id, merchant_user_id, binding_id, order_id, amount_minor,
                              currency, description, status, counted_day, refunded_minor,
                              shopper_authenticated, idempotency_key, request_hash, created_ms, updated_ms)
        SELECT p_payment_ids[c.n], p_merchant_ids[c.n], p_user_ids[c.n], p_binding_ids[c.n],
               p_order_ids[c.n], p_amounts[c.n], p_currencies[c.n], p_descriptions[c.n], 'PENDING',
               p_days[c.n], 0, FALSE, p_keys[c.n], p_request_hashes[c.n], p_nows[c.n], p_nows[c.n]
          FROM checked c WHERE c.outcome = 'RESERVED'
        ON CONFLICT (merchant_id, idempotency_key) DO NOTHING
        RETURNING id
    ),
    reserved AS (
        SELECT c.* FROM checked c JOIN inserted ins ON ins.id = p_payment_ids[c.n]
    ),
    charged AS (
        INSERT INTO pending_charges (payment_id, owner, created_ms)
        SELECT p_payment_ids[v.n], p_owner, p_nows[v.n] FROM reserved v
    ),
    counted AS (
        UPDATE card_usage cu SET usage_day = p_days[v.n], usage_amount = v.used + p_amounts[v.n]
          FROM reserved v
         WHERE cu.merchant_id = p_merchant_ids[v.n] AND cu.card_fingerprint = v.card_fingerprint
    )
    SELECT c.n::BIGINT,
           CASE WHEN c.outcome = 'RESERVED' AND v.n IS NULL THEN 'EXISTING' ELSE c.outcome END,
           CASE WHEN v.n IS NOT NULL OR c.outcome = 'LIMIT_EXCEEDED'
                THEN c.per_payment_limit ELSE 0 END::BIGINT,
           CASE WHEN v.n IS NOT NULL THEN c.daily_limit - c.used - p_amounts[c.n]
                WHEN c.outcome = 'LIMIT_EXCEEDED' THEN GREATEST(c.daily_limit - c.used, 0)
                ELSE 0 END::BIGINT,
           CASE WHEN v.n IS NOT NULL THEN c.pan_ct END,
           CASE WHEN v.n IS NOT NULL THEN c.pan_key_id END,
           CASE WHEN v.n IS NOT NULL THEN c.exp_month ELSE 0 END::BIGINT,
           CASE WHEN v.n IS NOT NULL THEN c.exp_year ELSE 0 END::BIGINT,
           CASE WHEN v.n IS NOT NULL THEN c.card_fingerprint END
      FROM checked c LEFT JOIN reserved v ON v.n = c.n;
END;
$$;
