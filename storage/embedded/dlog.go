package embedded

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"regie/fhir"
	"regie/storage"
)

// The log of deferred writes.
//
// A deferred write made outside a transaction (Store.Write with
// storage.Write.Defer; the engine's AuditEvent of every read) does not
// touch the database at all: the writer goroutine stamps it, seals it into
// the chain and appends it to LogName beside the database, the records of
// a batch with one write(2). The caller is answered once its record is in
// the file (so it survives Regie crashing). The file is fsynced every
// Options.LogSync (before each answer when negative), and always before a
// database commit: a link stored in the database never follows a log
// record that is not durable, so what a power failure can take is the
// log's tail, a suffix of the chain, and never a write's AuditEvent (those
// are written in the write's transaction, in the deferred table).
//
// Log records are materialised like the deferred table's rows; log_state
// keeps, in the same transaction, the chain position of the last one
// materialised and the offset after it. Once everything in the file is
// materialised and it has grown past logTruncateAt, it is emptied.
//
// A record is a frame: the payload's length (uint32, little endian), its
// CRC-32C (uint32), and the payload: uvarint seq, vid and tid, then id,
// entry list and sealed body, each as uvarint length and bytes. The CRC
// finds torn writes; the chain finds changes.

// LogName is the file name of the log of deferred writes.
const LogName = "regie.auditlog"

// defaultLogSync is how often the log is fsynced while it has unsynced
// records (Options.LogSync).
const defaultLogSync = 5 * time.Millisecond

// logTruncateAt is the size beyond which a fully materialised log is emptied.
var logTruncateAt int64 = 16 << 20

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// dlog is the open log.
type dlog struct {
	f      *os.File
	path   string
	end    atomic.Int64 // bytes in the file
	synced atomic.Int64 // bytes known to be durable
	syncMu sync.Mutex   // serialises fsync and truncation
	walkMu sync.RWMutex // WalkChain (R) against truncation (W)
	err    atomic.Pointer[error]

	// The writer goroutine's.
	matOff int64               // offset of the first record not materialised
	matSeq int64               // chain position of the last materialised record
	ids    map[string]struct{} // "type/id" of the records not materialised
	buf    []byte
}

// logWrite is a deferred write bound for the log.
type logWrite struct {
	wr   *storage.Write
	tid  int64
	list []byte
	gen  uint64 // typeGen when the id was found unused
	res  *fhir.Resource
}

// failed returns the error that stopped the log, if any.
func (l *dlog) failed() error {
	if p := l.err.Load(); p != nil {
		return *p
	}
	return nil
}

func (l *dlog) fail(err error) {
	l.err.CompareAndSwap(nil, &err)
}

// sync makes everything written so far durable.
func (l *dlog) sync() error {
	if l.synced.Load() >= l.end.Load() {
		return l.failed()
	}
	l.syncMu.Lock()
	defer l.syncMu.Unlock()
	end := l.end.Load()
	if l.synced.Load() >= end {
		return l.failed()
	}
	if err := l.datasync(); err != nil {
		err = fmt.Errorf("embedded: fsync the log: %w", err)
		l.fail(err)
		return err
	}
	l.synced.Store(end)
	return nil
}

// datasync flushes the log's data and the size of the file (fdatasync).
func (l *dlog) datasync() error {
	rc, err := l.f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		for {
			if serr = syscall.Fdatasync(int(fd)); serr != syscall.EINTR {
				return
			}
		}
	}); err != nil {
		return err
	}
	return serr
}

// appendFrame appends the frame of one record to b.
func appendFrame(b []byte, d *deferredRow) []byte {
	at := len(b)
	b = append(b, 0, 0, 0, 0, 0, 0, 0, 0)
	b = binary.AppendUvarint(b, uint64(d.seq))
	b = binary.AppendUvarint(b, uint64(d.vid))
	b = binary.AppendUvarint(b, uint64(d.tid))
	for _, s := range [][]byte{[]byte(d.id), d.list, d.body} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	payload := b[at+8:]
	binary.LittleEndian.PutUint32(b[at:], uint32(len(payload)))
	binary.LittleEndian.PutUint32(b[at+4:], crc32.Checksum(payload, castagnoli))
	return b
}

