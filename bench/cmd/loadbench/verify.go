package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// cmdVerify checks, after the runs, that every accepted request is stored
// in JetStream (stream messages = 200 accepted answers) and that every
// answered request has its history row in ClickHouse (inbound rows =
// answers), waiting up to -wait for the history writer's last flush, and
// that the spool is empty.
func cmdVerify(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fset := newFlags("verify", stderr)
	results := fset.String("results", "", "results file written by run")
	label := fset.String("label", "hookgate", "the runs against the gateway")
	natsURL := fset.String("nats", "", "the gateway's bus (bus.listen)")
	stream := fset.String("stream", "HOOKGATE", "the inbound stream")
	chAddr := fset.String("clickhouse", "", "ClickHouse native address")
	db := fset.String("db", "hookgate", "history database")
	spool := fset.String("spool", "", "the history spool directory (data_dir/history/spool)")
	wait := fset.Duration("wait", 60*time.Second, "how long to wait for the counts to settle")
	if err := fset.Parse(args); err != nil {
		return exitError(2)
	}
	rs, err := readResults(*results)
	if err != nil {
		return err
	}
	var answered, acceptedN, dup, errs int64
	for _, r := range rs {
		if r.Label != *label {
			continue
		}
		answered += r.TotalAnswered
		acceptedN += r.TotalAccepted
		dup += r.TotalDuplicate
		errs += r.TotalErrors
	}
	fmt.Fprintf(stdout, "sent to %s: %d answered, %d accepted (200), %d duplicate (200), %d transport errors\n",
		*label, answered, acceptedN, dup, errs)
	ok := errs == 0 && dup == 0
	deadline := time.Now().Add(*wait)

	if *natsURL != "" {
		msgs, err := streamMsgs(ctx, *natsURL, *stream, acceptedN, deadline)
		if err != nil {
			return err
		}
		match := msgs == uint64(acceptedN)
		ok = ok && match
		fmt.Fprintf(stdout, "JetStream %s: %d messages; accepted answers %d: %s\n", *stream, msgs, acceptedN, verdict(match))
	}
	if *chAddr != "" {
		rows, byOutcome, err := historyRows(ctx, *chAddr, *db, answered, deadline)
		if err != nil {
			return err
		}
		match := rows == uint64(answered)
		ok = ok && match
		fmt.Fprintf(stdout, "ClickHouse %s.exchanges: %d inbound rows %v; answered %d: %s\n", *db, rows, byOutcome, answered, verdict(match))
	}
	if *spool != "" {
		n, err := dirBytes(*spool)
		if err != nil {
			return err
		}
		ok = ok && n == 0
		fmt.Fprintf(stdout, "history spool %s: %d bytes: %s\n", *spool, n, verdict(n == 0))
	}
	if !ok {
		return exitError(1)
	}
	return nil
}

func verdict(ok bool) string {
	if ok {
		return "OK"
	}
	return "MISMATCH"
}

func streamMsgs(ctx context.Context, url, name string, want int64, deadline time.Time) (uint64, error) {
	nc, err := nats.Connect(url, nats.Timeout(2*time.Second))
	if err != nil {
		return 0, fmt.Errorf("connect %s: %w", url, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return 0, err
	}
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		s, err := js.Stream(cctx, name)
		var msgs uint64
		if err == nil {
			var info *jetstream.StreamInfo
			info, err = s.Info(cctx)
			if err == nil {
				msgs = info.State.Msgs
			}
		}
		cancel()
		if err != nil {
			return 0, fmt.Errorf("stream %s: %w", name, err)
		}
		if msgs >= uint64(want) || time.Now().After(deadline) {
			return msgs, nil
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func historyRows(ctx context.Context, addr, db string, want int64, deadline time.Time) (uint64, map[string]uint64, error) {
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{addr}, DialTimeout: 5 * time.Second})
	if err != nil {
		return 0, nil, err
	}
	defer conn.Close()
	var last uint64
	stableSince := time.Now()
	for {
		var n uint64
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := conn.QueryRow(cctx, "SELECT count() FROM "+db+".exchanges WHERE direction = 'inbound'").Scan(&n)
		cancel()
		if err != nil {
			return 0, nil, fmt.Errorf("count history rows: %w", err)
		}
		if n != last {
			last, stableSince = n, time.Now()
		}
		// done when the count is reached, or it has not moved for 10 s
		if n >= uint64(want) || time.Now().After(deadline) || time.Since(stableSince) > 10*time.Second {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	by := map[string]uint64{}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	rows, err := conn.Query(cctx, "SELECT outcome, count() FROM "+db+".exchanges WHERE direction = 'inbound' GROUP BY outcome")
	if err != nil {
		return 0, nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var o string
		var c uint64
		if err := rows.Scan(&o, &c); err != nil {
			return 0, nil, err
		}
		by[o] = c
	}
	return last, by, rows.Err()
}

func dirBytes(dir string) (int64, error) {
	var n int64
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if path == dir && errors.Is(err, fs.ErrNotExist) {
				return filepath.SkipDir
			}
			return err
		}
		if d.Type().IsRegular() {
			info, err := d.Info()
			if err != nil {
				return err
			}
			n += info.Size()
		}
		return nil
	})
	return n, err
}
