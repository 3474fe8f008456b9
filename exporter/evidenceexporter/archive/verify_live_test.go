package archive

import (
	"io/fs"
	"os"
	"strings"
	"testing"
)

// phantomFS lists one extra segment file that no longer exists when opened: what a verifier
// sees when a live archive rolls back a new segment whose first write failed between the
// directory listing and the open.
type phantomFS struct {
	fs.FS
	name string
}

type phantomEntry struct{ name string }

func (e phantomEntry) Name() string               { return e.name }
func (e phantomEntry) IsDir() bool                { return false }
func (e phantomEntry) Type() fs.FileMode          { return 0 }
func (e phantomEntry) Info() (fs.FileInfo, error) { return nil, fs.ErrNotExist }

func (p phantomFS) ReadDir(name string) ([]fs.DirEntry, error) {
	des, err := fs.ReadDir(p.FS, name)
	if err != nil || name != SegmentsDir {
		return des, err
	}
	return append(des, phantomEntry{p.name}), nil
}

func TestVerifyToleratesRolledBackOpenSegment(t *testing.T) {
	dir := t.TempDir()
	a := openArchive(t, dir, testKey("main"), Options{SegmentMaxBytes: 4096})
	appendStories(t, a, 0, 10, 200)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	sealed := mustVerify(t, dir, VerifyOptions{PublicKey: testPub("main")})

	// The next segment, listed but gone: the archive is still whole.
	next := SegmentName(sealed.LastSeq + 1)
	rep, err := verifyFS(phantomFS{os.DirFS(dir), next}, VerifyOptions{PublicKey: testPub("main")})
	if err != nil {
		t.Fatalf("a vanished open segment broke verification: %v", err)
	}
	if rep.LastSeq != sealed.LastSeq || len(rep.Warnings) != 1 || !strings.Contains(rep.Warnings[0], next) {
		t.Fatalf("report %+v, want last seq %d and one warning naming %s", rep, sealed.LastSeq, next)
	}

	// A listed segment that vanishes before the last one is not a rollback: still an error.
	if _, err := verifyFS(phantomFS{os.DirFS(dir), SegmentName(2)}, VerifyOptions{PublicKey: testPub("main")}); err == nil {
		t.Fatal("a vanished segment before the tail verified")
	}
}
