package gateway_test

import (
	"bufio"
	"context"
	"os"
	"strings"
	"testing"

	"github.com/hookgate/hookgate/config"
	"github.com/hookgate/hookgate/gateway"
	"github.com/hookgate/hookgate/history"
	"github.com/hookgate/hookgate/internal/testenv"
	"github.com/hookgate/hookgate/providers"
)

// TestHistoryBodyTruncatedOnce: a 100 000-byte inbound body with
// history.max_body_bytes 65536 is stored as its first 65 536 bytes and a
// marker naming the 34 464 bytes left out, in NDJSON and in ClickHouse.
// (The gateway used to truncate the row and the writer again, so the
// marker said "[truncated 26 bytes]".)
func TestHistoryBodyTruncatedOnce(t *testing.T) {
	const limit, size = 65536, 100000
	prefix := "event=E&id=big&pad="
	body := prefix + strings.Repeat("x", size-len(prefix))
	want := body[:limit] + "…[truncated 34464 bytes]"

	for _, tc := range []struct {
		name       string
		clickhouse bool
	}{{"ndjson", false}, {"clickhouse", true}} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := config.Default().History
			cfg.MaxBodyBytes = limit
			cfg.FlushInterval = config.Duration(3600e9)
			var addr, db string
			if tc.clickhouse {
				addr = testenv.ClickHouse(t)
				db = testenv.ClickHouseDatabase(t, addr)
				cfg.ClickHouse.Addr, cfg.ClickHouse.Database = []string{addr}, db
			}
			dataDir := t.TempDir()
			w, err := history.New(context.Background(), cfg, dataDir, "")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { w.Close(context.Background()) })

			bus := newBus(t)
			reg := providers.NewRegistry()
			reg.Register("key", func(config.Source) (providers.Provider, error) { return keyProvider{}, nil })
			sec := testenv.NewSecrets(map[string]string{"k/key": "api-key-0123"})
			scfg := config.Default().Server
			scfg.MaxBodyBytes = 1 << 20
			gw, err := gateway.New(scfg, []config.Source{{ID: "k", Provider: "key", Secret: "k/key"}},
				gateway.Deps{Registry: reg, Secrets: sec, Bus: bus, Recorder: w})
			if err != nil {
				t.Fatal(err)
			}
			f := &fixture{bus: bus, secrets: sec, srv: serveFiber(t, gw)}
			if status, ans, _ := f.post(t, "POST", "/webhooks/api-key-0123", form, body); status != 200 {
				t.Fatalf("POST = %d %v; want 200", status, ans)
			}
			if err := w.Flush(context.Background()); err != nil {
				t.Fatal(err)
			}

			var got string
			if tc.clickhouse {
				conn := testenv.ClickHouseConn(t, addr)
				if err := conn.QueryRow(context.Background(), "SELECT request_body FROM "+db+".exchanges").Scan(&got); err != nil {
					t.Fatal(err)
				}
			} else {
				got = ndjsonBody(t, dataDir+"/history")
			}
			if got != want {
				t.Errorf("stored request_body: %d bytes ending %q; want %d bytes ending %q",
					len(got), got[max(0, len(got)-40):], len(want), want[len(want)-40:])
			}
		})
	}
}

// ndjsonBody returns the request_body of the one row in the NDJSON files
// under dir.
func ndjsonBody(t *testing.T, dir string) string {
	t.Helper()
	files, err := history.Files(dir)
	if err != nil || len(files) != 1 {
		t.Fatalf("history.Files = %v, %v; want one file", files, err)
	}
	f, err := os.Open(files[0])
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	var bodies []string
	for sc.Scan() {
		x, err := history.ParseJSONEachRow(sc.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		bodies = append(bodies, x.RequestBody)
	}
	if len(bodies) != 1 {
		t.Fatalf("%s holds %d rows; want 1", files[0], len(bodies))
	}
	return bodies[0]
}
