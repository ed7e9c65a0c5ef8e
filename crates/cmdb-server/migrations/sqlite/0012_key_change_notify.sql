-- PostgreSQL announces agent-key changes to the other instances on the database (see the
-- PostgreSQL migration of the same number). SQLite is one instance, which forgets its cached keys
-- itself when it changes one; this migration keeps the two schemas' version numbers in step
-- (a backup restores only into the same schema version).
SELECT 1;
