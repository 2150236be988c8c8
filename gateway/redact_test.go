package gateway

import (
	"fmt"
	"strings"
	"testing"

	"github.com/hookgate/hookgate"
)

// lowerHex percent-encodes every byte of s in lower-case hex.
func lowerHex(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		fmt.Fprintf(&b, "%%%02x", s[i])
	}
	return b.String()
}

// jsonUnicode writes every byte of s as a \u00XX escape.
func jsonUnicode(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		fmt.Fprintf(&b, `\u%04x`, s[i])
	}
	return b.String()
}

// quotedPrintable encodes every byte of s as =XX.
func quotedPrintable(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		fmt.Fprintf(&b, "=%02X", s[i])
	}
	return b.String()
}

func TestRedactionEncodings(t *testing.T) {
	const secret = "jvh9y1ulvt2m6k5or90v9mg8nn32ozas"
	const other = "wrong-token-not-in-store-77"
	r := &redaction{
		redact:    hookgate.NewRedactor(secret).Redact,
		sensitive: func(n string) bool { return hookgate.SensitiveName(n) || n == "key" },
		extra:     hookgate.NewRedactor(other),
	}
	mp := func(cte, name, content string) string {
		h := "--XyZ\r\nContent-Disposition: form-data; name=\"" + name + "\"\r\n"
		if cte != "" {
			h += "Content-Transfer-Encoding: " + cte + "\r\n"
		}
		return h + "\r\n" + content + "\r\n--XyZ\r\nContent-Disposition: form-data; name=\"event\"\r\n\r\nE\r\n--XyZ--\r\n"
	}
	const form, js, multi = "application/x-www-form-urlencoded", "application/json", "multipart/form-data; boundary=XyZ"
	tests := []struct {
		name, ctype, body string
		keep              string // text that must survive
	}{
		{"form, lower-case hex under a credential name", form, "event=E&auth%5Bapplication_token%5D=" + lowerHex(secret), "event=E"},
		{"form, lower-case hex in another field", form, "event=E&note=" + lowerHex(secret), "event=E"},
		{"form, custom auth parameter", form, "event=E&key=" + other, "event=E"},
		{"form, custom auth parameter, unknown value", form, "key=abcdefgh-zz&event=E", "event=E"},
		{"form without a content type", "", "event=E&note=" + lowerHex(secret), "event=E"},
		{"json, unicode-escaped in another field", js, `{"event":"E","note":"` + jsonUnicode(secret) + `"}`, `"event":"E"`},
		{"json, credential name", js, `{"event":"E","api_key":"abcdefgh-zz"}`, `"event":"E"`},
		{"json, extra value escaped", js, `{"event":"E","x":"` + jsonUnicode(other) + `"}`, `"event":"E"`},
		{"multipart, quoted-printable credential", multi, mp("quoted-printable", "token", quotedPrintable(secret)), `name="event"`},
		{"multipart, quoted-printable other field", multi, mp("quoted-printable", "note", quotedPrintable(secret)), `name="event"`},
		{"multipart, base64 other field", multi, mp("base64", "note", "anZoOXkxdWx2dDJtNms1b3I5MHY5bWc4bm4zMm96YXM="), `name="event"`},
		{"multipart, credential name unknown value", multi, mp("", "password", "abcdefgh-zz"), `name="event"`},
	}
	for _, tc := range tests {
		got := r.body(tc.ctype, []byte(tc.body))
		for _, bad := range []string{secret, lowerHex(secret), jsonUnicode(secret), quotedPrintable(secret), "anZoOXkxdWx2dDJt", other, jsonUnicode(other), "abcdefgh-zz"} {
			if strings.Contains(got, bad) {
				t.Errorf("%s: body(%q) = %q; holds %q", tc.name, tc.body, got, bad)
			}
		}
		if !strings.Contains(got, hookgate.Redacted) || !strings.Contains(got, tc.keep) {
			t.Errorf("%s: body = %q; want %q kept and %s", tc.name, got, tc.keep, hookgate.Redacted)
		}
	}
}

func FuzzRedactionForm(f *testing.F) {
	f.Add("event=E&token=abc&data%5BID%5D=1")
	f.Add("a=%6a%76h9y1ulvt2m6k5or90v9mg8nn32ozas&&x")
	const secret = "jvh9y1ulvt2m6k5or90v9mg8nn32ozas"
	r := &redaction{redact: hookgate.NewRedactor(secret).Redact, sensitive: hookgate.SensitiveName}
	f.Fuzz(func(t *testing.T, s string) {
		got := r.body("application/x-www-form-urlencoded", []byte(s))
		if strings.Contains(formUnescape(got), secret) && !strings.Contains(s, "%%") {
			// a decodable body never keeps the secret, decoded or not
			for _, pair := range strings.Split(got, "&") {
				_, v, _ := strings.Cut(pair, "=")
				if strings.Contains(formUnescape(v), secret) {
					t.Errorf("body(%q) = %q keeps the secret", s, got)
				}
			}
		}
	})
}
