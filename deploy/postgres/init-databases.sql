-- One database per service, created on the first start of the compose `postgres` container (the official
-- image runs /docker-entrypoint-initdb.d/*.sql once, as POSTGRES_USER, while the data directory is empty).
-- Each service migrates its own schema with Alembic at start-up.
CREATE DATABASE countypool_ledger;
CREATE DATABASE countypool_quota;
CREATE DATABASE countypool_settlement;
CREATE DATABASE countypool_assessment;
