-- A user's notification choices: email always goes out; an SMS goes out beside it only for the kinds the
-- user opted into, to the number they gave (E.164, checked by the permission service before it lands here).
CREATE TABLE notification_settings (
    user_id     text PRIMARY KEY,
    phone       text CHECK (phone ~ '^\+[1-9][0-9]{1,14}$'),
    sms_share   boolean NOT NULL DEFAULT false,
    sms_upload  boolean NOT NULL DEFAULT false,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    -- Opting in without a number would be a promise nobody can keep.
    CHECK (phone IS NOT NULL OR NOT (sms_share OR sms_upload))
);
