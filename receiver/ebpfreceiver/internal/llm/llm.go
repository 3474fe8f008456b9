package llm

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// Providers and APIs recognised.
const (
	ProviderOpenAI    = "openai"
	ProviderAnthropic = "anthropic"

	APIChatCompletions = "chat.completions"
	APIResponses       = "responses"
	APIMessages        = "messages"
)

// ToolCall is one tool the model asked the program to run.
type ToolCall struct {
	Name string
	ID   string
}

// Inference is what an LLM API exchange says.
type Inference struct {
	Provider, API string
	Method, Path  string
	Host          string
	Status        int
	Stream        bool
	// ProtocolVersion is the HTTP version that carried the call, as network.protocol.version
	// says it: "1.1", "1.0" or "2"; empty for anything else.
	ProtocolVersion string

	RequestModel, ResponseModel, ResponseID string
	InputTokens, OutputTokens               int64
	HasInputTokens, HasOutputTokens         bool
	FinishReasons                           []string
	ToolCalls                               []ToolCall
	ErrorType                               string // the API's error type, for error responses

	// InputMessages and OutputMessages are the provider's JSON of the messages sent and
	// received (not redacted here: the receiver redacts them, and only when asked to).
	InputMessages, OutputMessages string

	// Problems parsing either side; empty when it parsed.
	RequestProblem, ResponseProblem   string
	RequestBodySize, ResponseBodySize int64
	NoResponse                        bool

	// FromBodies: the call was recognised from its bodies, its path being hidden in the HPACK
	// table of a connection joined after its preface (h2join.go).
	FromBodies bool
}

// maxListed bounds the tool calls and the finish reasons an inference lists: each becomes
// span attributes, and a body of a few MiB can name hundreds of thousands.
const maxListed = 128

func (inf *Inference) addToolCall(tc ToolCall) bool {
	if len(inf.ToolCalls) >= maxListed {
		inf.listCut()
		return false
	}
	inf.ToolCalls = append(inf.ToolCalls, tc)
	return true
}

func (inf *Inference) addFinishReason(r string) {
	if len(inf.FinishReasons) >= maxListed {
		inf.listCut()
		return
	}
	inf.FinishReasons = append(inf.FinishReasons, r)
}

func (inf *Inference) listCut() {
	if inf.ResponseProblem == "" {
		inf.ResponseProblem = fmt.Sprintf("more than %d tool calls or finish reasons: the rest are not listed", maxListed)
	}
}

// Recognize reports whether a request is a call of an LLM API, and which.
func Recognize(req *Message) (provider, api string, ok bool) {
	if req == nil || req.Method != "POST" {
		return "", "", false
	}
	path, _, _ := strings.Cut(req.Target, "?")
	switch {
	case strings.HasSuffix(path, "/chat/completions"):
		return ProviderOpenAI, APIChatCompletions, true
	case strings.HasSuffix(path, "/v1/responses") || path == "/responses" || strings.HasSuffix(path, "/openai/responses"):
		return ProviderOpenAI, APIResponses, true
	case strings.HasSuffix(path, "/v1/messages"):
		return ProviderAnthropic, APIMessages, true
	}
	return "", "", false
}

// recognizeBodies recognises an LLM call whose path is hidden (a POST on an HTTP/2 connection
// joined after its preface, whose ":path" the client's encoder had put in its table before) from
// its bodies: a JSON request with "model" and "input" is a Responses call, with "model" and
// "messages" an Anthropic Messages call when the response is an Anthropic message (JSON or
// events), else a chat completion.
func recognizeBodies(ex Exchange) (provider, api string, ok bool) {
	req := ex.Request
	if req.Method != "POST" {
		return "", "", false
	}
	var model, messages, input bool
	if err := members(req.Body, func(key string, _ []byte) {
		switch key {
		case "model":
			model = true
		case "messages":
			messages = true
		case "input":
			input = true
		}
	}); err != nil {
		// Cut by a bound: the beginning is what there is.
		head := req.Body[:min(len(req.Body), 4096)]
		model = bytes.Contains(req.Body, []byte(`"model"`)) // after the messages too
		messages = bytes.HasPrefix(bytes.TrimSpace(head), []byte(`{"messages"`)) || bytes.Contains(head, []byte(`"messages":[`))
		input = bytes.Contains(head, []byte(`"input":`))
	}
	switch {
	case !model:
		return "", "", false
	case input && !messages:
		return ProviderOpenAI, APIResponses, true
	case messages:
		if r := ex.Response; r != nil {
			head := r.Body[:min(len(r.Body), 4096)]
			if bytes.Contains(head, []byte(`"type":"message"`)) || bytes.Contains(head, []byte("event: message_start")) {
				return ProviderAnthropic, APIMessages, true
			}
		}
		return ProviderOpenAI, APIChatCompletions, true
	}
	return "", "", false
}

