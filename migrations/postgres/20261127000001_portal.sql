-- The developer portal: operator-uploaded OpenAPI documents (one per service), developer
-- accounts (argon2id password hashes), plans, and the applications developers own. An
-- application is a consumer of the gateway; its row here says whose it is and its plan.
CREATE TABLE service_openapi (
    service_id TEXT   NOT NULL PRIMARY KEY,
    document   TEXT   NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE TABLE portal_developers (
    id            TEXT   NOT NULL PRIMARY KEY,
    email         TEXT   NOT NULL UNIQUE,
    password_hash TEXT   NOT NULL,
    status        TEXT   NOT NULL,
    created_at    BIGINT NOT NULL
);
CREATE TABLE portal_plans (
    id         TEXT   NOT NULL PRIMARY KEY,
    name       TEXT   NOT NULL UNIQUE,
    body       TEXT   NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE portal_applications (
    consumer_id  TEXT   NOT NULL PRIMARY KEY,
    developer_id TEXT   NOT NULL,
    name         TEXT   NOT NULL,
    plan_id      TEXT   NOT NULL,
    created_at   BIGINT NOT NULL,
    UNIQUE (developer_id, name)
);
CREATE INDEX portal_applications_plan ON portal_applications (plan_id);
