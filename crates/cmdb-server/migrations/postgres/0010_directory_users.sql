-- Directory (LDAP) login: where an account's password is checked. 'local': against
-- users.password_hash; 'directory': by a bind to the directory at each login (the account is
-- created at the first one, and its role follows its directory groups). A directory account's
-- password_hash is '!', which is no PHC string, so no password ever matches it locally.
ALTER TABLE users ADD COLUMN source TEXT NOT NULL DEFAULT 'local';
