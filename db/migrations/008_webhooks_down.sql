-- 008_webhooks (down): the webhook tables go, with every pending and recorded delivery.
DROP TABLE IF EXISTS webhook_attempts;
DROP TABLE IF EXISTS webhook_outbox;
DROP TABLE IF EXISTS user_webhooks;
