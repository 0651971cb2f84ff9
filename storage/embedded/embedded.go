// Package embedded is Regie's default storage backend: one SQLite database
// file (WAL mode, synchronous=FULL) through the pure-Go driver
// modernc.org/sqlite, so the binary needs no service and no cgo.
//
// All writes go through one writer goroutine that commits them in groups:
// concurrent Write, Transact and record calls are queued, run in one SQLite
// transaction with a SAVEPOINT each (a failing request rolls back only
// itself), and acknowledged together after one COMMIT, that is one fsync.
// Reads run on a pool of read-only connections, each with its own WAL
// snapshot. docs/storage.md describes the schema and the reasoning.
package embedded

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver

	"regie/storage"
)

// Interface guards.
var (
	_ storage.Store   = (*Store)(nil)
	_ storage.Records = (*Store)(nil)
	_ storage.Tx      = (*tx)(nil)
	_ storage.Records = (*tx)(nil)
)

// FileName is the database file inside the data directory.
const FileName = "regie.db"

// Options tune the store; the zero value (or nil) gives the defaults.
type Options struct {
	// Logger receives background errors (purge, checkpoint); nil discards.
	Logger *slog.Logger
	// Readers is the size of the read connection pool, and the number of
	// connections reserved for searches (default max(4, 2×GOMAXPROCS)).
	Readers int
	// MaxBatch is the most requests committed together (default 256).
	MaxBatch int
	// PurgeInterval is how often expired records are deleted (default one
	// minute; negative disables).
	PurgeInterval time.Duration
	// CacheKiB is SQLite's page cache per reading connection in KiB
	// (default 16384).
	CacheKiB int
	// WriterCacheKiB is the writer connection's page cache in KiB (default
	// 131072). Index rows land at random places of large B-trees: with a
	// small cache the writer reads their pages again and again, and a
	// large transaction spills dirty pages to the WAL before its commit
	// writes them once more (a third of the index cost at 1 M resources
	// with 16 MiB). SQLite fills the cache as pages are used.
	WriterCacheKiB int
	// MaxBacklog bounds the deferred writes (storage.Write.Defer) waiting
	// to be materialised: above it, the writer materialises some after
	// every batch (default 16384, under a second of its work to settle).
	MaxBacklog int
	// Idle is how long the writer waits for a request before it
	// materialises deferred writes in the background (default 2 ms;
	// negative: only above MaxBacklog, or when a read needs them, and not
	// at Close).
	Idle time.Duration
	// LogSync is how often the log of deferred writes (LogName) is
	// fsynced while it has records not yet durable (default 5 ms; always
	// before a database commit). Negative: before each deferred write
	// returns. A deferred write returns once its record is written to the
	// file (it survives a crash of the process); the interval bounds what
	// a power failure can take, which is always the end of the chain.
	LogSync time.Duration
	// Now is the clock (default time.Now); lastUpdated never goes back even
	// if it does.
	Now func() time.Time
}

// Store is the embedded store. It is safe for concurrent use.
type Store struct {
	path  string
	log   *slog.Logger
	now   func() time.Time
	rdb   *sql.DB // read-only pool
	wdb   *sql.DB // the writer's single connection
	cdb   *sql.DB // the checkpointer's connection
	wconn *sql.Conn
	rst   *stmts  // prepared on rdb
	wst   *stmts  // prepared on wconn
	sdb   *sql.DB // the searches' connections (searchConns)
	dict  *dict

	searchConns chan *searchConn

	maxBatch int
	queue    chan *request
	mu       sync.RWMutex // held (R) while enqueuing; (W) by Close
	closed   bool
	stop     chan struct{}  // closed by Close: stops background work
	wrote    chan struct{}  // signalled after each commit (for the checkpointer)
	done     chan struct{}  // closed when the writer has exited
	bg       sync.WaitGroup // background goroutines other than the writer
	closeErr error
	once     sync.Once

	// Writer goroutine state.
	last int64 // the last vid (lastUpdated, µs) handed out

	backlog           atomic.Pointer[backlog] // deferred writes waiting (deferred.go)
	dlog              *dlog                   // the log of deferred writes (dlog.go)
	logSync           time.Duration           // see Options.LogSync
	head              chainHead               // the chain's head (the writer's)
	pubHead           atomic.Pointer[chainHead]
	gens              sync.Map // tid -> *atomic.Uint64 (typeGen)
	maxBacklog        int64
	idle              time.Duration // see Options.Idle
	materialiseFailed atomic.Bool   // stops background materialising after an error

	batches, requests atomic.Int64 // committed (or failed) batches and their requests
	walLong           atomic.Bool  // the checkpointer asks the writer to truncate the WAL
}