// Parse reads an exchange as an LLM API call; ok is false when the request is not one.
func Parse(ex Exchange) (*Inference, bool) {
	provider, api, ok := Recognize(ex.Request)
	fromBodies := false
	if !ok && ex.Request != nil && ex.Request.Target == "" && ex.Request.HiddenFields > 0 {
		provider, api, ok = recognizeBodies(ex)
		fromBodies = ok
	}
	if !ok {
		return nil, false
	}
	req := ex.Request
	inf := &Inference{Provider: provider, API: api, Method: req.Method, Path: req.Target, Host: req.Header.Get("Host"),
		ProtocolVersion: ProtocolVersion(req.Proto), FromBodies: fromBodies}
	inf.RequestBodySize = req.WireSize
	parseRequest(inf, req)
	resp := ex.Response
	if resp == nil {
		inf.NoResponse = true
		inf.ResponseProblem = cmp.Or(ex.ResponseProblem, "no response seen")
		return inf, true
	}
	inf.Status = resp.Status
	inf.ResponseBodySize = resp.WireSize
	parseResponse(inf, resp)
	return inf, true
}

// ProtocolVersion is a request line's protocol as network.protocol.version names it; "" for one
// that is not a known HTTP version (the start line is the traced program's to write).
func ProtocolVersion(proto string) string {
	switch proto {
	case "HTTP/1.1":
		return "1.1"
	case "HTTP/1.0":
		return "1.0"
	case "HTTP/2.0":
		return "2"
	}
	return ""
}

var modelField = regexp.MustCompile(`"model"\s*:\s*"([^"\\]{1,256})"`)

func parseRequest(inf *Inference, m *Message) {
	if m.Problem != "" {
		inf.RequestProblem = m.Problem
	}
	var messages, input, system []byte
	var modelErr error
	err := members(m.Body, func(key string, raw []byte) {
		switch key {
		case "model":
			modelErr = json.Unmarshal(raw, &inf.RequestModel)
		case "stream":
			inf.Stream = string(raw) == "true"
		case "messages":
			messages = raw
		case "input":
			input = raw
		case "system":
			system = raw
		}
	})
	if err == nil && modelErr != nil {
		err = errors.New(`"model": ` + modelErr.Error())
	}
	if err != nil {
		if inf.RequestProblem == "" {
			inf.RequestProblem = "request body is not valid JSON: " + err.Error()
		}
		// Parsed where possible: the model is usually near the start, or, after a long
		// "messages" (openai-go, OpenAI's Python SDK), near the end.
		inf.RequestModel, inf.Stream = fieldsOf(m)
		return
	}
	switch inf.API {
	case APIResponses:
		inf.InputMessages = string(input)
	case APIMessages:
		if len(system) > 0 {
			inf.InputMessages = `{"system":` + string(system) + `,"messages":` + orNull(messages) + `}`
		} else {
			inf.InputMessages = string(messages)
		}
	default:
		inf.InputMessages = string(messages)
	}
}

var streamField = regexp.MustCompile(`"stream"\s*:\s*(true|false)\b`)

