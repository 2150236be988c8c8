package outbound

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/go-resty/resty/v2"

	"github.com/hookgate/hookgate"
	"github.com/hookgate/hookgate/config"
	"github.com/hookgate/hookgate/outbound/bitrix24test"
)

// The benchmarks run the same crm.deal.get against the same simulator
// handler (no bucket, no operating limit) three ways, so that the client's
// overhead per call is the difference: BenchmarkCall (the client: encode,
// secret, bucket, breaker, parse, history row), BenchmarkBareResty (one
// resty POST and a read of the body) and BenchmarkBareHTTP (net/http).

func benchSim(b *testing.B) (*bitrix24test.Server, string) {
	sim := bitrix24test.NewServer(bitrix24test.WithRate(0, 0), bitrix24test.WithOperatingLimit(0, 0))
	sim.SeedDeals(1)
	ts := sim.Start()
	b.Cleanup(ts.Close)
	return sim, ts.URL
}

type discardRecorder struct{}

func (discardRecorder) Record(hookgate.Exchange) {}

func benchParams() map[string]any { return map[string]any{"id": 1} }

func BenchmarkCall(b *testing.B) {
	_, base := benchSim(b)
	c, err := NewBitrix24(config.Portal{ID: "bench", BaseURL: base, UserID: 1, Rate: unlimited},
		staticSecret(bitrix24test.DefaultSecret), WithRecorder(discardRecorder{}))
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.Call(ctx, "crm.deal.get", benchParams()); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkBareResty(b *testing.B) {
	_, base := benchSim(b)
	rc := resty.New()
	u := base + "/rest/1/" + bitrix24test.DefaultSecret + "/crm.deal.get.json"
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := rc.R().SetHeader("Content-Type", "application/x-www-form-urlencoded").SetBody("id=1").Post(u)
			if err != nil || resp.StatusCode() != 200 {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkBareHTTP(b *testing.B) {
	_, base := benchSim(b)
	u := base + "/rest/1/" + bitrix24test.DefaultSecret + "/crm.deal.get.json"
	hc := &http.Client{}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := hc.PostForm(u, url.Values{"id": {"1"}})
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	})
}

// handlerTransport serves requests with a handler in-process, so that the
// in-process benchmarks measure the client and the handler, not the
// loopback network and the scheduler of a busy machine.
type handlerTransport struct{ h http.Handler }

func (t handlerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	w := httptest.NewRecorder()
	t.h.ServeHTTP(w, r)
	resp := w.Result()
	resp.Request = r
	return resp, nil
}

func BenchmarkCallInProcess(b *testing.B) {
	sim := bitrix24test.NewServer(bitrix24test.WithRate(0, 0), bitrix24test.WithOperatingLimit(0, 0))
	sim.SeedDeals(1)
	c, err := NewBitrix24(config.Portal{ID: "bench", BaseURL: "http://sim.invalid", UserID: 1, Rate: unlimited},
		staticSecret(bitrix24test.DefaultSecret), WithRecorder(discardRecorder{}), WithTransport(handlerTransport{sim}))
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Call(ctx, "crm.deal.get", benchParams()); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkBareRestyInProcess(b *testing.B) {
	sim := bitrix24test.NewServer(bitrix24test.WithRate(0, 0), bitrix24test.WithOperatingLimit(0, 0))
	sim.SeedDeals(1)
	rc := resty.New().SetTransport(handlerTransport{sim})
	u := "http://sim.invalid/rest/1/" + bitrix24test.DefaultSecret + "/crm.deal.get.json"
	b.ReportAllocs()
	for b.Loop() {
		resp, err := rc.R().SetHeader("Content-Type", "application/x-www-form-urlencoded").SetBody("id=1").Post(u)
		if err != nil || resp.StatusCode() != 200 {
			b.Fatal(err)
		}
	}
}

func BenchmarkBareHTTPInProcess(b *testing.B) {
	sim := bitrix24test.NewServer(bitrix24test.WithRate(0, 0), bitrix24test.WithOperatingLimit(0, 0))
	sim.SeedDeals(1)
	hc := &http.Client{Transport: handlerTransport{sim}}
	u := "http://sim.invalid/rest/1/" + bitrix24test.DefaultSecret + "/crm.deal.get.json"
	b.ReportAllocs()
	for b.Loop() {
		resp, err := hc.PostForm(u, url.Values{"id": {"1"}})
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}