// Stats are counters of the writer.
type Stats struct {
	// Batches is the number of group-commit transactions, Requests the
	// writes, transactions and record changes they carried.
	Batches, Requests int64
}

// Stats returns the writer's counters.
func (s *Store) Stats() Stats {
	return Stats{Batches: s.batches.Load(), Requests: s.requests.Load()}
}

// Open opens (creating if needed) the store in directory dir.
func Open(dir string, opts *Options) (*Store, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Readers <= 0 {
		o.Readers = max(4, 2*runtime.GOMAXPROCS(0))
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = 256
	}
	if o.PurgeInterval == 0 {
		o.PurgeInterval = time.Minute
	}
	if o.CacheKiB <= 0 {
		o.CacheKiB = 16384
	}
	if o.WriterCacheKiB <= 0 {
		o.WriterCacheKiB = 131072
	}
	if o.LogSync == 0 {
		o.LogSync = defaultLogSync
	}
	if o.Idle == 0 {
		o.Idle = idleDelay
	}
	if o.MaxBacklog <= 0 {
		o.MaxBacklog = defaultMaxBacklog
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("embedded: open: %w", err)
	}
	path := filepath.Join(dir, FileName)
	s := &Store{
		path:       path,
		log:        o.Logger,
		now:        o.Now,
		maxBatch:   o.MaxBatch,
		maxBacklog: int64(o.MaxBacklog),
		idle:       o.Idle,
		logSync:    o.LogSync,
		queue:      make(chan *request, 4*o.MaxBatch),
		stop:       make(chan struct{}),
		wrote:      make(chan struct{}, 1),
		done:       make(chan struct{}),
	}
	if err := s.open(o); err != nil {
		s.closeDBs()
		return nil, err
	}
	if err := s.openLog(context.Background(), dir); err != nil {
		s.closeDBs()
		return nil, err
	}
	h := s.head
	s.pubHead.Store(&h)
	go s.writer()
	if o.LogSync > 0 {
		s.bg.Add(1)
		go s.syncer(o.LogSync)
	}
	s.bg.Add(1)
	go s.checkpointer()
	if o.PurgeInterval > 0 {
		s.bg.Add(1)
		go s.purger(o.PurgeInterval)
	}
	return s, nil
}

// Connection roles.
const (
	roleWriter = iota
	roleReader
	roleCheckpointer
)

func dsn(path string, cacheKiB int, role int) string {
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(FULL)")
	q.Add("_pragma", fmt.Sprintf("cache_size(-%d)", cacheKiB))
	q.Add("_pragma", "mmap_size(17179869184)")
	q.Add("_pragma", "foreign_keys(OFF)")
	switch role {
	case roleReader:
		q.Add("_pragma", "query_only(ON)")
	case roleWriter:
		// The checkpointer copies the WAL into the database beside the
		// writer, so commits do not pay for it.
		q.Add("_pragma", "wal_autocheckpoint(0)")
		q.Add("_pragma", "temp_store(MEMORY)")
	}
	return "file:" + (&url.URL{Path: path}).EscapedPath() + "?" + q.Encode()
}