var errBadFrame = errors.New("embedded: damaged log record")

// parseFrame parses the frame at the start of b. It returns the record,
// the frame's length, and errBadFrame if b does not start with a whole,
// intact frame (io.ErrUnexpectedEOF if b ends inside it). The record's
// slices share b's memory.
func parseFrame(b []byte) (deferredRow, int, error) {
	var d deferredRow
	if len(b) < 8 {
		return d, 0, io.ErrUnexpectedEOF
	}
	n := int(binary.LittleEndian.Uint32(b))
	if len(b)-8 < n {
		return d, 0, io.ErrUnexpectedEOF
	}
	p := b[8 : 8+n]
	if crc32.Checksum(p, castagnoli) != binary.LittleEndian.Uint32(b[4:]) {
		return d, 0, errBadFrame
	}
	var vals [3]uint64
	for i := range vals {
		v, k := binary.Uvarint(p)
		if k <= 0 {
			return d, 0, errBadFrame
		}
		vals[i], p = v, p[k:]
	}
	var strs [3][]byte
	for i := range strs {
		v, k := binary.Uvarint(p)
		if k <= 0 || uint64(len(p)-k) < v {
			return d, 0, errBadFrame
		}
		strs[i], p = p[k:k+int(v)], p[k+int(v):]
	}
	if len(p) != 0 || vals[0] == 0 || len(strs[2]) == 0 {
		return d, 0, errBadFrame
	}
	d.seq, d.vid, d.tid = int64(vals[0]), int64(vals[1]), int64(vals[2])
	d.id, d.list, d.body = string(strs[0]), strs[1], strs[2]
	if len(d.list) == 0 {
		d.list = nil
	}
	return d, 8 + n, nil
}

// readFrames reads up to limit records from off, stopping at end, and
// returns them with the offset after the last.
func (l *dlog) readFrames(off, end int64, limit int) ([]deferredRow, int64, error) {
	var out []deferredRow
	size := min(end-off, 1<<20)
	for len(out) < limit && off < end {
		buf := make([]byte, size)
		if _, err := l.f.ReadAt(buf, off); err != nil {
			return nil, 0, fmt.Errorf("embedded: read the log: %w", err)
		}
		p := 0
		for len(out) < limit {
			d, n, err := parseFrame(buf[p:])
			if errors.Is(err, io.ErrUnexpectedEOF) && p < len(buf) && off+int64(p) < end {
				break // the frame goes on beyond buf
			}
			if err != nil {
				if p == len(buf) {
					break
				}
				return nil, 0, fmt.Errorf("embedded: log at offset %d: %w", off+int64(p), err)
			}
			out = append(out, d)
			p += n
		}
		if p == 0 {
			size *= 2 // one frame larger than the buffer
			if off+size > end {
				size = end - off
			}
			continue
		}
		off += int64(p)
		size = min(end-off, 1<<20)
	}
	return out, off, nil
}