// fieldsOf finds the model and the stream flag in a request body that is not whole JSON (cut
// by the capture bound). A body captured as its beginning and its end (gaps) is searched in its
// first part, then in its last part, whose last match is taken (the top-level field follows the
// messages there); never across a gap, where two parts would join into a value neither holds.
func fieldsOf(m *Message) (model string, stream bool) {
	parts := [][]byte{m.Body}
	if g := m.gaps; g.n > 0 && g.first <= g.after && g.after <= len(m.Body) {
		parts = [][]byte{m.Body[:g.first], m.Body[g.after:]}
	}
	find := func(re *regexp.Regexp) string {
		if sm := re.FindSubmatch(parts[0]); sm != nil {
			return string(sm[1])
		}
		if len(parts) > 1 {
			if all := re.FindAllSubmatch(parts[1], -1); len(all) > 0 {
				return string(all[len(all)-1][1])
			}
		}
		return ""
	}
	return find(modelField), find(streamField) == "true"
}

func orNull(r []byte) string {
	if len(r) == 0 {
		return "null"
	}
	return string(r)
}

func parseResponse(inf *Inference, m *Message) {
	if m.Problem != "" {
		inf.ResponseProblem = m.Problem
	}
	ct := strings.ToLower(m.Header.Get("Content-Type"))
	body := bytes.TrimSpace(m.Body)
	if strings.Contains(ct, "text/event-stream") || bytes.HasPrefix(body, []byte("data:")) || bytes.HasPrefix(body, []byte("event:")) {
		inf.Stream = true
		parseStream(inf, m.Body)
		return
	}
	if len(body) == 0 {
		if inf.ResponseProblem == "" && m.Status/100 == 2 {
			inf.ResponseProblem = "empty response body"
		}
		return
	}
	if inf.API == APIChatCompletions {
		openAIChat(inf, body) // finds the error member in its own walk of the body
		return
	}
	var errorField []byte
	if err := members(body, func(key string, raw []byte) {
		if isError(key, raw) {
			errorField = raw
		}
	}); err != nil {
		notJSON(inf, body, err)
		return
	}
	setErrorType(inf, errorField)
	switch inf.API {
	case APIResponses:
		openAIResponse(inf, body)
	case APIMessages:
		anthropicMessage(inf, body)
	}
}

// isError: a member that says the call failed (the Responses API sends "error": null).
func isError(key string, raw []byte) bool { return key == "error" && string(raw) != "null" }

// notJSON says a response body is not one JSON object, and takes its model where it can.
func notJSON(inf *Inference, body []byte, err error) {
	if inf.ResponseProblem == "" {
		inf.ResponseProblem = "response body is not valid JSON: " + err.Error()
	}
	if sm := modelField.FindSubmatch(body); sm != nil {
		inf.ResponseModel = string(sm[1])
	}
}

// setErrorType reads the API's error member (nil: none).
func setErrorType(inf *Inference, errorField []byte) {
	if errorField == nil {
		return
	}
	var apiErr struct {
		Type string `json:"type"`
		Code any    `json:"code"`
	}
	if json.Unmarshal(errorField, &apiErr) == nil && apiErr.Type != "" {
		inf.ErrorType = apiErr.Type
	} else {
		inf.ErrorType = "error"
	}
}

type chatToolCall struct {
	Index    *int   `json:"index"`
	ID       string `json:"id"`
	Function struct {
		Name string `json:"name"`
	} `json:"function"`
}

