package archive

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"go.uber.org/zap"
)

// Defaults used when an Options field is zero.
const (
	DefaultSegmentMaxBytes = 64 << 20
	DefaultSegmentMaxAge   = time.Hour
)

var (
	// ErrClosed is returned by operations on a closed Archive.
	ErrClosed = errors.New("evidence archive is closed")
	// ErrInvalidEntry wraps problems with an Entry itself; retrying cannot fix them.
	ErrInvalidEntry = errors.New("invalid evidence entry")
)

// Options configure an Archive.
type Options struct {
	SegmentMaxBytes int64
	SegmentMaxAge   time.Duration
	Retention       Retention
	// Fsync makes Append fsync the segment file before it returns.
	Fsync bool
	// Now is the clock; nil means time.Now.
	Now    func() time.Time
	Logger *zap.Logger
	// OnRepair, if set, is called for every crash-damaged tail that is cut off the open
	// segment (also logged as a warning), so that the exporter can count repairs.
	OnRepair func(Repair)

	// openFile opens a segment file for appending (creating it exclusively when create is
	// set). Tests replace it to inject write failures; nil means the operating system's.
	openFile func(path string, create bool) (segmentFile, error)
	// noRepairSync skips the fsyncs of a tail repair. Only fuzz targets, which open thousands
	// of archives, set it: on a busy disk each fsync can take a second.
	noRepairSync bool
}

// segmentFile is what the archive needs of an open segment file.
type segmentFile interface {
	io.Writer
	Sync() error
	Truncate(size int64) error
	Close() error
}

func openOSFile(path string, create bool) (segmentFile, error) {
	flag := os.O_WRONLY | os.O_APPEND
	if create {
		flag |= os.O_CREATE | os.O_EXCL
	}
	return os.OpenFile(path, flag, 0o640)
}

// Repair describes bytes cut off the end of the open segment when the archive was opened, or
// re-validated after a failed write.
type Repair struct {
	Segment string // file name in segments/
	Offset  int64  // where the cut bytes started
	Bytes   int64
	Kind    string // RepairPartialLine or RepairInvalidRecord
	Reason  string
	// Quarantine is the path of the copy of the cut bytes, "" if it could not be written.
	Quarantine string
	// RemovedSegment is set when the segment held no complete record and was removed.
	RemovedSegment bool
}

// Entry is one record to append.
type Entry struct {
	Kind    string // KindStory or KindFinding
	TraceID string // 32 lowercase hex digits or ""
	Payload []byte // a JSON object
}

// maxRecordOverhead is more than a record line holds besides its payload (about 300 bytes).
const maxRecordOverhead = 512

type preparedEntry struct {
	kind    string
	traceID string
	payload json.RawMessage
	digest  string
}

func prepare(e Entry) (preparedEntry, error) {
	if e.Kind != KindStory && e.Kind != KindFinding {
		return preparedEntry{}, fmt.Errorf("%w: kind %q", ErrInvalidEntry, e.Kind)
	}
	if e.TraceID != "" && !isLowerHex(e.TraceID, 32) {
		return preparedEntry{}, fmt.Errorf("%w: trace id %q", ErrInvalidEntry, e.TraceID)
	}
	return prepareInternal(e.Kind, e.TraceID, e.Payload)
}

func prepareInternal(kind, traceID string, payload []byte) (preparedEntry, error) {
	p, err := compactObject(payload)
	if err != nil {
		return preparedEntry{}, fmt.Errorf("%w: %w", ErrInvalidEntry, err)
	}
	if len(p) > MaxRecordBytes-maxRecordOverhead {
		return preparedEntry{}, fmt.Errorf("%w: payload of %d bytes exceeds the record limit of %d bytes", ErrInvalidEntry, len(p), MaxRecordBytes)
	}
	return preparedEntry{kind: kind, traceID: traceID, payload: p, digest: payloadDigest(p)}, nil
}

// openSegment is the segment currently appended to.
type openSegment struct {
	name      string
	path      string
	firstSeq  uint64
	firstPrev string
	created   time.Time
	createdAt string // the segment_open record's time, as written
	file      segmentFile
	size      int64
	count     uint64
	// digest is the SHA-256 of every byte written to the file, checked against the file when
	// the segment is sealed.
	digest hash.Hash
}

