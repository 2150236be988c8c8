package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/hookgate/hookgate"
	"github.com/hookgate/hookgate/providers/standard"
)

// Secrets are the bench sources' credentials. scripts/bench.sh writes the
// same values into the gateway's secret file.
type Secrets struct {
	Bitrix24 string // auth[application_token] of source b24
	Standard string // whsec_<base64> of source std
	APIKey   string // the path key of source crm
}

// DefaultSecrets are the values scripts/bench.sh configures.
var DefaultSecrets = Secrets{
	Bitrix24: "jvh9y1ulvt2m6k5or90v9mg8nn32ozas",
	Standard: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
	APIKey:   "3f1c9e52-bench-crm-key",
}

// scenario fills one request for sequence number n (unique in the run and,
// with the run nonce, across runs: the gateway de-duplicates repeated
// deliveries, so every request must be distinct).
type scenario struct {
	name string
	desc string
	// build writes request n into req; buf is the worker's scratch buffer
	// (returned, maybe grown).
	build func(req *fasthttp.Request, n uint64, buf []byte) []byte
	// invalid reports whether request n carries a wrong credential on
	// purpose (the 10 % scenario).
	invalid func(n uint64) bool
}

func scenarios(sec Secrets) map[string]*scenario {
	never := func(uint64) bool { return false }
	every10 := func(n uint64) bool { return n%10 == 9 }
	m := map[string]*scenario{
		"bitrix24": {
			desc:    "Bitrix24 ONCRMDEALUPDATE form with auth[application_token] (~430 B)",
			build:   bitrix24Form(sec.Bitrix24, 0, never),
			invalid: never,
		},
		"bitrix24-invalid10": {
			desc:    "as bitrix24, every 10th request with a wrong token (401)",
			build:   bitrix24Form(sec.Bitrix24, 0, every10),
			invalid: every10,
		},
		"bitrix24-1k": {
			desc:    "bitrix24 form padded to 1 KiB (data[FIELDS][COMMENTS])",
			build:   bitrix24Form(sec.Bitrix24, 1<<10, never),
			invalid: never,
		},
		"bitrix24-64k": {
			desc:    "bitrix24 form padded to 64 KiB",
			build:   bitrix24Form(sec.Bitrix24, 64<<10, never),
			invalid: never,
		},
		"standard-2k": {
			desc:    "Standard Webhooks JSON, 2 KiB, HMAC-SHA256 signed per request",
			build:   standardJSON(sec.Standard, 2<<10),
			invalid: never,
		},
		"apikey-multipart": {
			desc:    "Creatio-style multipart/form-data to /webhooks/<key> (~600 B)",
			build:   apikeyMultipart(sec.APIKey),
			invalid: never,
		},
	}
	for name, s := range m {
		s.name = name
	}
	return m
}

// bitrix24Form is the reference example of ONCRMDEALADD (reference/bitrix24.md)
// with a unique data[FIELDS][ID] and, when pad > 0, a comment field that
// brings the body to pad bytes.
func bitrix24Form(token string, pad int, wrong func(uint64) bool) func(*fasthttp.Request, uint64, []byte) []byte {
	const (
		head = "event=ONCRMDEALUPDATE&event_handler_id=975&data%5BFIELDS%5D%5BID%5D="
		auth = "&auth%5Bdomain%5D=some-domain.bitrix24.com" +
			"&auth%5Bclient_endpoint%5D=https%3A%2F%2Fsome-domain.bitrix24.com%2Frest%2F" +
			"&auth%5Bserver_endpoint%5D=https%3A%2F%2Foauth.bitrix.info%2Frest%2F" +
			"&auth%5Bmember_id%5D=d897063e1ce7c5eb9f04b9751eef5915" +
			"&auth%5Bapplication_token%5D="
		comment = "&data%5BFIELDS%5D%5BCOMMENTS%5D="
	)
	return func(req *fasthttp.Request, n uint64, b []byte) []byte {
		b = append(b[:0], head...)
		b = strconv.AppendUint(b, n, 10)
		b = append(b, "&ts="...)
		b = strconv.AppendInt(b, time.Now().Unix(), 10)
		b = append(b, auth...)
		if wrong(n) {
			b = append(b, "wrong-token-"...)
			b = strconv.AppendUint(b, n, 10)
		} else {
			b = append(b, token...)
		}
		if pad > 0 {
			b = append(b, comment...)
			for len(b) < pad {
				b = append(b, "lorem+ipsum+dolor+sit+amet%2C+"[:min(30, pad-len(b))]...)
			}
		}
		req.Header.SetMethod(fasthttp.MethodPost)
		req.SetRequestURI("/webhook/b24")
		req.Header.SetContentType("application/x-www-form-urlencoded")
		req.SetBody(b)
		return b
	}
}

