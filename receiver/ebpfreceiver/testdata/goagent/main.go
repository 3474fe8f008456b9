// goagent is a small Go program with known functions, traced by the receiver's kernel tests.
// It reads commands from stdin, one per line, and answers "ok <command>" when done.
package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"time"
)

type Agent struct{ tools *Tools }

type Tools struct{ peer string }

//go:noinline
func (a *Agent) HandlePrompt(prompt string, verbose bool) string {
	answer := a.callModel(prompt)
	if strings.Contains(prompt, "export") {
		n := a.tools.ExportCustomerData("SELECT * FROM customers", 42)
		answer += fmt.Sprintf(" exported %d", n)
	}
	return answer
}

//go:noinline
func (a *Agent) callModel(prompt string) string {
	time.Sleep(2 * time.Millisecond)
	return "model says " + prompt[:min(len(prompt), 10)]
}

//go:noinline
func (t *Tools) ExportCustomerData(query string, limit int) int {
	f, err := os.Open("/etc/hostname")
	if err == nil {
		f.Close()
	}
	// The connect happens on another goroutine, as net/http's dialer does.
	done := make(chan int)
	go func() {
		c, err := net.Dial("tcp", t.peer)
		if err != nil {
			done <- -1
			return
		}
		c.Write([]byte(query))
		c.Close()
		done <- limit
	}()
	return <-done
}

//go:noinline
func Recover() (out string) {
	defer func() {
		if r := recover(); r != nil {
			out = "recovered"
		}
	}()
	mayPanic()
	return "no panic"
}

//go:noinline
func mayPanic() { panic("boom") }

//go:noinline
func Hang() {
	fmt.Println("hanging")
	select {}
}

//go:noinline
func RunTool(name string) {
	exec.Command(name, "-c", "exit 0").Run()
}

//go:noinline
func Dial(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return err
	}
	return c.Close()
}

//go:noinline
func Serve(ln net.Listener) string {
	c, err := ln.Accept()
	if err != nil {
		return err.Error()
	}
	defer c.Close()
	return c.RemoteAddr().String()
}

func main() {
	a := &Agent{tools: &Tools{peer: os.Args[1]}}
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		cmd, arg, _ := strings.Cut(in.Text(), " ")
		switch cmd {
		case "prompt":
			a.HandlePrompt(arg, true)
		case "panic":
			Recover()
		case "shell":
			RunTool("/bin/sh")
		case "dial":
			if err := Dial(arg); err != nil {
				fmt.Println("dial error:", err)
			}
		case "serve":
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				fmt.Println("listen error:", err)
				continue
			}
			fmt.Println("listening", ln.Addr())
			fmt.Println("accepted", Serve(ln))
			ln.Close()
		case "hang":
			Hang()
		case "quit":
			return
		}
		fmt.Println("ok", cmd)
	}
}
