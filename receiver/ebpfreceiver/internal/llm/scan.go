package llm

import (
	"encoding/json"
	"errors"
	"strconv"
)

// A request body is read once for a few top-level fields (model, stream, the messages); most of
// it is the conversation and the tool definitions, which are kept as raw bytes at most.
// encoding/json validates the whole body and then decodes it, two passes that cost about a fifth
// of the collector's CPU under an agent at 20 requests/s; members walks it once, checking its
// structure (strings, nesting) but not every number and literal inside the values it skips.

var errNotObject = errors.New("not a JSON object")

// maxNesting matches encoding/json's limit.
const maxNesting = 10000

// members calls fn with each member of the JSON object in b: its key and the raw bytes of its
// value. It fails when b is not one well-formed object.
func members(b []byte, fn func(key string, raw []byte)) error {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return errNotObject
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return trailing(b, i+1)
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return syntaxError("object key", i)
		}
		end, err := skipString(b, i)
		if err != nil {
			return err
		}
		key := unquote(b[i:end])
		i = skipSpace(b, end)
		if i >= len(b) || b[i] != ':' {
			return syntaxError("':' after object key", i)
		}
		i = skipSpace(b, i+1)
		vend, err := skipValue(b, i)
		if err != nil {
			return err
		}
		fn(key, b[i:vend])
		i = skipSpace(b, vend)
		if i >= len(b) {
			return syntaxError("',' or '}'", i)
		}
		switch b[i] {
		case ',':
			i = skipSpace(b, i+1)
		case '}':
			return trailing(b, i+1)
		default:
			return syntaxError("',' or '}'", i)
		}
	}
}

// elements calls fn with the raw bytes of each element of the JSON array in b.
func elements(b []byte, fn func(raw []byte)) error {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '[' {
		return errors.New("not a JSON array")
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == ']' {
		return trailing(b, i+1)
	}
	for {
		end, err := skipValue(b, i)
		if err != nil {
			return err
		}
		fn(b[i:end])
		i = skipSpace(b, end)
		if i >= len(b) {
			return syntaxError("',' or ']'", i)
		}
		switch b[i] {
		case ',':
			i = skipSpace(b, i+1)
		case ']':
			return trailing(b, i+1)
		default:
			return syntaxError("',' or ']'", i)
		}
	}
}

func trailing(b []byte, i int) error {
	if i = skipSpace(b, i); i != len(b) {
		return syntaxError("end of input", i)
	}
	return nil
}

func syntaxError(want string, at int) error {
	return errors.New("expected " + want + " at offset " + strconv.Itoa(at))
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\n' || b[i] == '\r' || b[i] == '\t') {
		i++
	}
	return i
}

// skipString returns the offset after the string starting at b[i] (a '"').
func skipString(b []byte, i int) (int, error) {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++ // the escaped byte; \uXXXX's digits are ordinary bytes
		case '"':
			return j + 1, nil
		}
	}
	return 0, syntaxError("end of string", len(b))
}

// skipValue returns the offset after the value starting at b[i]. Strings and nesting are
// followed exactly; numbers and literals are taken up to the next delimiter.
func skipValue(b []byte, i int) (int, error) {
	if i >= len(b) {
		return 0, syntaxError("value", i)
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		var stack []byte
		for j := i; j < len(b); j++ {
			switch c := b[j]; c {
			case '"':
				end, err := skipString(b, j)
				if err != nil {
					return 0, err
				}
				j = end - 1
			case '{', '[':
				if len(stack) >= maxNesting {
					return 0, errors.New("JSON nested too deeply")
				}
				stack = append(stack, c)
			case '}', ']':
				open := byte('{')
				if c == ']' {
					open = '['
				}
				if len(stack) == 0 || stack[len(stack)-1] != open {
					return 0, syntaxError("matching bracket", j)
				}
				stack = stack[:len(stack)-1]
				if len(stack) == 0 {
					return j + 1, nil
				}
			}
		}
		return 0, syntaxError("end of "+map[byte]string{'{': "object", '[': "array"}[b[i]], len(b))
	default:
		j := i
		for j < len(b) {
			c := b[j]
			if c == ',' || c == '}' || c == ']' || c == ' ' || c == '\n' || c == '\r' || c == '\t' {
				break
			}
			j++
		}
		if j == i {
			return 0, syntaxError("value", i)
		}
		return j, nil
	}
}

// unquote decodes a JSON string token; keys without escapes (nearly all) are not decoded.
func unquote(tok []byte) string {
	for _, c := range tok[1 : len(tok)-1] {
		if c == '\\' {
			var s string
			if json.Unmarshal(tok, &s) != nil {
				return ""
			}
			return s
		}
	}
	return string(tok[1 : len(tok)-1])
}
