// Package serve runs the workload programs' HTTP servers the same way: listen, announce the
// bound address in a ready file for launchers, stop cleanly on SIGINT/SIGTERM.
package serve

import (
	"context"
	"errors"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"
)

// Run serves srv on addr (port 0 picks a free one) until SIGINT or SIGTERM. Once listening it
// writes the bound address to readyFile, if set. It serves TLS when srv.TLSConfig has
// certificates.
func Run(srv *http.Server, addr, readyFile string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	if readyFile != "" {
		if err := WriteFileAtomic(readyFile, []byte(ln.Addr().String()+"\n")); err != nil {
			ln.Close()
			return err
		}
	}
	log.Printf("listening on %s", ln.Addr())

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(shutdown) // lets in-flight requests finish
	}()
	if srv.TLSConfig != nil && len(srv.TLSConfig.Certificates) > 0 {
		err = srv.ServeTLS(ln, "", "")
	} else {
		err = srv.Serve(ln)
	}
	if !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	<-drained
	return nil
}

// WriteFileAtomic writes then renames, so a reader polling the file never sees half of it.
func WriteFileAtomic(path string, data []byte) error {
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
