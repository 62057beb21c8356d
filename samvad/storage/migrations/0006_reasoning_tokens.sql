-- Reasoning models bill their thinking as completion tokens: how many of output_tokens were
-- reasoning (never spoken), and whether the token counts are the provider's or estimated (a
-- stream that reported no usage).
ALTER TABLE provider_calls ADD COLUMN IF NOT EXISTS reasoning_tokens integer NOT NULL DEFAULT 0;
ALTER TABLE provider_calls ADD COLUMN IF NOT EXISTS usage_estimated boolean NOT NULL DEFAULT false;