// openAIChat reads a chat completion in one walk (see scan.go): the error member, the choices'
// finish reasons, messages and tool calls, the usage. The error member is found in the same walk
// rather than in one of its own before it (as the other APIs', decoded whole, have it): the
// bodies are walked once, not twice. The id and model are kept aside until the walk succeeds: a
// body that is not JSON says only the model it names (notJSON).
func openAIChat(inf *Inference, body []byte) {
	var id, model string
	var choices, usage, errorField []byte
	var bad error
	str := func(raw []byte, into *string) {
		if err := json.Unmarshal(raw, into); err != nil && string(raw) != "null" {
			bad = err
		}
	}
	err := members(body, func(key string, raw []byte) {
		if isError(key, raw) {
			errorField = raw
		}
		switch key {
		case "id":
			str(raw, &id)
		case "model":
			str(raw, &model)
		case "choices":
			choices = raw
		case "usage":
			usage = raw
		}
	})
	if err != nil {
		notJSON(inf, body, err)
		return
	}
	setErrorType(inf, errorField)
	inf.ResponseID, inf.ResponseModel = id, model
	var msgs [][]byte
	if choices != nil && string(choices) != "null" {
		err = elements(choices, func(choice []byte) {
			if merr := members(choice, func(key string, raw []byte) {
				switch key {
				case "finish_reason":
					if string(raw) != "null" {
						var r string
						str(raw, &r)
						inf.addFinishReason(r)
					}
				case "message":
					msgs = append(msgs, raw)
					var msg struct {
						ToolCalls []chatToolCall `json:"tool_calls"`
					}
					if json.Unmarshal(raw, &msg) == nil {
						for _, tc := range msg.ToolCalls {
							inf.addToolCall(ToolCall{Name: tc.Function.Name, ID: tc.ID})
						}
					}
				}
			}); merr != nil {
				bad = merr
			}
		})
	}
	if err = cmp.Or(err, bad); err != nil {
		inf.ResponseProblem = "unexpected chat completion: " + err.Error()
		return
	}
	if len(msgs) > 0 {
		inf.OutputMessages = "[" + string(bytes.Join(msgs, []byte(","))) + "]"
	}
	if usage != nil && string(usage) != "null" {
		var u struct {
			PromptTokens     *int64 `json:"prompt_tokens"`
			CompletionTokens *int64 `json:"completion_tokens"`
		}
		if json.Unmarshal(usage, &u) == nil {
			setUsage(inf, u.PromptTokens, u.CompletionTokens)
		}
	}
}

func setUsage(inf *Inference, in, out *int64) {
	if in != nil {
		inf.InputTokens, inf.HasInputTokens = *in, true
	}
	if out != nil {
		inf.OutputTokens, inf.HasOutputTokens = *out, true
	}
}

type responsesUsage struct {
	InputTokens  *int64 `json:"input_tokens"`
	OutputTokens *int64 `json:"output_tokens"`
}

type responseObject struct {
	ID                string          `json:"id"`
	Model             string          `json:"model"`
	Status            string          `json:"status"`
	Output            json.RawMessage `json:"output"`
	IncompleteDetails *struct {
		Reason string `json:"reason"`
	} `json:"incomplete_details"`
	Usage *responsesUsage `json:"usage"`
}

func openAIResponse(inf *Inference, body []byte) {
	var r responseObject
	if err := json.Unmarshal(body, &r); err != nil {
		inf.ResponseProblem = "unexpected response object: " + err.Error()
		return
	}
	applyResponseObject(inf, &r)
}

func applyResponseObject(inf *Inference, r *responseObject) {
	inf.ResponseID, inf.ResponseModel = r.ID, r.Model
	var items []struct {
		Type   string `json:"type"`
		CallID string `json:"call_id"`
		ID     string `json:"id"`
		Name   string `json:"name"`
	}
	_ = json.Unmarshal(r.Output, &items)
	for _, it := range items {
		if it.Type == "function_call" || it.Type == "custom_tool_call" {
			id := it.CallID
			if id == "" {
				id = it.ID
			}
			inf.addToolCall(ToolCall{Name: it.Name, ID: id})
		}
	}
	// The Responses API has no finish reason: it says the response's status and, when
	// incomplete, why. Those are reported as it said them; "stop" or "tool_calls" would be Chat
	// Completions' words put in its mouth (tool calls are in the output items, reported apart).
	// A status that is not final (queued, in_progress: background mode) ends nothing.
	inf.FinishReasons = nil
	switch {
	case r.Status == "incomplete" && r.IncompleteDetails != nil && r.IncompleteDetails.Reason != "":
		inf.addFinishReason(r.IncompleteDetails.Reason)
	case r.Status == "queued" || r.Status == "in_progress" || r.Status == "":
	default:
		inf.addFinishReason(r.Status)
	}
	if len(r.Output) > 0 {
		inf.OutputMessages = string(r.Output)
	}
	if r.Usage != nil {
		setUsage(inf, r.Usage.InputTokens, r.Usage.OutputTokens)
	}
}

type anthropicUsage struct {
	InputTokens  *int64 `json:"input_tokens"`
	OutputTokens *int64 `json:"output_tokens"`
}

