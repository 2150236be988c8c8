package console

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"sync"
	"time"

	"github.com/hookgate/hookgate"
)

// maxSessions bounds the session table: a login past it ends the session
// closest to its expiry.
const maxSessions = 256

// session is one console login.
type session struct {
	csrf    string // the token every change must carry
	expires time.Time
	// token is the SHA-256 of the admin token it logged in with: once the
	// store no longer serves that value (rotated, past its grace), the
	// session ends.
	token [32]byte
}

// sessions holds the logins in memory, keyed by the SHA-256 of the cookie
// value (the value itself is kept nowhere but in the browser). A restart
// of the gateway ends every session.
type sessions struct {
	mu   sync.Mutex
	byID map[[32]byte]*session
	ttl  time.Duration
	now  func() time.Time
}

func newSessions(ttl time.Duration, now func() time.Time) *sessions {
	return &sessions{byID: map[[32]byte]*session{}, ttl: ttl, now: now}
}

// randomToken returns 32 random bytes, base64url-encoded.
func randomToken() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic("console: no randomness: " + err.Error()) // crypto/rand never fails on Linux
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// create starts a session and returns its cookie value.
func (s *sessions) create(token string) (id string, sess *session) {
	id = randomToken()
	sess = &session{csrf: randomToken(), expires: s.now().Add(s.ttl), token: sha256.Sum256([]byte(token))}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	for k, v := range s.byID {
		if !now.Before(v.expires) {
			delete(s.byID, k)
		}
	}
	for len(s.byID) >= maxSessions {
		var oldest [32]byte
		var at time.Time
		for k, v := range s.byID {
			if at.IsZero() || v.expires.Before(at) {
				oldest, at = k, v.expires
			}
		}
		delete(s.byID, oldest)
	}
	s.byID[sha256.Sum256([]byte(id))] = sess
	return id, sess
}

// get returns the live session of a cookie value, or nil.
func (s *sessions) get(id string) *session {
	if id == "" {
		return nil
	}
	k := sha256.Sum256([]byte(id))
	s.mu.Lock()
	defer s.mu.Unlock()
	sess := s.byID[k]
	if sess == nil {
		return nil
	}
	if !s.now().Before(sess.expires) {
		delete(s.byID, k)
		return nil
	}
	return sess
}

// end removes a session.
func (s *sessions) end(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.byID, sha256.Sum256([]byte(id)))
}

// count is the number of sessions held.
func (s *sessions) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.byID)
}

// validCSRF compares a presented token with the session's in constant time.
func (sess *session) validCSRF(presented string) bool {
	return presented != "" && subtle.ConstantTimeCompare([]byte(presented), []byte(sess.csrf)) == 1
}

// tokenValid reports whether the admin token the session logged in with
// is still one of vals.
func (sess *session) tokenValid(vals []hookgate.Secret) bool {
	ok := 0
	for _, v := range vals {
		h := sha256.Sum256([]byte(v))
		ok |= subtle.ConstantTimeCompare(h[:], sess.token[:])
	}
	return ok == 1
}
