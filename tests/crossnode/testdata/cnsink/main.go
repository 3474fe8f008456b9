// Command cnsink is the crossnode test's outside host: it accepts connections and counts the
// bytes it received, printing one line per connection.
package main

import (
	"fmt"
	"io"
	"net"
	"os"
)

func main() {
	ln, err := net.Listen("tcp", os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			n, _ := io.Copy(io.Discard, io.LimitReader(c, 1<<20))
			fmt.Println("received", n)
		}()
	}
}
