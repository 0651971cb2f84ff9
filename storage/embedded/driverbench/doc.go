// Package driverbench compares SQLite drivers for the embedded store on the
// workloads the store runs: point reads of a 2 KB JSON row by key with
// concurrent readers, durable single-row commits, a batched insert
// transaction and an index range count. It is a separate module so that the
// drivers not chosen stay out of Regie's build; run it with
//
//	cd storage/embedded/driverbench
//	go test -run '^$' -bench . -count 5 -benchtime 2s \
//	    -ldflags="-X github.com/mattn/go-sqlite3.driverName=sqlite3_mattn"
//
// (mattn's driver registers the same name as ncruces'; the flag renames it.)
// The results are recorded in docs/benchmarks.md ("SQLite driver").
package driverbench
