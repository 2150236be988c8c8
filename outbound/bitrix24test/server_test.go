package bitrix24test

import (
	"bytes"
	"encoding/json"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

type envelope struct {
	Result      json.RawMessage `json:"result"`
	Total       *int            `json:"total"`
	Next        *int            `json:"next"`
	Error       *string         `json:"error"`
	Description string          `json:"error_description"`
	Time        map[string]any  `json:"time"`
}

func do(t *testing.T, req *http.Request) (int, envelope) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var e envelope
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	return resp.StatusCode, e
}

func base(u string) string { return u + "/rest/" + DefaultUser + "/" + DefaultSecret + "/" }

func TestErrors(t *testing.T) {
	sim := NewServer()
	sim.SeedDeals(3)
	ts := sim.Start()
	defer ts.Close()
	tests := []struct {
		name       string
		path       string
		wantStatus int
		wantCode   string
		wantDesc   string
	}{
		{"ok", base(ts.URL) + "crm.deal.get.json?id=1", 200, "-", ""},
		{"ok without .json", base(ts.URL) + "crm.deal.get?id=2", 200, "-", ""},
		{"wrong secret", ts.URL + "/rest/1/wrong/crm.deal.get.json?id=1", 401, CodeInvalidCredentials, "Invalid request credentials"},
		{"wrong user", ts.URL + "/rest/2/" + DefaultSecret + "/crm.deal.get.json?id=1", 401, CodeInvalidCredentials, "Invalid request credentials"},
		{"no auth", ts.URL + "/rest/crm.deal.get.json?id=1", 401, CodeNoAuthFound, "Wrong authorization data"},
		{"unknown method", base(ts.URL) + "crm.nothing.get.json", 404, CodeMethodNotFound, "Method not found!"},
		{"missing id", base(ts.URL) + "crm.deal.get.json?id=999", 400, "", "Not found"},
		{"no id", base(ts.URL) + "crm.deal.get.json", 400, "", "ID is not defined or invalid."},
	}
	for _, tc := range tests {
		req, _ := http.NewRequest(http.MethodGet, tc.path, nil)
		status, e := do(t, req)
		code := "-"
		if e.Error != nil {
			code = *e.Error
		}
		if status != tc.wantStatus || code != tc.wantCode || e.Description != tc.wantDesc {
			t.Errorf("%s: got %d %q %q; want %d %q %q", tc.name, status, code, e.Description, tc.wantStatus, tc.wantCode, tc.wantDesc)
		}
		if e.Time == nil || e.Time["operating_reset_at"] == nil {
			t.Errorf("%s: no time block", tc.name)
		}
	}
}

func TestGetValuesAreStrings(t *testing.T) {
	sim := NewServer()
	ts := sim.Start()
	defer ts.Close()
	body := `{"FIELDS":{"TITLE":"Acme","OPPORTUNITY":1000.5,"PHONE":[{"VALUE":"+1 555","VALUE_TYPE":"WORK"}]}}`
	req, _ := http.NewRequest(http.MethodPost, base(ts.URL)+"crm.deal.add.json", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if status, e := do(t, req); status != 200 || string(e.Result) != "1" {
		t.Fatalf("add = %d %s", status, e.Result)
	}
	req, _ = http.NewRequest(http.MethodGet, base(ts.URL)+"crm.deal.get.json?ID=1", nil)
	_, e := do(t, req)
	var got map[string]any
	_ = json.Unmarshal(e.Result, &got)
	want := map[string]any{"ID": "1", "TITLE": "Acme", "OPPORTUNITY": "1000.5",
		"PHONE":         []any{map[string]any{"VALUE": "+1 555", "VALUE_TYPE": "WORK"}},
		"CREATED_BY_ID": "1", "MODIFY_BY_ID": "1"} // the webhook's user made it
	delete(got, "DATE_CREATE")
	delete(got, "DATE_MODIFY")
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("crm.deal.get mismatch (-want +got):\n%s", diff)
	}
}

func TestBodies(t *testing.T) {
	sim := NewServer()
	ts := sim.Start()
	defer ts.Close()
	form := "fields%5BTITLE%5D=Form&fields%5BPHONE%5D%5B0%5D%5BVALUE%5D=112233"
	var mp bytes.Buffer
	mw := multipart.NewWriter(&mp)
	_ = mw.WriteField("fields[TITLE]", "Multipart")
	_ = mw.Close()
	tests := []struct {
		name, method, query, ctype, body, wantTitle string
	}{
		{"get", http.MethodGet, "fields[TITLE]=Query", "", "", "Query"},
		{"urlencoded", http.MethodPost, "", "application/x-www-form-urlencoded", form, "Form"},
		{"multipart", http.MethodPost, "", mw.FormDataContentType(), mp.String(), "Multipart"},
		{"json", http.MethodPost, "", "application/json", `{"fields":{"TITLE":"JSON"}}`, "JSON"},
	}
	for _, tc := range tests {
		u := base(ts.URL) + "crm.lead.add.json"
		if tc.query != "" {
			u += "?" + tc.query
		}
		req, _ := http.NewRequest(tc.method, u, strings.NewReader(tc.body))
		if tc.ctype != "" {
			req.Header.Set("Content-Type", tc.ctype)
		}
		status, e := do(t, req)
		if status != 200 {
			t.Fatalf("%s: status %d %v", tc.name, status, e.Description)
		}
		var id int
		_ = json.Unmarshal(e.Result, &id)
		if got := sim.Item("lead", id)["TITLE"]; got != tc.wantTitle {
			t.Errorf("%s: TITLE = %v; want %q", tc.name, got, tc.wantTitle)
		}
	}
}