// openLog opens the log, checks it and finds what is not yet materialised:
// the backlog, the chain's head if the log's last record is later than
// the database's, and the last lastUpdated. A damaged tail (a write torn
// by a crash) is cut off and kept in LogName.torn.
func (s *Store) openLog(ctx context.Context, dir string) error {
	l := &dlog{path: filepath.Join(dir, LogName), ids: map[string]struct{}{}}
	f, err := os.OpenFile(l.path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("embedded: open the log: %w", err)
	}
	l.f = f
	s.dlog = l
	err = s.wconn.QueryRowContext(ctx, `SELECT off, seq FROM log_state WHERE id = 1`).Scan(&l.matOff, &l.matSeq)
	if err != nil && !errors.Is(err, errNoRows) {
		return fmt.Errorf("embedded: open the log: %w", err)
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return fmt.Errorf("embedded: open the log: %w", err)
	}
	if l.matOff > int64(len(data)) {
		l.matOff = 0 // emptied after its position was stored
	}
	counts := map[string]int64{}
	first := int64(-1)
	var last *deferredRow
	for p := 0; p < len(data); {
		if allZero(data[p:]) {
			data = data[:p] // zeros a crash left after the last write
			break
		}
		d, n, err := parseFrame(data[p:])
		if err != nil {
			if err := l.cutTail(data, p); err != nil {
				return err
			}
			s.log.Warn("embedded: the log of deferred writes ended in a damaged record (a write torn by a crash); its tail is kept in "+LogName+".torn",
				"offset", p, "bytes", len(data)-p)
			data = data[:p]
			break
		}
		if d.seq > l.matSeq {
			if first < 0 {
				first = int64(p)
			}
			typ := s.dict.typeName(d.tid)
			if typ == "" {
				return fmt.Errorf("embedded: log at offset %d: unknown type %d", p, d.tid)
			}
			counts[typ]++
			l.ids[typ+"/"+d.id] = struct{}{}
			s.last = max(s.last, d.vid)
			last = &d
		}
		p += n
	}
	if first >= 0 {
		l.matOff = first
	} else {
		l.matOff = int64(len(data))
	}
	l.end.Store(int64(len(data)))
	l.synced.Store(int64(len(data)))
	if last != nil && last.seq > s.head.seq {
		h := sha256.Sum256(last.body)
		s.head = chainHead{seq: last.seq, hash: h[:]}
	}
	s.publish(counts)
	return nil
}

// cutTail moves the damaged end of the log, from offset p, to LogName.torn.
func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func (l *dlog) cutTail(data []byte, p int) error {
	torn, err := os.OpenFile(l.path+".torn", os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("embedded: keep the log's damaged tail: %w", err)
	}
	tail := data[p:]
	for len(tail) > 0 && tail[len(tail)-1] == 0 {
		tail = tail[:len(tail)-1]
	}
	if _, err := torn.Write(tail); err != nil {
		torn.Close()
		return fmt.Errorf("embedded: keep the log's damaged tail: %w", err)
	}
	if err := torn.Sync(); err != nil {
		torn.Close()
		return fmt.Errorf("embedded: keep the log's damaged tail: %w", err)
	}
	if err := torn.Close(); err != nil {
		return fmt.Errorf("embedded: keep the log's damaged tail: %w", err)
	}
	if err := l.f.Truncate(int64(p)); err != nil {
		return fmt.Errorf("embedded: cut the log's damaged tail: %w", err)
	}
	return l.f.Sync()
}

// syncer fsyncs the log every interval while it has unsynced records.
func (s *Store) syncer(every time.Duration) {
	defer s.bg.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			if err := s.dlog.sync(); err != nil {
				s.log.Error("embedded: the log of deferred writes failed; deferred writes are refused", "err", err)
			}
		}
	}
}

// forLog prepares a deferred write for the log, in the caller's goroutine.
// It returns false when the write must go through the database instead:
// it is not a plain chained create, or its type, parameters or systems are
// not yet in the dictionary (the log refers to them by number).
func (s *Store) forLog(wr *storage.Write) (*logWrite, bool) {
	if s.dlog == nil || wr.Chain == nil || wr.Delete || wr.IfMatch != 0 || len(wr.Body) == 0 || wr.Type == "" || !fhir.ValidID(wr.ID) {
		return nil, false
	}
	tid, ok := s.dict.typeID(wr.Type)
	if !ok {
		return nil, false
	}
	list, err := encodeList(dictOnly{s.dict}, tid, wr.Index)
	if err != nil {
		return nil, false
	}
	// Is the id in use? Asked here, in parallel, instead of on the writer,
	// which asks again only if a write of the type committed meanwhile.
	gen := s.typeGen(tid).Load()
	var one int
	switch err := s.rst.keyUsed.QueryRow(tid, wr.ID).Scan(&one); {
	case err == nil:
		return nil, false // the database path gives the error
	case !errors.Is(err, errNoRows):
		return nil, false
	}
	return &logWrite{wr: wr, tid: tid, list: list, gen: gen}, true
}

