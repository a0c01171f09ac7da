-- 008_webhooks (up): durable webhook delivery — per-user default receivers, the outbox written
-- in the same transaction as a file's final status, and one row per delivery attempt.
--
-- Why an outbox: a webhook must neither be lost when the process that finished the file dies
-- right after its commit, nor sent for a finish that was rolled back. pipeline.jobs writes the
-- outbox row in the transaction that writes the final status (completed or failed), so both
-- happen or neither does; a delivery job (workers.webhooks, run by the elected periodic-jobs
-- leader) sends it later, retrying with backoff, and records every attempt here.
--
-- Secrets: auth_header_value is the receiver's own credential (AssemblyAI's
-- webhook_auth_header_value). It is stored because it must be sent; these tables are not
-- audited (the audit log would copy it), the owner and the workers read it, the API never
-- shows it back. The signing secret is not stored anywhere: it is derived from
-- TELEAI_WEBHOOK_SECRET (see docs/api.md).

-- ---------------------------------------------------------------------------------------------
-- A user's default receiver: used for every file of theirs whose options name no webhook_url.
CREATE TABLE user_webhooks (
    user_id           uuid          NOT NULL,
    url               varchar(2000) NOT NULL,
    auth_header_name  varchar(100),
    auth_header_value varchar(2000),
    created_at        timestamptz   NOT NULL DEFAULT now(),
    updated_at        timestamptz   NOT NULL DEFAULT now(),
    CONSTRAINT pk_user_webhooks PRIMARY KEY (user_id),
    CONSTRAINT fk_user_webhooks_user_id FOREIGN KEY (user_id) REFERENCES users (id)
        ON DELETE CASCADE,
    CONSTRAINT ck_user_webhooks_url_http CHECK (url ~* '^https?://'),
    CONSTRAINT ck_user_webhooks_auth_pair
        CHECK ((auth_header_name IS NULL) = (auth_header_value IS NULL))
);

-- ---------------------------------------------------------------------------------------------
-- One message to deliver. ``id`` is the Standard Webhooks ``webhook-id`` (stable across
-- retries, so receivers can de-duplicate). ``attempts`` counts claims and fences the recording
-- of an attempt (a delivery whose lease was taken over cannot write its result).
CREATE TABLE webhook_outbox (
    id                uuid          NOT NULL DEFAULT uuid_generate_v4(),
    audio_file_id     uuid          NOT NULL,
    user_id           uuid          NOT NULL,
    event             varchar(40)   NOT NULL,
    url               varchar(2000) NOT NULL,
    auth_header_name  varchar(100),
    auth_header_value varchar(2000),
    payload           jsonb         NOT NULL,
    status            varchar(20)   NOT NULL DEFAULT 'pending',
    attempts          integer       NOT NULL DEFAULT 0,
    next_attempt_at   timestamptz   NOT NULL DEFAULT now(),
    lease_expires_at  timestamptz,
    give_up_at        timestamptz   NOT NULL,
    last_error        text,
    created_at        timestamptz   NOT NULL DEFAULT now(),
    finished_at       timestamptz,
    CONSTRAINT pk_webhook_outbox PRIMARY KEY (id),
    CONSTRAINT fk_webhook_outbox_audio_file_id FOREIGN KEY (audio_file_id)
        REFERENCES audio_files (id) ON DELETE CASCADE,
    CONSTRAINT fk_webhook_outbox_user_id FOREIGN KEY (user_id) REFERENCES users (id)
        ON DELETE CASCADE,
    CONSTRAINT ck_webhook_outbox_event CHECK (event IN ('file.completed', 'file.failed')),
    CONSTRAINT ck_webhook_outbox_status CHECK (status IN ('pending', 'delivered', 'failed')),
    CONSTRAINT ck_webhook_outbox_attempts_non_negative CHECK (attempts >= 0)
);

-- The delivery job's query: due pending messages, oldest first.
CREATE INDEX idx_webhook_outbox_next_attempt_at ON webhook_outbox (next_attempt_at)
    WHERE status = 'pending';
CREATE INDEX idx_webhook_outbox_audio_file_id ON webhook_outbox (audio_file_id);