func TestListPaging(t *testing.T) {
	sim := NewServer(WithRate(0, 0))
	sim.SeedDeals(120)
	ts := sim.Start()
	defer ts.Close()
	tests := []struct {
		name      string
		query     string
		wantN     int
		wantFirst string
		wantTotal int
		wantNext  *int
	}{
		{"first page", "", 50, "1", 120, ptr(50)},
		{"second page", "start=50", 50, "51", 120, ptr(100)},
		{"last page", "start=100", 20, "101", 120, nil},
		{"no count", "start=-1", 50, "1", 0, nil},
		{"filter >ID", "filter[>ID]=110&start=-1", 10, "111", 0, nil},
		{"filter >=ID", "filter[>%3DID]=110", 11, "110", 11, nil},
		{"filter <ID", "filter[<ID]=3", 2, "1", 2, nil},
		{"filter <=ID", "filter[<%3DID]=3", 3, "1", 3, nil},
		{"filter =ID", "filter[%3DID]=7", 1, "7", 1, nil},
		{"filter !=ID", "filter[!%3DID]=1&filter[<ID]=4", 2, "2", 2, nil},
		{"order desc", "order[ID]=DESC", 50, "120", 120, ptr(50)},
		{"select", "select[]=ID&select[]=TITLE&filter[ID]=5", 1, "5", 1, nil},
	}
	for _, tc := range tests {
		req, _ := http.NewRequest(http.MethodGet, base(ts.URL)+"crm.deal.list.json?"+tc.query, nil)
		status, e := do(t, req)
		var rows []map[string]any
		if err := json.Unmarshal(e.Result, &rows); err != nil || status != 200 {
			t.Fatalf("%s: %d %s", tc.name, status, e.Result)
		}
		total := -1
		if e.Total != nil {
			total = *e.Total
		}
		if len(rows) != tc.wantN || rows[0]["ID"] != tc.wantFirst || total != tc.wantTotal || !cmp.Equal(e.Next, tc.wantNext) {
			t.Errorf("%s: got %d rows first %v total %d next %v; want %d %s %d %v",
				tc.name, len(rows), rows[0]["ID"], total, e.Next, tc.wantN, tc.wantFirst, tc.wantTotal, tc.wantNext)
		}
	}
	req, _ := http.NewRequest(http.MethodGet, base(ts.URL)+"crm.deal.list.json?select[]=ID&select[]=TITLE&filter[ID]=5", nil)
	_, e := do(t, req)
	if diff := cmp.Diff(`[{"ID":"5","TITLE":"Deal #5"}]`, string(e.Result)); diff != "" {
		t.Errorf("select (-want +got):\n%s", diff)
	}
}

func ptr(i int) *int { return &i }

