// The receiver's openai-go test agent (TestLongConversationKeepsModel): the official OpenAI Go
// SDK, pinned in this folder's own go.mod, sending a chat completion whose conversation is long
// once per stdin line "<h1|h2|h2keep> <base-url> <kib>": openai-go writes "messages" before
// "model", so with a conversation of kib KiB the model comes after the capture bound. h1 and h2
// use a new connection per call; h2keep keeps one client, and so one HTTP/2 connection, for all
// its calls (TestH2JoinedAfterPreface: a connection opened before the receiver started). The
// server's CA comes in SSL_CERT_FILE.
package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
)

func main() {
	model := os.Args[1]
	fmt.Println("ready")
	var kept *openai.Client
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 3 {
			fmt.Println("usage: <h1|h2> <base-url> <kib>")
			continue
		}
		kib, _ := strconv.Atoi(f[2])
		var protocols http.Protocols
		protocols.SetHTTP1(f[0] == "h1")
		protocols.SetHTTP2(f[0] != "h1")
		tr := &http.Transport{Protocols: &protocols}
		client := openai.NewClient(option.WithBaseURL(f[1]), option.WithAPIKey("sk-test"), option.WithMaxRetries(0),
			option.WithHTTPClient(&http.Client{Transport: tr, Timeout: 30 * time.Second}))
		if f[0] == "h2keep" {
			if kept == nil {
				kept = &client
			}
			client = *kept
		}
		history := strings.Repeat("The customer asked about the balance of account C1001 again. ", kib*1024/62+1)
		r, err := client.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{
			Messages: []openai.ChatCompletionMessageParamUnion{
				openai.SystemMessage("You are a bank's assistant. Earlier conversation: " + history),
				openai.UserMessage("What is the balance of C1001?"),
			},
			Model: model,
		})
		if err != nil {
			fmt.Println("error " + err.Error())
			continue
		}
		fmt.Println("ok " + f[0] + " " + string(r.Choices[0].FinishReason))
		if f[0] != "h2keep" {
			tr.CloseIdleConnections()
		}
	}
}