func (s *Store) open(o Options) error {
	ctx := context.Background()
	var err error
	s.wdb, err = sql.Open("sqlite", dsn(s.path, o.WriterCacheKiB, roleWriter))
	if err != nil {
		return fmt.Errorf("embedded: open: %w", err)
	}
	s.wdb.SetMaxOpenConns(1)
	s.wdb.SetMaxIdleConns(1)
	s.wdb.SetConnMaxLifetime(0)
	s.wconn, err = s.wdb.Conn(ctx)
	if err != nil {
		return fmt.Errorf("embedded: open: %w", err)
	}
	var mode string
	var syncMode int
	if err := s.wconn.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return fmt.Errorf("embedded: open: %w", err)
	}
	if err := s.wconn.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&syncMode); err != nil {
		return fmt.Errorf("embedded: open: %w", err)
	}
	if mode != "wal" || syncMode != 2 {
		return fmt.Errorf("embedded: open: journal_mode %s synchronous %d, want wal and 2 (FULL)", mode, syncMode)
	}
	var version int
	if err := s.wconn.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return fmt.Errorf("embedded: open: %w", err)
	}
	if version > schemaVersion {
		return fmt.Errorf("embedded: open: database schema %d is newer than this program's %d", version, schemaVersion)
	}
	if err := s.migrate(ctx, version); err != nil {
		return err
	}
	if err := s.wconn.QueryRowContext(ctx, "SELECT max(coalesce((SELECT max(vid) FROM versions), 0), coalesce((SELECT max(vid) FROM deferred), 0))").Scan(&s.last); err != nil {
		return fmt.Errorf("embedded: open: %w", err)
	}
	if err := s.loadBacklog(ctx); err != nil {
		return err
	}
	// The chain's head: chain_head, or a later link materialised from the
	// log (which does not write chain_head); openLog looks at the log.
	err = s.wconn.QueryRowContext(ctx, `SELECT seq, hash FROM chain_head WHERE id = 1`).Scan(&s.head.seq, &s.head.hash)
	if err != nil && !errors.Is(err, errNoRows) {
		return fmt.Errorf("embedded: open: %w", err)
	}
	var seq int64
	var body []byte
	err = s.wconn.QueryRowContext(ctx, `SELECT c.seq, v.body FROM chain c JOIN versions v ON v.vid = c.vid ORDER BY c.seq DESC LIMIT 1`).Scan(&seq, &body)
	if err != nil && !errors.Is(err, errNoRows) {
		return fmt.Errorf("embedded: open: %w", err)
	}
	if seq > s.head.seq && body != nil {
		h := sha256.Sum256(body)
		s.head = chainHead{seq: seq, hash: h[:]}
	}
	s.dict, err = loadDict(ctx, s.wconn)
	if err != nil {
		return err
	}
	if s.wst, err = prepare(ctx, s.wconn); err != nil {
		return err
	}

	s.cdb, err = sql.Open("sqlite", dsn(s.path, 2048, roleCheckpointer))
	if err != nil {
		return fmt.Errorf("embedded: open: %w", err)
	}
	s.cdb.SetMaxOpenConns(1)
	s.rdb, err = sql.Open("sqlite", dsn(s.path, o.CacheKiB, roleReader))
	if err != nil {
		return fmt.Errorf("embedded: open: %w", err)
	}
	s.rdb.SetMaxOpenConns(o.Readers)
	s.rdb.SetMaxIdleConns(o.Readers)
	s.rdb.SetConnMaxLifetime(0)
	if s.rst, err = prepare(ctx, s.rdb); err != nil {
		return err
	}
	s.sdb, err = sql.Open("sqlite", dsn(s.path, o.CacheKiB, roleReader))
	if err != nil {
		return fmt.Errorf("embedded: open: %w", err)
	}
	s.sdb.SetMaxOpenConns(o.Readers)
	s.sdb.SetMaxIdleConns(o.Readers)
	s.sdb.SetConnMaxLifetime(0)
	return s.openSearchConns(ctx, s.sdb, o.Readers)
}

// migrate brings the schema from version to schemaVersion in one
// transaction: older versions' changes first, then every table and index
// of the current schema.
func (s *Store) migrate(ctx context.Context, version int) (err error) {
	if _, err := s.wconn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return fmt.Errorf("embedded: migrate: %w", err)
	}
	defer func() {
		if err != nil {
			s.wconn.ExecContext(ctx, "ROLLBACK")
		}
	}()
	for v := version; v > 0 && v < schemaVersion; v++ {
		if migrations[v] == "" {
			continue // only new tables
		}
		if _, err := s.wconn.ExecContext(ctx, migrations[v]); err != nil {
			return fmt.Errorf("embedded: migrate schema %d to %d: %w", v, v+1, err)
		}
	}
	if _, err := s.wconn.ExecContext(ctx, schema); err != nil {
		return fmt.Errorf("embedded: create schema: %w", err)
	}
	if version < schemaVersion {
		if _, err := s.wconn.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", schemaVersion)); err != nil {
			return fmt.Errorf("embedded: migrate: %w", err)
		}
	}
	if _, err := s.wconn.ExecContext(ctx, "COMMIT"); err != nil {
		return fmt.Errorf("embedded: migrate: %w", err)
	}
	return nil
}

