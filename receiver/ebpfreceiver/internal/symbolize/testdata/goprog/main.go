// Command goprog prints the program counters of the call chain
// main.outer -> main.middle -> main.inner (as captured by runtime.Callers,
// innermost first, in hex) on one line prefixed by "PCS", then blocks until
// stdin is closed. The "@name" comments mark lines the tests look up.
package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
)

var sink []uintptr

// callers is called through a variable so that runtime.Callers is not
// inlined into main.inner (the symbolizer reports inlined code with the
// file:line of the inlined body).
var callers = runtime.Callers

//go:noinline
func inner() []uintptr {
	pcs := make([]uintptr, 64)
	n := callers(1, pcs) // @inner
	return pcs[:n]
}

//go:noinline
func middle() []uintptr {
	pcs := inner() // @middle
	sink = pcs
	return pcs
}

//go:noinline
func outer() []uintptr {
	pcs := middle() // @outer
	sink = pcs
	return pcs
}

func main() {
	pcs := outer() // @main
	var sb strings.Builder
	sb.WriteString("PCS")
	for _, pc := range pcs {
		fmt.Fprintf(&sb, " %x", pc)
	}
	w := bufio.NewWriter(os.Stdout)
	fmt.Fprintln(w, sb.String())
	w.Flush()
	_, _ = io.Copy(io.Discard, os.Stdin)
}
