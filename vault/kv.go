package vault

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/hookgate/hookgate"
	"github.com/hookgate/hookgate/config"
)

// kvBackend reads Vault KV v2. It needs read on <mount>/data/<path> and
// <mount>/metadata/<path> (the metadata lists the versions for rotation;
// without it only the current version is served).
type kvBackend struct {
	cfg     config.Vault
	client  *api.Client
	kv      *api.KVv2
	log     *slog.Logger
	red     *hookgate.Redactor
	timeout time.Duration
	grace   time.Duration

	loginMu  sync.Mutex
	tokenGen atomic.Uint64    // bumped at every login
	newAuth  chan *api.Secret // logins outside the watcher, for it to watch (cap 1)

	noMetadata atomic.Bool // metadata read was refused; warned once

	sensMu    sync.Mutex
	sensitive []string // token, secret id: never in an error text

	stop      context.CancelFunc
	done      chan struct{}
	closeOnce sync.Once
}

func openVault(ctx context.Context, cfg config.Vault, o options, red *hookgate.Redactor) (*kvBackend, error) {
	timeout := cfg.Timeout.D()
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	if cfg.Mount == "" {
		return nil, errors.New("vault: secrets.vault.mount is not set")
	}
	conf := api.DefaultConfig() // honours VAULT_CACERT and friends
	if cfg.Address != "" {
		conf.Address = cfg.Address
	}
	conf.Timeout = timeout
	// The store serves cached values when Vault fails: retry little.
	conf.MaxRetries = 1
	conf.MinRetryWait = 100 * time.Millisecond
	conf.MaxRetryWait = 500 * time.Millisecond
	client, err := api.NewClient(conf)
	if err != nil {
		return nil, fmt.Errorf("vault: client: %w", err)
	}
	client.ClearToken() // NewClient reads VAULT_TOKEN; the auth below decides
	b := &kvBackend{
		cfg:     cfg,
		client:  client,
		kv:      client.KVv2(cfg.Mount),
		log:     o.log,
		red:     red,
		timeout: timeout,
		grace:   cfg.RotationGrace.D(),
		done:    make(chan struct{}),
		newAuth: make(chan *api.Secret, 1),
	}

	var auth *api.Secret
	switch cfg.Auth {
	case "token", "":
		getenv := o.getenv
		if getenv == nil {
			getenv = os.Getenv
		}
		token := cfg.Token
		if token == "" {
			token = getenv("VAULT_TOKEN")
		}
		if token == "" {
			return nil, errors.New("vault: token auth needs secrets.vault.token or VAULT_TOKEN")
		}
		b.addSensitive(token)
		client.SetToken(token)
		auth, err = b.lookupSelf(ctx, token)
	case "approle":
		auth, err = b.login(ctx)
	default:
		err = fmt.Errorf("vault: unknown auth %q (want token or approle)", cfg.Auth)
	}
	if err != nil && !unreachable(err) {
		return nil, err
	}
	if err != nil {
		// Vault is down at start: start anyway, so that the gateway is up
		// when Vault comes back. Secrets not cached answer 503 meanwhile
		// (a cold miss never answers 200); authentication is retried in
		// the background.
		b.log.Warn("vault unreachable at start; uncached secrets answer 503 until it is back", "err", err)
		auth = nil
	}

	wctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	b.stop = stop
	go func() {
		defer close(b.done)
		if auth == nil {
			if auth = b.authRetry(wctx); auth == nil {
				return
			}
			b.log.Info("vault reachable again, authenticated")
		}
		b.watch(wctx, auth)
	}()
	return b, nil
}

// unreachable reports whether err means Vault gave no answer at all (as
// opposed to refusing the credentials).
func unreachable(err error) bool {
	var e *vaultError
	return errors.As(err, &e) && e.status == 0 && !errors.Is(err, context.Canceled)
}

