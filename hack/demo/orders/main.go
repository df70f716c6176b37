// Command orders is the demo shop's order service: it keeps orders in SQLite on a persistent
// volume and reports how many it holds and a checksum over them, so that a drill can show that a
// restored copy holds the same data as production. It is demo code, built into the sandbox's
// local image "firedrill.local/orders".
//
//	orders serve --db /data/orders.db [--addr :8080]   serve
//	orders add --db /data/orders.db --count 42          place orders, as shoppers would
//	orders count --db /data/orders.db                   print the number of orders
//
// It never seeds itself: an app that recreated its data on an empty volume would hide a restore
// that lost it.
//
// HTTP: GET /orders/stats → {"count": N, "checksum": "…"}; POST /orders {"item": "…", "qty": N};
// GET /healthz (the process answers) and /readyz (the database answers).
package main

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	_ "modernc.org/sqlite"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: orders serve|add|count --db PATH")
		return 2
	}
	fl := flag.NewFlagSet(args[0], flag.ContinueOnError)
	fl.SetOutput(stderr)
	dbPath := fl.String("db", "/data/orders.db", "the SQLite database file")
	addr := fl.String("addr", ":8080", "where to serve HTTP")
	count := fl.Int("count", 1, "add: how many orders to place")
	if err := fl.Parse(args[1:]); err != nil {
		return 2
	}
	db, err := open(*dbPath)
	if err != nil {
		fmt.Fprintln(stderr, "orders:", err)
		return 1
	}
	defer db.Close()
	switch args[0] {
	case "count":
		st, err := stats(context.Background(), db)
		if err != nil {
			fmt.Fprintln(stderr, "orders:", err)
			return 1
		}
		fmt.Fprintln(stdout, st.Count)
		return 0
	case "add":
		if err := add(context.Background(), db, *count); err != nil {
			fmt.Fprintln(stderr, "orders:", err)
			return 1
		}
		return 0
	case "serve":
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
		defer stop()
		if err := serve(ctx, db, *addr); err != nil {
			fmt.Fprintln(stderr, "orders:", err)
			return 1
		}
		return 0
	}
	fmt.Fprintf(stderr, "orders: unknown command %q\n", args[0])
	return 2
}

func open(path string) (*sql.DB, error) {
	// One connection: SQLite serialises writers anyway, and the journal stays simple.
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)&_pragma=journal_mode(DELETE)")
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	if _, err := db.Exec(`CREATE TABLE IF NOT EXISTS orders (id INTEGER PRIMARY KEY, item TEXT NOT NULL, qty INTEGER NOT NULL, created TEXT NOT NULL)`); err != nil {
		db.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return db, nil
}

// add places n orders now, of the demo's items.
func add(ctx context.Context, db *sql.DB, n int) error {
	items := []string{"espresso beans", "grinder", "kettle", "filter papers", "mug", "scale"}
	for i := range n {
		if _, err := db.ExecContext(ctx, `INSERT INTO orders (item, qty, created) VALUES (?, ?, ?)`,
			items[i%len(items)], 1+i%3, time.Now().UTC().Format(time.RFC3339Nano)); err != nil {
			return err
		}
	}
	return nil
}

// Stats is what /orders/stats answers.
type Stats struct {
	Count int `json:"count"`
	// Checksum is the SHA-256 over every order, in id order: equal checksums, equal orders.
	Checksum string `json:"checksum"`
}

func stats(ctx context.Context, db *sql.DB) (Stats, error) {
	rows, err := db.QueryContext(ctx, `SELECT id, item, qty, created FROM orders ORDER BY id`)
	if err != nil {
		return Stats{}, err
	}
	defer rows.Close()
	h := sha256.New()
	var st Stats
	for rows.Next() {
		var id, qty int
		var item, created string
		if err := rows.Scan(&id, &item, &qty, &created); err != nil {
			return Stats{}, err
		}
		fmt.Fprintf(h, "%d\t%s\t%d\t%s\n", id, item, qty, created)
		st.Count++
	}
	st.Checksum = hex.EncodeToString(h.Sum(nil))
	return st, rows.Err()
}

func serve(ctx context.Context, db *sql.DB, addr string) error {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := db.PingContext(r.Context()); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /orders/stats", func(w http.ResponseWriter, r *http.Request) {
		st, err := stats(r.Context(), db)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(st)
	})
	mux.HandleFunc("POST /orders", func(w http.ResponseWriter, r *http.Request) {
		var o struct {
			Item string `json:"item"`
			Qty  int    `json:"qty"`
		}
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&o); err != nil || o.Item == "" || o.Qty < 1 {
			http.Error(w, `want {"item": "…", "qty": 1 or more}`, http.StatusBadRequest)
			return
		}
		res, err := db.ExecContext(r.Context(), `INSERT INTO orders (item, qty, created) VALUES (?, ?, ?)`, o.Item, o.Qty, time.Now().UTC().Format(time.RFC3339))
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		id, _ := res.LastInsertId()
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, "{\"id\": %d}\n", id)
	})
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	log.Printf("serving orders on %s", addr)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
