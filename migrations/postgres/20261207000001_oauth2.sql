-- The oauth2 plugin's runtime rows: access tokens (with their refresh tokens) and
-- authorization codes. Tokens and codes are stored as SHA-256 digests, never in clear.
--
-- `seq` orders every change to a token: each write takes the next value of `oauth2_clock`
-- in its transaction (the row lock makes commit order follow it), so a node that read up to
-- some `seq` reads every later change by asking for what is above it. A revoked or refreshed
-- token stays as a tombstone (`revoked_at` set) long enough for every node to see it go.
CREATE TABLE oauth2_tokens (
    id                   TEXT    NOT NULL PRIMARY KEY,
    access_hash          TEXT    NOT NULL,
    refresh_hash         TEXT,
    credential_id        TEXT    NOT NULL,
    service_id           TEXT,
    authenticated_userid TEXT,
    scope                TEXT,
    expires_in           BIGINT  NOT NULL,
    created_at           BIGINT  NOT NULL,
    purge_at             BIGINT,
    revoked_at           BIGINT,
    seq                  BIGINT  NOT NULL
);
CREATE UNIQUE INDEX oauth2_tokens_access ON oauth2_tokens (access_hash);
CREATE UNIQUE INDEX oauth2_tokens_refresh ON oauth2_tokens (refresh_hash);
CREATE INDEX oauth2_tokens_seq ON oauth2_tokens (seq);

CREATE TABLE oauth2_clock (
    id  INTEGER PRIMARY KEY,
    seq BIGINT  NOT NULL
);
INSERT INTO oauth2_clock (id, seq) VALUES (1, 0);

-- A code lives five minutes and is redeemed once: the redeeming transaction deletes it.
CREATE TABLE oauth2_authorization_codes (
    code_hash            TEXT    NOT NULL PRIMARY KEY,
    credential_id        TEXT    NOT NULL,
    service_id           TEXT,
    plugin_id            TEXT,
    authenticated_userid TEXT,
    scope                TEXT,
    challenge            TEXT,
    challenge_method     TEXT,
    expires_at           BIGINT  NOT NULL
);
