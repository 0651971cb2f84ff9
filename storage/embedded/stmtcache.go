package embedded

import (
	"container/list"
	"context"
	"database/sql"
	"fmt"

	"regie/storage"
)

// Searches run on connections of their own (searchConn), each in one read
// transaction (one WAL snapshot for every statement of a search) and with
// its own cache of prepared statements by SQL text, so that repeated query
// shapes skip SQLite's prepare. A search holds its connection throughout:
// preparing on another connection of a shared pool could wait for a
// connection that other searches hold, forever.

// maxCachedStmts is the most statements a search connection keeps.
const maxCachedStmts = 128

// searchConn is one connection reserved for searches.
type searchConn struct {
	conn *sql.Conn
	m    map[string]*list.Element
	lru  *list.List // of *cachedStmt, most recently used first
}

type cachedStmt struct {
	q  string
	st *sql.Stmt
}

func (c *searchConn) stmt(ctx context.Context, q string) (*sql.Stmt, error) {
	if e, ok := c.m[q]; ok {
		c.lru.MoveToFront(e)
		return e.Value.(*cachedStmt).st, nil
	}
	st, err := c.conn.PrepareContext(ctx, q)
	if err != nil {
		return nil, err
	}
	c.m[q] = c.lru.PushFront(&cachedStmt{q, st})
	for c.lru.Len() > maxCachedStmts {
		old := c.lru.Remove(c.lru.Back()).(*cachedStmt)
		delete(c.m, old.q)
		old.st.Close()
	}
	return st, nil
}

func (c *searchConn) close() {
	for e := c.lru.Front(); e != nil; e = e.Next() {
		e.Value.(*cachedStmt).st.Close()
	}
	c.conn.Close()
}

// QueryContext implements queryer.
func (c *searchConn) QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	st, err := c.stmt(ctx, q)
	if err != nil {
		return nil, err
	}
	return st.QueryContext(ctx, args...)
}

// QueryRowContext implements queryer.
func (c *searchConn) QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row {
	st, err := c.stmt(ctx, q)
	if err != nil {
		return c.conn.QueryRowContext(ctx, q, args...) // reports the error
	}
	return st.QueryRowContext(ctx, args...)
}

// openSearchConns opens n search connections on db.
func (s *Store) openSearchConns(ctx context.Context, db *sql.DB, n int) error {
	s.searchConns = make(chan *searchConn, n)
	for range n {
		conn, err := db.Conn(ctx)
		if err != nil {
			return fmt.Errorf("embedded: open: %w", err)
		}
		s.searchConns <- &searchConn{conn: conn, m: map[string]*list.Element{}, lru: list.New()}
	}
	return nil
}

// closeSearchConns closes the search connections (all returned by then).
func (s *Store) closeSearchConns() {
	if s.searchConns == nil {
		return
	}
	for {
		select {
		case c := <-s.searchConns:
			c.close()
		default:
			return
		}
	}
}

// readTx takes a search connection, begins a read transaction on it and
// returns view v using it, and the function that ends the transaction and
// gives the connection back.
func (s *Store) readTx(ctx context.Context, v *view) (*view, func(), error) {
	var c *searchConn
	select {
	case c = <-s.searchConns:
	case <-s.stop:
		return nil, nil, fmt.Errorf("embedded: search: %w", storage.ErrClosed)
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	}
	if _, err := c.conn.ExecContext(ctx, "BEGIN"); err != nil {
		s.giveBack(c)
		return nil, nil, ctxOr(ctx, err)
	}
	vv := *v
	vv.q = c
	return &vv, func() {
		if _, err := c.conn.ExecContext(context.Background(), "ROLLBACK"); err != nil {
			s.log.Error("embedded: end a search's read transaction", "err", err)
		}
		s.giveBack(c)
	}, nil
}

// giveBack returns a search connection, or closes it once the store is
// closed (Close drains the ones returned before).
func (s *Store) giveBack(c *searchConn) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		c.close()
		return
	}
	s.searchConns <- c
}
