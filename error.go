package hookgate

import (
	"errors"
	"fmt"
)

// Error codes. Inbound codes are the `error` values of SPEC.md's answers
// table; gateway maps each to its HTTP status in one place.
const (
	EUnknownSource    = "unknown_source"
	EInvalidToken     = "invalid_token"
	EInvalidSignature = "invalid_signature"
	EMethodNotAllowed = "method_not_allowed"
	EBodyTooLarge     = "body_too_large"
	EUnsupportedMedia = "unsupported_media_type"
	EBadRequest       = "bad_request"
	EUnavailable      = "unavailable"
	ERateLimited      = "rate_limited"
	EUnauthorized     = "unauthorized"
	ENotFound         = "not_found"
	EConflict         = "conflict"
	EInternal         = "internal"
)

// Error is an error with a code from the list above and a message that is
// safe to show a caller (it never holds a secret).
type Error struct {
	Code    string
	Message string
	Err     error // the cause, for logs; may be nil
}

func (e *Error) Error() string {
	switch {
	case e.Message != "" && e.Err != nil:
		return e.Code + ": " + e.Message + ": " + e.Err.Error()
	case e.Message != "":
		return e.Code + ": " + e.Message
	case e.Err != nil:
		return e.Code + ": " + e.Err.Error()
	}
	return e.Code
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error with code and a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// WrapError returns an *Error with code, a message and a cause.
func WrapError(code, message string, err error) *Error {
	return &Error{Code: code, Message: message, Err: err}
}

// ErrorCode returns the code of the first *Error in err's chain, EInternal
// for any other error, and "" for nil.
func ErrorCode(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return EInternal
}

// ErrorMessage returns the caller-safe message of the first *Error in err's
// chain, or a generic text for other errors.
func ErrorMessage(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	return "internal error"
}
