package outbound

import (
	"bufio"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/hookgate/hookgate/config"
	"github.com/hookgate/hookgate/history"
)

// TestAnswerTruncatedOnUTF8Boundary: a portal's answer longer than
// history.max_body_bytes, with a two-byte character across the limit, is
// stored as valid UTF-8 cut before that character, with a marker naming
// the bytes left out. (The client used to cut it itself, at its own 16 KiB,
// in the middle of the character and without a marker.)
func TestAnswerTruncatedOnUTF8Boundary(t *testing.T) {
	const limit = 16 << 10
	head := `{"result":"`
	answer := head + strings.Repeat("a", limit-len(head)-1) + "ж" + strings.Repeat("b", 100) + `"}`
	if utf8.RuneStart(answer[limit]) {
		t.Fatal("test answer: the limit must fall inside ж")
	}
	want := answer[:limit-1] + "…[truncated " + strconv.Itoa(len(answer)-limit+1) + " bytes]"

	portal := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(answer))
	}))
	defer portal.Close()

	cfg := config.Default().History
	cfg.MaxBodyBytes = limit
	dataDir := t.TempDir()
	w, err := history.New(context.Background(), cfg, dataDir, "")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close(context.Background())
	c, err := NewBitrix24(config.Portal{ID: "main", BaseURL: portal.URL, UserID: 1, Rate: unlimited},
		staticSecret("s3cret"), WithRecorder(w), WithRetries(0))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Call(context.Background(), "crm.deal.get", map[string]any{"id": 1}); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}

	files, err := history.Files(dataDir + "/history")
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
	if !sc.Scan() {
		t.Fatalf("%s: no row", files[0])
	}
	if strings.Contains(sc.Text(), `\ufffd`) {
		t.Errorf("stored line holds U+FFFD: a character was cut")
	}
	x, err := history.ParseJSONEachRow(sc.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if !utf8.ValidString(x.ResponseBody) || x.ResponseBody != want {
		t.Errorf("stored response_body: %d bytes ending %q; want %d bytes ending %q",
			len(x.ResponseBody), x.ResponseBody[max(0, len(x.ResponseBody)-40):], len(want), want[len(want)-40:])
	}
}