// Close finishes the queued writes, materialises deferred ones, checkpoints the WAL into the database
// file and closes it. It is safe to call more than once.
func (s *Store) Close() error {
	s.once.Do(func() {
		s.mu.Lock()
		s.closed = true
		close(s.queue)
		close(s.stop)
		s.mu.Unlock()
		<-s.done
		s.bg.Wait()
		if s.dlog != nil {
			if err := s.dlog.sync(); err != nil {
				s.closeErr = err
			}
		}
		if _, err := s.wconn.ExecContext(context.Background(), "PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
			s.closeErr = fmt.Errorf("embedded: checkpoint: %w", err)
		}
		if err := s.closeDBs(); err != nil && s.closeErr == nil {
			s.closeErr = err
		}
	})
	return s.closeErr
}

func (s *Store) closeDBs() error {
	var errs []error
	for _, st := range []*stmts{s.rst, s.wst} {
		if st != nil {
			st.close()
		}
	}
	s.closeSearchConns()
	if s.dlog != nil {
		errs = append(errs, s.dlog.f.Close())
	}
	if s.wconn != nil {
		errs = append(errs, s.wconn.Close())
	}
	if s.rdb != nil {
		errs = append(errs, s.rdb.Close())
	}
	if s.sdb != nil {
		errs = append(errs, s.sdb.Close())
	}
	if s.cdb != nil {
		errs = append(errs, s.cdb.Close())
	}
	if s.wdb != nil {
		errs = append(errs, s.wdb.Close())
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("embedded: close: %w", err)
	}
	return nil
}

// maxWALFrames is the WAL length (in pages) beyond which the writer
// restarts the WAL.
const maxWALFrames = 32768 // 128 MiB of 4 KiB pages

// checkpointer copies committed WAL frames into the database file in the
// background (PASSIVE: it never blocks the writer or readers), at most
// every 50 ms while writes go on; Close truncates the WAL.
//
// Under sustained writes that is not enough: SQLite restarts the WAL (the
// next frames go to its start) only when a write transaction begins after
// a checkpoint has copied every frame, and the writer begins its next
// batch while the checkpoint of the previous one still runs. So when the
// checkpointer finds the WAL longer than maxWALFrames it asks the writer
// (walLong) to truncate it between two batches itself; by then most
// frames are copied, and the writer waits only for the rest.
func (s *Store) checkpointer() {
	defer s.bg.Done()
	const every = 50 * time.Millisecond
	for {
		select {
		case <-s.stop:
			return
		case <-s.wrote:
		}
		var busy, log, done int
		if err := s.cdb.QueryRow("PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &log, &done); err != nil {
			s.log.Error("embedded: checkpoint", "err", err)
		} else if log > maxWALFrames {
			s.walLong.Store(true)
		}
		select {
		case <-s.stop:
			return
		case <-time.After(every):
		}
	}
}

// isClosed reports whether Close has begun.
func (s *Store) isClosed() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.closed
}

// readErr maps an error of the read pool: after Close it is ErrClosed.
func (s *Store) readErr(op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	if errors.Is(err, storage.ErrNotFound) || errors.Is(err, storage.ErrDeleted) ||
		errors.Is(err, storage.ErrInvalidCursor) || errors.Is(err, storage.ErrUnsupported) {
		return err
	}
	if s.isClosed() {
		return fmt.Errorf("embedded: %s: %w", op, storage.ErrClosed)
	}
	return fmt.Errorf("embedded: %s: %w", op, err)
}

// Path returns the database file's path.
func (s *Store) Path() string { return s.path }
