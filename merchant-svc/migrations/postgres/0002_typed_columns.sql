-- Every status and code column holds only the values the shop knows (the
-- spellings of `store/rows.rs`): an unknown value can no longer be written,
-- and one read back is an error that names its column. Existing rows are
-- kept: a card brand the shop could not name was stored as '' and becomes
-- OTHER, as it would be named now.
UPDATE users SET card_brand = 'OTHER'
 WHERE card_brand IS NOT NULL
   AND card_brand NOT IN ('VISA', 'MASTERCARD', 'UNIONPAY', 'AMEX', 'JCB', 'DISCOVER', 'OTHER');

ALTER TABLE users
    ADD CONSTRAINT users_card_brand_known
        CHECK (card_brand IS NULL OR card_brand IN
               ('VISA', 'MASTERCARD', 'UNIONPAY', 'AMEX', 'JCB', 'DISCOVER', 'OTHER')),
    -- A card on file is the whole card: binding, token and summary.
    ADD CONSTRAINT users_card_complete
        CHECK ((binding_id IS NULL) = (binding_token IS NULL)
               AND (binding_id IS NULL OR (card_brand IS NOT NULL AND exp_month IS NOT NULL
                                           AND exp_year IS NOT NULL)));

ALTER TABLE orders
    ADD CONSTRAINT orders_status_known
        CHECK (status IN ('PENDING_PAYMENT', 'AWAITING_SHOPPER', 'PAID', 'DECLINED', 'CANCELLED')),
    ADD CONSTRAINT orders_presentation_known
        CHECK (presentation IN ('PRESENTATION_REDIRECT', 'PRESENTATION_EMBEDDED',
                                'PRESENTATION_POPUP')),
    ADD CONSTRAINT orders_refunds_within_amount
        CHECK (refunded_minor >= 0 AND refunded_minor <= amount_minor);
