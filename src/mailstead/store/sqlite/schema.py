"""SQLite schema, as an ordered list of migrations (``PRAGMA user_version`` counts them)."""

from __future__ import annotations

import sqlite3

# Each entry moves the schema from version i to i+1. Never edit one that has shipped: append.
MIGRATIONS: tuple[str, ...] = (
    # 1: directory, mailboxes, messages, content-addressed blobs
    """
    CREATE TABLE meta(
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    CREATE TABLE domains(
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        created INTEGER NOT NULL
    );
    CREATE TABLE accounts(
        id INTEGER PRIMARY KEY,
        domain_id INTEGER NOT NULL REFERENCES domains(id),
        localpart TEXT NOT NULL,
        local_key TEXT NOT NULL,
        password_hash TEXT NOT NULL,
        quota INTEGER NOT NULL DEFAULT 0,
        used INTEGER NOT NULL DEFAULT 0,
        role TEXT NOT NULL DEFAULT 'user',
        enabled INTEGER NOT NULL DEFAULT 1,
        created INTEGER NOT NULL,
        UNIQUE(domain_id, local_key)
    );
    CREATE TABLE aliases(
        id INTEGER PRIMARY KEY,
        domain_id INTEGER NOT NULL REFERENCES domains(id),
        local_key TEXT NOT NULL,          -- '' is the domain's catch-all
        localpart TEXT NOT NULL,
        target TEXT NOT NULL,
        UNIQUE(domain_id, local_key, target)
    );
    CREATE TABLE mailboxes(
        id INTEGER PRIMARY KEY,
        account_id INTEGER NOT NULL REFERENCES accounts(id),
        name TEXT NOT NULL,
        special_use TEXT,
        uidvalidity INTEGER NOT NULL,
        uidnext INTEGER NOT NULL DEFAULT 1,
        highestmodseq INTEGER NOT NULL DEFAULT 1,
        subscribed INTEGER NOT NULL DEFAULT 1,
        messages INTEGER NOT NULL DEFAULT 0,
        unseen INTEGER NOT NULL DEFAULT 0,
        size INTEGER NOT NULL DEFAULT 0,
        UNIQUE(account_id, name)
    );
    CREATE TABLE blobs(
        id INTEGER PRIMARY KEY,
        digest BLOB NOT NULL UNIQUE,      -- SHA-256 of the uncompressed bytes
        size INTEGER NOT NULL,            -- uncompressed
        codec INTEGER NOT NULL,           -- 0 raw, 1 zstd
        data BLOB NOT NULL,
        refs INTEGER NOT NULL
    );
    CREATE TABLE messages(
        mailbox_id INTEGER NOT NULL REFERENCES mailboxes(id),
        uid INTEGER NOT NULL,
        modseq INTEGER NOT NULL,
        blob_id INTEGER NOT NULL REFERENCES blobs(id),
        size INTEGER NOT NULL,
        internal_date INTEGER NOT NULL,
        flags TEXT NOT NULL DEFAULT '',   -- space-separated, sorted
        subject TEXT NOT NULL DEFAULT '',
        from_ TEXT NOT NULL DEFAULT '',
        to_ TEXT NOT NULL DEFAULT '',
        date INTEGER,
        message_id TEXT,
        structure BLOB NOT NULL,
        envelope TEXT NOT NULL DEFAULT '{}',
        PRIMARY KEY(mailbox_id, uid)
    ) WITHOUT ROWID;
    CREATE INDEX messages_modseq ON messages(mailbox_id, modseq);
    CREATE INDEX messages_blob ON messages(blob_id);
    CREATE TABLE expunged(
        mailbox_id INTEGER NOT NULL,
        uid INTEGER NOT NULL,
        modseq INTEGER NOT NULL,
        PRIMARY KEY(mailbox_id, uid)
    ) WITHOUT ROWID;
    """,
    # 2: IMAP: subscriptions independent of mailboxes (RFC 9051 §6.3.9), a \Deleted counter
    """
    CREATE TABLE subscriptions(
        account_id INTEGER NOT NULL REFERENCES accounts(id),
        name TEXT NOT NULL,
        PRIMARY KEY(account_id, name)
    ) WITHOUT ROWID;
    INSERT INTO subscriptions(account_id, name)
        SELECT account_id, name FROM mailboxes WHERE subscribed;
    ALTER TABLE mailboxes ADD COLUMN deleted INTEGER NOT NULL DEFAULT 0;
    UPDATE mailboxes SET deleted = (
        SELECT count(*) FROM messages m
        WHERE m.mailbox_id = mailboxes.id AND ' ' || m.flags || ' ' LIKE '% \\Deleted %'
    );
    CREATE INDEX expunged_modseq ON expunged(mailbox_id, modseq);
    """,
    # 3: IMAP4rev1 \Recent: messages from this UID on are new to the next session that selects
    """
    ALTER TABLE mailboxes ADD COLUMN first_recent_uid INTEGER NOT NULL DEFAULT 1;
    """,
    # 4: full-text index for SEARCH: one row per blob (rowid = blob id), case-folded decoded
    # text, trigram-tokenised so any substring of 3+ characters is found through the index
    """
    CREATE VIRTUAL TABLE search_text USING fts5(headers, body, tokenize = 'trigram');
    ALTER TABLE blobs ADD COLUMN indexed INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX blobs_unindexed ON blobs(id) WHERE indexed = 0;
    CREATE TRIGGER blobs_search_text_delete AFTER DELETE ON blobs BEGIN
        DELETE FROM search_text WHERE rowid = old.id;
    END;
    """,
    # 5: SELECT and FETCH FLAGS read (uid, modseq, flags) of a whole mailbox: a covering index
    # keeps them from reading the wide rows (cached structure, envelope)
    """
    CREATE INDEX messages_flags ON messages(mailbox_id, uid, modseq, flags);
    """,
    # 6: SCRAM-SHA-256 secrets (docs/decisions.md): the main password's, per account (NULL until
    # the password is next set), and app passwords, each with an argon2 hash and a SCRAM secret
    # derived with the account's salt
    """
    ALTER TABLE accounts ADD COLUMN scram TEXT;
    CREATE TABLE app_passwords(
        id INTEGER PRIMARY KEY,
        account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        password_hash TEXT NOT NULL,      -- argon2id
        scram TEXT,                       -- SCRAM-SHA-256$<iterations>:<salt>$<stored>:<server>
        created INTEGER NOT NULL,
        UNIQUE(account_id, name)
    );
    """,
    # 7: the full-text index gains one column per common SEARCH header (SUBJECT, FROM, TO, CC,
    # BCC): a match there is the answer itself, without reading the messages. Every blob is
    # indexed again by the background indexer.
    """
    DROP TABLE search_text;
    CREATE VIRTUAL TABLE search_text USING fts5(
        headers, body, subject, from_addr, to_addr, cc, bcc, tokenize = 'trigram'
    );
    UPDATE blobs SET indexed = 0;
    """,
    # 8: DKIM signing keys (RFC 6376, RFC 8463), per domain; at most one active key per
    # algorithm signs, the others are kept for rotation. The private key is stored unencrypted:
    # the database file is the secret (docs/decisions.md).
    """
    CREATE TABLE dkim_keys(
        id INTEGER PRIMARY KEY,
        domain_id INTEGER NOT NULL REFERENCES domains(id) ON DELETE CASCADE,
        selector TEXT NOT NULL,
        algorithm TEXT NOT NULL CHECK (algorithm IN ('rsa', 'ed25519')),
        private_key TEXT NOT NULL,        -- PKCS#8 PEM
        public_key TEXT NOT NULL,         -- the DNS p= value (base64)
        created INTEGER NOT NULL,
        active INTEGER NOT NULL DEFAULT 0,
        UNIQUE(domain_id, selector)
    );
    CREATE UNIQUE INDEX dkim_keys_active ON dkim_keys(domain_id, algorithm) WHERE active;
    """,
    # 9: the outbound queue (docs/queue.md): one row per queued message (its content is a
    # ref-counted blob like a mailbox message's) and one per recipient with its delivery state;
    # ``report`` is a delivery status notification owed to the sender and not yet made.
    """
    CREATE TABLE queue_messages(
        id INTEGER PRIMARY KEY,
        queue_id TEXT NOT NULL UNIQUE,    -- the id in logs, replies and the CLI
        blob_id INTEGER NOT NULL REFERENCES blobs(id),
        size INTEGER NOT NULL,
        mail_from TEXT NOT NULL,          -- '' is the null sender <>
        envid TEXT,                       -- RFC 3461 ENVID, as received (xtext)
        ret TEXT CHECK (ret IN ('FULL', 'HDRS')),
        smtputf8 INTEGER NOT NULL DEFAULT 0,
        body TEXT,                        -- BODY= of MAIL FROM (7BIT, 8BITMIME, BINARYMIME)
        origin TEXT NOT NULL DEFAULT '',  -- submission, forward, dsn (for listings and logs)
        queued_at REAL NOT NULL,
        held INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE queue_recipients(
        id INTEGER PRIMARY KEY,
        message_id INTEGER NOT NULL REFERENCES queue_messages(id) ON DELETE CASCADE,
        address TEXT NOT NULL,
        domain TEXT NOT NULL,             -- the destination (lower case), for grouping
        state TEXT NOT NULL CHECK (state IN ('pending', 'deferred', 'delivered', 'failed')),
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt REAL NOT NULL,
        last_attempt REAL,
        last_error TEXT,                  -- the last reply, e.g. "451 4.3.0 Try later"
        status TEXT,                      -- its enhanced status code (RFC 3463)
        remote_mta TEXT,
        notify TEXT,                      -- RFC 3461 NOTIFY, comma-separated; NULL = not given
        orcpt TEXT,                       -- RFC 3461 ORCPT as "type;address"
        delay_warned INTEGER NOT NULL DEFAULT 0,
        report TEXT CHECK (report IN ('failed', 'delayed', 'delivered', 'relayed'))
    );
    CREATE INDEX queue_recipients_message ON queue_recipients(message_id);
    CREATE INDEX queue_recipients_due ON queue_recipients(next_attempt)
        WHERE state IN ('pending', 'deferred');
    CREATE INDEX queue_recipients_report ON queue_recipients(message_id)
        WHERE report IS NOT NULL;
    CREATE INDEX queue_messages_blob ON queue_messages(blob_id);
    """,
    # 10: blobs.indexed = 2 marks a blob only the outbound queue holds (never indexed); the
    # index rows of a deleted blob are deleted only when it had some (FTS5 deletes are costly)
    """
    DROP TRIGGER blobs_search_text_delete;
    CREATE TRIGGER blobs_search_text_delete AFTER DELETE ON blobs WHEN old.indexed = 1 BEGIN
        DELETE FROM search_text WHERE rowid = old.id;
    END;
    """,
    # 11: large contents are stored in 1 MiB pieces beside their blob row (codec 2 or 3, empty
    # blobs.data): they are written and read piece by piece, and updating the blob row (refs,
    # indexed) no longer rewrites the whole content
    """
    CREATE TABLE blob_chunks(
        blob_id INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        data BLOB NOT NULL,
        PRIMARY KEY(blob_id, seq)
    );
    CREATE TRIGGER blobs_chunks_delete AFTER DELETE ON blobs WHEN old.codec >= 2 BEGIN
        DELETE FROM blob_chunks WHERE blob_id = old.id;
    END;
    """,
    # 12: a blob whose text could not be extracted is set aside: retried after index_retry_at
    # (Unix time), with a backoff that grows with index_failures
    """
    ALTER TABLE blobs ADD COLUMN index_failures INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE blobs ADD COLUMN index_retry_at INTEGER NOT NULL DEFAULT 0;
    """,
    # 13: blobs.indexed = 3 marks a message with too much text to index (SEARCH reads it)
    """
    CREATE INDEX blobs_search_reads ON blobs(id) WHERE indexed = 3;
    """,
)


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema up to date; returns the resulting version."""
    version: int = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > len(MIGRATIONS):
        raise RuntimeError(
            f"database schema version {version} is newer than this Mailstead ({len(MIGRATIONS)})"
        )
    for index in range(version, len(MIGRATIONS)):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _statements(MIGRATIONS[index]):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {index + 1}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return len(MIGRATIONS)


def _statements(script: str) -> list[str]:
    parts, current = [], ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            parts.append(current.strip())
            current = ""
    if current.strip():
        raise ValueError(f"incomplete SQL statement: {current.strip()[:60]}")
    return parts