// typeGen is the count of committed database batches that wrote resources
// of type tid (see forLog).
func (s *Store) typeGen(tid int64) *atomic.Uint64 {
	if g, ok := s.gens.Load(tid); ok {
		return g.(*atomic.Uint64)
	}
	g, _ := s.gens.LoadOrStore(tid, new(atomic.Uint64))
	return g.(*atomic.Uint64)
}

// dictOnly interns through the committed dictionary only.
type dictOnly struct{ d *dict }

var errNotInDict = errors.New("embedded: not in the dictionary")

func (d dictOnly) typeID(name string) (int64, error) {
	if id, ok := d.d.typeID(name); ok {
		return id, nil
	}
	return 0, errNotInDict
}

func (d dictOnly) paramID(tid int64, code string) (int64, error) {
	if id, ok := d.d.paramID(tid, code); ok {
		return id, nil
	}
	return 0, errNotInDict
}

func (d dictOnly) systemID(uri string) (int64, error) {
	if id, ok := d.d.systemID(uri); ok {
		return id, nil
	}
	return 0, errNotInDict
}

// runLogBatch appends the records of log requests with one write.
func (s *Store) runLogBatch(batch []*request) {
	live := batch[:0:0]
	for _, r := range batch {
		if r.state.CompareAndSwap(queued, running) {
			live = append(live, r)
		} else {
			close(r.done)
		}
	}
	if len(live) == 0 {
		return
	}
	s.batches.Add(1)
	s.requests.Add(int64(len(live)))
	l := s.dlog
	head := s.head
	l.buf = l.buf[:0]
	counts := map[string]int64{}
	var ok []*request
	for _, r := range live {
		if r.err = s.appendRecord(r); r.err == nil {
			ok = append(ok, r)
			counts[r.lw.wr.Type]++
		}
	}
	var err error
	if len(ok) > 0 {
		err = l.failed()
		end := l.end.Load()
		if err == nil {
			if _, err = l.f.WriteAt(l.buf, end); err != nil {
				// what it left behind is unknown: refuse from now on
				err = fmt.Errorf("embedded: append to the log: %w", err)
				l.fail(err)
			}
		}
		if err == nil {
			l.end.Store(end + int64(len(l.buf)))
			if s.logSync < 0 {
				err = l.sync()
			}
		}
		if err != nil {
			s.head = head
			for _, r := range ok {
				r.err = err
			}
		} else {
			for _, r := range ok {
				l.ids[r.lw.wr.Type+"/"+r.lw.wr.ID] = struct{}{}
			}
			h := s.head
			s.pubHead.Store(&h)
			s.publish(counts)
		}
	}
	for _, r := range live {
		close(r.done)
	}
}

