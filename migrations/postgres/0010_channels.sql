-- Notification channels: a webhook row becomes a channel of one kind. `webhook` is the signed JSON POST it
-- always was; `slack` (incoming webhook, Block Kit), `teams` (Workflows webhook, Adaptive Card) and `email`
-- (SMTP) are new. The sealed value (key_id, nonce, ciphertext) is the signing secret of a webhook, the URL
-- itself for Slack and Teams (their URLs are the credential), and the SMTP password for email (empty when
-- the server needs none); `url` then holds only what may be shown (scheme, host and port).
-- `events`: a JSON array of the event types the channel receives; NULL receives every event.
-- `settings`: for email, a JSON object (host, port, tls, from, to, username); NULL otherwise.
-- The table keeps its row-level security policy (0006). Forward-only.
ALTER TABLE webhooks ADD COLUMN kind TEXT NOT NULL DEFAULT 'webhook'
    CHECK (kind IN ('webhook', 'slack', 'teams', 'email'));
ALTER TABLE webhooks ADD COLUMN events TEXT;
ALTER TABLE webhooks ADD COLUMN settings TEXT;
