package embedded

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
)

// preparer is a *sql.DB (the read pool) or a *sql.Conn (the writer).
type preparer interface {
	PrepareContext(ctx context.Context, query string) (*sql.Stmt, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// stmts are the prepared statements of one connection (or pool). The write
// statements are nil on the read pool.
type stmts struct {
	db preparer

	readCur, readVer, getRec, readEntries, keyUsed *sql.Stmt

	curKey, verByRid, insRes, updRes, insVer *sql.Stmt
	getEntries, putEntries, delEntries       *sql.Stmt
	insType, insParam, insSystem             *sql.Stmt
	putRec, delRec                           *sql.Stmt
	isChained, insChain, getHead, putHead    *sql.Stmt
	insDeferred, getDeferred, delDeferred    *sql.Stmt
	putLogState                              *sql.Stmt
	begin, commit, savepoint, release        *sql.Stmt
	rollbackTo                               *sql.Stmt
	idxInsert, idxDelete                     [tabEnd]*sql.Stmt
	multi                                    [tabEnd][maxMultiRows + 1]*sql.Stmt
	all                                      []*sql.Stmt
}

func prepare(ctx context.Context, db preparer) (*stmts, error) {
	st := &stmts{db: db}
	var err error
	p := func(dst **sql.Stmt, q string) {
		if err != nil {
			return
		}
		*dst, err = db.PrepareContext(ctx, q)
		if err != nil {
			err = fmt.Errorf("embedded: prepare %q: %w", q, err)
			return
		}
		st.all = append(st.all, *dst)
	}
	p(&st.readCur, `SELECT r.rid, r.version, r.vid, v.body FROM resources r JOIN versions v ON v.vid = r.vid WHERE r.tid = ? AND r.id = ?`)
	p(&st.readVer, `SELECT v.vid, v.body FROM resources r JOIN versions v ON v.rid = r.rid WHERE r.tid = ? AND r.id = ? AND v.version = ?`)
	p(&st.getRec, `SELECT value, version, expires FROM records WHERE kind = ? AND key = ?`)
	p(&st.readEntries, `SELECT r.rid, r.version, r.vid, v.body, e.list, e.rows FROM resources r JOIN versions v ON v.vid = r.vid
		LEFT JOIN entries e ON e.rid = r.rid WHERE r.tid = ? AND r.id = ?`)
	p(&st.keyUsed, `SELECT 1 FROM resources WHERE tid = ?1 AND id = ?2 UNION ALL SELECT 1 FROM deferred WHERE tid = ?1 AND id = ?2 LIMIT 1`)
	if _, ok := db.(*sql.Conn); ok {
		p(&st.curKey, `SELECT rid, version, deleted FROM resources WHERE tid = ? AND id = ?`)
		p(&st.verByRid, `SELECT version, deleted FROM resources WHERE rid = ?`)
		p(&st.insRes, `INSERT INTO resources(tid, id, version, vid, deleted) VALUES (?, ?, ?, ?, ?)`)
		p(&st.updRes, `UPDATE resources SET version = ?, vid = ?, deleted = ? WHERE rid = ?`)
		p(&st.insVer, `INSERT INTO versions(vid, rid, tid, version, body) VALUES (?, ?, ?, ?, ?)`)
		p(&st.getEntries, `SELECT rows, list FROM entries WHERE rid = ?`)
		p(&st.putEntries, `INSERT OR REPLACE INTO entries(rid, rows, list) VALUES (?, x'', ?)`)
		p(&st.delEntries, `DELETE FROM entries WHERE rid = ?`)
		p(&st.insType, `INSERT INTO types(name) VALUES (?)`)
		p(&st.insParam, `INSERT INTO params(tid, code) VALUES (?, ?)`)
		p(&st.insSystem, `INSERT INTO systems(uri) VALUES (?)`)
		p(&st.putRec, `INSERT OR REPLACE INTO records(kind, key, value, version, expires) VALUES (?, ?, ?, ?, ?)`)
		p(&st.delRec, `DELETE FROM records WHERE kind = ? AND key = ?`)
		p(&st.isChained, `SELECT 1 FROM chain WHERE rid = ?`)
		p(&st.insChain, `INSERT INTO chain(seq, rid, vid) VALUES (?, ?, ?)`)
		p(&st.getHead, `SELECT seq, hash FROM chain_head WHERE id = 1`)
		p(&st.putHead, `INSERT OR REPLACE INTO chain_head(id, seq, hash) VALUES (1, ?, ?)`)
		p(&st.insDeferred, `INSERT INTO deferred(seq, tid, id, vid, list, body) VALUES (?, ?, ?, ?, ?, ?)`)
		p(&st.getDeferred, `SELECT seq, tid, id, vid, list, body FROM deferred ORDER BY seq LIMIT ?`)
		p(&st.delDeferred, `DELETE FROM deferred WHERE seq <= ?`)
		p(&st.putLogState, `INSERT OR REPLACE INTO log_state(id, off, seq) VALUES (1, ?, ?)`)
		p(&st.begin, `BEGIN IMMEDIATE`)
		p(&st.commit, `COMMIT`)
		p(&st.savepoint, `SAVEPOINT req`)
		p(&st.release, `RELEASE req`)
		p(&st.rollbackTo, `ROLLBACK TO req`)
		for t := tabString; t < tabEnd; t++ {
			p(&st.idxInsert[t], tables[t].insert)
			p(&st.idxDelete[t], tables[t].delete)
		}
	}
	if err != nil {
		st.close()
		return nil, err
	}
	return st, nil
}

// maxMultiRows is the most rows one multi-row index insert carries. 128
// rows per statement took 5 to 8 % off the CPU of an indexed load of
// 300,000 resources against 32 (356 to 368 against 381 to 388 cpu-µs per
// resource); inserting in power-of-two chunks only, to prepare fewer
// statements, cost more than it saved (432 to 450).
const maxMultiRows = 128

// multiInsert returns the statement inserting k rows into index table t,
// preparing it on first use.
func (st *stmts) multiInsert(t byte, k int) (*sql.Stmt, error) {
	if k == 1 {
		return st.idxInsert[t], nil
	}
	if s := st.multi[t][k]; s != nil {
		return s, nil
	}
	q := tables[t].insert
	at := strings.Index(q, "VALUES ")
	head, tuple := q[:at+len("VALUES ")], q[at+len("VALUES "):]
	q = head + strings.TrimSuffix(strings.Repeat(tuple+", ", k), ", ")
	s, err := st.db.PrepareContext(context.Background(), q)
	if err != nil {
		return nil, fmt.Errorf("embedded: prepare multi-row insert: %w", err)
	}
	st.multi[t][k] = s
	st.all = append(st.all, s)
	return s, nil
}

func (st *stmts) close() {
	for _, s := range st.all {
		s.Close()
	}
	st.all = nil
}
