// Command goprog is a test fixture for the elfinfo package. It is built by
// the tests (optimised, as users build) and inspected, never run by them.
package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
)

// Agent is a toy agent.
type Agent struct {
	name  string
	calls int
}

// Level is a named integer type.
type Level int16

// Config is passed by value; it flattens to 4 integer registers.
type Config struct {
	id    int
	label string
	on    bool
}

// Padded has a zero-sized field in the middle which takes no register.
type Padded struct {
	a int32
	_ struct{}
	b uint8
}

// HandlePrompt: a=RAX user=RBX,RCX prompt=RDI,RSI n=R8 flag=R9.
//
//go:noinline
func (a *Agent) HandlePrompt(user string, prompt string, n int, flag bool) string {
	a.calls++
	if flag {
		return strings.Repeat(prompt, n) + user
	}
	return user + ":" + prompt
}

// WriteBytes: id=RAX data=RBX,RCX,RDI small=RSI.
//
//go:noinline
func WriteBytes(id uint32, data []byte, small int8) int {
	return int(id) + len(data) + int(small)
}

// Scale: factor=X0 label=RAX,RBX ratio=X1 count=RCX lvl=RDI.
//
//go:noinline
func Scale(factor float64, label string, ratio float32, count uint16, lvl Level) float64 {
	return factor*float64(ratio) + float64(len(label)) + float64(count) + float64(lvl)
}

// Many: a..h=RAX..R10, s needs two registers but only R11 is left so it
// goes on the stack; last still gets R11.
//
//go:noinline
func Many(a, b, c, d, e, f, g, h int, s string, last uint64) int {
	return a + b + c + d + e + f + g + h + len(s) + int(last)
}

// Mixed: cfg=RAX,RBX,RCX,RDI arr=stack (array of length 2) one=RSI,R8
// none=stack (zero-sized) pad=R9,R10 v=stack (needs 2, only R11 is left)
// tail=R11.
//
//go:noinline
func Mixed(cfg Config, arr [2]int, one [1]string, none [0]int, pad Padded, v any, tail bool) int {
	n := cfg.id + len(cfg.label) + arr[0] + arr[1] + len(one[0]) + len(none) + int(pad.a) + int(pad.b)
	if v != nil && tail && cfg.on {
		n++
	}
	return n
}

// Kinds: m=RAX ch=RBX fn=RCX p=RDI c=X0,X1 e=RSI,R8 name=R9,R10 u=R11.
//
//go:noinline
func Kinds(m map[string]int, ch chan int, fn func() int, p *int, c complex128, e error, name string, u uintptr) int {
	n := len(m) + len(ch) + fn() + *p + int(real(c)) + int(u) + len(name)
	if e != nil {
		n++
	}
	return n
}

// Classify has two distinct return paths.
//
//go:noinline
func Classify(n int, s string) string {
	if n < 0 {
		return "negative:" + s
	}
	fmt.Fprintln(os.Stderr, "classify", n)
	return s
}

// Fail never returns.
//
//go:noinline
func Fail(msg string) {
	panic(errors.New(msg))
}

// Pair is generic: the dictionary pointer is passed before the params.
//
//go:noinline
func Pair[T any](x T, label string) string {
	return fmt.Sprint(x) + label
}

// Box is a generic type.
type Box[T any] struct{ v T }

// Put: for methods the dictionary comes right after the receiver.
//
//go:noinline
func (b *Box[T]) Put(x T, key string) int {
	b.v = x
	return len(key)
}

func main() {
	a := &Agent{name: "a"}
	fmt.Println(a.HandlePrompt("u", "p", 2, len(os.Args) > 5))
	fmt.Println(WriteBytes(7, []byte("hi"), -1))
	fmt.Println(Scale(1.5, "x", 2, 3, 4))
	fmt.Println(Many(1, 2, 3, 4, 5, 6, 7, 8, "s", 9))
	fmt.Println(Mixed(Config{1, "l", true}, [2]int{1, 2}, [1]string{"o"}, [0]int{}, Padded{a: 1, b: 2}, 3, true))
	x := 1
	fmt.Println(Kinds(map[string]int{}, make(chan int), func() int { return 1 }, &x, 1+2i, nil, "n", 5))
	fmt.Println(Classify(len(os.Args)-3, "s"))
	fmt.Println(Pair(1, "x"), Pair("a", "b"))
	b := &Box[int]{}
	fmt.Println(b.Put(3, "z"))
	if len(os.Args) > 10 {
		Fail("boom")
	}
}
