package admin_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/hookgate/hookgate/outbound"
)

// pagedCaller answers every call with one page of a list.
type pagedCaller struct{}

func (pagedCaller) Call(ctx context.Context, portal, method string, params map[string]any) (json.RawMessage, error) {
	res, err := pagedCaller{}.CallPaged(ctx, portal, method, params)
	if err != nil {
		return nil, err
	}
	return res.Result, nil
}

func (pagedCaller) CallPaged(_ context.Context, portal, method string, _ map[string]any) (*outbound.Result, error) {
	next, total := 50, 120
	return &outbound.Result{Result: json.RawMessage(`[{"ID":"1"}]`), Next: &next, Total: &total}, nil
}

// A list method's paging members reach the caller of /admin/call, after
// the result (issue 16: `hookgate call` through the gateway prints what it
// prints on its own).
func TestAdminCallPaged(t *testing.T) {
	f := newAdminFixture(t, adminOptions{caller: pagedCaller{}})
	req, _ := http.NewRequest("POST", f.url+"/admin/call/main/crm.deal.list", strings.NewReader(`{}`))
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if want := `{"result":[{"ID":"1"}],"next":50,"total":120}`; resp.StatusCode != 200 || string(raw) != want {
		t.Errorf("POST /admin/call/main/crm.deal.list = %d %s; want 200 %s", resp.StatusCode, raw, want)
	}
}
