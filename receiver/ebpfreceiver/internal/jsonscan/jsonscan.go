// Package jsonscan walks JSON without decoding it: the members of an object or the elements of
// an array, each as the raw bytes of its value, checked for structure (strings, nesting) but
// not for every number and literal inside the values it skips. The LLM and MCP parsers read a
// few members of large messages this way, once, instead of validating and then decoding them
// with encoding/json (two passes, a fifth of the collector's CPU under a busy agent).
//
// Input captured from a traced process may be cut at a capture bound: a walk reports every
// member it finished and then the one it was in, unfinished, and says so with ErrCut. A caller
// that needs whole input treats ErrCut as any other error.
package jsonscan

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"unicode/utf8"
)

// MaxNesting bounds the brackets open at once (encoding/json's limit).
const MaxNesting = 10000

var (
	// ErrCut: the input ended inside a value.
	ErrCut = errors.New("input ends inside a value")
	// ErrNotObject: the input does not begin with '{'.
	ErrNotObject = errors.New("not a JSON object")
	// ErrNotArray: the input does not begin with '['.
	ErrNotArray = errors.New("not a JSON array")
	// ErrTooDeep: more than MaxNesting brackets open at once.
	ErrTooDeep = errors.New("JSON nested too deeply")
)

// Members calls fn with each member of the JSON object in b: its key and the raw bytes of its
// value. When b ends inside a value, fn is called a last time with whole false and the value's
// bytes as far as they go (none when b ends before it), and Members returns ErrCut; any other
// malformation stops the walk with an error.
func Members(b []byte, fn func(key string, raw []byte, whole bool)) error {
	i := SkipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return ErrNotObject
	}
	i = SkipSpace(b, i+1)
	if i >= len(b) {
		return ErrCut
	}
	if b[i] == '}' {
		return trailing(b, i+1)
	}
	for {
		if i >= len(b) {
			return ErrCut
		}
		if b[i] != '"' {
			return syntaxError("object key", i)
		}
		end, err := SkipString(b, i)
		if err != nil {
			return err
		}
		key := Unquote(b[i:end])
		i = SkipSpace(b, end)
		if i >= len(b) {
			return ErrCut
		}
		if b[i] != ':' {
			return syntaxError("':' after object key", i)
		}
		i = SkipSpace(b, i+1)
		vend, err := SkipValue(b, i)
		if errors.Is(err, ErrCut) {
			fn(key, b[i:], false) // empty when the input ends before the value
			return ErrCut
		}
		if err != nil {
			return err
		}
		fn(key, b[i:vend], true)
		i = SkipSpace(b, vend)
		if i >= len(b) {
			return ErrCut
		}
		switch b[i] {
		case ',':
			i = SkipSpace(b, i+1)
		case '}':
			return trailing(b, i+1)
		default:
			return syntaxError("',' or '}'", i)
		}
	}
}

// Elements calls fn with the raw bytes of each element of the JSON array in b; like Members, a
// last unfinished element is passed with whole false and ErrCut returned.
func Elements(b []byte, fn func(raw []byte, whole bool)) error {
	i := SkipSpace(b, 0)
	if i >= len(b) || b[i] != '[' {
		return ErrNotArray
	}
	i = SkipSpace(b, i+1)
	if i >= len(b) {
		return ErrCut
	}
	if b[i] == ']' {
		return trailing(b, i+1)
	}
	for {
		end, err := SkipValue(b, i)
		if errors.Is(err, ErrCut) {
			if i < len(b) {
				fn(b[i:], false)
			}
			return ErrCut
		}
		if err != nil {
			return err
		}
		fn(b[i:end], true)
		i = SkipSpace(b, end)
		if i >= len(b) {
			return ErrCut
		}
		switch b[i] {
		case ',':
			i = SkipSpace(b, i+1)
		case ']':
			return trailing(b, i+1)
		default:
			return syntaxError("',' or ']'", i)
		}
	}
}

