package archive

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
)

// ManifestFormat identifies the manifest encoding; it is the first field of the signed bytes,
// which also separates manifest signatures from anything else the key might sign.
const ManifestFormat = "agenttrail.evidence.manifest.v1"

// maxManifestBytes bounds what is read of a manifest file; a manifest is about 700 bytes.
const maxManifestBytes = 64 << 10

// Manifest seals one closed segment.
type Manifest struct {
	Segment     string `json:"segment"`
	FirstSeq    uint64 `json:"first_seq"`
	LastSeq     uint64 `json:"last_seq"`
	RecordCount uint64 `json:"record_count"`
	FirstPrev   string `json:"first_prev"`
	LastHash    string `json:"last_hash"`
	FileSHA256  string `json:"file_sha256"`
	FileSize    uint64 `json:"file_size"`
	Created     string `json:"created"`
	Closed      string `json:"closed"`
	PublicKey   string `json:"public_key"`
	Signature   string `json:"signature"`
}

// CanonicalBytes returns the exact bytes that the signature covers:
//
//	{"format":"agenttrail.evidence.manifest.v1","segment":"…","first_seq":N,"last_seq":N,
//	 "record_count":N,"first_prev":"…","last_hash":"…","file_sha256":"…","file_size":N,
//	 "created":"…","closed":"…","public_key":"…"}
//
// on one line without whitespace, in this field order.
func (m *Manifest) CanonicalBytes() []byte {
	b := make([]byte, 0, 512)
	b = append(b, `{"format":"`...)
	b = append(b, ManifestFormat...)
	b = append(b, `","segment":"`...)
	b = append(b, m.Segment...)
	b = append(b, `","first_seq":`...)
	b = strconv.AppendUint(b, m.FirstSeq, 10)
	b = append(b, `,"last_seq":`...)
	b = strconv.AppendUint(b, m.LastSeq, 10)
	b = append(b, `,"record_count":`...)
	b = strconv.AppendUint(b, m.RecordCount, 10)
	b = append(b, `,"first_prev":"`...)
	b = append(b, m.FirstPrev...)
	b = append(b, `","last_hash":"`...)
	b = append(b, m.LastHash...)
	b = append(b, `","file_sha256":"`...)
	b = append(b, m.FileSHA256...)
	b = append(b, `","file_size":`...)
	b = strconv.AppendUint(b, m.FileSize, 10)
	b = append(b, `,"created":"`...)
	b = append(b, m.Created...)
	b = append(b, `","closed":"`...)
	b = append(b, m.Closed...)
	b = append(b, `","public_key":"`...)
	b = append(b, m.PublicKey...)
	b = append(b, `"}`...)
	return b
}

// Sign fills PublicKey and Signature.
func (m *Manifest) Sign(key ed25519.PrivateKey) {
	m.PublicKey = hex.EncodeToString(key.Public().(ed25519.PublicKey))
	m.Signature = hex.EncodeToString(ed25519.Sign(key, m.CanonicalBytes()))
}

// Encode returns the manifest file content: the canonical bytes with the signature appended as
// the last field, and a newline.
func (m *Manifest) Encode() []byte {
	c := m.CanonicalBytes()
	b := make([]byte, 0, len(c)+160)
	b = append(b, c[:len(c)-1]...)
	b = append(b, `,"signature":"`...)
	b = append(b, m.Signature...)
	b = append(b, "\"}\n"...)
	return b
}

// PublicKeyBytes decodes PublicKey.
func (m *Manifest) PublicKeyBytes() (ed25519.PublicKey, error) {
	if !isLowerHex(m.PublicKey, 2*ed25519.PublicKeySize) {
		return nil, errors.New("public_key must be 64 lowercase hex digits")
	}
	k, _ := hex.DecodeString(m.PublicKey)
	return ed25519.PublicKey(k), nil
}

// VerifySignature checks the signature against the manifest's own public key.
func (m *Manifest) VerifySignature() error {
	pub, err := m.PublicKeyBytes()
	if err != nil {
		return err
	}
	if !isLowerHex(m.Signature, 2*ed25519.SignatureSize) {
		return errors.New("manifest signature invalid")
	}
	sig, _ := hex.DecodeString(m.Signature)
	if !ed25519.Verify(pub, m.CanonicalBytes(), sig) {
		return errors.New("manifest signature invalid")
	}
	return nil
}

type wireManifest struct {
	Format      *string `json:"format"`
	Segment     *string `json:"segment"`
	FirstSeq    *uint64 `json:"first_seq"`
	LastSeq     *uint64 `json:"last_seq"`
	RecordCount *uint64 `json:"record_count"`
	FirstPrev   *string `json:"first_prev"`
	LastHash    *string `json:"last_hash"`
	FileSHA256  *string `json:"file_sha256"`
	FileSize    *uint64 `json:"file_size"`
	Created     *string `json:"created"`
	Closed      *string `json:"closed"`
	PublicKey   *string `json:"public_key"`
	Signature   *string `json:"signature"`
}

// ParseManifest parses a manifest (file content or the JSON object embedded in a proof) and
// checks the shape of every field. It does not check the signature.
func ParseManifest(data []byte) (Manifest, error) {
	var w wireManifest
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil {
		return Manifest{}, fmt.Errorf("malformed manifest: %w", err)
	}
	if dec.More() {
		return Manifest{}, errors.New("malformed manifest: trailing data")
	}
	if w.Format == nil || w.Segment == nil || w.FirstSeq == nil || w.LastSeq == nil || w.RecordCount == nil ||
		w.FirstPrev == nil || w.LastHash == nil || w.FileSHA256 == nil || w.FileSize == nil || w.Created == nil ||
		w.Closed == nil || w.PublicKey == nil || w.Signature == nil {
		return Manifest{}, errors.New("malformed manifest: missing field")
	}
	if *w.Format != ManifestFormat {
		return Manifest{}, fmt.Errorf("malformed manifest: unsupported format %q", *w.Format)
	}
	m := Manifest{
		Segment: *w.Segment, FirstSeq: *w.FirstSeq, LastSeq: *w.LastSeq, RecordCount: *w.RecordCount,
		FirstPrev: *w.FirstPrev, LastHash: *w.LastHash, FileSHA256: *w.FileSHA256, FileSize: *w.FileSize,
		Created: *w.Created, Closed: *w.Closed, PublicKey: *w.PublicKey, Signature: *w.Signature,
	}
	if m.Segment != SegmentName(m.FirstSeq) {
		return Manifest{}, errors.New("malformed manifest: segment name does not match first_seq")
	}
	if m.FirstPrev != "" && !isLowerHex(m.FirstPrev, 64) {
		return Manifest{}, errors.New("malformed manifest: first_prev must be 64 lowercase hex digits or empty")
	}
	for name, v := range map[string]string{"last_hash": m.LastHash, "file_sha256": m.FileSHA256} {
		if !isLowerHex(v, 64) {
			return Manifest{}, fmt.Errorf("malformed manifest: %s must be 64 lowercase hex digits", name)
		}
	}
	for name, v := range map[string]string{"created": m.Created, "closed": m.Closed} {
		if err := validateTime(v); err != nil {
			return Manifest{}, fmt.Errorf("malformed manifest: %s: %w", name, err)
		}
	}
	if !isLowerHex(m.PublicKey, 64) {
		return Manifest{}, errors.New("malformed manifest: public_key must be 64 lowercase hex digits")
	}
	return m, nil
}