// standardJSON is a Standard Webhooks delivery of a JSON payload of size
// bytes, signed for webhook-id msg_<n> at the current second.
func standardJSON(secret string, size int) func(*fasthttp.Request, uint64, []byte) []byte {
	if _, err := standard.DecodeSecret(hookgate.Secret(secret)); err != nil {
		panic("loadbench: " + err.Error())
	}
	pad := strings.Repeat("x", size)
	return func(req *fasthttp.Request, n uint64, b []byte) []byte {
		id := "msg_" + strconv.FormatUint(n, 10)
		now := time.Now()
		b = append(b[:0], `{"type":"invoice.paid","timestamp":"`...)
		b = now.UTC().AppendFormat(b, time.RFC3339)
		b = append(b, `","data":{"id":"`...)
		b = append(b, id...)
		b = append(b, `","amount":12900,"currency":"EUR","customer":{"id":"cus_7Hq2","email":"ann@example.com"},"note":"`...)
		if rest := size - len(b) - 3; rest > 0 {
			b = append(b, pad[:rest]...)
		}
		b = append(b, `"}}`...)
		sig, err := standard.Sign(hookgate.Secret(secret), id, now, b)
		if err != nil {
			panic("loadbench: " + err.Error())
		}
		req.Header.SetMethod(fasthttp.MethodPost)
		req.SetRequestURI("/webhook/std")
		req.Header.SetContentType("application/json")
		req.Header.Set("webhook-id", id)
		req.Header.Set("webhook-timestamp", standard.Timestamp(now))
		req.Header.Set("webhook-signature", sig)
		req.SetBody(b)
		return b
	}
}

// apikeyMultipart is a Creatio webhook-service call: multipart/form-data
// with EntityName and a few fields, the API key in the path.
func apikeyMultipart(key string) func(*fasthttp.Request, uint64, []byte) []byte {
	const boundary = "----hookgatebench7MA4YWxkTrZu0gW"
	uri := "/webhooks/" + key
	part := func(b []byte, name, value string) []byte {
		b = append(b, "--"+boundary+"\r\nContent-Disposition: form-data; name=\""...)
		b = append(b, name...)
		b = append(b, "\"\r\n\r\n"...)
		b = append(b, value...)
		return append(b, "\r\n"...)
	}
	return func(req *fasthttp.Request, n uint64, b []byte) []byte {
		b = part(b[:0], "EntityName", "Contact")
		b = part(b, "Id", fmt.Sprintf("5f1c%04x-7d1b-4c8e-9a4e-%012x", n&0xffff, n))
		b = part(b, "Name", "Ann Example")
		b = part(b, "Email", "ann@example.com")
		b = part(b, "MobilePhone", "+49 30 1234567")
		b = part(b, "Account", "Example GmbH")
		b = part(b, "Notes", "Imported by the nightly sync; owner changed from Supervisor to Ann.")
		b = append(b, "--"+boundary+"--\r\n"...)
		req.Header.SetMethod(fasthttp.MethodPost)
		req.SetRequestURI(uri)
		req.Header.SetContentType("multipart/form-data; boundary=" + boundary)
		req.SetBody(b)
		return b
	}
}