func trailing(b []byte, i int) error {
	if i = SkipSpace(b, i); i != len(b) {
		return syntaxError("end of input", i)
	}
	return nil
}

func syntaxError(want string, at int) error {
	return errors.New("expected " + want + " at offset " + strconv.Itoa(at))
}

// SkipSpace returns the offset of the first byte at or after i that is not JSON whitespace.
func SkipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\n' || b[i] == '\r' || b[i] == '\t') {
		i++
	}
	return i
}

// SkipString returns the offset after the string starting at b[i] (a '"'), or ErrCut.
func SkipString(b []byte, i int) (int, error) {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++ // the escaped byte; \uXXXX's digits are ordinary bytes
		case '"':
			return j + 1, nil
		}
	}
	return 0, ErrCut
}

// SkipValue returns the offset after the value starting at b[i]. Strings and nesting are
// followed exactly; numbers and literals are taken up to the next delimiter (a literal at the
// very end of b counts as cut: more of it may have followed).
func SkipValue(b []byte, i int) (int, error) {
	if i >= len(b) {
		return 0, ErrCut
	}
	switch b[i] {
	case '"':
		return SkipString(b, i)
	case '{', '[':
		// Only the kind of each open bracket matters; a small array on the stack covers nearly
		// all messages without allocating.
		var small [32]byte
		stack := small[:0]
		for j := i; j < len(b); j++ {
			switch c := b[j]; c {
			case '"':
				end, err := SkipString(b, j)
				if err != nil {
					return 0, err
				}
				j = end - 1
			case '{', '[':
				if len(stack) >= MaxNesting {
					return 0, ErrTooDeep
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
		return 0, ErrCut
	case '}', ']', ',', ':':
		return 0, syntaxError("value", i)
	default:
		for j := i; j < len(b); j++ {
			switch b[j] {
			case ',', '}', ']', ' ', '\n', '\r', '\t':
				return j, nil
			}
		}
		return 0, ErrCut
	}
}

// Unquote decodes a JSON string token; tokens without escapes and in valid UTF-8 (nearly all)
// are not decoded. Anything else than a whole, valid string gives "". The result is always
// valid UTF-8 (encoding/json puts U+FFFD for invalid bytes): it becomes span attributes, which
// OTLP requires in UTF-8, and a traced peer may send any bytes.
func Unquote(tok []byte) string {
	if len(tok) < 2 || tok[0] != '"' || tok[len(tok)-1] != '"' {
		return ""
	}
	body := tok[1 : len(tok)-1]
	if bytes.IndexByte(body, '\\') < 0 && utf8.Valid(body) {
		return string(body)
	}
	var s string
	if json.Unmarshal(tok, &s) != nil {
		return ""
	}
	return s
}

// UnquotePrefix decodes what a string cut by a capture bound holds so far.
func UnquotePrefix(tok []byte) string {
	if len(tok) == 0 || tok[0] != '"' {
		return ""
	}
	if s := Unquote(tok); s != "" || string(tok) == `""` {
		return s
	}
	// Drop a trailing half escape (a lone '\\' or a \u with fewer than 4 digits), then close
	// the string and decode what is there.
	body := tok[1:]
	for k := 0; k < len(body); k++ {
		if body[k] != '\\' {
			continue
		}
		n := 2
		if k+1 < len(body) && body[k+1] == 'u' {
			n = 6
		}
		if k+n > len(body) {
			body = body[:k]
			break
		}
		k += n - 1
	}
	// A rune the bound cut in two is dropped, not turned into replacement characters.
	for k := len(body) - 1; k >= 0 && k >= len(body)-3; k-- {
		if utf8.RuneStart(body[k]) {
			if !utf8.FullRune(body[k:]) {
				body = body[:k]
			}
			break
		}
	}
	return Unquote(append(append([]byte{'"'}, body...), '"'))
}