// appendRecord stamps, seals and frames one log request into the log's
// buffer and advances the chain's head.
func (s *Store) appendRecord(r *request) error {
	if err := r.ctx.Err(); err != nil {
		return err
	}
	lw := r.lw
	wr := lw.wr
	key := wr.Type + "/" + wr.ID
	if _, ok := s.dlog.ids[key]; ok {
		return fmt.Errorf("embedded: write %s: %w", wr.Type, storage.ErrImmutable)
	}
	if s.typeGen(lw.tid).Load() != lw.gen {
		// A write of the type committed since forLog looked: look again.
		var rid, version int64
		var deleted bool
		switch err := s.wst.curKey.QueryRow(lw.tid, wr.ID).Scan(&rid, &version, &deleted); {
		case err == nil:
			w := &wtx{s: s, st: s.wst}
			return w.existsErr(wr.Type, rid)
		case !errors.Is(err, errNoRows):
			return fmt.Errorf("embedded: write %s: %w", wr.Type, err)
		}
		var one int
		switch err := s.wst.keyUsed.QueryRow(lw.tid, wr.ID).Scan(&one); {
		case err == nil:
			return fmt.Errorf("embedded: write %s: %w", wr.Type, storage.ErrImmutable)
		case !errors.Is(err, errNoRows):
			return fmt.Errorf("embedded: write %s: %w", wr.Type, err)
		}
	}
	vid := s.nextVID()
	res := &fhir.Resource{Type: wr.Type, ID: wr.ID, Version: 1, LastUpdated: time.UnixMicro(vid).UTC()}
	body, err := fhir.Stamp(wr.Body, wr.ID, 1, res.LastUpdated)
	if err != nil {
		return fmt.Errorf("embedded: write %s: %w", wr.Type, err)
	}
	sealed, hash, err := wr.Chain(s.head.hash, body)
	if err != nil {
		return fmt.Errorf("embedded: chained write %s: %w", wr.Type, err)
	}
	if len(sealed) == 0 || len(hash) == 0 {
		return errors.New("embedded: the chain function returned no body or hash")
	}
	next := chainHead{seq: s.head.seq + 1, hash: append([]byte(nil), hash...)}
	s.dlog.buf = appendFrame(s.dlog.buf, &deferredRow{seq: next.seq, tid: lw.tid, id: wr.ID, vid: vid, list: lw.list, body: sealed})
	s.head = next
	res.Body = sealed
	lw.res = res
	return nil
}

// materialiseLog materialises up to limit log records (inside the batch's
// transaction) and returns how many.
func (w *wtx) materialiseLog(limit int) (int, error) {
	l := w.s.dlog
	if l == nil {
		return 0, nil
	}
	end := l.end.Load()
	if w.logOff >= end {
		return 0, nil
	}
	recs, off, err := l.readFrames(w.logOff, end, limit)
	if err != nil {
		return 0, err
	}
	n := 0
	for i := range recs {
		d := &recs[i]
		if d.seq <= w.logSeq {
			continue
		}
		if err := w.materialiseRow(d); err != nil {
			return 0, err
		}
		w.logIDs = append(w.logIDs, w.typeName(d.tid)+"/"+d.id)
		w.logSeq = d.seq
		n++
	}
	w.logOff = off
	if _, err := w.st.putLogState.Exec(w.logOff, w.logSeq); err != nil {
		return 0, fmt.Errorf("embedded: materialise: %w", err)
	}
	return n, nil
}

// logCommitted applies a committed batch's materialising to the log, and
// empties the log once it is wholly materialised and large.
func (s *Store) logCommitted(w *wtx) {
	l := s.dlog
	if l == nil || w.logOff == l.matOff {
		return
	}
	l.matOff, l.matSeq = w.logOff, w.logSeq
	for _, k := range w.logIDs {
		delete(l.ids, k)
	}
	if l.matOff < logTruncateAt || l.matOff != l.end.Load() {
		return
	}
	l.walkMu.Lock()
	defer l.walkMu.Unlock()
	l.syncMu.Lock()
	defer l.syncMu.Unlock()
	if err := l.f.Truncate(0); err != nil {
		s.log.Error("embedded: empty the log", "err", err)
		return
	}
	if err := l.f.Sync(); err != nil {
		l.fail(fmt.Errorf("embedded: fsync the log: %w", err))
		return
	}
	l.end.Store(0)
	l.synced.Store(0)
	l.matOff = 0
	// A crash before this leaves an offset beyond the end, read as 0.
	if _, err := s.wst.putLogState.Exec(0, l.matSeq); err != nil {
		s.log.Error("embedded: store the log's position", "err", err)
	}
}

// walkLog calls fn, in order, for the log records after seq (under
// walkMu, so the log is not emptied meanwhile).
func (l *dlog) walkLog(after int64, fn func(d *deferredRow) error) error {
	end := l.end.Load()
	var off int64
	for off < end {
		recs, next, err := l.readFrames(off, end, 1024)
		if err != nil {
			return err
		}
		for i := range recs {
			if recs[i].seq > after {
				if err := fn(&recs[i]); err != nil {
					return err
				}
			}
		}
		off = next
	}
	return nil
}
