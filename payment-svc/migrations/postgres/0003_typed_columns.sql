-- Every status, kind and code column holds only the values the service
-- knows (the spellings of `store/rows.rs`), and each state has its data: an
-- unknown value can no longer be written, and one read back is an error that
-- names its column (never taken for a default). Existing rows are kept; they
-- were all written by the service and satisfy these.

ALTER TABLE payments
    ADD CONSTRAINT payments_status_known
        CHECK (status IN ('PENDING', 'SUCCEEDED', 'DECLINED')),
    ADD CONSTRAINT payments_decline_reason_known
        CHECK (decline_reason IS NULL OR decline_reason IN
               ('INSUFFICIENT_FUNDS', 'DO_NOT_HONOR', 'EXPIRED_CARD', 'CVV_MISMATCH',
                'PROCESSING_ERROR')),
    ADD CONSTRAINT payments_declined_has_reason
        CHECK (status <> 'DECLINED' OR decline_reason IS NOT NULL),
    ADD CONSTRAINT payments_succeeded_has_reference
        CHECK (status <> 'SUCCEEDED' OR acquirer_ref IS NOT NULL);

ALTER TABLE refunds
    ADD CONSTRAINT refunds_status_known
        CHECK (status IN ('PENDING', 'SUCCEEDED', 'FAILED'));

ALTER TABLE bindings
    ADD CONSTRAINT bindings_status_known
        CHECK (status IN ('ACTIVE', 'REVOKED')),
    ADD CONSTRAINT bindings_card_brand_known
        CHECK (card_brand IN ('VISA', 'MASTERCARD', 'UNIONPAY', 'AMEX', 'JCB', 'DISCOVER', 'OTHER')),
    ADD CONSTRAINT bindings_revoked_has_time
        CHECK (status <> 'REVOKED' OR revoked_ms IS NOT NULL);

ALTER TABLE bind_sessions
    ADD CONSTRAINT bind_sessions_kind_known
        CHECK (kind IN ('BIND', 'BIND_AND_PAY')),
    ADD CONSTRAINT bind_sessions_presentation_known
        CHECK (presentation IN ('REDIRECT', 'EMBEDDED', 'POPUP')),
    ADD CONSTRAINT bind_sessions_status_known
        CHECK (status IN ('OPEN', 'AWAITING_VERIFICATION', 'CHARGING', 'COMPLETED', 'FAILED')),
    ADD CONSTRAINT bind_sessions_last_error_known
        CHECK (last_error IS NULL OR last_error IN ('CARD_DECLINED', 'WRONG_CODE')),
    ADD CONSTRAINT bind_sessions_card_brand_known
        CHECK (card_brand IS NULL OR card_brand IN
               ('VISA', 'MASTERCARD', 'UNIONPAY', 'AMEX', 'JCB', 'DISCOVER', 'OTHER')),
    -- A BindAndPay session carries its purchase; a Bind session none.
    ADD CONSTRAINT bind_sessions_purchase_by_kind
        CHECK ((kind = 'BIND_AND_PAY') =
               (order_id IS NOT NULL AND amount_minor IS NOT NULL AND currency IS NOT NULL)),
    -- Awaiting a code or charging: the verified card is there.
    ADD CONSTRAINT bind_sessions_submission_present
        CHECK (status NOT IN ('AWAITING_VERIFICATION', 'CHARGING')
               OR (pan_ct IS NOT NULL AND pan_key_id IS NOT NULL AND id_number_ct IS NOT NULL
                   AND id_key_id IS NOT NULL AND shopper_name IS NOT NULL AND phone IS NOT NULL
                   AND card_fingerprint IS NOT NULL AND card_brand IS NOT NULL
                   AND card_last4 IS NOT NULL AND exp_month IS NOT NULL AND exp_year IS NOT NULL)),
    ADD CONSTRAINT bind_sessions_code_present
        CHECK (status <> 'AWAITING_VERIFICATION'
               OR (otp_hash IS NOT NULL AND otp_expires_ms IS NOT NULL AND otp_sent_ms IS NOT NULL)),
    ADD CONSTRAINT bind_sessions_charging_has_payment
        CHECK (status <> 'CHARGING' OR payment_id IS NOT NULL),
    ADD CONSTRAINT bind_sessions_completed_has_binding
        CHECK (status <> 'COMPLETED' OR binding_id IS NOT NULL);
