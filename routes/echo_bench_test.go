package routes

import (
	"context"
	"encoding/json"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/hookgate/hookgate/config"
	"github.com/hookgate/hookgate/events"
	"github.com/hookgate/hookgate/internal/testenv"
	"github.com/hookgate/hookgate/outbound"
)

// BenchmarkSyncPerDelivery is what two-way sync adds to each enriched
// delivery on the embedded bus: the fingerprint of the state, one read of
// the echo bucket (a miss: the usual case) and the seen record (a read and
// a write).
func BenchmarkSyncPerDelivery(b *testing.B) {
	cfg := config.Default().Bus
	cfg.Listen = "127.0.0.1:" + strconv.Itoa(testenv.FreePort(b))
	ctx := context.Background()
	bus, err := events.Open(ctx, cfg, b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer bus.Close()
	s, err := OpenSync(ctx, bus.JetStream(), 1, true, time.Minute, map[string]string{"main": "1"}, []string{"main.deal"}, slog.New(slog.DiscardHandler))
	s.written["main.deal"] = true // a route writes deals
	if err != nil {
		b.Fatal(err)
	}
	e := &Engine{deps: Deps{Sync: s}, log: slog.New(slog.DiscardHandler), now: time.Now}
	r := &route{cfg: config.Route{Name: "deal-sync", Call: &config.Call{Portal: "main", Method: "crm.deal.get"}},
		sync: &syncRole{entity: "deal", read: true}}
	deal := map[string]any{"ID": "0", "TITLE": "Acme: website redesign", "STAGE_ID": "NEW", "OPPORTUNITY": "12500.00",
		"CURRENCY_ID": "USD", "CONTACT_ID": "1", "DATE_CREATE": "2026-11-29T12:00:00+03:00",
		"DATE_MODIFY": "2026-11-29T12:00:00+03:00", "MODIFY_BY_ID": "7", "ASSIGNED_BY_ID": "7"}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		deal["ID"] = strconv.Itoa(i % 1000)
		raw, _ := json.Marshal(deal)
		st, err := stateOf(&outbound.Result{Result: raw, Time: outbound.Time{Finish: float64(time.Now().Unix())}})
		if err != nil {
			b.Fatal(err)
		}
		if echo, err := e.isEcho(ctx, r, st); err != nil || echo {
			b.Fatalf("isEcho = %v, %v", echo, err)
		}
		e.recordSeen(ctx, r, st)
	}
}
