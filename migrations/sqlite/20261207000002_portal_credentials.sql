-- An application's credential: an API key, OAuth2 client credentials or a JWT key.
ALTER TABLE portal_applications ADD COLUMN credential TEXT NOT NULL DEFAULT 'key-auth';
