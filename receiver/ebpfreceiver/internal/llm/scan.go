package llm

import "github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/jsonscan"

// A request body is read once for a few top-level fields (model, stream, the messages); most of
// it is the conversation and the tool definitions, which are kept as raw bytes at most.
// encoding/json validates the whole body and then decodes it, two passes that cost about a fifth
// of the collector's CPU under an agent at 20 requests/s; jsonscan walks it once, checking its
// structure (strings, nesting) but not every number and literal inside the values it skips.
// Here a body cut by a capture bound is an error (jsonscan.ErrCut), as any malformed one, and
// fn sees only whole values: the callers have their own ways with a body read in part.

// members calls fn with each member of the JSON object in b: its key and the raw bytes of its
// value. It fails when b is not one well-formed object.
func members(b []byte, fn func(key string, raw []byte)) error {
	return jsonscan.Members(b, func(key string, raw []byte, whole bool) {
		if whole {
			fn(key, raw)
		}
	})
}

// elements calls fn with the raw bytes of each element of the JSON array in b.
func elements(b []byte, fn func(raw []byte)) error {
	return jsonscan.Elements(b, func(raw []byte, whole bool) {
		if whole {
			fn(raw)
		}
	})
}
