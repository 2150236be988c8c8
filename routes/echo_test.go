package routes

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/hookgate/hookgate/config"
	"github.com/hookgate/hookgate/outbound"
)

func TestSeenCovers(t *testing.T) {
	dm := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		rec  SeenRecord
		want bool
	}{
		{"newer state", SeenRecord{DateModify: dm.Add(time.Second), ReadAt: dm.Add(time.Second)}, true},
		{"same second, read a second later", SeenRecord{DateModify: dm, ReadAt: dm.Add(time.Second)}, true},
		{"same second, read in that second", SeenRecord{DateModify: dm, ReadAt: dm.Add(900 * time.Millisecond)}, false},
		{"older state", SeenRecord{DateModify: dm.Add(-time.Second), ReadAt: dm.Add(time.Hour)}, false},
	} {
		if got := tc.rec.Covers(dm); got != tc.want {
			t.Errorf("Covers(%s) = %v; want %v", tc.name, got, tc.want)
		}
	}
}

func TestStateFingerprint(t *testing.T) {
	res := func(s string) *outbound.Result {
		return &outbound.Result{Result: json.RawMessage(s), Time: outbound.Time{Finish: 1780000000.5}}
	}
	a, err := stateOf(res(`{"ID":"7","TITLE":"A","DATE_MODIFY":"2026-11-29T12:00:00+03:00","MODIFY_BY_ID":"1"}`))
	if err != nil {
		t.Fatal(err)
	}
	// the same state, keys in another order
	b, _ := stateOf(res(`{"MODIFY_BY_ID":"1","DATE_MODIFY":"2026-11-29T12:00:00+03:00","TITLE":"A","ID":"7"}`))
	// one field differs; DATE_MODIFY differs
	c, _ := stateOf(res(`{"ID":"7","TITLE":"B","DATE_MODIFY":"2026-11-29T12:00:00+03:00","MODIFY_BY_ID":"1"}`))
	d, _ := stateOf(res(`{"ID":"7","TITLE":"A","DATE_MODIFY":"2026-11-29T12:00:01+03:00","MODIFY_BY_ID":"1"}`))
	if a.fingerprint != b.fingerprint {
		t.Error("the same state in another key order has another fingerprint")
	}
	if a.fingerprint == c.fingerprint || a.fingerprint == d.fingerprint {
		t.Error("a changed field or DATE_MODIFY keeps the fingerprint")
	}
	if a.id != "7" || a.modifiedBy != "1" || !a.modified.Equal(time.Date(2026, 11, 29, 9, 0, 0, 0, time.UTC)) ||
		!a.readAt.Equal(time.Unix(1780000000, 5e8)) {
		t.Errorf("state = %+v", a)
	}
	if _, err := stateOf(res(`true`)); err == nil {
		t.Error("stateOf(true) = nil error; want one: not an entity")
	}
}

func TestSyncRoles(t *testing.T) {
	deliver := &config.Deliver{URL: "http://x"}
	for _, tc := range []struct {
		name  string
		route config.Route
		want  string
	}{
		{"enrich and deliver", config.Route{Call: &config.Call{Method: "crm.deal.get"}, Deliver: deliver}, "deal read"},
		{"enrich without delivery", config.Route{Call: &config.Call{Method: "crm.deal.get"}}, ""},
		{"add", config.Route{Call: &config.Call{Method: "crm.lead.add"}}, "lead write"},
		{"update", config.Route{Call: &config.Call{Method: "CRM.DEAL.UPDATE"}}, "deal write"},
		{"other write", config.Route{Call: &config.Call{Method: "crm.timeline.comment.add"}}, ""},
		{"delivery only", config.Route{Deliver: deliver}, ""},
	} {
		got := ""
		if r := roleOf(tc.route); r != nil {
			got = r.entity
			if r.read {
				got += " read"
			}
			if r.write {
				got += " write"
			}
		}
		if got != tc.want {
			t.Errorf("roleOf(%s) = %q; want %q", tc.name, got, tc.want)
		}
	}
}

func TestWrittenID(t *testing.T) {
	for _, tc := range []struct {
		name   string
		params map[string]any
		result string
		want   string
	}{
		{"update", map[string]any{"id": "41", "fields": map[string]any{}}, `true`, "41"},
		{"update ID", map[string]any{"ID": 42}, `true`, "42"},
		{"add", map[string]any{"fields": map[string]any{}}, `394`, "394"},
		{"add as string", map[string]any{}, `"395"`, "395"},
		{"nothing", map[string]any{}, `true`, ""},
	} {
		if got := writtenID(tc.params, &outbound.Result{Result: json.RawMessage(tc.result)}); got != tc.want {
			t.Errorf("writtenID(%s) = %q; want %q", tc.name, got, tc.want)
		}
	}
}