// authRetry authenticates until it works or ctx ends (nil then), backing
// off from 1 s to 30 s: a token lookup for token auth, a login for
// AppRole.
func (b *kvBackend) authRetry(ctx context.Context) *api.Secret {
	if b.cfg.Auth == "approle" {
		return b.loginRetry(ctx)
	}
	wait := time.Second
	for {
		sec, err := b.lookupSelf(ctx, b.client.Token())
		if err == nil {
			return sec
		}
		if !unreachable(err) {
			b.log.Error("vault refused the token", "err", err)
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		wait = min(2*wait, 30*time.Second)
	}
}

func (b *kvBackend) cacheTTL() time.Duration { return b.cfg.CacheTTL.D() }

func (b *kvBackend) close() error {
	b.closeOnce.Do(func() {
		b.stop()
		<-b.done
	})
	return nil
}

func (b *kvBackend) check(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	if _, err := b.client.Auth().Token().LookupSelfWithContext(cctx); err != nil {
		return b.safe("vault: check token", err)
	}
	return nil
}

// lookupSelf checks the token and returns it as an auth secret for the
// lifetime watcher.
func (b *kvBackend) lookupSelf(ctx context.Context, token string) (*api.Secret, error) {
	cctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	self, err := b.client.Auth().Token().LookupSelfWithContext(cctx)
	if err != nil {
		return nil, b.safe("vault: look up token", err)
	}
	ttl, err := self.TokenTTL()
	if err != nil {
		return nil, errors.New("vault: look up token: unreadable ttl")
	}
	renewable, _ := self.TokenIsRenewable()
	return &api.Secret{Auth: &api.SecretAuth{
		ClientToken:   token,
		Renewable:     renewable,
		LeaseDuration: int(ttl / time.Second),
	}}, nil
}

// login logs in with AppRole (the secret id read from its file each time,
// so that it can be replaced on disk) and sets the client's token.
func (b *kvBackend) login(ctx context.Context) (*api.Secret, error) {
	ar := b.cfg.AppRole
	raw, err := os.ReadFile(ar.SecretIDFile)
	if err != nil {
		return nil, fmt.Errorf("vault: approle secret_id_file: %w", err)
	}
	secretID := strings.TrimSpace(string(raw))
	if secretID == "" || ar.RoleID == "" {
		return nil, errors.New("vault: approle login needs role_id and a non-empty secret_id_file")
	}
	b.addSensitive(secretID)
	mount := ar.Mount
	if mount == "" {
		mount = "approle"
	}
	lc, err := b.client.Clone() // without the (maybe expired) token
	if err != nil {
		return nil, fmt.Errorf("vault: approle login: %w", err)
	}
	lc.ClearToken()
	cctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	sec, err := lc.Logical().WriteWithContext(cctx, "auth/"+mount+"/login", map[string]any{
		"role_id":   ar.RoleID,
		"secret_id": secretID,
	})
	if err != nil {
		return nil, b.safe("vault: approle login", err)
	}
	if sec == nil || sec.Auth == nil || sec.Auth.ClientToken == "" {
		return nil, errors.New("vault: approle login: no token in the answer")
	}
	b.addSensitive(sec.Auth.ClientToken)
	b.client.SetToken(sec.Auth.ClientToken)
	b.tokenGen.Add(1)
	return sec, nil
}

// relogin logs in again after a read was refused with the token of
// generation gen, unless another caller already did or the token is still
// good (the policy refused the path: logging in would not help). The
// lifetime watcher switches to the new token.
func (b *kvBackend) relogin(ctx context.Context, gen uint64) error {
	b.loginMu.Lock()
	defer b.loginMu.Unlock()
	if b.tokenGen.Load() != gen {
		return nil
	}
	cctx, cancel := context.WithTimeout(ctx, b.timeout)
	_, err := b.client.Auth().Token().LookupSelfWithContext(cctx)
	cancel()
	if err == nil || !isStatus(b.safe("", err), http.StatusForbidden) {
		return nil
	}
	b.log.Info("vault token refused, logging in again")
	sec, err := b.login(ctx)
	if err != nil {
		return err
	}
	select {
	case <-b.newAuth: // replace an auth the watcher has not taken yet
	default:
	}
	b.newAuth <- sec
	return nil
}

// watch renews the token with Vault's lifetime watcher. When the token can
// no longer be renewed (max TTL, revoked) AppRole logs in again; a static
// token cannot, which is logged.
func (b *kvBackend) watch(ctx context.Context, auth *api.Secret) {
	for {
		if auth == nil || auth.Auth == nil || auth.Auth.LeaseDuration <= 0 {
			return // root-like token: nothing to renew
		}
		next, err := b.watchOnce(ctx, auth)
		if ctx.Err() != nil {
			return
		}
		if next != nil {
			auth = next // a read logged in again
			continue
		}
		if b.cfg.Auth != "approle" {
			msg := "vault token can no longer be renewed and will expire"
			if err != nil {
				b.log.Warn(msg, "err", b.safe("vault: renew token", err))
			} else {
				b.log.Warn(msg)
			}
			return
		}
		b.log.Info("vault token at the end of its life, logging in again")
		auth = b.loginRetry(ctx)
	}
}

// watchOnce renews auth until it can no more (error or nil), or until a
// read logged in again (the new auth).
func (b *kvBackend) watchOnce(ctx context.Context, auth *api.Secret) (*api.Secret, error) {
	w, err := b.client.NewLifetimeWatcher(&api.LifetimeWatcherInput{Secret: auth})
	if err != nil {
		return nil, err
	}
	go w.Start()
	defer w.Stop()
	for {
		select {
		case err := <-w.DoneCh():
			return nil, err
		case r := <-w.RenewCh():
			if r != nil && r.Secret != nil && r.Secret.Auth != nil {
				b.log.Debug("vault token renewed", "ttl", time.Duration(r.Secret.Auth.LeaseDuration)*time.Second)
			}
		case next := <-b.newAuth:
			return next, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// loginRetry logs in until it works or ctx ends (nil then), backing off
// from 1 s to 30 s.
func (b *kvBackend) loginRetry(ctx context.Context) *api.Secret {
	wait := time.Second
	for {
		b.loginMu.Lock()
		sec, err := b.login(ctx)
		b.loginMu.Unlock()
		if err == nil {
			return sec
		}
		b.log.Warn("vault approle login failed", "err", err, "retry_in", wait)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		wait = min(2*wait, 30*time.Second)
	}
}

func (b *kvBackend) read(ctx context.Context, path string, now time.Time) (*document, error) {
	gen := b.tokenGen.Load()
	doc, err := b.readOnce(ctx, path, now)
	if err != nil && b.cfg.Auth == "approle" && isStatus(err, http.StatusForbidden) {
		// The token may have been revoked or expired under us.
		if lerr := b.relogin(ctx, gen); lerr != nil {
			return nil, lerr
		}
		doc, err = b.readOnce(ctx, path, now)
	}
	return doc, err
}

func (b *kvBackend) readOnce(ctx context.Context, path string, now time.Time) (*document, error) {
	cctx, cancel := context.WithTimeout(ctx, b.timeout)
	md, err := b.kv.GetMetadata(cctx, path)
	cancel()
	if err != nil {
		err = b.safe(fmt.Sprintf("vault: read metadata of %q", path), err)
		if !isStatus(err, http.StatusForbidden) {
			return nil, err
		}
		// A policy may grant data but not metadata: serve the current
		// version without history.
		cur, gerr := b.readCurrent(ctx, path)
		if gerr != nil {
			return nil, gerr
		}
		if !b.noMetadata.Swap(true) {
			b.log.Warn("vault policy refuses metadata reads: previous versions are not served during rotations", "mount", b.cfg.Mount, "path", path)
		}
		return cur, nil
	}
	cur := md.CurrentVersion
	if cur == 0 || gone(md.Versions[strconv.Itoa(cur)], now) {
		return nil, fmt.Errorf("%w: %q has no current version", errNotFound, path)
	}
	data, err := b.readVersion(ctx, path, cur)
	if err != nil {
		return nil, err
	}
	doc := &document{versions: []version{{number: cur, data: data}}}
	if b.grace <= 0 {
		return doc, nil
	}
	for v := cur - 1; v >= max(1, md.OldestVersion); v-- {
		next, ok := md.Versions[strconv.Itoa(v+1)]
		if !ok {
			break
		}
		until := next.CreatedTime.Add(b.grace)
		if !now.Before(until) {
			break // older versions had their successors even earlier
		}
		if gone(md.Versions[strconv.Itoa(v)], now) {
			continue
		}
		data, err := b.readVersion(ctx, path, v)
		if errors.Is(err, errNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		doc.versions = append(doc.versions, version{number: v, data: data, until: until})
	}
	return doc, nil
}

// gone reports whether a version is deleted or destroyed.
func gone(m api.KVVersionMetadata, now time.Time) bool {
	return m.Version == 0 || m.Destroyed || (!m.DeletionTime.IsZero() && !m.DeletionTime.After(now))
}

func (b *kvBackend) readVersion(ctx context.Context, path string, v int) (map[string]string, error) {
	cctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	sec, err := b.kv.GetVersion(cctx, path, v)
	if err != nil {
		return nil, b.safe(fmt.Sprintf("vault: read %q version %d", path, v), err)
	}
	if sec.Data == nil {
		return nil, fmt.Errorf("%w: %q version %d is deleted", errNotFound, path, v)
	}
	return stringData(sec.Data), nil
}

// readCurrent reads the current version without metadata (no history).
func (b *kvBackend) readCurrent(ctx context.Context, path string) (*document, error) {
	cctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	sec, err := b.kv.Get(cctx, path)
	if err != nil {
		return nil, b.safe(fmt.Sprintf("vault: read %q", path), err)
	}
	if sec.Data == nil {
		return nil, fmt.Errorf("%w: %q is deleted", errNotFound, path)
	}
	n := 0
	if sec.VersionMetadata != nil {
		n = sec.VersionMetadata.Version
	}
	return &document{versions: []version{{number: n, data: stringData(sec.Data)}}}, nil
}

// stringData keeps the scalar fields of a KV secret as strings.
func stringData(data map[string]any) map[string]string {
	out := make(map[string]string, len(data))
	for k, v := range data {
		switch v := v.(type) {
		case string:
			out[k] = v
		case json.Number:
			out[k] = v.String()
		case bool, float64, int, int64:
			out[k] = fmt.Sprint(v)
		}
	}
	return out
}

// vaultError is a Vault failure described without anything Vault may have
// echoed from the request or a secret. Unwrap gives only errNotFound or a
// context error, never the raw cause.
type vaultError struct {
	msg    string
	status int   // HTTP status Vault answered; 0 = no answer
	cause  error // errNotFound, context.Canceled, context.DeadlineExceeded or nil
}

func (e *vaultError) Error() string { return e.msg }
func (e *vaultError) Unwrap() error { return e.cause }

// safe turns an error of the api client into a vaultError.
func (b *kvBackend) safe(op string, err error) error {
	e := &vaultError{}
	var detail string
	var re *api.ResponseError
	var ue *url.Error
	switch {
	case errors.Is(err, api.ErrSecretNotFound):
		e.cause, e.status, detail = errNotFound, http.StatusNotFound, "not found"
	case errors.As(err, &re):
		e.status = re.StatusCode
		detail = fmt.Sprintf("vault answered %d", re.StatusCode)
		if !re.RawError && len(re.Errors) > 0 {
			msgs := make([]string, len(re.Errors))
			for i, m := range re.Errors {
				msgs[i] = strings.Join(strings.Fields(m), " ")
			}
			detail += ": " + strings.Join(msgs, "; ")
		}
		if re.StatusCode == http.StatusNotFound {
			e.cause = errNotFound
		}
	case errors.Is(err, context.DeadlineExceeded):
		e.cause, detail = context.DeadlineExceeded, "timed out"
	case errors.Is(err, context.Canceled):
		e.cause, detail = context.Canceled, "canceled"
	case errors.As(err, &ue):
		detail = ue.Error() // method, URL (path only) and the network error
	default:
		detail = "unexpected answer from vault"
	}
	e.msg = op + ": " + b.scrub(detail)
	return e
}

// scrub removes the token, the secret id and served values from s.
func (b *kvBackend) scrub(s string) string {
	s = b.red.Redact(s)
	b.sensMu.Lock()
	defer b.sensMu.Unlock()
	for _, v := range b.sensitive {
		s = strings.ReplaceAll(s, v, "[redacted]")
	}
	return s
}

func (b *kvBackend) addSensitive(v string) {
	b.sensMu.Lock()
	defer b.sensMu.Unlock()
	for _, x := range b.sensitive {
		if x == v {
			return
		}
	}
	b.sensitive = append(b.sensitive, v)
	if len(b.sensitive) > maxSensitive { // old tokens of past logins
		b.sensitive = b.sensitive[len(b.sensitive)-maxSensitive:]
	}
}

const maxSensitive = 32

func isStatus(err error, status int) bool {
	var e *vaultError
	return errors.As(err, &e) && e.status == status
}