-- ---------------------------------------------------------------------------------------------
-- Every attempt: when, to which checked address, how it ended.
--   delivered: 2xx · retry: a transient failure (timeout, connection, 408, 429, 5xx), another
--   attempt is scheduled · stopped: permanent (another 4xx, a redirect, a refused address) or
--   the retry window is over.
CREATE TABLE webhook_attempts (
    outbox_id   uuid        NOT NULL,
    attempt     integer     NOT NULL,
    started_at  timestamptz NOT NULL DEFAULT now(),
    duration_ms integer     NOT NULL,
    address     varchar(64),
    status_code smallint,
    result      varchar(20) NOT NULL,
    error       text,
    CONSTRAINT pk_webhook_attempts PRIMARY KEY (outbox_id, attempt),
    CONSTRAINT fk_webhook_attempts_outbox_id FOREIGN KEY (outbox_id) REFERENCES webhook_outbox (id)
        ON DELETE CASCADE,
    CONSTRAINT ck_webhook_attempts_result CHECK (result IN ('delivered', 'retry', 'stopped'))
);

-- ---------------------------------------------------------------------------------------------
-- Privileges. Workers write the outbox (pipeline.jobs, in the final-status transaction) and
-- deliver it; the application role manages its users' defaults and reads their deliveries.
GRANT SELECT ON user_webhooks TO teleai_worker;
GRANT SELECT, INSERT ON webhook_outbox TO teleai_worker;
GRANT UPDATE (status, attempts, next_attempt_at, lease_expires_at, last_error, finished_at)
    ON webhook_outbox TO teleai_worker;
GRANT SELECT, INSERT ON webhook_attempts TO teleai_worker;
GRANT SELECT, INSERT, UPDATE, DELETE ON user_webhooks TO teleai_app;
GRANT SELECT ON webhook_outbox, webhook_attempts TO teleai_app;

ALTER TABLE user_webhooks ENABLE ROW LEVEL SECURITY;
ALTER TABLE user_webhooks FORCE ROW LEVEL SECURITY;
ALTER TABLE webhook_outbox ENABLE ROW LEVEL SECURITY;
ALTER TABLE webhook_outbox FORCE ROW LEVEL SECURITY;
ALTER TABLE webhook_attempts ENABLE ROW LEVEL SECURITY;
ALTER TABLE webhook_attempts FORCE ROW LEVEL SECURITY;

CREATE POLICY user_webhooks_own_all ON user_webhooks FOR ALL TO teleai_app
    USING (user_id = (SELECT current_app_user_id()) AND (SELECT current_app_role()) IS NOT NULL)
    WITH CHECK (user_id = (SELECT current_app_user_id())
                AND (SELECT current_app_role()) IS NOT NULL);
CREATE POLICY user_webhooks_worker_select ON user_webhooks FOR SELECT TO teleai_worker
    USING (true);

CREATE POLICY webhook_outbox_own_select ON webhook_outbox FOR SELECT TO teleai_app
    USING (user_id = (SELECT current_app_user_id()) AND (SELECT current_app_role()) IS NOT NULL);
CREATE POLICY webhook_outbox_admin_select ON webhook_outbox FOR SELECT TO teleai_app
    USING ((SELECT current_app_role()) = 'admin');
CREATE POLICY webhook_outbox_worker_select ON webhook_outbox FOR SELECT TO teleai_worker
    USING (true);
CREATE POLICY webhook_outbox_worker_insert ON webhook_outbox FOR INSERT TO teleai_worker
    WITH CHECK (true);
CREATE POLICY webhook_outbox_worker_update ON webhook_outbox FOR UPDATE TO teleai_worker
    USING (true) WITH CHECK (true);

-- An attempt is visible to whoever sees its message (the subquery runs under the same policies).
CREATE POLICY webhook_attempts_visible_select ON webhook_attempts FOR SELECT TO teleai_app
    USING (EXISTS (SELECT 1 FROM webhook_outbox o WHERE o.id = webhook_attempts.outbox_id));
CREATE POLICY webhook_attempts_worker_select ON webhook_attempts FOR SELECT TO teleai_worker
    USING (true);
CREATE POLICY webhook_attempts_worker_insert ON webhook_attempts FOR INSERT TO teleai_worker
    WITH CHECK (true);