func anthropicMessage(inf *Inference, body []byte) {
	var r struct {
		ID         string          `json:"id"`
		Model      string          `json:"model"`
		StopReason *string         `json:"stop_reason"`
		Content    json.RawMessage `json:"content"`
		Usage      *anthropicUsage `json:"usage"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		inf.ResponseProblem = "unexpected message: " + err.Error()
		return
	}
	inf.ResponseID, inf.ResponseModel = r.ID, r.Model
	if r.StopReason != nil {
		inf.FinishReasons = []string{*r.StopReason}
	}
	var blocks []struct {
		Type string `json:"type"`
		ID   string `json:"id"`
		Name string `json:"name"`
	}
	_ = json.Unmarshal(r.Content, &blocks)
	for _, b := range blocks {
		if b.Type == "tool_use" || b.Type == "server_tool_use" {
			inf.addToolCall(ToolCall{Name: b.Name, ID: b.ID})
		}
	}
	if len(r.Content) > 0 {
		inf.OutputMessages = string(r.Content)
	}
	if r.Usage != nil {
		setUsage(inf, r.Usage.InputTokens, r.Usage.OutputTokens)
	}
}

// maxEvents bounds the events of a stream read: a few thousand make a long answer, and each
// costs a JSON decoding.
const maxEvents = 1 << 16

// parseStream reads a server-sent event stream of any of the three APIs: eachStreamEvent
// finds and checks the events, one function per API reads them.
func parseStream(inf *Inference, body []byte) {
	st := &streamState{toolIdx: map[int]int{}}
	var read func(*Inference, *streamState, []byte, string)
	switch inf.API {
	case APIChatCompletions:
		read = chatStreamEvent
	case APIResponses:
		read = responsesStreamEvent
	case APIMessages:
		read = messagesStreamEvent
	}
	events := eachStreamEvent(inf, body, func(data []byte, typ string) {
		if read != nil {
			read(inf, st, data, typ)
		}
	})
	if events == 0 && inf.ResponseProblem == "" {
		inf.ResponseProblem = "event stream without events"
	}
	if inf.OutputMessages == "" && st.text.Len() > 0 {
		b, _ := json.Marshal(st.text.String())
		inf.OutputMessages = string(b)
	}
}

// streamState is what a stream's events add up to before it goes into the Inference.
type streamState struct {
	text    strings.Builder
	toolIdx map[int]int // OpenAI delta index → position in inf.ToolCalls
}

// eachStreamEvent calls fn with the data and type of each event of the stream, at most
// maxEvents of them, and returns how many it found (one more than maxEvents when it stopped
// there). An event that is not valid JSON is skipped and said in inf.ResponseProblem.
func eachStreamEvent(inf *Inference, body []byte, fn func(data []byte, typ string)) int {
	events := 0
	// Line by line without splitting the body first: a body of newlines would make a slice
	// header of every one.
	for line := range bytes.Lines(body) {
		line = bytes.TrimRight(bytes.TrimSuffix(line, []byte("\n")), "\r")
		data, ok := bytes.CutPrefix(line, []byte("data:"))
		if !ok {
			continue
		}
		data = bytes.TrimSpace(data)
		if len(data) == 0 || bytes.Equal(data, []byte("[DONE]")) {
			continue
		}
		// Checked, and its type read, without decoding it into a map: an event is decoded
		// once, into what its API and type need.
		var typeRaw []byte
		if !json.Valid(data) || members(data, func(k string, raw []byte) {
			if k == "type" {
				typeRaw = raw
			}
		}) != nil {
			if inf.ResponseProblem == "" {
				inf.ResponseProblem = "an event of the stream is not valid JSON"
			}
			continue
		}
		if events++; events > maxEvents {
			if inf.ResponseProblem == "" {
				inf.ResponseProblem = fmt.Sprintf("more than %d events in the stream: the rest were not read", maxEvents)
			}
			break
		}
		var typ string
		if typeRaw != nil {
			_ = json.Unmarshal(typeRaw, &typ)
		}
		fn(data, typ)
	}
	return events
}

// chatStreamEvent reads a Chat Completions chunk: text and tool calls come in deltas, a tool
// call's later deltas name it by its index.
func chatStreamEvent(inf *Inference, st *streamState, data []byte, _ string) {
	var c struct {
		ID      string `json:"id"`
		Model   string `json:"model"`
		Choices []struct {
			FinishReason *string `json:"finish_reason"`
			Delta        struct {
				Content   string         `json:"content"`
				ToolCalls []chatToolCall `json:"tool_calls"`
			} `json:"delta"`
		} `json:"choices"`
		Usage *struct {
			PromptTokens     *int64 `json:"prompt_tokens"`
			CompletionTokens *int64 `json:"completion_tokens"`
		} `json:"usage"`
	}
	if json.Unmarshal(data, &c) != nil {
		return
	}
	if c.ID != "" {
		inf.ResponseID = c.ID
	}
	if c.Model != "" {
		inf.ResponseModel = c.Model
	}
	for _, ch := range c.Choices {
		st.text.WriteString(ch.Delta.Content)
		if ch.FinishReason != nil && *ch.FinishReason != "" {
			inf.addFinishReason(*ch.FinishReason)
		}
		for _, tc := range ch.Delta.ToolCalls {
			idx := len(inf.ToolCalls)
			if tc.Index != nil {
				if i, ok := st.toolIdx[*tc.Index]; ok {
					if tc.ID != "" {
						inf.ToolCalls[i].ID = tc.ID
					}
					if tc.Function.Name != "" {
						inf.ToolCalls[i].Name = tc.Function.Name
					}
					continue
				}
			}
			if inf.addToolCall(ToolCall{Name: tc.Function.Name, ID: tc.ID}) && tc.Index != nil {
				st.toolIdx[*tc.Index] = idx
			}
		}
	}
	if c.Usage != nil {
		setUsage(inf, c.Usage.PromptTokens, c.Usage.CompletionTokens)
	}
}

// responsesStreamEvent reads a Responses API event: the final response object says it all,
// response.created names the response early.
func responsesStreamEvent(inf *Inference, _ *streamState, data []byte, typ string) {
	var r struct {
		Response responseObject `json:"response"`
	}
	switch typ {
	case "response.completed", "response.incomplete", "response.failed":
		if json.Unmarshal(data, &r) == nil {
			inf.ToolCalls = nil
			applyResponseObject(inf, &r.Response)
		}
	case "response.created":
		if json.Unmarshal(data, &r) == nil {
			inf.ResponseID, inf.ResponseModel = r.Response.ID, r.Response.Model
		}
	}
}

// messagesStreamEvent reads an Anthropic Messages event.
func messagesStreamEvent(inf *Inference, st *streamState, data []byte, typ string) {
	switch typ {
	case "message_start":
		var r struct {
			Message struct {
				ID    string          `json:"id"`
				Model string          `json:"model"`
				Usage *anthropicUsage `json:"usage"`
			} `json:"message"`
		}
		if json.Unmarshal(data, &r) == nil {
			inf.ResponseID, inf.ResponseModel = r.Message.ID, r.Message.Model
			if r.Message.Usage != nil {
				setUsage(inf, r.Message.Usage.InputTokens, r.Message.Usage.OutputTokens)
			}
		}
	case "content_block_start":
		var r struct {
			Block struct {
				Type string `json:"type"`
				ID   string `json:"id"`
				Name string `json:"name"`
			} `json:"content_block"`
		}
		if json.Unmarshal(data, &r) == nil && (r.Block.Type == "tool_use" || r.Block.Type == "server_tool_use") {
			inf.addToolCall(ToolCall{Name: r.Block.Name, ID: r.Block.ID})
		}
	case "content_block_delta":
		var r struct {
			Delta struct {
				Text string `json:"text"`
			} `json:"delta"`
		}
		if json.Unmarshal(data, &r) == nil {
			st.text.WriteString(r.Delta.Text)
		}
	case "message_delta":
		var r struct {
			Delta struct {
				StopReason *string `json:"stop_reason"`
			} `json:"delta"`
			Usage *anthropicUsage `json:"usage"`
		}
		if json.Unmarshal(data, &r) == nil {
			if r.Delta.StopReason != nil {
				inf.FinishReasons = []string{*r.Delta.StopReason}
			}
			if r.Usage != nil && r.Usage.OutputTokens != nil {
				inf.OutputTokens, inf.HasOutputTokens = *r.Usage.OutputTokens, true
			}
		}
	case "error":
		inf.ErrorType = "error"
	}
}
