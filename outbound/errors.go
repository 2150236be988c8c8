package outbound

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"syscall"
	"time"
)

// Sentinel errors.
var (
	// ErrCircuitOpen is returned, without a request, while the portal's
	// circuit breaker is open (or half-open and busy with its probe).
	ErrCircuitOpen = errors.New("outbound: circuit open")
	// ErrBatchSize is returned by Batch for no commands or more than 50.
	ErrBatchSize = errors.New("outbound: batch needs 1 to 50 commands")
)

// Bitrix24 error codes with a meaning for the client (reference/bitrix24.md).
const (
	CodeQueryLimitExceeded    = "QUERY_LIMIT_EXCEEDED"
	CodeOperationTimeLimit    = "OPERATION_TIME_LIMIT"
	CodeInternalServerError   = "INTERNAL_SERVER_ERROR"
	CodeUnexpectedAnswer      = "ERROR_UNEXPECTED_ANSWER"
	CodeNoAuthFound           = "NO_AUTH_FOUND"
	CodeInvalidCredentials    = "INVALID_CREDENTIALS"
	CodeAccessDenied          = "ACCESS_DENIED"
	CodeInsufficientScope     = "insufficient_scope"
	CodeUserAccessError       = "user_access_error"
	CodeOverloadLimit         = "OVERLOAD_LIMIT"
	CodeMethodNotFound        = "ERROR_METHOD_NOT_FOUND"
	CodeInvalidRequest        = "INVALID_REQUEST"
	CodePortalDeleted         = "PORTAL_DELETED"
	CodeExpiredToken          = "expired_token"
	CodeInvalidToken          = "invalid_token"
	CodeBatchLengthExceeded   = "ERROR_BATCH_LENGTH_EXCEEDED"
	CodeBatchMethodNotAllowed = "ERROR_BATCH_METHOD_NOT_ALLOWED"
)

// codeClass says, for known codes, whether they are transient. The code
// decides before the HTTP status: the docs disagree on some statuses
// (OVERLOAD_LIMIT is 503 in one revision, yet a manual block).
var codeClass = map[string]bool{
	CodeQueryLimitExceeded:    true,
	CodeOperationTimeLimit:    true,
	CodeInternalServerError:   true,
	CodeUnexpectedAnswer:      true,
	CodeNoAuthFound:           false,
	CodeInvalidCredentials:    false,
	CodeAccessDenied:          false,
	CodeInsufficientScope:     false,
	CodeUserAccessError:       false,
	CodeOverloadLimit:         false,
	CodeMethodNotFound:        false,
	CodeInvalidRequest:        false,
	CodePortalDeleted:         false,
	CodeExpiredToken:          false, // OAuth only; a webhook cannot refresh
	CodeInvalidToken:          false,
	CodeBatchLengthExceeded:   false,
	CodeBatchMethodNotAllowed: false,
}

// APIError is an error answer of the portal: the presence of "error" in
// the body, or an HTTP error status without a readable body.
type APIError struct {
	Code        string // the "error" member; may be empty ("Not found")
	Description string // the "error_description" member
	Status      int    // HTTP status; 0 for a command inside a batch

	// RetryAfter is the answer's Retry-After header, 0 when absent.
	RetryAfter time.Duration
	// Time is the answer's time block, nil when it had none.
	Time *Time
}

func (e *APIError) Error() string {
	code := e.Code
	if code == "" {
		code = "error"
	}
	s := "bitrix24 " + code
	if e.Description != "" {
		s += ": " + e.Description
	}
	if e.Status != 0 {
		s += fmt.Sprintf(" (http %d)", e.Status)
	}
	return s
}

// Transient reports whether the call may succeed if repeated: by the code
// when it is known, else by the status (5xx, 408 and 429 are transient).
func (e *APIError) Transient() bool {
	if t, ok := codeClass[e.Code]; ok {
		return t
	}
	switch {
	case e.Status >= 500:
		return true
	case e.Status == http.StatusRequestTimeout, e.Status == http.StatusTooManyRequests:
		return true
	}
	return false
}

// IsTransient reports whether err is worth retrying later: network errors
// and timeouts, an open circuit, transient API errors, an unreadable
// secret. Permanent API errors, bad parameters and cancellation are not.
func IsTransient(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, ErrAmbiguousWrite) {
		return false
	}
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.Transient()
	}
	var se *secretError
	if errors.As(err, &se) {
		return true
	}
	if errors.Is(err, ErrCircuitOpen) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	var te *transportError
	if errors.As(err, &te) {
		return true
	}
	return errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET)
}

// secretError is a failure to read the webhook secret.
type secretError struct{ err error }

func (e *secretError) Error() string { return "read portal secret: " + e.err.Error() }
func (e *secretError) Unwrap() error { return e.err }

// transportError is a request that got no answer. Its text never holds the
// request URL (which carries the webhook secret).
type transportError struct {
	url string // redacted
	err error  // the cause, with the URL stripped
}

func (e *transportError) Error() string { return "post " + e.url + ": " + e.err.Error() }
func (e *transportError) Unwrap() error { return e.err }

// errorCode is the history/metrics code of err.
func errorCode(err error) string {
	if err == nil {
		return ""
	}
	var ae *APIError
	switch {
	case errors.Is(err, ErrAmbiguousWrite):
		return CodeAmbiguousWrite
	case errors.As(err, &ae):
		if ae.Code == "" {
			return fmt.Sprintf("http_%d", ae.Status)
		}
		return ae.Code
	case errors.Is(err, ErrCircuitOpen):
		return "circuit_open"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	}
	var se *secretError
	if errors.As(err, &se) {
		return "secret_unavailable"
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timeout"
	}
	return "network"
}
