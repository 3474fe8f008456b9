package mcp

import (
	"encoding/json"
	"errors"
	"strconv"
)

// A JSON-RPC message is read once for a few members (jsonrpc, id, method, params, result,
// error); the rest is kept as raw bytes. A message cut at the capture bound is still read as far
// as it goes: the walk reports every member it finished and then the one it was in, unfinished.

// maxNesting bounds the brackets open at once (encoding/json's limit).
const maxNesting = 10000

var errNotObject = errors.New("not a JSON object")

// errCut: the input ended inside a value.
var errCut = errors.New("input ends inside a value")

// members calls fn with each member of the JSON object in b: its key and the raw bytes of its
// value. When b ends inside a value, fn is called a last time with whole false and the value's
// bytes as far as they go (none when b ends before it), and members returns errCut; any other malformation stops the walk
// with an error.
func members(b []byte, fn func(key string, raw []byte, whole bool)) error {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return errNotObject
	}
	i = skipSpace(b, i+1)
	if i >= len(b) {
		return errCut
	}
	if b[i] == '}' {
		return trailing(b, i+1)
	}
	for {
		if i >= len(b) {
			return errCut
		}
		if b[i] != '"' {
			return syntaxError("object key", i)
		}
		end, err := skipString(b, i)
		if err != nil {
			return err
		}
		key := unquote(b[i:end])
		i = skipSpace(b, end)
		if i >= len(b) {
			return errCut
		}
		if b[i] != ':' {
			return syntaxError("':' after object key", i)
		}
		i = skipSpace(b, i+1)
		vend, err := skipValue(b, i)
		if errors.Is(err, errCut) {
			fn(key, b[i:], false) // empty when the input ends before the value
			return errCut
		}
		if err != nil {
			return err
		}
		fn(key, b[i:vend], true)
		i = skipSpace(b, vend)
		if i >= len(b) {
			return errCut
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

// elements calls fn with the raw bytes of each element of the JSON array in b; like members, a
// last unfinished element is passed with whole false and errCut returned.
func elements(b []byte, fn func(raw []byte, whole bool)) error {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '[' {
		return errors.New("not a JSON array")
	}
	i = skipSpace(b, i+1)
	if i >= len(b) {
		return errCut
	}
	if b[i] == ']' {
		return trailing(b, i+1)
	}
	for {
		end, err := skipValue(b, i)
		if errors.Is(err, errCut) {
			if i < len(b) {
				fn(b[i:], false)
			}
			return errCut
		}
		if err != nil {
			return err
		}
		fn(b[i:end], true)
		i = skipSpace(b, end)
		if i >= len(b) {
			return errCut
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
	return 0, errCut
}

// skipValue returns the offset after the value starting at b[i]. Strings and nesting are
// followed exactly; numbers and literals are taken up to the next delimiter (a literal at the
// very end of b counts as cut: more of it may have followed).
func skipValue(b []byte, i int) (int, error) {
	if i >= len(b) {
		return 0, errCut
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		// Only the kind of each open bracket matters; a small array on the stack covers nearly
		// all messages without allocating.
		var small [32]byte
		stack := small[:0]
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
		return 0, errCut
	case '}', ']', ',', ':':
		return 0, syntaxError("value", i)
	default:
		j := i
		for j < len(b) {
			c := b[j]
			if c == ',' || c == '}' || c == ']' || c == ' ' || c == '\n' || c == '\r' || c == '\t' {
				return j, nil
			}
			j++
		}
		return 0, errCut
	}
}

// unquote decodes a JSON string token; tokens without escapes (nearly all) are not decoded.
// Anything else than a whole string gives "".
func unquote(tok []byte) string {
	if len(tok) < 2 || tok[0] != '"' || tok[len(tok)-1] != '"' {
		return ""
	}
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

// unquotePrefix decodes what a string cut by the capture bound holds so far.
func unquotePrefix(tok []byte) string {
	if len(tok) == 0 || tok[0] != '"' {
		return ""
	}
	if s := unquote(tok); s != "" || string(tok) == `""` {
		return s
	}
	// Drop a trailing half escape, then close the string and decode what is there.
	body := tok[1:]
	for k := len(body) - 1; k >= 0 && k >= len(body)-6; k-- {
		if body[k] == '\\' {
			body = body[:k]
			break
		}
	}
	return unquote(append(append([]byte{'"'}, body...), '"'))
}
