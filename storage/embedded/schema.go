package embedded

// schemaVersion is stored in PRAGMA user_version; Open refuses a database
// with a newer one.
// Version 2 added entries.list (the exact index entries of a resource) and
// the audit hash chain (chain, chain_head); version 3 the deferred writes
// (deferred, log_state).
const schemaVersion = 3

// schema is the whole database layout. Times are Unix microseconds. See
// docs/storage.md for the reasoning.
//
// Resources and versions:
//   - types interns resource type names (tid).
//   - resources has one row per (type, id): rid is the join key of the
//     search index; version and vid point at the current version.
//   - versions has every version ever written. vid is the version's
//     lastUpdated in microseconds, unique and strictly increasing in commit
//     order, so it orders system history and serves as the history cursor.
//     A deletion is a version whose body is NULL.
//
// Search index (current versions only; deleted resources have none):
//   - params interns (type, search parameter code) pairs (pid); components
//     of composite parameters are indexed as "code#n".
//   - systems interns token, identifier and unit systems (sid; 0 = none).
//   - idx_* are typed WITHOUT ROWID tables clustered on
//     (pid, value…, rid, grp): an equality or range lookup of one parameter
//     is one range scan that yields rids in ascending order, which is also
//     the search's paging order. grp ties the components of one composite
//     value together (0 otherwise).
//   - idx_date has a second index on (pid, hi), so that the range
//     conditions on the end of a date (gt, ge, eb) seek as those on its
//     start do, and a partial index of the (invalid, rare) ranges that end
//     before they start, so that eq can seek a bounded range of starts
//     and still find those; and an index by (pid, rid), so that a date
//     condition on a candidate is one index lookup.
//   - entries holds, per resource, a compact encoding of exactly the index
//     rows written for it (rows), so an update or delete removes precisely
//     those rows (and only the ones that changed) without a second index by
//     rid; and the index entries exactly as the indexer gave them (list),
//     which searches test per resource for what the index tables cannot
//     answer by rid, and which _include, _sort and ReadEntries read.
//
// Audit hash chain:
//   - chain lists the chained writes (AuditEvents) in order: seq is the
//     position (from 1), rid the resource (unique: a chained resource is
//     never written again), vid its only version.
//   - chain_head has one row: the position and hash of the last link.
//   - deferred holds chained writes stored as one appended row each
//     (storage.Write.Defer) until the writer moves them into the tables
//     above in bulk (deferred.go): seq is the chain position they were
//     sealed at, vid their lastUpdated, list their entry list, body the
//     sealed body. (tid, id) is unique, as in resources.
//   - log_state has one row: how far the log of deferred writes beside the
//     database (dlog.go) is materialised: the offset after the last
//     record moved and its chain position.
//
// Records: a small key-value table with versions and expiry.
const schema = `
CREATE TABLE IF NOT EXISTS types (
	tid  INTEGER PRIMARY KEY,
	name TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS resources (
	rid     INTEGER PRIMARY KEY,
	tid     INTEGER NOT NULL,
	id      TEXT NOT NULL,
	version INTEGER NOT NULL,
	vid     INTEGER NOT NULL,
	deleted INTEGER NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS resources_key ON resources(tid, id);
CREATE INDEX IF NOT EXISTS resources_type ON resources(tid);
CREATE TABLE IF NOT EXISTS versions (
	vid     INTEGER PRIMARY KEY,
	rid     INTEGER NOT NULL,
	tid     INTEGER NOT NULL,
	version INTEGER NOT NULL,
	body    BLOB
);
CREATE UNIQUE INDEX IF NOT EXISTS versions_rid ON versions(rid, version);
CREATE INDEX IF NOT EXISTS versions_type ON versions(tid, vid);

CREATE TABLE IF NOT EXISTS params (
	pid  INTEGER PRIMARY KEY,
	tid  INTEGER NOT NULL,
	code TEXT NOT NULL,
	UNIQUE (tid, code)
);
CREATE TABLE IF NOT EXISTS systems (
	sid INTEGER PRIMARY KEY,
	uri TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS entries (
	rid  INTEGER PRIMARY KEY,
	rows BLOB NOT NULL,
	list BLOB
);
CREATE TABLE IF NOT EXISTS idx_string (
	pid   INTEGER NOT NULL,
	value TEXT NOT NULL,
	rid   INTEGER NOT NULL,
	grp   INTEGER NOT NULL,
	exact TEXT NOT NULL,
	PRIMARY KEY (pid, value, rid, grp, exact)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS idx_token (
	pid  INTEGER NOT NULL,
	code TEXT NOT NULL,
	sid  INTEGER NOT NULL,
	rid  INTEGER NOT NULL,
	grp  INTEGER NOT NULL,
	PRIMARY KEY (pid, code, sid, rid, grp)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS idx_text (
	pid   INTEGER NOT NULL,
	value TEXT NOT NULL,
	rid   INTEGER NOT NULL,
	grp   INTEGER NOT NULL,
	PRIMARY KEY (pid, value, rid, grp)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS idx_reference (
	pid   INTEGER NOT NULL,
	rtid  INTEGER NOT NULL,
	ref   TEXT NOT NULL,
	url   TEXT NOT NULL,
	rid   INTEGER NOT NULL,
	grp   INTEGER NOT NULL,
	ver   TEXT NOT NULL,
	PRIMARY KEY (pid, rtid, ref, url, rid, grp, ver)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS idx_date (
	pid INTEGER NOT NULL,
	lo  INTEGER NOT NULL,
	hi  INTEGER NOT NULL,
	rid INTEGER NOT NULL,
	grp INTEGER NOT NULL,
	PRIMARY KEY (pid, lo, hi, rid, grp)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS idx_date_hi ON idx_date(pid, hi);
CREATE INDEX IF NOT EXISTS idx_date_inverted ON idx_date(pid, lo) WHERE lo > hi;
CREATE INDEX IF NOT EXISTS idx_date_rid ON idx_date(pid, rid);
CREATE TABLE IF NOT EXISTS idx_number (
	pid INTEGER NOT NULL,
	lo  REAL NOT NULL,
	hi  REAL NOT NULL,
	rid INTEGER NOT NULL,
	grp INTEGER NOT NULL,
	num REAL NOT NULL,
	PRIMARY KEY (pid, lo, hi, rid, grp, num)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS idx_quantity (
	pid   INTEGER NOT NULL,
	code  TEXT NOT NULL,
	lo    REAL NOT NULL,
	hi    REAL NOT NULL,
	rid   INTEGER NOT NULL,
	grp   INTEGER NOT NULL,
	sid   INTEGER NOT NULL,
	num   REAL NOT NULL,
	ccode TEXT NOT NULL,
	clo   REAL NOT NULL,
	chi   REAL NOT NULL,
	canon REAL NOT NULL,
	PRIMARY KEY (pid, code, lo, hi, rid, grp, sid, num)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS idx_oftype (
	pid   INTEGER NOT NULL,
	tcode TEXT NOT NULL,
	tsid  INTEGER NOT NULL,
	code  TEXT NOT NULL,
	rid   INTEGER NOT NULL,
	grp   INTEGER NOT NULL,
	PRIMARY KEY (pid, tcode, tsid, code, rid, grp)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS idx_uri (
	pid INTEGER NOT NULL,
	uri TEXT NOT NULL,
	rid INTEGER NOT NULL,
	grp INTEGER NOT NULL,
	PRIMARY KEY (pid, uri, rid, grp)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS chain (
	seq INTEGER PRIMARY KEY,
	rid INTEGER NOT NULL UNIQUE,
	vid INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS chain_head (
	id   INTEGER PRIMARY KEY CHECK (id = 1),
	seq  INTEGER NOT NULL,
	hash BLOB NOT NULL
);

CREATE TABLE IF NOT EXISTS deferred (
	seq  INTEGER PRIMARY KEY,
	tid  INTEGER NOT NULL,
	id   TEXT NOT NULL,
	vid  INTEGER NOT NULL,
	list BLOB,
	body BLOB NOT NULL,
	UNIQUE (tid, id)
);

CREATE TABLE IF NOT EXISTS log_state (
	id  INTEGER PRIMARY KEY CHECK (id = 1),
	off INTEGER NOT NULL,
	seq INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS records (
	kind    TEXT NOT NULL,
	key     TEXT NOT NULL,
	value   BLOB NOT NULL,
	version INTEGER NOT NULL,
	expires INTEGER NOT NULL,
	PRIMARY KEY (kind, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS records_expiry ON records(expires) WHERE expires > 0;
`

// migrations bring a database of version i (the index) to version i+1;
// the tables added in a version are created by schema itself.
var migrations = map[int]string{
	1: `ALTER TABLE entries ADD COLUMN list BLOB`,
	2: ``,
}