// Archive appends records to an evidence archive directory. Its methods are safe for
// concurrent use; appends are serialised.
type Archive struct {
	dir    string
	segDir string
	key    ed25519.PrivateKey
	opts   Options
	now    func() time.Time
	log    *zap.Logger

	mu sync.Mutex
	// dirty is set after a failed write: the tail on disk is re-validated before the next one.
	dirty    bool
	closed   bool
	nextSeq  uint64
	lastHash string
	lastName string // newest segment on disk, named by the next segment_open record
	cur      *openSegment
	buf      []byte
}

// Open opens (creating it if needed) the archive in dir. It repairs a crash-damaged tail of
// the open segment: a partial or invalid last line is cut off, saved under quarantine/ and
// logged, and the chain continues from the last good record.
func Open(dir string, key ed25519.PrivateKey, opts Options) (*Archive, error) {
	if len(key) != ed25519.PrivateKeySize {
		return nil, errors.New("archive: signing key is not an Ed25519 private key")
	}
	if opts.SegmentMaxBytes <= 0 {
		opts.SegmentMaxBytes = DefaultSegmentMaxBytes
	}
	if opts.SegmentMaxAge <= 0 {
		opts.SegmentMaxAge = DefaultSegmentMaxAge
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.openFile == nil {
		opts.openFile = openOSFile
	}
	a := &Archive{
		dir:    dir,
		segDir: filepath.Join(dir, SegmentsDir),
		key:    key,
		opts:   opts,
		now:    opts.Now,
		log:    opts.Logger,
	}
	if err := os.MkdirAll(a.segDir, 0o750); err != nil {
		return nil, fmt.Errorf("archive: %w", err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.reloadLocked(); err != nil {
		return nil, err
	}
	return a, nil
}

// PublicKey returns the public half of the signing key.
func (a *Archive) PublicKey() ed25519.PublicKey { return a.key.Public().(ed25519.PublicKey) }

// Head returns the seq and hash of the last record written ("" and 0 for an empty archive).
func (a *Archive) Head() (uint64, string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.nextSeq - 1, a.lastHash
}

// reloadLocked derives the chain state from the files on disk and opens the open segment.
func (a *Archive) reloadLocked() error {
	if a.cur != nil {
		_ = a.cur.file.Close()
		a.cur = nil
	}
	a.nextSeq, a.lastHash, a.lastName = 1, "", ""
	removeTempFiles(a.segDir)
	segs, _, err := listSegments(a.segDir)
	if err != nil {
		return fmt.Errorf("archive: %w", err)
	}
	if len(segs) == 0 {
		a.dirty = false
		return nil
	}
	last := segs[len(segs)-1]
	if last.hasManifest {
		m, err := a.readManifest(last.firstSeq)
		if err != nil {
			return err
		}
		a.nextSeq, a.lastHash, a.lastName = m.LastSeq+1, m.LastHash, last.name
		a.dirty = false
		return nil
	}

	var prevM *Manifest
	if len(segs) > 1 && segs[len(segs)-2].hasManifest {
		m, err := a.readManifest(segs[len(segs)-2].firstSeq)
		if err != nil {
			return err
		}
		prevM = &m
	}
	path := filepath.Join(a.segDir, last.name)
	scan, err := a.scanOpenSegment(path, last.name, last.firstSeq)
	if err != nil {
		return err
	}
	// Refuse before cutting anything: a segment that does not continue the chain is not
	// crash damage.
	switch {
	case scan.count == 0 && prevM == nil && (len(segs) != 1 || last.firstSeq != 1):
		return fmt.Errorf("archive: cannot tell where the chain continues after open segment %s, which holds no complete record", last.name)
	case scan.count > 0 && prevM != nil && (scan.first.Seq != prevM.LastSeq+1 || scan.first.Prev != prevM.LastHash):
		return fmt.Errorf("archive: open segment %s does not continue the chain of %s; refusing to continue (run `agenttrail evidence verify`)", last.name, segs[len(segs)-2].name)
	case scan.count > 0 && scan.first.Seq == 1 && scan.first.Prev != "":
		return fmt.Errorf("archive: first record of %s has a prev link", last.name)
	}
	if cut := scan.size - scan.goodEnd; cut > 0 {
		// A crash mid-write leaves at most one bad line, at the end: cut it off (keeping a
		// copy) and continue the chain from the last good record.
		q := a.quarantine(path, last.name, scan.goodEnd)
		if err := os.Truncate(path, scan.goodEnd); err != nil {
			return fmt.Errorf("archive: truncating partial record of %s: %w", last.name, err)
		}
		if err := a.syncRepair(func() error { return syncFile(path) }); err != nil {
			return fmt.Errorf("archive: truncating partial record of %s: %w", last.name, err)
		}
		a.log.Warn("Truncated a partial record at the end of the open evidence segment",
			zap.String("segment", last.name), zap.Int64("bytes", cut), zap.Int64("offset", scan.goodEnd),
			zap.String("kind", scan.tailKind), zap.String("reason", scan.tailReason), zap.String("quarantine", q))
		if a.opts.OnRepair != nil {
			a.opts.OnRepair(Repair{Segment: last.name, Offset: scan.goodEnd, Bytes: cut, Kind: scan.tailKind,
				Reason: scan.tailReason, Quarantine: q, RemovedSegment: scan.count == 0})
		}
	}
	if scan.count == 0 {
		if err := os.Remove(path); err != nil {
			return fmt.Errorf("archive: %w", err)
		}
		if err := a.syncRepair(func() error { return syncDir(a.segDir) }); err != nil {
			return fmt.Errorf("archive: %w", err)
		}
		a.log.Warn("Removed an open evidence segment that held no complete record", zap.String("segment", last.name))
		if prevM != nil {
			a.nextSeq, a.lastHash, a.lastName = prevM.LastSeq+1, prevM.LastHash, segs[len(segs)-2].name
		}
		a.dirty = false
		return nil
	}
	created, err := time.Parse(time.RFC3339Nano, scan.first.Time)
	if err != nil {
		return fmt.Errorf("archive: %w", err)
	}
	f, err := a.opts.openFile(path, false)
	if err != nil {
		return fmt.Errorf("archive: %w", err)
	}
	a.cur = &openSegment{
		name: last.name, path: path, firstSeq: last.firstSeq, firstPrev: scan.first.Prev,
		created: created, createdAt: scan.first.Time, file: f, size: scan.goodEnd, count: scan.count, digest: scan.digest,
	}
	a.nextSeq, a.lastHash, a.lastName = scan.last.Seq+1, scan.last.Hash, last.name
	a.dirty = false
	return nil
}

func (a *Archive) readManifest(firstSeq uint64) (Manifest, error) {
	data, err := readFileLimited(filepath.Join(a.segDir, ManifestName(firstSeq)), maxManifestBytes)
	if err != nil {
		return Manifest{}, fmt.Errorf("archive: %w", err)
	}
	m, err := ParseManifest(data)
	if err == nil {
		err = m.VerifySignature()
	}
	if err != nil {
		return Manifest{}, fmt.Errorf("archive: %s: %w", ManifestName(firstSeq), err)
	}
	return m, nil
}

// scanOpenSegment checks the open segment's records, one line in memory at a time.
func (a *Archive) scanOpenSegment(path, name string, firstSeq uint64) (segmentScan, error) {
	f, err := os.Open(path)
	if err != nil {
		return segmentScan{}, fmt.Errorf("archive: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return segmentScan{}, fmt.Errorf("archive: %w", err)
	}
	scan, err := scanSegment(f, fi.Size(), name, firstSeq)
	var ce *corruptionError
	if errors.As(err, &ce) {
		return scan, fmt.Errorf("archive: open segment %s: %w; refusing to continue the chain (run `agenttrail evidence verify`)", name, err)
	}
	if err != nil {
		return scan, fmt.Errorf("archive: open segment %s: %w", name, err)
	}
	return scan, nil
}

func (a *Archive) syncRepair(sync func() error) error {
	if a.opts.noRepairSync {
		return nil
	}
	return sync()
}

// quarantine keeps the bytes from offset to the end of a segment before they are cut off, so
// that repairing a tail never destroys them. It returns the copy's path, or "" if none could
// be kept (a full disk must not stop the repair: the chain matters more than the torn bytes).
func (a *Archive) quarantine(path, name string, offset int64) string {
	qdir := filepath.Join(a.dir, "quarantine")
	qpath := filepath.Join(qdir, name+"."+strconv.FormatInt(a.now().UnixNano(), 10)+".tail")
	err := func() error {
		if err := os.MkdirAll(qdir, 0o750); err != nil {
			return err
		}
		src, err := os.Open(path)
		if err != nil {
			return err
		}
		defer src.Close()
		if _, err := src.Seek(offset, io.SeekStart); err != nil {
			return err
		}
		dst, err := os.OpenFile(qpath, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
		if err != nil {
			return err
		}
		if _, err := io.Copy(dst, src); err != nil {
			dst.Close()
			os.Remove(qpath)
			return err
		}
		if err := a.syncRepair(dst.Sync); err != nil {
			dst.Close()
			os.Remove(qpath)
			return err
		}
		return dst.Close()
	}()
	if err != nil {
		a.log.Warn("Could not keep a copy of the truncated bytes", zap.String("segment", name), zap.Error(err))
		return ""
	}
	return qpath
}

// Append writes entries as one batch: either all of them are in the archive when it returns
// nil, or none is (the segment is truncated back) and an error is returned.
func (a *Archive) Append(ctx context.Context, entries []Entry) error {
	if len(entries) == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	prepared := make([]preparedEntry, len(entries))
	for i, e := range entries {
		p, err := prepare(e)
		if err != nil {
			return err
		}
		prepared[i] = p
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.appendLocked(prepared)
}

type checkpoint struct {
	size     int64
	count    uint64
	digest   []byte // marshalled SHA-256 state
	nextSeq  uint64
	lastHash string
	lastName string
}

func (a *Archive) appendLocked(entries []preparedEntry) error {
	if a.closed {
		return ErrClosed
	}
	if a.dirty {
		if err := a.reloadLocked(); err != nil {
			return fmt.Errorf("re-validating the archive after a failed write: %w", err)
		}
	}
	now := a.now()
	if a.cur != nil && a.rotationDue(now) {
		if err := a.closeCurrentLocked(now); err != nil {
			a.dirty = true
			return err
		}
	}
	cp := checkpoint{nextSeq: a.nextSeq, lastHash: a.lastHash, lastName: a.lastName}
	created := a.cur == nil
	if created {
		if err := a.openSegmentLocked(now); err != nil {
			a.rollback(cp, true)
			return err
		}
	} else {
		cp.size, cp.count = a.cur.size, a.cur.count
		cp.digest, _ = a.cur.digest.(encoding.BinaryMarshaler).MarshalBinary()
	}
	for _, e := range entries {
		if err := a.writeRecordLocked(e); err != nil {
			a.rollback(cp, created)
			return err
		}
	}
	if a.opts.Fsync {
		if err := a.cur.file.Sync(); err != nil {
			a.rollback(cp, created)
			return fmt.Errorf("fsync %s: %w", a.cur.name, err)
		}
	}
	if a.cur.size >= a.opts.SegmentMaxBytes {
		// The batch is durable; a failure to seal now is retried by the next append.
		if err := a.closeCurrentLocked(a.now()); err != nil {
			a.dirty = true
			a.log.Warn("Could not seal a full evidence segment; will retry", zap.Error(err))
		}
	}
	return nil
}

func (a *Archive) rotationDue(now time.Time) bool {
	return a.cur.size >= a.opts.SegmentMaxBytes || now.Sub(a.cur.created) >= a.opts.SegmentMaxAge
}

// rollback undoes a partly written batch and marks the archive for re-validation.
func (a *Archive) rollback(cp checkpoint, created bool) {
	a.dirty = true
	if a.cur != nil {
		if created {
			_ = a.cur.file.Close()
			if err := os.Remove(a.cur.path); err != nil {
				a.log.Warn("Could not remove a segment whose first write failed", zap.String("segment", a.cur.name), zap.Error(err))
			}
			a.cur = nil
		} else {
			if err := a.cur.file.Truncate(cp.size); err != nil {
				a.log.Warn("Could not truncate a failed write; the tail is re-validated before the next write",
					zap.String("segment", a.cur.name), zap.Error(err))
			} else if a.opts.Fsync {
				_ = a.cur.file.Sync()
			}
			a.cur.size, a.cur.count = cp.size, cp.count
			if err := a.cur.digest.(encoding.BinaryUnmarshaler).UnmarshalBinary(cp.digest); err != nil {
				a.log.Warn("Could not restore the segment digest", zap.Error(err))
			}
		}
	}
	a.nextSeq, a.lastHash, a.lastName = cp.nextSeq, cp.lastHash, cp.lastName
}

func (a *Archive) openSegmentLocked(now time.Time) error {
	name := SegmentName(a.nextSeq)
	path := filepath.Join(a.segDir, name)
	f, err := a.opts.openFile(path, true)
	if err != nil {
		return fmt.Errorf("creating segment %s: %w", name, err)
	}
	a.cur = &openSegment{name: name, path: path, firstSeq: a.nextSeq, firstPrev: a.lastHash, created: now, file: f, digest: sha256.New()}
	if a.opts.Fsync {
		if err := syncDir(a.segDir); err != nil {
			return fmt.Errorf("creating segment %s: %w", name, err)
		}
	}
	payload, _ := json.Marshal(segmentOpenPayload{Format: FormatVersion, Segment: name, PreviousSegment: a.lastName})
	p, err := prepareInternal(KindSegmentOpen, "", payload)
	if err != nil {
		return err
	}
	if err := a.writeRecordLocked(p); err != nil {
		return err
	}
	a.lastName = name
	return nil
}

func (a *Archive) writeRecordLocked(e preparedEntry) error {
	rec := Record{
		Seq: a.nextSeq, Time: formatTime(a.now()), Kind: e.kind, TraceID: e.traceID,
		Payload: e.payload, PayloadSHA256: e.digest, Prev: a.lastHash,
	}
	h := rec.Header()
	rec.Hash = h.ComputeHash()
	if rec.Seq == a.cur.firstSeq {
		a.cur.createdAt = rec.Time
	}
	a.buf = rec.AppendLine(a.buf[:0])
	// One write of the whole line: a crash leaves at most one partial line, at the end.
	n, err := a.cur.file.Write(a.buf)
	if err == nil && n != len(a.buf) {
		err = io.ErrShortWrite
	}
	if err != nil {
		return fmt.Errorf("writing record %d to %s: %w", rec.Seq, a.cur.name, err)
	}
	a.cur.digest.Write(a.buf)
	a.cur.size += int64(n)
	a.cur.count++
	a.nextSeq++
	a.lastHash = rec.Hash
	return nil
}

// closeCurrentLocked seals the open segment: it re-reads the file, checks that it holds
// exactly the bytes this process wrote (or found valid when it opened the segment), and
// writes the signed manifest.
func (a *Archive) closeCurrentLocked(now time.Time) error {
	seg := a.cur
	if err := seg.file.Sync(); err != nil {
		return fmt.Errorf("sealing %s: fsync: %w", seg.name, err)
	}
	sum, size, err := fileDigest(seg.path)
	if err != nil {
		return fmt.Errorf("sealing %s: %w", seg.name, err)
	}
	if size != seg.size || !bytes.Equal(sum, seg.digest.Sum(nil)) {
		return fmt.Errorf("sealing %s: the file does not hold exactly the records written to it; not signing it", seg.name)
	}
	m := Manifest{
		Segment: seg.name, FirstSeq: seg.firstSeq, LastSeq: a.nextSeq - 1, RecordCount: seg.count,
		FirstPrev: seg.firstPrev, LastHash: a.lastHash, FileSHA256: hex.EncodeToString(sum[:]),
		FileSize: uint64(size), Created: seg.createdAt, Closed: formatTime(now),
	}
	m.Sign(a.key)
	if err := writeFileAtomic(a.segDir, ManifestName(seg.firstSeq), m.Encode(), 0o640); err != nil {
		return fmt.Errorf("sealing %s: writing manifest: %w", seg.name, err)
	}
	if err := seg.file.Close(); err != nil {
		a.log.Warn("Closing a sealed segment failed", zap.String("segment", seg.name), zap.Error(err))
	}
	a.cur = nil
	a.log.Debug("Sealed evidence segment", zap.String("segment", seg.name),
		zap.Uint64("first_seq", m.FirstSeq), zap.Uint64("last_seq", m.LastSeq))
	return nil
}

// fileDigest returns the SHA-256 and the size of a file, reading it in pieces.
func fileDigest(path string) ([]byte, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return nil, 0, err
	}
	return h.Sum(nil), n, nil
}

// Rotate seals the open segment now, if there is one.
func (a *Archive) Rotate() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return ErrClosed
	}
	if a.dirty {
		if err := a.reloadLocked(); err != nil {
			return err
		}
	}
	if a.cur == nil {
		return nil
	}
	if err := a.closeCurrentLocked(a.now()); err != nil {
		a.dirty = true
		return err
	}
	return nil
}

// RotateIfDue seals the open segment if it has reached the size or age limit. An idle archive
// calls it periodically so that segments are sealed even when no record arrives.
func (a *Archive) RotateIfDue() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed || a.cur == nil || !a.rotationDue(a.now()) {
		return nil
	}
	if err := a.closeCurrentLocked(a.now()); err != nil {
		a.dirty = true
		return err
	}
	return nil
}

// ApplyRetention removes closed segments whose closed time is older than the retention, oldest
// first, stopping at the first one that is not expired (so removals are always a prefix of the
// archive). For each it first appends a retention record to the live chain, then removes the
// segment file and its manifest. The open segment is never removed.
func (a *Archive) ApplyRetention() ([]string, error) {
	if a.opts.Retention.Forever() {
		return nil, nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return nil, ErrClosed
	}
	if a.dirty {
		if err := a.reloadLocked(); err != nil {
			return nil, err
		}
	}
	segs, _, err := listSegments(a.segDir)
	if err != nil {
		return nil, err
	}
	var removed []string
	for _, s := range segs {
		if a.cur != nil && s.firstSeq >= a.cur.firstSeq {
			break
		}
		if !s.hasManifest {
			a.log.Warn("Evidence segment without manifest before the newest segment; retention stops there", zap.String("segment", s.name))
			break
		}
		mpath := filepath.Join(a.segDir, ManifestName(s.firstSeq))
		raw, err := readFileLimited(mpath, maxManifestBytes)
		if err != nil {
			return removed, err
		}
		m, err := ParseManifest(raw)
		if err != nil {
			return removed, fmt.Errorf("%s: %w", ManifestName(s.firstSeq), err)
		}
		closed, err := time.Parse(time.RFC3339Nano, m.Closed)
		if err != nil {
			return removed, err
		}
		if !a.now().After(closed.Add(a.opts.Retention.Duration)) {
			break
		}
		if s.hasFile {
			// Record first: a crash after it leaves a present segment with a retention record
			// (removed again next time), never a missing segment without one.
			sum := sha256.Sum256(raw)
			payload, _ := json.Marshal(RetentionPayload{
				Segment: m.Segment, FirstSeq: m.FirstSeq, LastSeq: m.LastSeq, FirstPrev: m.FirstPrev,
				LastHash: m.LastHash, RecordCount: m.RecordCount, ManifestSHA256: hex.EncodeToString(sum[:]),
				Closed: m.Closed, Policy: a.opts.Retention.Name, Retention: a.opts.Retention.Duration.String(),
			})
			p, err := prepareInternal(KindRetention, "", payload)
			if err != nil {
				return removed, err
			}
			if err := a.appendLocked([]preparedEntry{p}); err != nil {
				return removed, err
			}
			if err := os.Remove(filepath.Join(a.segDir, s.name)); err != nil && !errors.Is(err, os.ErrNotExist) {
				return removed, err
			}
		}
		if err := os.Remove(mpath); err != nil && !errors.Is(err, os.ErrNotExist) {
			return removed, err
		}
		if err := syncDir(a.segDir); err != nil {
			return removed, err
		}
		removed = append(removed, s.name)
		a.log.Info("Removed expired evidence segment", zap.String("segment", s.name),
			zap.String("closed", m.Closed), zap.String("policy", a.opts.Retention.Name))
	}
	return removed, nil
}

// Close seals the open segment. It is idempotent.
func (a *Archive) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return nil
	}
	a.closed = true
	if a.dirty {
		if err := a.reloadLocked(); err != nil {
			return err
		}
	}
	if a.cur == nil {
		return nil
	}
	err := a.closeCurrentLocked(a.now())
	if a.cur != nil {
		_ = a.cur.file.Close()
		a.cur = nil
	}
	return err
}
