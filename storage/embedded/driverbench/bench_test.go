package driverbench

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	_ "github.com/mattn/go-sqlite3"
	_ "github.com/ncruces/go-sqlite3/driver"
	_ "modernc.org/sqlite"
)

type drv struct {
	name, driver, dsn string
}

// drivers lists the candidates. mattn and ncruces both register
// "sqlite3": build with -ldflags="-X github.com/mattn/go-sqlite3.driverName=sqlite3_mattn".
var drivers = []drv{
	{"modernc", "sqlite", "file:%s?_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=busy_timeout(10000)&_txlock=immediate"},
	{"ncruces", "sqlite3", "file:%s?_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=busy_timeout(10000)&_txlock=immediate"},
	{"mattn-cgo", "sqlite3_mattn", "file:%s?_journal_mode=WAL&_synchronous=FULL&_busy_timeout=10000&_txlock=immediate"},
}

const nRows = 20000

var body = func() []byte {
	var sb strings.Builder
	sb.WriteString(`{"resourceType":"Observation","status":"final","note":[`)
	for sb.Len() < 2000 {
		sb.WriteString(`{"text":"lorem ipsum dolor sit amet consectetur"},`)
	}
	sb.WriteString(`{"text":"x"}]}`)
	return []byte(sb.String())
}()

func open(b *testing.B, d drv, dir string) *sql.DB {
	b.Helper()
	db, err := sql.Open(d.driver, fmt.Sprintf(d.dsn, filepath.Join(dir, "bench.db")))
	if err != nil {
		b.Fatal(err)
	}
	var mode string
	var sync int
	if err := db.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil {
		b.Fatal(err)
	}
	if err := db.QueryRow("PRAGMA synchronous").Scan(&sync); err != nil {
		b.Fatal(err)
	}
	if mode != "wal" || sync != 2 {
		b.Fatalf("%s: journal_mode=%s synchronous=%d", d.name, mode, sync)
	}
	b.Cleanup(func() { db.Close() })
	return db
}

func setup(b *testing.B, d drv) *sql.DB {
	b.Helper()
	db := open(b, d, b.TempDir())
	mustExec(b, db, `CREATE TABLE res(type TEXT NOT NULL, id TEXT NOT NULL, body BLOB NOT NULL, PRIMARY KEY(type, id)) WITHOUT ROWID`)
	tx, err := db.Begin()
	if err != nil {
		b.Fatal(err)
	}
	for i := range nRows {
		if _, err := tx.Exec(`INSERT INTO res VALUES ('Observation', ?, ?)`, fmt.Sprintf("id-%d", i), body); err != nil {
			b.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		b.Fatal(err)
	}
	return db
}

func mustExec(b *testing.B, db *sql.DB, q string, args ...any) {
	b.Helper()
	if _, err := db.Exec(q, args...); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkPointRead reads a random 2 KB row by (type, id) from 8
// goroutines per core.
func BenchmarkPointRead(b *testing.B) {
	for _, d := range drivers {
		b.Run(d.name, func(b *testing.B) {
			db := setup(b, d)
			db.SetMaxOpenConns(8)
			db.SetMaxIdleConns(8)
			stmt, err := db.Prepare(`SELECT body FROM res WHERE type = ? AND id = ?`)
			if err != nil {
				b.Fatal(err)
			}
			b.SetParallelism(8)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				var buf []byte
				for pb.Next() {
					id := fmt.Sprintf("id-%d", rand.IntN(nRows))
					if err := stmt.QueryRow("Observation", id).Scan(&buf); err != nil {
						b.Error(err)
						return
					}
					if len(buf) < 2000 {
						b.Error("short row")
						return
					}
				}
			})
		})
	}
}

// BenchmarkDurableInsert commits one 2 KB row per transaction
// (synchronous=FULL: one fsync per commit).
func BenchmarkDurableInsert(b *testing.B) {
	for _, d := range drivers {
		b.Run(d.name, func(b *testing.B) {
			db := open(b, d, b.TempDir())
			db.SetMaxOpenConns(1)
			mustExec(b, db, `CREATE TABLE res(type TEXT NOT NULL, id TEXT NOT NULL, body BLOB NOT NULL, PRIMARY KEY(type, id)) WITHOUT ROWID`)
			b.ResetTimer()
			for i := range b.N {
				if _, err := db.Exec(`INSERT INTO res VALUES ('Observation', ?, ?)`, fmt.Sprintf("id-%d", i), body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkBatchInsert inserts 1,000 2 KB rows with a secondary index entry
// each in one transaction; the reported time is per row.
func BenchmarkBatchInsert(b *testing.B) {
	for _, d := range drivers {
		b.Run(d.name, func(b *testing.B) {
			db := open(b, d, b.TempDir())
			db.SetMaxOpenConns(1)
			mustExec(b, db, `CREATE TABLE res(rid INTEGER PRIMARY KEY, type TEXT NOT NULL, id TEXT NOT NULL, body BLOB NOT NULL)`)
			mustExec(b, db, `CREATE UNIQUE INDEX res_key ON res(type, id)`)
			mustExec(b, db, `CREATE TABLE idx(p INTEGER, v TEXT, rid INTEGER, PRIMARY KEY(p, v, rid)) WITHOUT ROWID`)
			ctx := context.Background()
			b.ResetTimer()
			n := 0
			for n < b.N {
				tx, err := db.BeginTx(ctx, nil)
				if err != nil {
					b.Fatal(err)
				}
				ins, _ := tx.Prepare(`INSERT INTO res(type, id, body) VALUES ('Observation', ?, ?)`)
				idx, _ := tx.Prepare(`INSERT INTO idx VALUES (1, ?, ?)`)
				for j := 0; j < 1000 && n < b.N; j++ {
					r, err := ins.Exec(fmt.Sprintf("id-%d", n), body)
					if err != nil {
						b.Fatal(err)
					}
					rid, _ := r.LastInsertId()
					if _, err := idx.Exec(fmt.Sprintf("code-%d", n%97), rid); err != nil {
						b.Fatal(err)
					}
					n++
				}
				if err := tx.Commit(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRangeCount counts index entries in a range of a clustered
// (p, v, rid) index of 1,000,000 entries; b.N counts rows, so ns/op is the
// cost per counted entry.
func BenchmarkRangeCount(b *testing.B) {
	for _, d := range drivers {
		b.Run(d.name, func(b *testing.B) {
			db := open(b, d, b.TempDir())
			mustExec(b, db, `CREATE TABLE idx(p INTEGER, v INTEGER, rid INTEGER, PRIMARY KEY(p, v, rid)) WITHOUT ROWID`)
			mustExec(b, db, `WITH RECURSIVE c(x) AS (SELECT 0 UNION ALL SELECT x+1 FROM c WHERE x < 999999)
				INSERT INTO idx SELECT 1, x % 10, x FROM c`)
			var once sync.Once
			b.ResetTimer()
			counted := 0
			for counted < b.N {
				var n int
				if err := db.QueryRow(`SELECT count(*) FROM idx WHERE p = 1 AND v BETWEEN 3 AND 5`).Scan(&n); err != nil {
					b.Fatal(err)
				}
				once.Do(func() {
					if n != 300000 {
						b.Errorf("count %d", n)
					}
				})
				counted += n
			}
		})
	}
}
