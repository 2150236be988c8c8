package main

import (
	"flag"
	"fmt"
	"time"

	"github.com/hookgate/hookgate/outbound/bitrix24test"
)

// syncHelp describes the two-way sync flags (docs/sync.md).
const syncHelp = `
Two-way sync (docs/sync.md): with -events-url it sends ONCRM<ENTITY>ADD and
ONCRM<ENTITY>UPDATE for every add and update to that handler (a hookgate
bitrix24 source), with auth[application_token] = -events-token, and drops
the share -drop-events of them, as a portal that loses events does.
-commit-timeout METHOD makes the first -commit-timeout-count calls of
METHOD commit and then never answer.
`

// syncFlags registers the two-way sync flags on fs; the returned function
// applies them to a simulator.
func syncFlags(fs *flag.FlagSet) func(*bitrix24test.Server) error {
	eventsURL := fs.String("events-url", "", "send CRM events to this handler URL (e.g. http://127.0.0.1:8080/webhook/b24)")
	eventsToken := fs.String("events-token", "", "auth[application_token] of the events")
	drop := fs.Float64("drop-events", 0, "share of CRM events never sent, 0..1 (0.1 = every tenth)")
	commitMethod := fs.String("commit-timeout", "", "REST method whose calls commit and then never answer (e.g. crm.deal.add)")
	commitCount := fs.Int("commit-timeout-count", 1, "how many calls -commit-timeout affects")
	return func(sim *bitrix24test.Server) error {
		if *drop < 0 || *drop > 1 {
			return fmt.Errorf("-drop-events %v: want a share from 0 to 1", *drop)
		}
		if *eventsURL != "" {
			sim.SetEventHandler(bitrix24test.EventHandler{URL: *eventsURL, Token: *eventsToken, Drop: *drop})
		} else if *drop > 0 {
			return fmt.Errorf("-drop-events needs -events-url")
		}
		if *commitMethod != "" {
			sim.InjectFault(bitrix24test.Fault{Method: *commitMethod, Count: *commitCount, AfterCommit: true, Latency: time.Minute})
		}
		return nil
	}
}
