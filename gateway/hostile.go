package gateway

import (
	"bytes"
	"mime"
)

// formFieldsOver reports whether a urlencoded or multipart body holds more
// than max fields. It counts separators ('&', or the multipart boundary)
// without decoding anything, so that a form of 100 000 fields costs one
// scan of its bytes before the credential is checked, not 100 000 map
// entries. Other bodies are not counted.
func formFieldsOver(contentType, body []byte, limit int) bool {
	ct := bytes.TrimSpace(contentType)
	switch {
	case hasPrefixFold(ct, "application/x-www-form-urlencoded"):
		return bytes.Count(body, []byte("&")) >= limit // n separators = n+1 fields
	case hasPrefixFold(ct, "multipart/"):
		_, params, err := mime.ParseMediaType(string(ct))
		if err != nil || params["boundary"] == "" {
			return false // the provider answers the malformed body
		}
		// every part starts with "--boundary", and the closing one too
		return bytes.Count(body, []byte("--"+params["boundary"])) > limit+1
	}
	return false
}

func hasPrefixFold(b []byte, prefix string) bool {
	return len(b) >= len(prefix) && bytes.EqualFold(b[:len(prefix)], []byte(prefix))
}
