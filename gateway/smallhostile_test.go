package gateway_test

import (
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hookgate/hookgate/config"
	"github.com/hookgate/hookgate/gateway"
)

// formOf returns a urlencoded form of n fields, the event and the token
// among them.
func formOf(n int, id string) string {
	var b strings.Builder
	b.WriteString("event=E&token=" + secretA + "&id=" + id)
	for i := 3; i < n; i++ {
		fmt.Fprintf(&b, "&f%d=v", i)
	}
	return b.String()
}

func multipartOf(n int) (string, string) {
	var b strings.Builder
	w := multipart.NewWriter(&b)
	for i := range n {
		w.WriteField(fmt.Sprintf("f%d", i), "v")
	}
	w.Close()
	return b.String(), w.FormDataContentType()
}

// A form with more fields than server.max_form_fields is refused with 413
// before it is parsed: the work done before the credential is checked is
// one scan of the body, whatever the number of fields.
func TestMaxFormFields(t *testing.T) {
	f := newHardFixture(t, func(s *config.Server) {
		s.MaxBodyBytes = 4 << 20
		s.MaxFormFields = 1000
	}, nil, gateway.Deps{})
	mp, mpType := multipartOf(1001)
	tests := []struct {
		name, ctype, body string
		status            int
		want              string
	}{
		{"1000 fields", form, formOf(1000, "f1000"), 200, ""},
		{"1001 fields", form, formOf(1001, "f1001"), 413, `{"error":"body_too_large"}`},
		{"100 000 fields", form, formOf(100_000, "f100000"), 413, `{"error":"body_too_large"}`},
		{"100 000 empty fields", form, "event=E&token=" + secretA + strings.Repeat("&", 100_000), 413, `{"error":"body_too_large"}`},
		{"1001 multipart parts", mpType, mp, 413, `{"error":"body_too_large"}`},
		{"JSON with many ampersands", "application/json", `{"a":"` + strings.Repeat("&", 5000) + `"}`, 415, ""},
	}
	for _, tc := range tests {
		start := time.Now()
		req, _ := http.NewRequest("POST", f.url+"/webhook/a", strings.NewReader(tc.body))
		req.Header.Set("Content-Type", tc.ctype)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status || (tc.want != "" && string(b) != tc.want) {
			t.Errorf("%s: %d %.200s; want %d %s", tc.name, resp.StatusCode, b, tc.status, tc.want)
		}
		t.Logf("%s: %v", tc.name, time.Since(start).Round(time.Millisecond))
	}
}
