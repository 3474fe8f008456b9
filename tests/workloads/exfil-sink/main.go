// exfil-sink plays the attacker's outside host: it accepts any POST, keeps the body, and
// records each upload as one JSON line so tests and the demo can show what left the bank.
package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/agenttrail/agenttrail/tests/workloads/internal/serve"
)

// maxUpload bounds one body; the demo's exports are a few KiB.
const maxUpload = 64 << 20

// upload is one line of the -log file.
type upload struct {
	Time     time.Time `json:"time"`
	Remote   string    `json:"remote"`
	Path     string    `json:"path"`
	Bytes    int       `json:"bytes"`
	SHA256   string    `json:"sha256"`
	Head     string    `json:"head"`                // first 200 bytes of the body
	BodyFile string    `json:"body_file,omitempty"` // the whole body, when -body-dir is set
}

type sink struct {
	mu      sync.Mutex
	log     *os.File
	bodyDir string
	n       int
}

func main() {
	listen := flag.String("listen", "127.0.0.2:9999", "HTTP address (port 0 picks a free port; see -ready-file)")
	logPath := flag.String("log", "uploads.jsonl", "JSON-lines record of the uploads (appended)")
	bodyDir := flag.String("body-dir", "", "directory that keeps each upload's body (upload-N-HASH.bin); empty: not kept")
	readyFile := flag.String("ready-file", "", "file written with the listen address once serving")
	flag.Parse()
	log.SetPrefix("exfil-sink: ")

	f, err := os.OpenFile(*logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()
	if *bodyDir != "" {
		if err := os.MkdirAll(*bodyDir, 0o755); err != nil {
			log.Fatal(err)
		}
	}
	s := &sink{log: f, bodyDir: *bodyDir}
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	if err := serve.Run(srv, *listen, *readyFile); err != nil {
		log.Fatal(err)
	}
}

func (s *sink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxUpload))
	if err != nil {
		http.Error(w, err.Error(), http.StatusRequestEntityTooLarge)
		return
	}
	sum := sha256.Sum256(body)
	rec := upload{
		Time:   time.Now().UTC(),
		Remote: r.RemoteAddr,
		Path:   r.URL.Path,
		Bytes:  len(body),
		SHA256: hex.EncodeToString(sum[:]),
		Head:   string(body[:min(len(body), 200)]),
	}
	if err := s.record(rec, body); err != nil {
		log.Printf("recording upload: %v", err)
		http.Error(w, "cannot record upload", http.StatusInternalServerError)
		return
	}
	log.Printf("upload %s: %d bytes from %s", rec.Path, rec.Bytes, rec.Remote)
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, "{\"ok\":true,\"bytes\":%d}\n", len(body))
}

// record keeps the body (if asked) and then appends the log line, one write per line, so a
// reader never sees a line whose body file is missing.
func (s *sink) record(rec upload, body []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.n++
	if s.bodyDir != "" {
		// The hash in the name keeps bodies apart when a restarted sink reuses the directory.
		rec.BodyFile = filepath.Join(s.bodyDir, fmt.Sprintf("upload-%d-%.12s.bin", s.n, rec.SHA256))
		if err := os.WriteFile(rec.BodyFile, body, 0o600); err != nil {
			return err
		}
	}
	line, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	_, err = s.log.Write(append(line, '\n'))
	return err
}