func TestBatch(t *testing.T) {
	sim := NewServer()
	ts := sim.Start()
	defer ts.Close()
	q := url.Values{}
	q.Set("halt", "0")
	q.Set("cmd[add]", "crm.deal.add?"+url.Values{"fields[TITLE]": {"Batch"}}.Encode())
	q.Set("cmd[get]", "crm.deal.get?id=$result[add]")
	q.Set("cmd[missing]", "crm.deal.get?id=999")
	q.Set("cmd[title]", "crm.lead.add?fields[TITLE]=$result[get][TITLE]")
	// url.Values sorts keys: add, get, missing, title — the order we want.
	req, _ := http.NewRequest(http.MethodPost, base(ts.URL)+"batch.json", strings.NewReader(q.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	status, e := do(t, req)
	if status != 200 {
		t.Fatalf("batch status %d", status)
	}
	var got struct {
		Result      map[string]json.RawMessage   `json:"result"`
		ResultError map[string]map[string]string `json:"result_error"`
		ResultTotal json.RawMessage              `json:"result_total"`
	}
	if err := json.Unmarshal(e.Result, &got); err != nil {
		t.Fatalf("%v: %s", err, e.Result)
	}
	if string(got.Result["add"]) != "1" || !strings.Contains(string(got.Result["get"]), `"TITLE":"Batch"`) {
		t.Errorf("batch result = %s", e.Result)
	}
	if diff := cmp.Diff(map[string]map[string]string{"missing": {"error": "", "error_description": "Not found"}}, got.ResultError); diff != "" {
		t.Errorf("result_error (-want +got):\n%s", diff)
	}
	if string(got.ResultTotal) != "[]" {
		t.Errorf("empty result_total = %s; want []", got.ResultTotal)
	}
	if sim.Item("lead", 1)["TITLE"] != "Batch" {
		t.Errorf("$result[get][TITLE] not substituted: %v", sim.Item("lead", 1))
	}
	if n := sim.Requests("batch"); n != 1 {
		t.Errorf("Requests(batch) = %d; want 1", n)
	}

	// halt stops at the first error; array form.
	body := `{"halt":1,"cmd":["crm.deal.get?id=999","crm.deal.add?fields[TITLE]=never"]}`
	req, _ = http.NewRequest(http.MethodPost, base(ts.URL)+"batch", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	_, e = do(t, req)
	if sim.Count("deal") != 1 {
		t.Errorf("halt: %d deals; want 1 (%s)", sim.Count("deal"), e.Result)
	}

	// more than 50 commands
	q = url.Values{}
	for i := 0; i <= MaxBatch; i++ {
		q.Add("cmd[]", "crm.deal.get?id=1")
	}
	req, _ = http.NewRequest(http.MethodGet, base(ts.URL)+"batch?"+q.Encode(), nil)
	status, e = do(t, req)
	if status != 400 || e.Error == nil || *e.Error != CodeBatchLength {
		t.Errorf("51 commands: %d %v", status, e.Error)
	}
}

func TestLeakyBucket(t *testing.T) {
	var mu sync.Mutex
	now := time.Unix(1_700_000_000, 0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	sim := NewServer(WithRate(5, 2), WithClock(clock))
	sim.SeedDeals(1)
	ts := sim.Start()
	defer ts.Close()
	get := func() int {
		req, _ := http.NewRequest(http.MethodGet, base(ts.URL)+"crm.deal.get?id=1", nil)
		s, _ := do(t, req)
		return s
	}
	var got []int
	for i := 0; i < 6; i++ {
		got = append(got, get())
	}
	advance(500 * time.Millisecond) // drains one
	got = append(got, get(), get())
	// a batch counts once
	advance(500 * time.Millisecond)
	req, _ := http.NewRequest(http.MethodGet, base(ts.URL)+"batch?cmd[a]=crm.deal.get%3Fid%3D1&cmd[b]=crm.deal.get%3Fid%3D1", nil)
	s, _ := do(t, req)
	got = append(got, s, get())
	want := []int{200, 200, 200, 200, 200, 503, 200, 503, 200, 503}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("statuses (-want +got):\n%s", diff)
	}
	if n := sim.Answers(CodeQueryLimitExceeded); n != 3 {
		t.Errorf("Answers(QUERY_LIMIT_EXCEEDED) = %d; want 3", n)
	}
}

func TestOperatingLimit(t *testing.T) {
	var mu sync.Mutex
	now := time.Unix(1_700_000_000, 0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	sim := NewServer(WithOperatingLimit(3*time.Second, time.Minute), WithOperatingCost(time.Second), WithClock(clock))
	sim.SeedDeals(1)
	ts := sim.Start()
	defer ts.Close()
	get := func(m string) (int, envelope) {
		req, _ := http.NewRequest(http.MethodGet, base(ts.URL)+m+"?id=1", nil)
		return do(t, req)
	}
	for i := 1; i <= 3; i++ {
		s, e := get("crm.deal.get")
		if s != 200 || e.Time["operating"].(float64) != float64(i) {
			t.Fatalf("call %d: %d operating %v", i, s, e.Time["operating"])
		}
	}
	s, e := get("crm.deal.get")
	if s != 429 || *e.Error != CodeOperationTimeLimit || e.Time["operating_reset_at"].(float64) != float64(now.Unix()+60) {
		t.Errorf("4th call: %d %v %v", s, e.Error, e.Time)
	}
	if s, _ := get("crm.deal.list"); s != 200 {
		t.Errorf("other method: %d; want 200", s)
	}
	mu.Lock()
	now = now.Add(time.Minute)
	mu.Unlock()
	if s, _ := get("crm.deal.get"); s != 200 {
		t.Errorf("after reset: %d; want 200", s)
	}
}

func TestFaults(t *testing.T) {
	sim := NewServer()
	sim.SeedDeals(1)
	ts := sim.Start()
	defer ts.Close()
	sim.InjectFault(Fault{Count: 2, Status: 503, Code: CodeQueryLimitExceeded, Description: "Too many requests", RetryAfter: 2 * time.Second})
	sim.InjectFault(Fault{Method: "crm.deal.get", Count: 1, Status: 500, Code: CodeInternalServerError})
	var got []int
	for i := 0; i < 4; i++ {
		req, _ := http.NewRequest(http.MethodGet, base(ts.URL)+"crm.deal.get?id=1", nil)
		s, _ := do(t, req)
		got = append(got, s)
	}
	if diff := cmp.Diff([]int{503, 503, 500, 200}, got); diff != "" {
		t.Errorf("statuses (-want +got):\n%s", diff)
	}
	if n := sim.Requests("crm.deal.get"); n != 4 {
		t.Errorf("Requests = %d; want 4", n)
	}
}
