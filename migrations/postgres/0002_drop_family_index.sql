-- Every query that looks tokens up by family also asks for live tokens only
-- (revoking a family, the one-live-token check), and the partial unique index
-- ux_refresh_tokens_one_live_per_family serves those. The full index on family_id
-- cost one more random index page per rotation and served no query.
DROP INDEX IF EXISTS ix_refresh_tokens_family_id;
